//! The inbound side of federation: a connection on the `s2s` listener. STARTTLS is the only
//! feature before TLS (or TLS from the first byte, XEP-0368); after TLS the peer's stream
//! `from` names its domain, which must be on the allow-list and covered by the client
//! certificate the peer presented (verified up to a trust anchor during the handshake).
//! Only then is SASL EXTERNAL offered. After authentication every stanza's `from` must lie
//! in the authenticated domain and its `to` be served here; reading is rate-limited, and
//! an idle link is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rampart_proto::{Element, Jid, StreamError, StreamErrorCondition as Sec, ns};
use rampart_xml::{Event, Limits, StreamHeader};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::S2s;
use super::policy::{self, AddressError};
use crate::c2s::{ConnError, XmlConn};
use crate::limits::ConnSlot;
use crate::router::Router;

fn err(c: Sec, text: impl Into<String>) -> ConnError {
    ConnError::Stream(c, Some(text.into()))
}

/// Serve one accepted connection until it closes.
pub(super) async fn serve(s2s: Arc<S2s>, router: Arc<Router>, tcp: TcpStream, peer: SocketAddr, _slot: ConnSlot) {
    let _ = tcp.set_nodelay(true);
    let limits = Limits { max_stanza_bytes: router.config.limits.max_stanza_bytes, ..Limits::default() };
    let stanza_timeout = router.config.limits.stanza_timeout;
    let deadline = Instant::now() + router.config.limits.handshake_timeout;
    let link_id = s2s.new_link("?", "in", Some(peer.to_string()));

    let direct_tls = {
        let mut b = [0u8; 1];
        matches!(tokio::time::timeout_at(deadline, tcp.peek(&mut b)).await, Ok(Ok(1)) if b[0] == 0x16)
    };
    let tcp = if direct_tls {
        tcp
    } else {
        let mut conn = XmlConn::new(tcp, limits.clone(), stanza_timeout, &router.domain).server_stream();
        let r = tokio::time::timeout_at(deadline, async {
            open_stream(&mut conn, &router).await?;
            conn.send(&rampart_proto::stream::features(vec![rampart_proto::tls::starttls_feature(true)])).await?;
            match conn.next_event().await? {
                Event::Stanza(el) if rampart_proto::tls::is_starttls(&el) => {
                    conn.send(&rampart_proto::tls::proceed()).await?;
                    Ok(())
                }
                Event::StreamEnd => Err(ConnError::StreamEnd),
                _ => Err(err(Sec::PolicyViolation, "TLS is required for server-to-server streams")),
            }
        })
        .await;
        match r {
            Ok(Ok(())) => match conn.into_inner() {
                Ok(tcp) => tcp,
                Err(e) => return end(&s2s, link_id, peer, e).await,
            },
            Ok(Err(e)) => {
                conn.close(e.to_stream_error()).await;
                return end(&s2s, link_id, peer, e).await;
            }
            Err(_) => {
                conn.close(Some(StreamError { condition: Sec::ConnectionTimeout, text: None })).await;
                return end(&s2s, link_id, peer, ConnError::stream(Sec::ConnectionTimeout)).await;
            }
        }
    };

    let tls = match tokio::time::timeout_at(deadline, s2s.tls.acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            // A client certificate that does not chain to a trust anchor ends here.
            tracing::warn!(%peer, error = %e, "s2s: TLS handshake failed (peer certificate refused?)");
            s2s.drop_link(link_id).await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "s2s: TLS handshake timeout");
            s2s.drop_link(link_id).await;
            return;
        }
    };
    let tls_desc = super::tls::describe(tls.get_ref().1);
    // The chain was not judged during the handshake (see `tls.rs`): a certificate that does
    // not lead to a trust anchor counts as none.
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        tls.get_ref().1.peer_certificates().map(|c| c.iter().map(|x| x.clone().into_owned()).collect()).unwrap_or_default();
    let presented = !chain.is_empty();
    let cert = if s2s.tls.client_chain_valid(&chain) { chain.first().cloned() } else { None };
    s2s.update_link(link_id, |l| l.tls = Some(tls_desc)).await;
    let mut conn = XmlConn::new(tls, limits, stanza_timeout, &router.domain).server_stream();

    let authed = tokio::time::timeout_at(deadline, authenticate(&s2s, &router, &mut conn, cert.as_ref(), presented, peer, link_id)).await;
    let domain = match authed {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            conn.close(e.to_stream_error()).await;
            return end(&s2s, link_id, peer, e).await;
        }
        Err(_) => {
            conn.close(Some(StreamError { condition: Sec::ConnectionTimeout, text: None })).await;
            return end(&s2s, link_id, peer, ConnError::stream(Sec::ConnectionTimeout)).await;
        }
    };
    tracing::info!(%peer, %domain, "s2s link up (inbound, SASL EXTERNAL)");
    let r = read_loop(&s2s, &router, &mut conn, &domain, cert.as_ref(), link_id).await;
    if let Err(e) = &r {
        conn.close(e.to_stream_error()).await;
    } else {
        conn.close(None).await;
    }
    match r {
        Ok(()) => {
            tracing::info!(%peer, %domain, "s2s inbound link closed");
            s2s.drop_link(link_id).await;
        }
        Err(e) => end(&s2s, link_id, peer, e).await,
    }
}

async fn end(s2s: &S2s, link_id: i64, peer: SocketAddr, e: ConnError) {
    match &e {
        ConnError::Closed | ConnError::StreamEnd => tracing::debug!(%peer, "s2s peer closed the stream"),
        ConnError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::info!(%peer, "s2s peer dropped the connection")
        }
        _ => tracing::warn!(%peer, error = %e, "s2s inbound stream closed"),
    }
    s2s.drop_link(link_id).await;
}

/// Read the peer's stream header, answer with ours; RFC 6120 §4.7 checks for s2s.
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut XmlConn<S>, router: &Router) -> Result<StreamHeader, ConnError> {
    let header = match conn.next_event().await? {
        Event::StreamStart(h) => h,
        _ => return Err(ConnError::stream(Sec::NotWellFormed)),
    };
    conn.queue_header(header.from.as_deref());
    if header.default_ns != ns::SERVER {
        return Err(ConnError::stream(Sec::InvalidNamespace));
    }
    match header.to.as_deref().map(Jid::parse) {
        Some(Ok(to)) if router.is_local_domain(to.as_str()) => {}
        _ => return Err(err(Sec::HostUnknown, "this server does not serve that domain")),
    }
    let major = header.version.as_deref().and_then(|v| v.split('.').next()).and_then(|m| m.parse::<u32>().ok());
    if major != Some(1) {
        return Err(ConnError::stream(Sec::UnsupportedVersion));
    }
    Ok(header)
}

/// After TLS: the peer's domain from its stream header, the allow-list, the certificate
/// check, then SASL EXTERNAL. Returns the authenticated domain.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s2s: &Arc<S2s>,
    router: &Router,
    conn: &mut XmlConn<S>,
    cert: Option<&rustls::pki_types::CertificateDer<'static>>,
    presented: bool,
    peer: SocketAddr,
    link_id: i64,
) -> Result<String, ConnError> {
    let header = open_stream(conn, router).await?;
    let domain = header
        .from
        .as_deref()
        .and_then(|f| Jid::parse(f).ok())
        .filter(|j| j.node().is_none() && j.resource().is_none())
        .map(|j| j.as_str().to_owned())
        .ok_or_else(|| err(Sec::InvalidFrom, "the stream header must name the sending domain in 'from'"))?;
    s2s.update_link(link_id, |l| l.domain = domain.clone()).await;
    if !s2s.config.may_link(&domain) {
        tracing::warn!(%peer, %domain, "s2s: refused a peer that is not on the allow-list");
        s2s.security_event(router, &domain, "s2s.allow-list", "inbound federation from a domain not on the allow-list", serde_json::json!({ "peer": peer.to_string() })).await;
        return Err(err(Sec::PolicyViolation, format!("federation with {domain} is not allowed by this server's policy")));
    }
    let valid = cert.is_some_and(|c| super::tls::cert_matches_domain(c, &domain));
    let dialback = s2s.config.dialback_allowed(&domain);
    if !valid && !dialback {
        let why = match (cert.is_some(), presented) {
            (true, _) => "its certificate is not valid for that domain",
            (false, true) => "its certificate does not lead to a trusted authority",
            (false, false) => "it presented no certificate",
        };
        tracing::warn!(%peer, %domain, why, "s2s: peer authentication refused");
        s2s.security_event(router, &domain, "s2s.certificate", &format!("peer claiming {domain} refused: {why}"), serde_json::json!({ "peer": peer.to_string() })).await;
        return Err(err(Sec::NotAuthorized, format!("cannot authenticate {domain}: {why}")));
    }
    if s2s.inbound_links(&domain) >= s2s.config.max_links_per_domain {
        tracing::warn!(%peer, %domain, "s2s: too many links from this domain");
        return Err(err(Sec::ResourceConstraint, "too many connections from your domain"));
    }
    let mut feats = Vec::new();
    if valid {
        feats.push(rampart_proto::sasl::mechanisms(&["EXTERNAL"]));
    }
    if dialback {
        feats.push(super::dialback::feature());
    }
    conn.send(&rampart_proto::stream::features(feats)).await?;
    loop {
        let el = match conn.next_event().await? {
            Event::Stanza(el) => el,
            Event::StreamEnd => return Err(ConnError::StreamEnd),
            Event::StreamStart(_) => return Err(ConnError::stream(Sec::NotWellFormed)),
        };
        if dialback && el.is("verify", ns::DIALBACK) {
            // The peer checks a key we gave it (we are the originating server).
            if let Some(answer) = super::dialback::answer_verify(&router.config.server_secret, &el) {
                conn.send(&answer).await?;
            }
            continue;
        }
        if dialback && el.is("result", ns::DIALBACK) {
            let to = el.attr("to").unwrap_or("").to_owned();
            let claimed = el.attr("from").is_some_and(|f| f.eq_ignore_ascii_case(&domain));
            let ok = claimed
                && router.is_local_domain(&to)
                && super::dialback::verify(s2s, router, &domain, &to, &conn.stream_id.clone(), el.text().trim()).await;
            let reply = Element::new("result", ns::DIALBACK)
                .with_attr("from", to.as_str())
                .with_attr("to", domain.as_str())
                .with_attr("type", if ok { "valid" } else { "invalid" });
            conn.send(&reply).await?;
            if !ok {
                tracing::warn!(%peer, %domain, "s2s: dialback key not confirmed by the domain's server");
                s2s.security_event(router, &domain, "s2s.dialback", &format!("dialback for {domain} failed"), serde_json::json!({ "peer": peer.to_string() })).await;
                return Err(err(Sec::NotAuthorized, "dialback failed"));
            }
            tracing::info!(%peer, %domain, "s2s: peer authenticated by dialback");
            s2s.update_link(link_id, |l| {
                l.state = "up".into();
                l.auth = Some("dialback".into());
            })
            .await;
            return Ok(domain);
        }
        if !el.is("auth", ns::SASL) {
            return Err(err(Sec::NotAuthorized, "authenticate first"));
        }
        if !valid {
            conn.send(&rampart_proto::sasl::failure("not-authorized", None)).await?;
            return Err(err(Sec::NotAuthorized, "no valid certificate for SASL EXTERNAL"));
        }
        if el.attr("mechanism") != Some("EXTERNAL") {
            conn.send(&rampart_proto::sasl::failure("invalid-mechanism", None)).await?;
            continue;
        }
        let text = el.text();
        let text = text.trim();
        let authzid = if text.is_empty() || text == "=" {
            Some(String::new())
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok().and_then(|b| String::from_utf8(b).ok())
        };
        match authzid {
            None => conn.send(&rampart_proto::sasl::failure("incorrect-encoding", None)).await?,
            Some(a) if a.is_empty() || a.eq_ignore_ascii_case(&domain) => break,
            Some(_) => {
                tracing::warn!(%peer, %domain, "s2s: SASL EXTERNAL for another identity refused");
                conn.send(&rampart_proto::sasl::failure("invalid-authzid", None)).await?;
            }
        }
    }
    conn.send(&rampart_proto::sasl::success(&[])).await?;
    conn.framer.reset();
    let again = open_stream(conn, router).await?;
    if let Some(f) = again.from.as_deref()
        && !f.eq_ignore_ascii_case(&domain)
    {
        return Err(err(Sec::InvalidFrom, "the restarted stream names another domain"));
    }
    conn.send(&rampart_proto::stream::features(Vec::<Element>::new())).await?;
    s2s.update_link(link_id, |l| {
        l.state = "up".into();
        l.auth = Some("sasl-external".into());
    })
    .await;
    Ok(domain)
}

/// Stanzas from an authenticated peer, until the stream ends.
async fn read_loop<S: AsyncRead + AsyncWrite + Unpin>(
    s2s: &Arc<S2s>,
    router: &Router,
    conn: &mut XmlConn<S>,
    domain: &str,
    cert: Option<&rustls::pki_types::CertificateDer<'static>>,
    link_id: i64,
) -> Result<(), ConnError> {
    // The peer speaks for its domain, and for subdomains its certificate is also valid
    // for (a partner's group chat service on the same link).
    let mut also: std::collections::HashSet<String> = std::collections::HashSet::new();
    let rate = f64::from(s2s.config.max_stanzas_per_sec.max(1));
    let mut tokens = rate;
    let mut last = Instant::now();
    let is_ours = |d: &str| d == router.domain || router.component(d).is_some();
    loop {
        let ev = match conn.partial_deadline() {
            Some(_) => conn.next_event().await?,
            None => match tokio::time::timeout(s2s.config.idle_timeout, conn.next_event()).await {
                Ok(ev) => ev?,
                Err(_) => {
                    tracing::info!(%domain, "s2s inbound link idle: closing");
                    return Ok(());
                }
            },
        };
        let mut el = match ev {
            Event::Stanza(el) => el,
            Event::StreamEnd => return Ok(()),
            Event::StreamStart(_) => return Err(ConnError::stream(Sec::NotWellFormed)),
        };
        if el.ns != ns::SERVER || !matches!(el.name.as_str(), "message" | "presence" | "iq") {
            return Err(err(Sec::UnsupportedStanzaType, format!("<{}/> is not accepted on this stream", el.name)));
        }
        policy::server_to_client(&mut el);
        if let Some(f) = el.attr("from").and_then(|f| Jid::parse(f).ok()).map(|j| j.domain().to_ascii_lowercase())
            && f != domain
            && !also.contains(&f)
            && also.len() < 64
            && f.ends_with(&format!(".{domain}"))
            && s2s.config.may_link(&f)
            && cert.is_some_and(|c| super::tls::cert_matches_domain(c, &f))
        {
            also.insert(f);
        }
        let peer_ok = |d: &str| d.eq_ignore_ascii_case(domain) || also.contains(&d.to_ascii_lowercase());
        let (from, to) = match policy::check_addresses(&el, peer_ok, is_ours) {
            Ok(x) => x,
            Err(AddressError::InvalidFrom) => {
                tracing::warn!(%domain, from = ?el.attr("from"), "s2s: stanza from outside the authenticated domain");
                s2s.security_event(router, domain, "s2s.invalid-from", "a stanza's sender is outside the authenticated domain", serde_json::json!({ "from": el.attr("from") })).await;
                return Err(err(Sec::InvalidFrom, format!("stanzas on this stream must come from {domain}")));
            }
            Err(AddressError::HostUnknown) => {
                return Err(err(Sec::HostUnknown, "this server does not serve that address"));
            }
        };
        // Token bucket: beyond the rate, slow down reading (TCP pushes back on the peer).
        let now = Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(rate);
        last = now;
        if tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - tokens) / rate);
            tokio::time::sleep(wait).await;
            tokens = 1.0;
            last = Instant::now();
        }
        tokens -= 1.0;
        s2s.count(link_id, 1, 0).await;
        s2s.deliver_inbound(router, &from, &to, el).await;
    }
}
