//! Client connections to any XMPP server: TCP (optionally from a chosen source address),
//! STARTTLS or direct TLS, SASL (SCRAM-SHA-256/SHA-1 with or without tls-exporter channel
//! binding, PLAIN), resource binding and initial presence; plus XEP-0077 registration.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_proto::sasl::{SaslClientMsg, SaslServerMsg};
use rampart_proto::{Element, ns};
use rampart_sasl::{ClientExchange, Mechanism};
use rampart_xml::{Event, Framer, Limits};
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::proto::{self, Features};

/// A TLS client stream over TCP.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Where and how to connect and log in.
pub struct Target {
    pub addr: SocketAddr,
    pub domain: String,
    pub server_name: ServerName<'static>,
    pub direct_tls: bool,
    pub tls: Arc<ClientConfig>,
    pub password: String,
    pub mechanism: Option<Mechanism>,
    /// Each network wait (read of one reply, TCP connect, TLS handshake) is bounded by this.
    pub timeout: Duration,
    /// Source addresses to spread connections over (empty: let the kernel choose).
    pub sources: Vec<IpAddr>,
    /// SCRAM keys kept between logins, as real clients keep them (`None`: derived each time).
    pub key_cache: Option<Arc<rampart_sasl::ScramKeyCache>>,
}

/// Why a connection or login failed; `kind` is what the report groups errors by.
#[derive(Debug)]
pub struct Failure {
    pub kind: String,
    pub detail: String,
}

impl Failure {
    fn new(kind: impl Into<String>, detail: impl fmt::Display) -> Failure {
        Failure {
            kind: kind.into(),
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Failure {}

/// The TLS client configuration: trust the certificates in `ca` (PEM; a server's self-signed
/// certificate works), or verify nothing but signatures with `insecure`.
pub fn tls_config(ca: Option<&Path>, insecure: bool, resume: bool) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        let Some(ca) = ca else {
            anyhow::bail!("give --ca FILE (the server's certificate or its CA, PEM) or --insecure");
        };
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| anyhow::anyhow!("--ca {}: {e}", ca.display()))?;
        for c in certs {
            let c = c.map_err(|e| anyhow::anyhow!("--ca {}: {e}", ca.display()))?;
            roots.add(c)?;
        }
        if roots.is_empty() {
            anyhow::bail!("--ca {}: no certificate found", ca.display());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
}

/// `--insecure`: any certificate is accepted (handshake signatures are still checked).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A stream with its framer: reads until the next XML event, writes whole buffers.
pub struct XmlIo<S> {
    pub stream: S,
    pub framer: Framer,
    buf: Vec<u8>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> XmlIo<S> {
    fn new(stream: S, timeout: Duration) -> Self {
        XmlIo {
            stream,
            framer: Framer::new(Limits::default()),
            buf: vec![0; 16 * 1024],
            timeout,
        }
    }

    async fn send(&mut self, data: &[u8], stage: &str) -> Result<(), Failure> {
        let w = async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, w).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::new("io", format!("{stage}: {e}"))),
            Err(_) => Err(Failure::new(format!("timeout {stage}"), "write")),
        }
    }

    async fn send_el(&mut self, e: &Element, stage: &str) -> Result<(), Failure> {
        self.send(&proto::stanza_bytes(e), stage).await
    }

    /// The next event; a `<stream:error/>` or the end of the stream is a [`Failure`].
    async fn event(&mut self, stage: &str) -> Result<Event, Failure> {
        loop {
            match self.framer.next_event() {
                Ok(Some(Event::Stanza(e))) if e.is("error", ns::STREAM) => {
                    return Err(Failure::new(
                        format!("stream-error {}", proto::stream_error_condition(&e)),
                        stage,
                    ));
                }
                Ok(Some(Event::StreamEnd)) => {
                    return Err(Failure::new("stream closed", stage));
                }
                Ok(Some(ev)) => return Ok(ev),
                Ok(None) => {}
                Err(e) => return Err(Failure::new("xml", format!("{stage}: {e}"))),
            }
            let n = match tokio::time::timeout(self.timeout, self.stream.read(&mut self.buf)).await
            {
                Ok(Ok(0)) => return Err(Failure::new("eof", stage)),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(Failure::new("io", format!("{stage}: {e}"))),
                Err(_) => return Err(Failure::new(format!("timeout {stage}"), "read")),
            };
            self.framer.feed(&self.buf[..n]);
        }
    }

    async fn stanza(&mut self, stage: &str) -> Result<Element, Failure> {
        loop {
            if let Event::Stanza(e) = self.event(stage).await? {
                return Ok(e);
            }
        }
    }

    /// Send our stream header and read the server's header and features.
    async fn open_stream(&mut self, domain: &str, stage: &str) -> Result<Features, Failure> {
        self.framer.reset();
        self.send(proto::client_stream_header(domain).as_bytes(), stage)
            .await?;
        match self.event(stage).await? {
            Event::StreamStart(_) => {}
            other => return Err(Failure::new("protocol", format!("{stage}: {other:?}"))),
        }
        let f = self.stanza(stage).await?;
        if !f.is("features", ns::STREAM) {
            return Err(Failure::new(
                "protocol",
                format!("{stage}: expected features, got <{}/>", f.name),
            ));
        }
        Ok(Features::parse(&f))
    }

    /// Wait for the IQ reply with this id (other stanzas are skipped).
    async fn iq_reply(&mut self, id: &str, stage: &str) -> Result<Element, Failure> {
        loop {
            let e = self.stanza(stage).await?;
            if e.name == "iq" && e.attr("id") == Some(id) {
                return match e.attr("type") {
                    Some("result") => Ok(e),
                    _ => {
                        let cond = e
                            .child("error", ns::CLIENT)
                            .and_then(|er| er.elements().find(|c| c.ns == ns::STANZAS))
                            .map(|c| c.name.clone())
                            .unwrap_or_else(|| "error".into());
                        Err(Failure::new(format!("{stage} {cond}"), "iq error"))
                    }
                };
            }
        }
    }
}

/// A logged-in session, ready for stanzas.
pub struct Session {
    pub io: XmlIo<Tls>,
    /// The full JID the server bound.
    pub jid: String,
    pub mechanism: Mechanism,
    /// From starting the TCP connect to the end of the TLS handshake.
    pub connect_time: Duration,
    /// From starting the TCP connect to sending initial presence.
    pub login_time: Duration,
}

impl Session {
    /// Split into the stream and the framer (with any bytes already buffered in it).
    pub fn into_parts(self) -> (Tls, Framer) {
        (self.io.stream, self.io.framer)
    }
}

async fn tcp_connect(t: &Target, conn_index: usize) -> Result<TcpStream, Failure> {
    let sock = if t.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| Failure::new("socket", e))?;
    if !t.sources.is_empty() {
        let src = t.sources[conn_index % t.sources.len()];
        sock.bind(SocketAddr::new(src, 0))
            .map_err(|e| Failure::new("bind source address", e))?;
    }
    let s = match tokio::time::timeout(t.timeout, sock.connect(t.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Failure::new("connect", e)),
        Err(_) => return Err(Failure::new("timeout connect", "")),
    };
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn tls_handshake(t: &Target, tcp: TcpStream) -> Result<Tls, Failure> {
    let connector = tokio_rustls::TlsConnector::from(t.tls.clone());
    match tokio::time::timeout(t.timeout, connector.connect(t.server_name.clone(), tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Failure::new("tls", e)),
        Err(_) => Err(Failure::new("timeout tls", "")),
    }
}

/// TCP, then TLS (direct, or after STARTTLS), then a fresh stream's features.
async fn secure_stream(t: &Target, conn_index: usize) -> Result<(XmlIo<Tls>, Features), Failure> {
    let tcp = tcp_connect(t, conn_index).await?;
    let tls = if t.direct_tls {
        tls_handshake(t, tcp).await?
    } else {
        let mut plain = XmlIo::new(tcp, t.timeout);
        let f = plain.open_stream(&t.domain, "stream").await?;
        if !f.starttls {
            return Err(Failure::new("protocol", "server does not offer STARTTLS"));
        }
        plain
            .send_el(&Element::new("starttls", ns::TLS), "starttls")
            .await?;
        let p = plain.stanza("starttls").await?;
        if !p.is("proceed", ns::TLS) {
            return Err(Failure::new("starttls refused", p.name));
        }
        tls_handshake(t, plain.stream).await?
    };
    let mut io = XmlIo::new(tls, t.timeout);
    let f = io.open_stream(&t.domain, "stream after tls").await?;
    Ok((io, f))
}

/// tls-exporter channel-binding data (RFC 9266), on TLS 1.3 only.
fn channel_binding(tls: &Tls) -> Option<Vec<u8>> {
    let conn = tls.get_ref().1;
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
        .ok()
}

async fn authenticate(
    io: &mut XmlIo<Tls>,
    f: &Features,
    t: &Target,
    user: &str,
) -> Result<Mechanism, Failure> {
    let cb = channel_binding(&io.stream);
    let mech = proto::choose_mechanism(f, cb.is_some(), t.mechanism)
        .map_err(|e| Failure::new("sasl mechanism", e))?;
    let mut ex = ClientExchange::new(
        mech,
        user,
        &t.password,
        if mech.is_plus() { cb } else { None },
    );
    if let Some(cache) = &t.key_cache {
        ex = ex.with_key_cache(cache.clone());
    }
    let sasl_err = |e: rampart_sasl::SaslError| Failure::new("sasl client", e);
    let initial = ex.initial().map_err(sasl_err)?;
    let auth = SaslClientMsg::Auth {
        mechanism: mech.name().to_owned(),
        initial: Some(initial),
    };
    io.send_el(&auth.into(), "sasl").await?;
    let mut verified = false;
    loop {
        let e = io.stanza("sasl").await?;
        let msg = SaslServerMsg::try_from(&e).map_err(|e| Failure::new("sasl reply", e))?;
        match msg {
            SaslServerMsg::Challenge(data) if !verified && mech.scram_hash().is_some() => {
                // First challenge: server-first. A second one carries server-final (old servers
                // send it as a challenge and then an empty success).
                match ex.respond(&data) {
                    Ok(r) => {
                        io.send_el(&SaslClientMsg::Response(r).into(), "sasl")
                            .await?
                    }
                    Err(_) => {
                        ex.verify_success(&data).map_err(sasl_err)?;
                        verified = true;
                        io.send_el(&SaslClientMsg::Response(Vec::new()).into(), "sasl")
                            .await?;
                    }
                }
            }
            SaslServerMsg::Challenge(_) => {
                return Err(Failure::new("sasl", "unexpected challenge"));
            }
            SaslServerMsg::Success(data) => {
                if !verified {
                    ex.verify_success(&data).map_err(sasl_err)?;
                }
                return Ok(mech);
            }
            SaslServerMsg::Failure { condition, .. } => {
                return Err(Failure::new(format!("sasl {condition}"), mech));
            }
        }
    }
}

/// Log `user` (localpart) in with `resource`: TLS, SASL, bind, session if required, and
/// initial presence. `conn_index` picks the source address.
pub async fn login(
    t: &Target,
    user: &str,
    resource: &str,
    conn_index: usize,
) -> Result<Session, Failure> {
    let start = Instant::now();
    let (mut io, f) = secure_stream(t, conn_index).await?;
    let connect_time = start.elapsed();
    let mechanism = authenticate(&mut io, &f, t, user).await?;
    let f = io.open_stream(&t.domain, "stream after sasl").await?;
    if !f.bind {
        return Err(Failure::new("protocol", "no bind feature"));
    }
    io.send_el(&proto::bind_request("bind1", resource), "bind")
        .await?;
    let reply = io.iq_reply("bind1", "bind").await?;
    let jid = reply
        .child("bind", ns::BIND)
        .and_then(|b| rampart_proto::bind::parse_bind_result(b).ok())
        .map(|j| j.as_str().to_owned())
        .ok_or_else(|| Failure::new("protocol", "bind result without a JID"))?;
    if f.session_required {
        io.send_el(&proto::session_request("sess1"), "session")
            .await?;
        io.iq_reply("sess1", "session").await?;
    }
    io.send(b"<presence/>", "presence").await?;
    Ok(Session {
        io,
        jid,
        mechanism,
        connect_time,
        login_time: start.elapsed(),
    })
}

/// Close a stream politely: `</stream:stream>` and a TLS close_notify. Bounded by `timeout`.
pub async fn close<W: AsyncWrite + Unpin>(w: &mut W, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        w.write_all(rampart_proto::stream::STREAM_CLOSE.as_bytes())
            .await?;
        w.shutdown().await
    })
    .await;
}

/// What registering one account did.
#[derive(Debug, PartialEq, Eq)]
pub enum Registered {
    Created,
    Exists,
}

/// XEP-0077 in-band registration of `user` (over TLS, before authentication).
pub async fn register(t: &Target, user: &str, conn_index: usize) -> Result<Registered, Failure> {
    let (mut io, f) = secure_stream(t, conn_index).await?;
    if !f.register {
        return Err(Failure::new(
            "register",
            "server does not offer in-band registration",
        ));
    }
    io.send_el(
        &proto::register_request("reg1", user, &t.password),
        "register",
    )
    .await?;
    let r = match io.iq_reply("reg1", "register").await {
        Ok(_) => Registered::Created,
        Err(f) if f.kind == "register conflict" => Registered::Exists,
        Err(f) => return Err(f),
    };
    close(&mut io.stream, t.timeout).await;
    Ok(r)
}
