//! The outbound side of federation: one worker per remote domain. It connects when there is
//! something to send (static route, SRV, or the domain on 5269), negotiates TLS (STARTTLS or
//! direct TLS) with the peer's certificate verified for the peer's domain, authenticates
//! with SASL EXTERNAL, then writes the durable queue in order, deleting each stanza once it
//! was written. An unreachable peer is retried with exponential backoff; what waited
//! longer than `bounce_after` is bounced with `remote-server-timeout`. Idle links close.
//! When the peer offers XEP-0288, the link is bidirectional: the peer sends its traffic for
//! us over it, checked like inbound traffic.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_xml::{Event, Limits};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::config::Route;
use super::{PeerMsg, S2s, policy, resolve};
use crate::c2s::{ConnError, XmlConn, parse_stored};
use crate::pipeline::now_ms;
use crate::router::Router;

/// Stanzas that are not queued durably wait at most this many while the link is down.
const MAX_VOLATILE: usize = 1000;
/// Queue rows written per batch.
const BATCH: usize = 100;
/// XEP-0288 stream feature.
const NS_BIDI_FEATURE: &str = "urn:xmpp:features:bidi";

type Link = XmlConn<tokio_rustls::client::TlsStream<TcpStream>>;

/// Why connecting to a peer failed (logged and shown in the link table).
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("no address for the domain")]
    NoAddress,
    #[error("connect to {0}: {1}")]
    Tcp(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("stream: {0}")]
    Stream(#[from] ConnError),
    #[error("the peer does not offer STARTTLS")]
    NoStartTls,
    #[error("the peer does not offer SASL EXTERNAL (it does not accept our certificate)")]
    NoExternal,
    #[error("the peer refused SASL EXTERNAL: {0}")]
    AuthFailed(String),
    #[error("unexpected reply: {0}")]
    Protocol(String),
    #[error("timed out")]
    Timeout,
}

/// The worker for `domain`; runs until the server stops.
pub(super) async fn run(s2s: Arc<S2s>, router: Arc<Router>, domain: String, mut rx: mpsc::UnboundedReceiver<PeerMsg>) {
    let mut volatile: VecDeque<Element> = VecDeque::new();
    let mut backoff = Duration::from_secs(1);
    let mut last_failed: Option<i64> = None;
    loop {
        let queued = s2s.store.peek(&domain, 1).await.map(|v| !v.is_empty()).unwrap_or(false);
        if !queued && volatile.is_empty() {
            match rx.recv().await {
                Some(Some(el)) => push(&mut volatile, el),
                Some(None) => {}
                None => return,
            }
            continue;
        }
        let link_id = s2s.new_link(&domain, "out", None);
        if let Some(old) = last_failed.take() {
            s2s.drop_link(old).await;
        }
        s2s.update_link(link_id, |_| {}).await;
        let connected = tokio::time::timeout(s2s.config.connect_timeout, connect(&s2s, &domain, link_id)).await;
        match connected {
            Ok(Ok(conn)) => {
                backoff = Duration::from_secs(1);
                let r = serve(&s2s, &router, &domain, conn, &mut rx, &mut volatile, link_id).await;
                match r {
                    Ok(()) => tracing::info!(%domain, "s2s link closed"),
                    Err(e) => tracing::info!(%domain, error = %e, "s2s link lost"),
                }
                s2s.drop_link(link_id).await;
            }
            failed => {
                let err = match failed {
                    Ok(Err(e)) => e,
                    _ => ConnectError::Timeout,
                };
                tracing::warn!(%domain, error = %err, retry_in = ?backoff, "s2s: could not connect to the remote domain");
                let msg = err.to_string();
                s2s.update_link(link_id, |l| {
                    l.state = "failed".into();
                    l.last_error = Some(msg);
                })
                .await;
                last_failed = Some(link_id);
                // Presence and errors are not worth keeping for a peer that is down.
                volatile.clear();
                expire(&s2s, &router, &domain).await;
                let until = tokio::time::Instant::now() + backoff;
                backoff = (backoff * 2).min(s2s.config.retry_max);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        m = rx.recv() => match m {
                            Some(Some(el)) => push(&mut volatile, el),
                            Some(None) => {}
                            None => return,
                        },
                    }
                }
            }
        }
    }
}

fn push(v: &mut VecDeque<Element>, el: Element) {
    if v.len() < MAX_VOLATILE {
        v.push_back(el);
    }
}

/// Bounce what waited longer than `bounce_after` with `remote-server-timeout`.
async fn expire(s2s: &S2s, router: &Router, domain: &str) {
    let cutoff = now_ms() - i64::try_from(s2s.config.bounce_after.as_millis()).unwrap_or(i64::MAX);
    let expired = match s2s.store.expire(domain, cutoff).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "could not expire the s2s queue");
            return;
        }
    };
    for q in expired {
        let Some(el) = parse_stored(&q.stanza) else { continue };
        tracing::warn!(%domain, "bouncing a stanza the remote domain did not take in time");
        if el.name == "message"
            && let (Some(from), Some(to)) = (
                el.attr("from").and_then(|f| Jid::parse(f).ok()),
                el.attr("to").and_then(|t| Jid::parse(t).ok()),
            )
        {
            let verdict = rampart_archive::Verdict::Bounced { condition: "remote-server-timeout".into() };
            router.archive_refusal(&el, &from, &to, verdict).await;
        }
        let bounce_ok = match el.name.as_str() {
            "message" => true,
            "iq" => matches!(el.attr("type"), Some("get" | "set")),
            _ => false,
        };
        if bounce_ok {
            router.bounce(&el, StanzaError::new(ErrorType::Wait, DefinedCondition::RemoteServerTimeout)
                .with_text(format!("{domain} could not be reached in time")));
        }
    }
}

fn limits(router: &Router) -> Limits {
    Limits { max_stanza_bytes: router.config.limits.max_stanza_bytes, ..Limits::default() }
}

/// Resolve, connect, TLS, authenticate: an authenticated link, or why not.
async fn connect(s2s: &Arc<S2s>, domain: &str, link_id: i64) -> Result<Link, ConnectError> {
    let router = s2s.router().ok_or(ConnectError::NoAddress)?;
    let targets = resolve::targets(domain, s2s.config.route_for(domain), &*s2s.resolver).await;
    let mut last = ConnectError::NoAddress;
    for t in targets {
        match connect_one(s2s, &router, domain, &t, link_id).await {
            Ok(link) => return Ok(link),
            Err(e) => {
                tracing::info!(%domain, host = %t.host, port = t.port, error = %e, "s2s connection attempt failed");
                last = e;
            }
        }
    }
    Err(last)
}

async fn connect_one(s2s: &Arc<S2s>, router: &Router, domain: &str, t: &Route, link_id: i64) -> Result<Link, ConnectError> {
    let addr = format!("{}:{}", t.host, t.port);
    let mut tcp = TcpStream::connect((t.host.as_str(), t.port)).await.map_err(|e| ConnectError::Tcp(addr.clone(), e))?;
    let _ = tcp.set_nodelay(true);
    let remote = tcp.peer_addr().map(|a| a.to_string()).unwrap_or(addr.clone());
    s2s.update_link(link_id, |l| l.remote_addr = Some(remote)).await;
    let stanza_timeout = router.config.limits.stanza_timeout;
    if !t.direct_tls {
        let mut conn = XmlConn::new(tcp, limits(router), stanza_timeout, &router.domain).server_stream();
        conn.queue_header(Some(domain));
        conn.flush().await?;
        let (_, feats) = open(&mut conn).await?;
        if feats.child("starttls", ns::TLS).is_none() {
            return Err(ConnectError::NoStartTls);
        }
        conn.send(&Element::new("starttls", ns::TLS)).await?;
        match conn.next_event().await? {
            Event::Stanza(el) if el.is("proceed", ns::TLS) => {}
            other => return Err(ConnectError::Protocol(format!("{other:?}"))),
        }
        tcp = conn.into_inner()?;
    }
    let name = rustls::pki_types::ServerName::try_from(domain.to_owned()).map_err(|e| ConnectError::Protocol(e.to_string()))?;
    // Towards a dialback peer the certificate is judged after the handshake: if it is not
    // valid, dialback (the peer's DNS) vouches for it instead.
    let dialback_ok = s2s.config.dialback_allowed(domain);
    let connector = if dialback_ok { &s2s.tls.dialback_connector } else { &s2s.tls.connector };
    let tls = connector.connect(name, tcp).await.map_err(|e| {
        tracing::warn!(%domain, error = %e, "s2s: the peer's certificate or TLS was refused");
        ConnectError::Tls(addr.clone(), e)
    })?;
    let server_valid = !dialback_ok || {
        let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
            tls.get_ref().1.peer_certificates().map(|c| c.iter().map(|x| x.clone().into_owned()).collect()).unwrap_or_default();
        s2s.tls.server_chain_valid(&chain, domain)
    };
    let tls_desc = super::tls::describe(tls.get_ref().1);
    s2s.update_link(link_id, |l| l.tls = Some(tls_desc)).await;
    let mut conn = XmlConn::new(tls, limits(router), stanza_timeout, &router.domain).server_stream();
    conn.queue_header(Some(domain));
    conn.flush().await?;
    let (stream_id, feats) = open(&mut conn).await?;
    let external = server_valid
        && feats
            .child("mechanisms", ns::SASL)
            .is_some_and(|m| m.elements().any(|c| c.is("mechanism", ns::SASL) && c.text().trim() == "EXTERNAL"));
    if !external && dialback_ok && feats.child("dialback", super::dialback::NS_FEATURE).is_some() {
        return dialback(s2s, router, domain, conn, stream_id.unwrap_or_default(), link_id).await;
    }
    if !external {
        return Err(ConnectError::NoExternal);
    }
    // XEP-0288: ask the peer to send its traffic for us over this same link (checked and
    // delivered like inbound traffic: the peer's certificate was verified for its domain).
    let bidi = feats.child("bidi", NS_BIDI_FEATURE).is_some();
    if bidi {
        conn.queue(&Element::new("bidi", ns::BIDI));
    }
    let authzid = base64::engine::general_purpose::STANDARD.encode(router.domain.as_bytes());
    conn.send(&Element::new("auth", ns::SASL).with_attr("mechanism", "EXTERNAL").with_text(authzid)).await?;
    match conn.next_event().await? {
        Event::Stanza(el) if el.is("success", ns::SASL) => {}
        Event::Stanza(el) if el.is("failure", ns::SASL) => {
            let cond = el.elements().map(|c| c.name.clone()).find(|n| n != "text").unwrap_or_default();
            return Err(ConnectError::AuthFailed(cond));
        }
        other => return Err(ConnectError::Protocol(format!("{other:?}"))),
    }
    conn.framer.reset();
    conn.queue_header(Some(domain));
    conn.flush().await?;
    let _ = open(&mut conn).await?;
    s2s.update_link(link_id, |l| {
        l.state = "up".into();
        l.auth = Some(if bidi { "sasl-external+bidi" } else { "sasl-external" }.into());
    })
    .await;
    tracing::info!(%domain, bidi, "s2s link up (outbound, SASL EXTERNAL)");
    Ok(conn)
}

/// XEP-0220 as the originating server: our key for the peer's stream id, confirmed by the
/// peer with our own server (which answers its `db:verify`).
async fn dialback(s2s: &Arc<S2s>, router: &Router, domain: &str, mut conn: Link, stream_id: String, link_id: i64) -> Result<Link, ConnectError> {
    let key = super::dialback::key(&router.config.server_secret, domain, &router.domain, &stream_id);
    conn.send(
        &Element::new("result", ns::DIALBACK)
            .with_attr("from", router.domain.as_str())
            .with_attr("to", domain)
            .with_text(key),
    )
    .await?;
    loop {
        match conn.next_event().await? {
            Event::Stanza(el) if el.is("result", ns::DIALBACK) => {
                if el.attr("type") != Some("valid") {
                    return Err(ConnectError::AuthFailed("dialback refused".into()));
                }
                break;
            }
            Event::Stanza(el) if el.is("error", ns::STREAM) => {
                return Err(ConnectError::Protocol(format!("stream error {}", el.to_xml_string())));
            }
            Event::Stanza(_) => continue,
            other => return Err(ConnectError::Protocol(format!("{other:?}"))),
        }
    }
    s2s.update_link(link_id, |l| {
        l.state = "up".into();
        l.auth = Some("dialback".into());
    })
    .await;
    tracing::info!(%domain, "s2s link up (outbound, dialback)");
    Ok(conn)
}

/// Read the peer's stream header (its `id`) and features.
async fn open<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut XmlConn<S>) -> Result<(Option<String>, Element), ConnectError> {
    let id = match conn.next_event().await? {
        Event::StreamStart(h) if h.default_ns == ns::SERVER => h.id,
        Event::StreamStart(h) => return Err(ConnectError::Protocol(format!("stream namespace {}", h.default_ns))),
        other => return Err(ConnectError::Protocol(format!("{other:?}"))),
    };
    match conn.next_event().await? {
        Event::Stanza(f) if f.is("features", ns::STREAM) => Ok((id, f)),
        Event::Stanza(e) if e.is("error", ns::STREAM) => Err(ConnectError::Protocol(format!("stream error {}", e.to_xml_string()))),
        other => Err(ConnectError::Protocol(format!("{other:?}"))),
    }
}

/// Deliver over an authenticated link until it closes or idles out.
async fn serve(
    s2s: &Arc<S2s>,
    router: &Router,
    domain: &str,
    mut conn: Link,
    rx: &mut mpsc::UnboundedReceiver<PeerMsg>,
    volatile: &mut VecDeque<Element>,
    link_id: i64,
) -> Result<(), ConnError> {
    loop {
        // The durable queue first, in order; each batch is deleted once written.
        loop {
            let batch = match s2s.store.peek(domain, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the s2s queue");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            let seqs: Vec<i64> = batch.iter().map(|q| q.seq).collect();
            for q in &batch {
                match parse_stored(&q.stanza) {
                    // The policy may have changed while it waited (a restart with new
                    // rules): judged again, refused ones go back to their sender.
                    Some(el) => {
                        let to = el.attr("to").and_then(|t| Jid::parse(t).ok());
                        let from = el.attr("from").and_then(|f| Jid::parse(f).ok());
                        match (to, from) {
                            (Some(to), from) => match s2s.outbound_verdict(router, &to, &el) {
                                Ok(()) => conn.queue(&el),
                                Err(r) => {
                                    tracing::warn!(seq = q.seq, rule = r.rule, "queued stanza held back by the border policy: {}", r.reason);
                                    if let Some(from) = from {
                                        s2s.refuse(router, &el, &from, &to, r.rule, &r.reason).await;
                                    }
                                }
                            },
                            (None, _) => tracing::error!(seq = q.seq, "queued stanza without a valid `to` dropped"),
                        }
                    }
                    None => tracing::error!(seq = q.seq, "unreadable stanza in the s2s queue dropped"),
                }
            }
            conn.flush().await?;
            if let Err(e) = s2s.store.remove(&seqs).await {
                tracing::error!(error = %e, "could not delete sent stanzas from the s2s queue");
                break;
            }
            s2s.count(link_id, 0, i64::try_from(seqs.len()).unwrap_or(0)).await;
        }
        if !volatile.is_empty() {
            let n = volatile.len();
            while let Some(el) = volatile.pop_front() {
                conn.queue(&el);
            }
            conn.flush().await?;
            s2s.count(link_id, 0, i64::try_from(n).unwrap_or(0)).await;
        }
        tokio::select! {
            m = rx.recv() => match m {
                Some(Some(el)) => push(volatile, el),
                Some(None) => {}
                None => {
                    conn.close(None).await;
                    return Ok(());
                }
            },
            r = conn.read_some() => {
                if !r? {
                    return Err(ConnError::Closed);
                }
                while let Some(ev) = conn.poll_buffered()? {
                    match ev {
                        Event::StreamEnd => {
                            conn.close(None).await;
                            return Ok(());
                        }
                        Event::Stanza(e) if e.is("error", ns::STREAM) => {
                            tracing::warn!(%domain, error = %e.to_xml_string(), "s2s: the peer closed the link with a stream error");
                            return Err(ConnError::StreamEnd);
                        }
                        // The peer's own traffic over our link (XEP-0288): the same checks
                        // as on an inbound link, then the router.
                        Event::Stanza(mut e) if e.ns == ns::SERVER && matches!(e.name.as_str(), "message" | "presence" | "iq") => {
                            policy::server_to_client(&mut e);
                            let is_ours = |d: &str| router.is_local_domain(d);
                            match policy::check_addresses(&e, |d| d.eq_ignore_ascii_case(domain), is_ours) {
                                Ok((from, to)) => {
                                    s2s.count(link_id, 1, 0).await;
                                    s2s.deliver_inbound(router, &from, &to, e).await;
                                }
                                Err(policy::AddressError::InvalidFrom) => {
                                    tracing::warn!(%domain, from = ?e.attr("from"), "s2s: stanza from outside the peer's domain");
                                    return Err(ConnError::Stream(rampart_proto::StreamErrorCondition::InvalidFrom, None));
                                }
                                Err(policy::AddressError::HostUnknown) => {
                                    return Err(ConnError::Stream(rampart_proto::StreamErrorCondition::HostUnknown, None));
                                }
                            }
                        }
                        Event::Stanza(e) => {
                            tracing::debug!(%domain, name = %e.name, "ignored an element received on an outbound link");
                        }
                        Event::StreamStart(_) => return Err(ConnError::stream(rampart_proto::StreamErrorCondition::NotWellFormed)),
                    }
                }
            },
            _ = tokio::time::sleep(s2s.config.idle_timeout) => {
                tracing::info!(%domain, "s2s link idle: closing");
                conn.close(None).await;
                return Ok(());
            }
        }
    }
}
