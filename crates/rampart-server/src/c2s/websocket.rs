//! Client sessions over WebSocket (RFC 7395): a bridge between whole WebSocket text
//! messages and the byte stream the c2s state machine reads and writes.
//!
//! Incoming: the client's `<open/>` (framing namespace) becomes a `jabber:client` stream
//! header, `<close/>` becomes `</stream:stream>`, every other message is passed through as
//! bytes (each must follow an `<open/>`). Outgoing: our output is framed again (a trusted
//! [`Framer`]) and sent as one message per top-level element: our stream header becomes
//! `<open/>`, `</stream:stream>` becomes `<close/>`, every element carries its namespace
//! (`stream:` elements declare their prefix). A SASL `<success/>` means the client must
//! send a new `<open/>` (the stream restart).
//!
//! The session enters the c2s state machine at the SASL phase: the transport is already
//! TLS (no STARTTLS) and there is no TLS exporter here (no -PLUS mechanisms). Every c2s
//! limit applies (stanza size and depth, rates, handshake and stanza deadlines, connections
//! per address); a bad WebSocket message (binary, oversized, `<open/>` out of place)
//! gets a stream error and the connection closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rampart_proto::{Element, ns};
use rampart_xml::{Event, Framer, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::{C2sShared, XmlConn, authenticate, session_loop, stream_err};
use crate::limits::ConnCounter;
use rampart_proto::StreamErrorCondition as Sec;

/// RFC 7395's framing namespace.
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// Bytes buffered between the bridge and the c2s state machine, each way.
const PIPE_BYTES: usize = 64 * 1024;

/// Entry point for WebSocket sessions: what the HTTPS listener's handler calls.
#[derive(Clone)]
pub struct WebSocketEntry {
    pub(crate) shared: Arc<C2sShared>,
    pub(crate) counter: Arc<ConnCounter>,
}

impl WebSocketEntry {
    /// Largest WebSocket message accepted: a maximal stanza plus room for its framing.
    pub fn max_message_bytes(&self) -> usize {
        self.shared.router.config.limits.max_stanza_bytes.saturating_add(1024)
    }

    /// Serve one session until the WebSocket or the session ends.
    pub async fn serve(&self, peer: SocketAddr, incoming: mpsc::Receiver<Result<String, String>>, outgoing: mpsc::Sender<String>) {
        let max = self.shared.router.config.limits.max_connections_per_ip;
        let Some(_slot) = self.counter.acquire(peer.ip(), max) else {
            tracing::warn!(%peer, "too many connections from this address (WebSocket)");
            let _ = outgoing.send(open_message(&self.shared.router.domain)).await;
            let e = stream_err(Sec::PolicyViolation, Some("too many connections from your address"));
            let _ = outgoing.send(stream_element_message(&Element::from(e))).await;
            let _ = outgoing.send(close_message()).await;
            return;
        };
        let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
        let domain = self.shared.router.domain.clone();
        let bridge = tokio::spawn(bridge(theirs, incoming, outgoing, domain));
        Box::pin(session(self.shared.clone(), ours, peer, "websocket")).await;
        // The session closed its end; the bridge forwards what is left and ends.
        let _ = bridge.await;
    }
}

/// The c2s state machine from the SASL phase on, over a bridge's pipe (WebSocket or BOSH,
/// named by `transport` in the log).
pub(super) async fn session(shared: Arc<C2sShared>, io: DuplexStream, peer: SocketAddr, transport: &'static str) {
    let limits = &shared.router.config.limits;
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
    let domain = shared.router.domain.clone();
    let mut conn = XmlConn::new(io, shared.xml_limits(), limits.stanza_timeout, &domain);
    let Some((ctx, rx, sm)) = authenticate(&shared, &mut conn, peer, None, deadline, transport).await else {
        return;
    };
    session_loop(shared.clone(), conn, ctx, rx, sm, peer).await;
}

/// Our `<open/>` (RFC 7395 §3.3.2).
fn open_message(domain: &str) -> String {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='");
    rampart_xml::escape_attr(domain, &mut out);
    let id = format!("{:016x}", rand::random::<u64>());
    out.extend_from_slice(b"' id='");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"' version='1.0' xml:lang='en'/>");
    String::from_utf8_lossy(&out).into_owned()
}

fn close_message() -> String {
    "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>".to_owned()
}

/// A stream-namespace element (`<stream:features>`, `<stream:error>`) as its own message,
/// declaring the `stream` prefix it uses.
fn stream_element_message(el: &Element) -> String {
    let mut out = Vec::with_capacity(256);
    // Written as inside a stream: `stream:` prefix, no default namespace declaration.
    el.write_to(&mut out, ns::CLIENT);
    let head = format!("<stream:{}", el.name);
    let decl = format!(" xmlns:stream='{}'", ns::STREAM);
    let mut s = String::from_utf8_lossy(&out).into_owned();
    if s.starts_with(&head) {
        s.insert_str(head.len(), &decl);
    }
    s
}

/// One of our top-level elements as a WebSocket message: always with its namespace.
fn element_message(el: &Element) -> String {
    if el.ns == ns::STREAM {
        return stream_element_message(el);
    }
    String::from_utf8_lossy(&el.to_bytes("")).into_owned()
}

/// What a client message is, for the bridge.
#[derive(Debug, PartialEq, Eq)]
enum Inbound {
    /// `<open/>`: the stream header to feed the state machine.
    Open(Vec<u8>),
    /// `<close/>`.
    Close,
    /// Anything else, passed through.
    Data,
}

/// Parse a message that looks like `<open` or `<close` (after leading whitespace).
fn classify(text: &str) -> Result<Inbound, String> {
    let t = text.trim_start();
    if !(t.starts_with("<open") || t.starts_with("<close")) {
        return Ok(Inbound::Data);
    }
    // Parsed inside a neutral stream: an `<open/>` without the framing namespace is
    // `jabber:client` here and refused.
    let mut f = Framer::new(Limits { max_stanza_bytes: 4096, ..Limits::default() });
    f.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    f.feed(text.as_bytes());
    let el = match f.next_event() {
        Ok(Some(Event::StreamStart(_))) => match f.next_event() {
            Ok(Some(Event::Stanza(el))) => el,
            _ => return Err("an <open/> or <close/> message must be one complete element".into()),
        },
        _ => return Err("not a stream".into()),
    };
    if el.ns != NS_FRAMING {
        return Err(format!("<{}/> must be in the {NS_FRAMING} namespace", el.name));
    }
    match el.name.as_str() {
        "close" => Ok(Inbound::Close),
        "open" => {
            let mut out = Vec::with_capacity(200);
            out.extend_from_slice(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'");
            for (k, v) in &el.attrs {
                if matches!(k.as_str(), "to" | "from" | "version" | "xml:lang" | "id") {
                    out.push(b' ');
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(b"='");
                    rampart_xml::escape_attr(v, &mut out);
                    out.push(b'\'');
                }
            }
            out.push(b'>');
            Ok(Inbound::Open(out))
        }
        _ => Ok(Inbound::Data),
    }
}

/// State shared by the two halves of the bridge.
#[derive(Default)]
struct BridgeState {
    /// The client has sent `<open/>` for the current stream (cleared by a SASL success).
    open: AtomicBool,
    /// We have sent our `<open/>`.
    header_sent: AtomicBool,
}

/// Translate between the WebSocket's messages and the state machine's bytes until either
/// side ends. A bad client message ends it with a stream error.
async fn bridge(io: DuplexStream, mut incoming: mpsc::Receiver<Result<String, String>>, outgoing: mpsc::Sender<String>, domain: String) {
    let state = BridgeState::default();
    let (mut rd, mut wr) = tokio::io::split(io);
    let inbound = async {
        while let Some(msg) = incoming.recv().await {
            let text = msg.map_err(|e| (Sec::PolicyViolation, e))?;
            match classify(&text).map_err(|e| (Sec::NotWellFormed, e))? {
                Inbound::Open(header) => {
                    if state.open.swap(true, Ordering::SeqCst) {
                        return Err((Sec::NotWellFormed, "<open/> sent twice".to_owned()));
                    }
                    wr.write_all(&header).await.map_err(|_| (Sec::UndefinedCondition, String::new()))?;
                }
                Inbound::Close => {
                    let _ = wr.write_all(b"</stream:stream>").await;
                    state.open.store(false, Ordering::SeqCst);
                }
                Inbound::Data if !state.open.load(Ordering::SeqCst) => {
                    return Err((Sec::NotWellFormed, "send <open/> first".to_owned()));
                }
                Inbound::Data => {
                    if text.trim().is_empty() {
                        continue;
                    }
                    wr.write_all(text.as_bytes()).await.map_err(|_| (Sec::UndefinedCondition, String::new()))?;
                }
            }
        }
        Ok::<(), (Sec, String)>(())
    };
    let outbound = async {
        let mut framer = Framer::new(Limits { max_stanza_bytes: usize::MAX / 2, ..Limits::default() });
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            framer.feed(&buf[..n]);
            loop {
                let msg = match framer.next_event() {
                    Ok(Some(Event::StreamStart(_))) => {
                        state.header_sent.store(true, Ordering::SeqCst);
                        open_message(&domain)
                    }
                    Ok(Some(Event::Stanza(el))) => {
                        let m = element_message(&el);
                        if el.is("success", ns::SASL) {
                            // RFC 7395 §3.5: the client restarts with a new <open/>.
                            state.open.store(false, Ordering::SeqCst);
                            if outgoing.send(m).await.is_err() {
                                return;
                            }
                            framer.reset();
                            break;
                        }
                        m
                    }
                    Ok(Some(Event::StreamEnd)) => {
                        let _ = outgoing.send(close_message()).await;
                        return;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "WebSocket bridge could not frame our own output");
                        return;
                    }
                };
                if outgoing.send(msg).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        r = inbound => {
            if let Err((condition, text)) = r {
                tracing::info!(error = %text, "bad WebSocket message");
                if !state.header_sent.load(Ordering::SeqCst) {
                    let _ = outgoing.send(open_message(&domain)).await;
                }
                let e = stream_err(condition, (!text.is_empty()).then_some(text.as_str()));
                let _ = outgoing.send(stream_element_message(&Element::from(e))).await;
                let _ = outgoing.send(close_message()).await;
            }
        }
        _ = outbound => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_becomes_a_client_stream_header() {
        let Inbound::Open(h) = classify("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='corp.example' version='1.0' evil='x'/>").unwrap()
        else {
            panic!("not an open")
        };
        let h = String::from_utf8(h).unwrap();
        assert!(h.starts_with("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"), "{h}");
        assert!(h.contains(" to='corp.example'") && h.contains(" version='1.0'") && !h.contains("evil"), "{h}");
        // The header really opens a stream for the c2s framer.
        let mut f = Framer::new(Limits::default());
        f.feed(h.as_bytes());
        match f.next_event() {
            Ok(Some(Event::StreamStart(hdr))) => {
                assert_eq!(hdr.default_ns, ns::CLIENT);
                assert_eq!(hdr.to.as_deref(), Some("corp.example"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn close_and_data_and_bad_frames() {
        assert_eq!(classify("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"), Ok(Inbound::Close));
        assert_eq!(classify("<message xmlns='jabber:client'/>"), Ok(Inbound::Data));
        assert!(classify("<open to='x' version='1.0'/>").unwrap_err().contains(NS_FRAMING));
        assert!(classify("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'").is_err(), "incomplete");
        assert!(classify("<open <<").is_err());
    }

    #[test]
    fn output_elements_carry_their_namespace() {
        let msg = Element::new("message", ns::CLIENT).with_attr("to", "a@b");
        assert_eq!(element_message(&msg), "<message xmlns=\"jabber:client\" to=\"a@b\"/>");
        let feats = Element::new("features", ns::STREAM).with_child(Element::new("bind", ns::BIND));
        let s = element_message(&feats);
        assert!(s.starts_with("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"), "{s}");
        assert!(s.ends_with("</stream:features>"), "{s}");
        let open = open_message("corp.example");
        assert!(open.starts_with("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='corp.example' id='"), "{open}");
    }

    /// The bridge end to end: the client's `<open/>` reaches the state machine as a header,
    /// our header and elements come back as messages, a stanza before `<open/>` after a
    /// SASL success (stream restart) is refused with a stream error.
    #[tokio::test]
    async fn bridge_translates_both_ways() {
        let (ours, theirs) = tokio::io::duplex(4096);
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        let task = tokio::spawn(bridge(theirs, in_rx, out_tx, "corp.example".into()));
        let (mut rd, mut wr) = tokio::io::split(ours);
        in_tx.send(Ok("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='corp.example' version='1.0'/>".into())).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = rd.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("<stream:stream xmlns='jabber:client'"));
        let header = rampart_proto::stream::stream_header(ns::CLIENT, "corp.example", None, "abc", "en");
        wr.write_all(header.as_bytes()).await.unwrap();
        wr.write_all(b"<stream:features/><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await.unwrap();
        assert!(out_rx.recv().await.unwrap().starts_with("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"));
        assert!(out_rx.recv().await.unwrap().starts_with("<stream:features"));
        assert!(out_rx.recv().await.unwrap().starts_with("<success xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\""));
        // After <success/> the client must open again.
        in_tx.send(Ok("<iq xmlns='jabber:client' type='get' id='1'/>".into())).await.unwrap();
        let err = out_rx.recv().await.unwrap();
        assert!(err.starts_with("<stream:error xmlns:stream=") && err.contains("not-well-formed"), "{err}");
        assert_eq!(out_rx.recv().await.unwrap(), close_message());
        task.await.unwrap();
        assert!(out_rx.recv().await.is_none(), "the bridge ended");
    }
}
