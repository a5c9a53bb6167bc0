//! Client-to-server sessions (RFC 6120): STARTTLS or direct TLS (XEP-0368), SASL, resource
//! binding, then the bound session's read/write loop that feeds the router.
//!
//! Each connection is one task. The phases run in order and each phase only accepts what the
//! RFC allows there; everything before binding must finish within the handshake timeout.

pub mod bosh;
mod conn;
pub mod sm;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use rampart_proto::error::{DefinedCondition, ErrorType, StanzaError, error_reply};
use rampart_proto::sasl::SaslClientMsg;
use rampart_proto::{Element, Jid, StreamError, StreamErrorCondition as Sec, bind, ns, sasl as psasl, tls as ptls};
use rampart_sasl::{Mechanism, ServerExchange, Step};
use rampart_xml::{Event, Limits, StreamHeader};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use conn::{ConnError, XmlConn};

use crate::limits::{AuthGate, AuthThrottle, ConnSlot};
use crate::router::{Router, SessionCtx};
use crate::sessions::{Outbound, OutboundRx};

/// What every connection task shares.
pub struct C2sShared {
    pub router: Arc<Router>,
    pub tls: TlsAcceptor,
    pub throttle: AuthThrottle,
    /// XEP-0198 sessions waiting to be resumed.
    pub hibernation: sm::Hibernation,
}

/// What the bind phase produced.
enum Bound {
    /// A freshly bound resource.
    New(SessionCtx, OutboundRx),
    /// A hibernating session taken over with XEP-0198 `<resume/>`.
    Resumed(Box<sm::Hibernated>),
}

impl C2sShared {
    fn xml_limits(&self) -> Limits {
        Limits { max_stanza_bytes: self.router.config.limits.max_stanza_bytes, ..Limits::default() }
    }
}

/// Parse a stanza kept in the store as XML text (offline messages, pending subscriptions).
pub fn parse_stored(xml: &str) -> Option<Element> {
    let mut framer = rampart_xml::Framer::new(Limits { max_stanza_bytes: usize::MAX / 2, ..Limits::default() });
    framer.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    framer.feed(xml.as_bytes());
    loop {
        match framer.next_event() {
            Ok(Some(Event::Stanza(el))) => return Some(el),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Serve one accepted TCP connection until it closes.
///
/// The connection's task only awaits two boxed futures in turn, the handshake and the
/// session: each is allocated at its own size and the handshake's is freed before the
/// session starts, so an idle connection holds no handshake state (idle memory). Not an
/// `async fn`, which would keep its arguments twice (see `session_loop`).
#[allow(clippy::manual_async_fn)] // deliberate: see above
pub fn serve(
    shared: Arc<C2sShared>,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    slot: ConnSlot,
) -> impl std::future::Future<Output = ()> {
    async move {
        // Held until the connection ends (per-address connection limits).
        let _slot = slot;
        let _ = tcp.set_nodelay(true);
        let Some((conn, ctx, rx, sm)) = Box::pin(establish(&shared, tcp, peer, direct_tls)).await else { return };
        Box::pin(session_loop(shared, conn, ctx, rx, sm, peer)).await;
    }
}

/// The session being started: the stream, the bound session, its queue, resumed SM state.
type Established = (XmlConn<TlsStream<TcpStream>>, SessionCtx, OutboundRx, Option<sm::SmState>);

/// STARTTLS (or direct TLS), TLS, SASL and bind (or resume): `None` if the connection ended.
async fn establish(shared: &Arc<C2sShared>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) -> Option<Established> {
    let limits = &shared.router.config.limits;
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
    let domain = shared.router.domain.clone();

    // Phase 1 (STARTTLS port only): plaintext stream until <starttls/>. A client that opens
    // with a TLS ClientHello (record type 0x16) gets TLS at once, as on the direct-TLS port;
    // some clients (slixmpp among them) try that first.
    let direct_tls = direct_tls || starts_with_tls_record(&tcp, deadline).await;
    let tcp = if direct_tls {
        tcp
    } else {
        let mut conn = XmlConn::new(tcp, shared.xml_limits(), limits.stanza_timeout, &domain);
        match tokio::time::timeout_at(deadline, starttls_phase(&mut conn, &domain)).await {
            Ok(Ok(())) => match conn.into_inner() {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "data after STARTTLS request");
                    return None;
                }
            },
            Ok(Err(e)) => {
                log_end(peer, &e);
                conn.close(e.to_stream_error()).await;
                return None;
            }
            Err(_) => {
                tracing::info!(%peer, "handshake timeout before TLS");
                conn.close(Some(stream_err(Sec::ConnectionTimeout, None))).await;
                return None;
            }
        }
    };

    // Phase 2: TLS.
    // The handshake phases are boxed: their futures are freed when they finish instead of
    // sizing the connection's task for its whole life (idle memory per connection).
    let tls = match Box::pin(tokio::time::timeout_at(deadline, shared.tls.accept(tcp))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timeout");
            return None;
        }
    };
    let channel_binding = tls_exporter(&tls);
    let mut conn = XmlConn::new(tls, shared.xml_limits(), limits.stanza_timeout, &domain);

    // Phase 3 and 4: SASL, then bind.
    let (ctx, rx, sm) = Box::pin(authenticate(shared, &mut conn, peer, channel_binding, deadline, "tcp")).await?;
    Some((conn, ctx, rx, sm))
}

/// A bound (or resumed) session: its context, its queue, its stream management state.
pub(super) type Authenticated = (SessionCtx, OutboundRx, Option<sm::SmState>);

/// Phases 3 and 4 over any transport (TCP+TLS, or a WebSocket/BOSH bridge): SASL, then bind
/// or resume, before `deadline`. A failure closes the stream with its error and gives
/// `None`. A new session's login is archived; a resumed one tells push it is connected again.
pub(super) async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<C2sShared>,
    conn: &mut XmlConn<S>,
    peer: SocketAddr,
    channel_binding: Option<Vec<u8>>,
    deadline: tokio::time::Instant,
    transport: &'static str,
) -> Option<Authenticated> {
    let bound = tokio::time::timeout_at(deadline, async {
        let user = sasl_phase(shared, conn, peer, channel_binding).await?;
        bind_phase(shared, conn, &user).await
    })
    .await;
    let bound = match bound {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            log_end(peer, &e);
            conn.close(e.to_stream_error()).await;
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, transport, "handshake timeout");
            conn.close(Some(stream_err(Sec::ConnectionTimeout, None))).await;
            return None;
        }
    };
    Some(match bound {
        Bound::New(ctx, rx) => {
            tracing::info!(%peer, jid = %ctx.jid, transport, "session bound");
            Box::pin(shared.router.archive_session_event(&ctx, rampart_archive::RecordKind::Login, Some(&peer.to_string()))).await;
            (ctx, rx, None)
        }
        Bound::Resumed(h) => {
            tracing::info!(%peer, jid = %h.ctx.jid, transport, unacked = h.sm.unacked.len(), "session resumed");
            crate::modules::push::resumed(&shared.router, &h.ctx);
            (h.ctx, h.rx, Some(h.sm))
        }
    })
}

/// Peek at the first byte: is it a TLS handshake record?
async fn starts_with_tls_record(tcp: &TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut b = [0u8; 1];
    matches!(tokio::time::timeout_at(deadline, tcp.peek(&mut b)).await, Ok(Ok(1)) if b[0] == 0x16)
}

fn stream_err(condition: Sec, text: Option<&str>) -> StreamError {
    StreamError { condition, text: text.map(str::to_owned) }
}

fn log_end(peer: SocketAddr, e: &ConnError) {
    match e {
        ConnError::Closed | ConnError::StreamEnd => tracing::debug!(%peer, "client closed before binding"),
        ConnError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%peer, "client dropped the connection before binding")
        }
        _ => tracing::info!(%peer, error = %e, "stream closed"),
    }
}

/// RFC 9266: the tls-exporter channel binding, on TLS 1.3 only.
fn tls_exporter(tls: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let (_, conn) = tls.get_ref();
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None).ok()
}

/// Wait for the client's stream header and answer with ours; checks RFC 6120 §4.7.
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut XmlConn<S>, domain: &str) -> Result<StreamHeader, ConnError> {
    let header = match conn.next_event().await? {
        Event::StreamStart(h) => h,
        _ => return Err(ConnError::stream(Sec::NotWellFormed)),
    };
    conn.queue_header(header.from.as_deref());
    if header.default_ns != ns::CLIENT {
        return Err(ConnError::stream(Sec::InvalidNamespace));
    }
    match header.to.as_deref().map(Jid::parse) {
        Some(Ok(to)) if to.as_str() == domain => {}
        Some(_) => return Err(ConnError::stream(Sec::HostUnknown)),
        None => return Err(ConnError::Stream(Sec::HostUnknown, Some("the stream header needs a 'to' address".into()))),
    }
    // RFC 6120 §4.7.5: major version 1 only.
    let major = header.version.as_deref().and_then(|v| v.split('.').next()).and_then(|m| m.parse::<u32>().ok());
    if major != Some(1) {
        return Err(ConnError::stream(Sec::UnsupportedVersion));
    }
    Ok(header)
}

fn features(children: Vec<Element>) -> Element {
    let mut f = Element::new("features", ns::STREAM);
    for c in children {
        f = f.with_child(c);
    }
    f
}

async fn starttls_phase(conn: &mut XmlConn<TcpStream>, domain: &str) -> Result<(), ConnError> {
    open_stream(conn, domain).await?;
    conn.queue(&features(vec![ptls::starttls_feature(true)]));
    conn.flush().await?;
    match conn.next_event().await? {
        Event::Stanza(el) if ptls::is_starttls(&el) => {
            conn.send(&ptls::proceed()).await?;
            Ok(())
        }
        Event::Stanza(el) if el.is("auth", ns::SASL) => {
            conn.send(&psasl::failure("encryption-required", Some("TLS is required before authentication"))).await?;
            Err(ConnError::Stream(Sec::PolicyViolation, Some("TLS is required".into())))
        }
        Event::StreamEnd => Err(ConnError::StreamEnd),
        _ => Err(ConnError::Stream(Sec::PolicyViolation, Some("TLS is required".into()))),
    }
}

/// The authenticated account (bare JID).
async fn sasl_phase<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &C2sShared,
    conn: &mut XmlConn<S>,
    peer: SocketAddr,
    channel_binding: Option<Vec<u8>>,
) -> Result<Jid, ConnError> {
    let router = &shared.router;
    open_stream(conn, &router.domain).await?;
    let plus = channel_binding.is_some();
    let mechs: Vec<&str> = Mechanism::ALL.iter().filter(|m| plus || !m.is_plus()).map(|m| m.name()).collect();
    let mut feats = vec![psasl::mechanisms(&mechs)];
    if plus {
        // XEP-0440: which channel-binding types we support.
        feats.push(
            Element::new("sasl-channel-binding", ns::SASL_CB)
                .with_child(Element::new("channel-binding", ns::SASL_CB).with_attr("type", "tls-exporter")),
        );
    }
    conn.queue(&features(feats));
    conn.flush().await?;

    loop {
        let el = match conn.next_event().await? {
            Event::Stanza(el) => el,
            Event::StreamEnd => return Err(ConnError::StreamEnd),
            Event::StreamStart(_) => return Err(ConnError::stream(Sec::NotWellFormed)),
        };
        let msg = match SaslClientMsg::try_from(&el) {
            Ok(m) => m,
            Err(rampart_proto::ParseError::Base64) => {
                conn.send(&psasl::failure("incorrect-encoding", None)).await?;
                continue;
            }
            Err(_) if el.ns == ns::SASL => {
                conn.send(&psasl::failure("malformed-request", None)).await?;
                continue;
            }
            Err(_) => return Err(ConnError::stream(Sec::NotAuthorized)),
        };
        let SaslClientMsg::Auth { mechanism, initial } = msg else {
            conn.send(&psasl::failure("malformed-request", Some("no exchange in progress"))).await?;
            continue;
        };
        if shared.throttle.check(peer.ip()) == AuthGate::Blocked {
            tracing::warn!(%peer, "authentication refused: too many failures from this address");
            conn.send(&psasl::failure("temporary-auth-failure", Some("too many failed attempts; try again later"))).await?;
            continue;
        }
        let mech = Mechanism::from_name(&mechanism).filter(|m| plus || !m.is_plus());
        let Some(mech) = mech else {
            conn.send(&psasl::failure("invalid-mechanism", None)).await?;
            continue;
        };
        match run_exchange(shared, conn, mech, initial, channel_binding.clone()).await? {
            Ok(jid) => {
                shared.throttle.succeeded(peer.ip());
                tracing::info!(%peer, %jid, mechanism = mech.name(), "authenticated");
                conn.framer.reset();
                return Ok(jid);
            }
            Err((condition, username)) => {
                let delay = shared.throttle.failed(peer.ip());
                tracing::warn!(%peer, user = %username, mechanism = mech.name(), condition, "authentication failed");
                tokio::time::sleep(delay).await;
                conn.send(&psasl::failure(condition, None)).await?;
            }
        }
    }
}

type ExchangeOutcome = Result<Jid, (&'static str, String)>;

/// Run one SASL exchange to its end. Outer error: the stream must close.
async fn run_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &C2sShared,
    conn: &mut XmlConn<S>,
    mech: Mechanism,
    initial: Option<Vec<u8>>,
    channel_binding: Option<Vec<u8>>,
) -> Result<ExchangeOutcome, ConnError> {
    let router = &shared.router;
    let plus_offered = channel_binding.is_some();
    let mut ex = ServerExchange::new(mech, channel_binding, plus_offered, &router.config.server_secret);
    let mut username = String::new();
    let mut account: Option<Jid> = None;
    let mut input = initial.unwrap_or_default();
    let mut step = ex.step(&input);
    loop {
        match step {
            Ok(Step::NeedCredentials { username: u }) => {
                username = u;
                account = Jid::new(Some(&username), &router.domain, None).ok();
                let creds = match &account {
                    Some(j) => match router.stores.accounts.get(j.as_str()).await {
                        Ok(a) => a.map(|a| a.credentials),
                        Err(e) => {
                            tracing::error!(error = %e, "account lookup failed");
                            return Ok(Err(("temporary-auth-failure", username)));
                        }
                    },
                    None => None,
                };
                step = ex.provide_credentials(creds.as_deref());
            }
            Ok(Step::Challenge(data)) => {
                conn.send(&psasl::challenge(&data)).await?;
                let el = match conn.next_event().await? {
                    Event::Stanza(el) => el,
                    Event::StreamEnd => return Err(ConnError::StreamEnd),
                    Event::StreamStart(_) => return Err(ConnError::stream(Sec::NotWellFormed)),
                };
                match SaslClientMsg::try_from(&el) {
                    Ok(SaslClientMsg::Response(data)) => input = data,
                    Err(rampart_proto::ParseError::Base64) => return Ok(Err(("incorrect-encoding", username))),
                    Ok(SaslClientMsg::Abort) => return Ok(Err(("aborted", username))),
                    Ok(SaslClientMsg::Auth { .. }) | Err(_) if el.ns == ns::SASL => {
                        return Ok(Err(("malformed-request", username)));
                    }
                    _ => return Err(ConnError::stream(Sec::NotAuthorized)),
                }
                step = ex.step(&input);
            }
            Ok(Step::Success { authzid, additional_data, .. }) => {
                let Some(jid) = account else { return Ok(Err(("not-authorized", username))) };
                if let Some(z) = authzid
                    && Jid::parse(&z).map(|z| z != jid).unwrap_or(true)
                {
                    return Ok(Err(("invalid-authzid", username)));
                }
                conn.send(&psasl::success(&additional_data)).await?;
                return Ok(Ok(jid));
            }
            Err(e) => return Ok(Err((e.condition(), username))),
        }
    }
}

async fn bind_phase<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &C2sShared,
    conn: &mut XmlConn<S>,
    user: &Jid,
) -> Result<Bound, ConnError> {
    let router = &shared.router;
    open_stream(conn, &router.domain).await?;
    conn.queue(&features(vec![
        bind::bind_feature(),
        bind::session_feature(),
        Element::new("ver", ns::ROSTERVER),
        Element::new("sub", ns::PRE_APPROVAL),
        Element::new("sm", ns::SM),
        Element::new("csi", ns::CSI),
        // XEP-0115 §6.3: the server's own capabilities; and XEP-0390's.
        crate::modules::disco::server_caps(router).into(),
        crate::modules::disco::server_caps2(router).into(),
    ]));
    conn.flush().await?;
    loop {
        let el = match conn.next_event().await? {
            Event::Stanza(el) => el,
            Event::StreamEnd => return Err(ConnError::StreamEnd),
            Event::StreamStart(_) => return Err(ConnError::stream(Sec::NotWellFormed)),
        };
        if el.is("resume", ns::SM) {
            let previd = el.attr("previd").unwrap_or("");
            let h = el.attr("h").and_then(|h| h.parse::<u32>().ok());
            let taken = h.and_then(|_| shared.hibernation.take(previd, user.as_str()));
            let (Some(mut hib), Some(h)) = (taken, h) else {
                conn.send(&Element::new("failed", ns::SM).with_child(Element::new("item-not-found", ns::STANZAS))).await?;
                continue;
            };
            if let Err(why) = hib.sm.ack(h) {
                // Put it back for its expiry to hand the queue to the router.
                shared.hibernation.put(previd.to_owned(), hib);
                return Err(ConnError::Stream(Sec::UndefinedCondition, Some(why)));
            }
            hib.rx.set_live_limit(router.config.limits.session_queue);
            conn.queue(&Element::new("resumed", ns::SM).with_attr("previd", previd).with_attr("h", hib.sm.inbound.to_string()));
            for (_, st) in &hib.sm.unacked {
                conn.queue(st);
            }
            if !hib.sm.unacked.is_empty() {
                conn.queue(&Element::new("r", ns::SM));
            }
            conn.flush().await?;
            return Ok(Bound::Resumed(Box::new(hib)));
        }
        let Some(req) = (el.is("iq", ns::CLIENT) && el.attr("type") == Some("set"))
            .then(|| el.child("bind", ns::BIND))
            .flatten()
        else {
            // RFC 6120 §7.1: nothing but binding before a resource is bound.
            return Err(ConnError::Stream(Sec::NotAuthorized, Some("bind a resource first".into())));
        };
        let req = match bind::BindRequest::try_from(req) {
            Ok(r) => r,
            Err(_) => {
                conn.send(&error_reply(&el, &StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest))).await?;
                continue;
            }
        };
        let resource = req.resource.filter(|r| !r.is_empty()).unwrap_or_else(random_resource);
        let jid = match user.with_resource(&resource) {
            Ok(j) => j,
            Err(_) => {
                conn.send(&error_reply(&el, &StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)
                    .with_text("invalid resource"))).await?;
                continue;
            }
        };
        let (tx, mut rx) = crate::sessions::outbound_queue();
        // A client that stops reading cannot make the server hold its stanzas without bound.
        rx.set_live_limit(router.config.limits.session_queue);
        let id = router.sessions.new_id();
        if let Some(old) = router.sessions.bind(id, jid.clone(), tx) {
            // RFC 6120 §7.7.2.2: the newer session wins; the old one gets <conflict/>.
            tracing::info!(%jid, "resource conflict: replacing the older session");
            let _ = old.tx.send(Outbound::Close(Box::new(stream_err(Sec::Conflict, Some("replaced by a new connection")))));
            if let Some(h) = shared.hibernation.expire_session(old.id) {
                end_hibernated(router, h).await;
            }
        }
        let mut result = Element::new("iq", ns::CLIENT).with_attr("type", "result").with_child(bind::bind_result(jid.as_str()));
        if let Some(i) = el.attr("id") {
            result.set_attr("id", i);
        }
        conn.send(&result).await?;
        // The ordered delivery queue starts with the session's first message (see `ensure_deliveries`).
        let ctx = SessionCtx { id, jid, directed: Default::default(), available: false, last_status: None, deliveries: None };
        return Ok(Bound::New(ctx, rx));
    }
}

/// Give the session its ordered delivery queue (messages waiting for their archive record,
/// delivered in order by their own task) if it has none yet. Started with the session's first
/// message instead of at bind: a session that sends none holds no task and no channel (idle
/// memory per connection).
fn ensure_deliveries(router: &Arc<Router>, ctx: &mut SessionCtx) {
    if ctx.deliveries.is_none() {
        let (dtx, drx) = mpsc::unbounded_channel();
        tokio::spawn(crate::router::delivery_task(router.clone(), drx));
        ctx.deliveries = Some(dtx);
    }
}

fn random_resource() -> String {
    format!("rampart-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Most stanzas written to the socket per flush while more are waiting.
const MAX_BATCH: usize = 64;

/// XEP-0352 Client State Indication: what waits while the client is inactive.
#[derive(Default)]
struct Csi {
    inactive: bool,
    held: Vec<Element>,
}

/// Most stanzas held for an inactive client before they are written anyway.
const CSI_MAX_HELD: usize = 256;

impl Csi {
    /// Hold a stanza; true if the buffer is full and should be written now.
    fn hold(&mut self, el: Element) -> bool {
        // A newer presence from the same entity replaces the older one.
        if el.name == "presence"
            && let Some(pos) = self.held.iter().position(|h| h.name == "presence" && h.attr("from") == el.attr("from"))
        {
            self.held.remove(pos);
        }
        self.held.push(el);
        self.held.len() >= CSI_MAX_HELD
    }

    fn flush<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut XmlConn<S>, sm: &mut Option<sm::SmState>) {
        for el in self.held.drain(..) {
            write_stanza(conn, sm, &el);
        }
    }
}

/// Must reach an inactive client at once: messages with content, IQs, and anything about
/// subscriptions. Presence updates and chat states can wait.
fn is_important(el: &Element) -> bool {
    match el.name.as_str() {
        "message" => el.elements().any(|c| {
            !matches!(c.ns.as_str(), "http://jabber.org/protocol/chatstates" | "urn:xmpp:chat-markers:0" | "urn:xmpp:receipts")
        }),
        "presence" => matches!(el.attr("type"), Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "error")),
        _ => true,
    }
}

fn write_stanza<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut XmlConn<S>, sm: &mut Option<sm::SmState>, el: &Element) {
    conn.queue(el);
    if let Some(s) = sm.as_mut() {
        s.sent(el);
    }
}

/// How a bound session's connection ended.
enum End {
    /// The session is over (clean close, stream error, conflict, or no resumption).
    Close(Option<StreamError>),
    /// The connection broke and the session may be resumed (XEP-0198).
    Broken,
}

/// The bound session: stanzas from the client go to the router, the session's queue goes
/// to the client, until the stream ends or breaks.
///
/// Not an `async fn`: an async fn's future keeps its arguments twice, once as arguments and
/// once moved into its locals (rust-lang/rust#62958), which for the `XmlConn` alone is
/// ~1.9 KiB per idle session. An `async move` block uses what it captured in place.
#[allow(clippy::manual_async_fn)] // deliberate: see above
fn session_loop<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<C2sShared>,
    mut conn: XmlConn<S>,
    mut ctx: SessionCtx,
    mut rx: OutboundRx,
    mut sm: Option<sm::SmState>,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    async move {
        let router = &shared.router;
        // XEP-0352: while the client says it is inactive, unimportant stanzas wait here.
        let mut csi = Csi::default();
        let end: End = 'run: loop {
            // Handle every complete stanza already buffered.
            loop {
                match conn.poll_buffered() {
                    Ok(Some(Event::Stanza(el))) if el.ns == ns::CSI => match el.name.as_str() {
                        "active" => {
                            csi.inactive = false;
                            csi.flush(&mut conn, &mut sm);
                        }
                        "inactive" => csi.inactive = true,
                        _ => break 'run End::Close(Some(stream_err(Sec::UnsupportedStanzaType, None))),
                    },
                    Ok(Some(Event::Stanza(el))) if el.ns == ns::SM => match sm_nonza(&shared, &mut conn, &ctx, &mut sm, &el) {
                        Ok(()) => {}
                        Err(e) => break 'run End::Close(Some(e)),
                    },
                    Ok(Some(Event::Stanza(el))) => {
                        if el.ns != ns::CLIENT {
                            tracing::info!(%peer, jid = %ctx.jid, name = %el.name, ns = %el.ns, "unsupported top-level element");
                            break 'run End::Close(Some(stream_err(Sec::UnsupportedStanzaType, None)));
                        }
                        let counted = sm::is_stanza(&el);
                        if el.name == "message" {
                            ensure_deliveries(router, &mut ctx);
                        }
                        // Boxed: the routing future is large and only lives while a stanza is
                        // handled, so it is not kept in every idle session's task.
                        if let Err(e) = Box::pin(router.handle_client_stanza(&mut ctx, el)).await {
                            break 'run End::Close(Some(e));
                        }
                        if counted && let Some(s) = sm.as_mut() {
                            s.inbound = s.inbound.wrapping_add(1);
                        }
                    }
                    Ok(Some(Event::StreamEnd)) => break 'run End::Close(None),
                    Ok(Some(Event::StreamStart(_))) => break 'run End::Close(Some(stream_err(Sec::NotWellFormed, None))),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(%peer, jid = %ctx.jid, error = %e, "stream error");
                        break 'run End::Close(e.to_stream_error());
                    }
                }
            }
            if conn.queued() > 0 {
                match flush_unless_overflowing(&mut conn, &rx).await {
                    Ok(()) => {}
                    Err(end) => break 'run end,
                }
            }
            let deadline = conn.partial_deadline();
            tokio::select! {
                r = conn.read_some() => match r {
                    Ok(true) => {}
                    Ok(false) => break 'run End::Broken,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "read failed");
                        break 'run End::Broken;
                    }
                },
                msg = rx.recv() => {
                    let mut next = msg;
                    let mut n = 0;
                    while let Some(m) = next.take() {
                        match m {
                            Outbound::Stanza(el) => {
                                let el = *el;
                                if csi.inactive && !is_important(&el) {
                                    if csi.hold(el) {
                                        csi.flush(&mut conn, &mut sm);
                                    }
                                } else {
                                    csi.flush(&mut conn, &mut sm);
                                    write_stanza(&mut conn, &mut sm, &el);
                                }
                            }
                            Outbound::Close(e) => {
                                let _ = conn.flush().await;
                                break 'run End::Close(Some(*e));
                            }
                        }
                        n += 1;
                        if n < MAX_BATCH {
                            next = rx.try_recv();
                        }
                    }
                    if let Some(s) = sm.as_ref().filter(|_| conn.queued() > 0) {
                        if s.unacked.len() > sm::MAX_UNACKED {
                            break 'run End::Close(Some(stream_err(Sec::PolicyViolation, Some("too many unacknowledged stanzas"))));
                        }
                        conn.queue(&Element::new("r", ns::SM));
                    }
                    if let Err(end) = flush_unless_overflowing(&mut conn, &rx).await {
                        tracing::debug!(%peer, jid = %ctx.jid, "write failed or the client stopped reading");
                        break 'run end;
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    tracing::info!(%peer, jid = %ctx.jid, "incomplete stanza timed out");
                    break 'run End::Close(Some(stream_err(Sec::ConnectionTimeout, Some("stanza not completed in time"))));
                }
            }
        };
        // Boxed: ending a session (presence broadcast, requeueing, hibernation) awaits large
        // futures; inline they would size every idle session's task for its whole life.
        Box::pin(end_session(shared, conn, ctx, rx, sm, csi, end, peer)).await;
    }
}

/// Write what the session queued, unless its outbound queue overflows meanwhile: then the
/// client has stopped reading while stanzas kept coming, and waiting on its socket would only
/// let them pile up. The unwritten rest is dropped from the write buffer (with stream
/// management those stanzas are still unacknowledged, so they go back to the router) and the
/// session ends with `resource-constraint`.
async fn flush_unless_overflowing<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut XmlConn<S>, rx: &OutboundRx) -> Result<(), End> {
    rx.writing(true);
    let result = tokio::select! {
        r = conn.flush() => r.map_err(|_| End::Broken),
        () = rx.overflowed() => {
            conn.discard_unwritten();
            tracing::warn!("the client stopped reading and its queue is full: the session ends");
            Err(End::Close(Some(stream_err(Sec::ResourceConstraint, Some("the client does not read what is sent to it")))))
        }
    };
    rx.writing(false);
    result
}

/// After the session loop: hibernate a resumable session whose connection broke, or end the
/// session, close the stream and hand back what was not delivered.
#[allow(clippy::too_many_arguments)]
async fn end_session<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<C2sShared>,
    mut conn: XmlConn<S>,
    mut ctx: SessionCtx,
    rx: OutboundRx,
    mut sm: Option<sm::SmState>,
    mut csi: Csi,
    end: End,
    peer: SocketAddr,
) {
    let router = &shared.router;
    // Stanzas held back for an inactive client count as written (SM) or go back to the
    // router like any unwritten stanza.
    for el in csi.held.drain(..) {
        match sm.as_mut() {
            Some(s) => s.sent(&el),
            None => requeue(router, &ctx, el).await,
        }
    }
    // A resumable session whose connection broke waits for its client to come back.
    // (Only a broken, resumable session gives up its stream-management state here: any other
    // end hands the unacknowledged stanzas back to the router below.)
    if let End::Broken = end
        && let Some(id) = sm.as_ref().and_then(|s| s.resume_id.clone())
        && let Some(sm) = sm.take()
    {
        tracing::info!(%peer, jid = %ctx.jid, unacked = sm.unacked.len(), "connection lost; session hibernates for resumption");
        // XEP-0357: the device is gone for now; its push service hears of what waits.
        crate::modules::push::hibernated(router, &ctx, sm.unacked.iter().map(|(_, el)| el)).await;
        // Nothing drains the queue until the client resumes: it is bounded meanwhile.
        let mut rx = rx;
        rx.set_limit(Some(router.config.limits.resume_queue));
        shared.hibernation.put(id.clone(), sm::Hibernated { ctx, rx, sm });
        let shared = shared.clone();
        let timeout = shared.router.config.limits.resume_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(h) = shared.hibernation.expire(&id) {
                tracing::info!(jid = %h.ctx.jid, "session not resumed in time");
                end_hibernated(&shared.router, h).await;
            }
        });
        return;
    }
    let close = match end {
        End::Close(e) => e,
        End::Broken => None,
    };
    router.session_ended(&mut ctx).await;
    conn.close(close).await;
    hand_back(router, &ctx, sm, rx).await;
    tracing::info!(%peer, jid = %ctx.jid, "session closed");
}

/// Handle a stream-management nonza (`<enable/>`, `<r/>`, `<a/>`).
fn sm_nonza<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &C2sShared,
    conn: &mut XmlConn<S>,
    ctx: &SessionCtx,
    sm: &mut Option<sm::SmState>,
    el: &Element,
) -> Result<(), StreamError> {
    match (el.name.as_str(), sm.as_mut()) {
        ("enable", None) => {
            let resume = matches!(el.attr("resume"), Some("true" | "1"));
            let id = resume.then(|| format!("{:032x}", rand::random::<u128>()));
            let mut enabled = Element::new("enabled", ns::SM);
            if let Some(id) = &id {
                let max = shared.router.config.limits.resume_timeout.as_secs();
                enabled = enabled.with_attr("id", id.as_str()).with_attr("resume", "true").with_attr("max", max.to_string());
            }
            conn.queue(&enabled);
            tracing::debug!(jid = %ctx.jid, resume, "stream management enabled");
            *sm = Some(sm::SmState::new(id));
        }
        ("enable", Some(_)) => {
            conn.queue(&Element::new("failed", ns::SM).with_child(Element::new("unexpected-request", ns::STANZAS)));
        }
        ("r", Some(s)) => conn.queue(&s.answer()),
        ("a", Some(s)) => {
            let h = el.attr("h").and_then(|h| h.parse::<u32>().ok()).ok_or_else(|| stream_err(Sec::InvalidXml, Some("<a/> needs h")))?;
            s.ack(h).map_err(|why| stream_err(Sec::UndefinedCondition, Some(&why)))?;
        }
        (_, None) => {
            conn.queue(&Element::new("failed", ns::SM).with_child(Element::new("unexpected-request", ns::STANZAS)));
        }
        _ => return Err(stream_err(Sec::UnsupportedStanzaType, None)),
    }
    Ok(())
}

/// A hibernating session that will not be resumed: end it and hand its queue back.
async fn end_hibernated(router: &Router, h: sm::Hibernated) {
    let sm::Hibernated { mut ctx, rx, sm } = h;
    router.session_ended(&mut ctx).await;
    hand_back(router, &ctx, Some(sm), rx).await;
}

/// Stanzas sent but never acknowledged, and stanzas queued but never written, must not be
/// lost: messages go back through the router (another resource or offline storage); IQ
/// requests get an error.
async fn hand_back(router: &Router, ctx: &SessionCtx, sm: Option<sm::SmState>, mut rx: OutboundRx) {
    if let Some(sm) = sm {
        if !sm.unacked.is_empty() {
            tracing::info!(jid = %ctx.jid, count = sm.unacked.len(), "unacknowledged stanzas go back to the router");
        }
        for (_, el) in sm.unacked {
            requeue(router, ctx, el).await;
        }
    }
    rx.close();
    while let Some(m) = rx.recv().await {
        if let Outbound::Stanza(el) = m {
            requeue(router, ctx, *el).await;
        }
    }
}

async fn requeue(router: &Router, ctx: &SessionCtx, el: Element) {
    match el.name.as_str() {
        "message" if !matches!(el.attr("type"), Some("error" | "groupchat" | "headline")) => {
            router.redeliver_message(&ctx.jid.bare(), el).await;
        }
        "iq" if matches!(el.attr("type"), Some("get" | "set")) => {
            router.bounce(&el, StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
        }
        _ => {}
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `make` would return, without calling it.
    fn future_size<F: std::future::Future>(_make: impl FnOnce() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle TCP session holds one session-loop future: it must stay small (idle memory
    /// per connection, docs/benchmarks.md). It was 10 KiB when the end-of-session awaits were
    /// inline and the arguments were kept twice.
    #[test]
    #[allow(unreachable_code)]
    fn idle_session_future_stays_small() {
        let tls_stream = std::mem::size_of::<XmlConn<TlsStream<TcpStream>>>();
        let session = future_size(|| session_loop::<TlsStream<TcpStream>>(todo!(), todo!(), todo!(), todo!(), todo!(), todo!()));
        eprintln!("session loop future {session} bytes, of which the TLS XML stream {tls_stream}");
        assert!(session < tls_stream + 1024, "the session loop future is {session} bytes");
        let task = future_size(|| serve(todo!(), todo!(), todo!(), todo!(), todo!()));
        eprintln!("connection task future {task} bytes");
        assert!(task <= 192, "the connection task's future is {task} bytes");
    }
}
