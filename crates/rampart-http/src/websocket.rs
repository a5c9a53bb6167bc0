//! XMPP over WebSocket (RFC 7395) on the HTTPS listener, transport side only: the
//! `/xmpp-websocket` upgrade (subprotocol `xmpp` required, message and frame sizes bounded)
//! and the XEP-0156 discovery files `/.well-known/host-meta` and `host-meta.json` (which
//! list the WebSocket and the BOSH endpoints, whichever are on).
//!
//! This crate knows nothing of XMPP sessions: after the upgrade, the WebSocket is turned
//! into two bounded channels of whole text messages and handed to a [`WebSocketHandler`]
//! the binary supplies (it runs the c2s state machine of `rampart-server`). Each direction
//! runs on its own so that a slow reader on one side cannot stall the other.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

/// The path of the WebSocket endpoint.
pub const WEBSOCKET_PATH: &str = "/xmpp-websocket";

/// Serve only web-client routes (when uploads are off): everything else is 404.
pub fn web_app(routes: Router) -> Router {
    routes.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

/// The alternative connection methods advertised by XEP-0156 host-meta.
#[derive(Clone, Debug, Default)]
pub struct AltConnections {
    /// `wss://host[:port]/xmpp-websocket` (`urn:xmpp:alt-connections:websocket`).
    pub websocket: Option<String>,
    /// `https://host[:port]/http-bind` (`urn:xmpp:alt-connections:xbosh`).
    pub bosh: Option<String>,
}

impl AltConnections {
    fn links(&self) -> Vec<(&'static str, &str)> {
        let mut v = Vec::new();
        if let Some(u) = &self.websocket {
            v.push(("urn:xmpp:alt-connections:websocket", u.as_str()));
        }
        if let Some(u) = &self.bosh {
            v.push(("urn:xmpp:alt-connections:xbosh", u.as_str()));
        }
        v
    }
}

/// Messages buffered per direction between the WebSocket and the XMPP session.
const CHANNEL_DEPTH: usize = 16;

/// One message from the client: the text of a text frame, or why the connection must end
/// with a stream error (binary frame, oversized message, broken WebSocket framing).
pub type WsIncoming = Result<String, String>;

/// The future running one XMPP-over-WebSocket session.
pub type WsSessionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The XMPP side of the WebSocket endpoint, supplied by the binary.
pub trait WebSocketHandler: Send + Sync + 'static {
    /// Largest WebSocket message (and frame) accepted, in bytes.
    fn max_message_bytes(&self) -> usize;

    /// Serve one session. `incoming` ends when the client closed the connection; dropping
    /// `outgoing` closes the WebSocket (after the messages already sent).
    fn serve(&self, peer: SocketAddr, incoming: mpsc::Receiver<WsIncoming>, outgoing: mpsc::Sender<String>) -> WsSessionFuture;
}

/// The route `GET /xmpp-websocket` (upgrade).
pub fn websocket_routes(handler: Arc<dyn WebSocketHandler>) -> Router {
    Router::new().route(WEBSOCKET_PATH, get(upgrade)).with_state(handler)
}

/// The two XEP-0156 host-meta files advertising `links`.
pub fn discovery_routes(links: &AltConnections) -> Router {
    let xrd = host_meta_xml(links);
    let json = host_meta_json(links);
    Router::new()
        .route(
            "/.well-known/host-meta",
            get(move || async move { discovery("application/xrd+xml; charset=utf-8", xrd.clone()) }),
        )
        .route("/.well-known/host-meta.json", get(move || async move { discovery("application/json", json.clone()) }))
}

fn discovery(content_type: &'static str, body: String) -> Response {
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response();
    // XEP-0156 §3: browser clients on other origins fetch these.
    resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// The XRD document of XEP-0156 §3.2.
pub fn host_meta_xml(links: &AltConnections) -> String {
    let mut out = String::from("<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n");
    for (rel, url) in links.links() {
        let mut href = Vec::new();
        rampart_xml_escape(url, &mut href);
        out.push_str(&format!("  <Link rel=\"{rel}\" href=\"{}\"/>\n", String::from_utf8_lossy(&href)));
    }
    out.push_str("</XRD>\n");
    out
}

/// The JSON form (XEP-0156 §3.3, RFC 6415 JRD).
pub fn host_meta_json(links: &AltConnections) -> String {
    let links: Vec<_> = links.links().into_iter().map(|(rel, href)| serde_json::json!({ "rel": rel, "href": href })).collect();
    serde_json::json!({ "links": links }).to_string()
}

/// Attribute escaping for the XRD (this crate has no XML library of its own).
fn rampart_xml_escape(s: &str, out: &mut Vec<u8>) {
    for c in s.chars() {
        match c {
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '&' => out.extend_from_slice(b"&amp;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\'' => out.extend_from_slice(b"&apos;"),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

async fn upgrade(
    State(handler): State<Arc<dyn WebSocketHandler>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = handler.max_message_bytes();
    let ws = ws.protocols(["xmpp"]).max_message_size(max).max_frame_size(max);
    // RFC 7395 §3.1: the `xmpp` subprotocol is required.
    if ws.selected_protocol().is_none() {
        return (StatusCode::BAD_REQUEST, "the WebSocket subprotocol 'xmpp' is required (RFC 7395)\n").into_response();
    }
    ws.on_failed_upgrade(move |e| tracing::debug!(%peer, error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| pump(socket, handler, peer))
}

/// Move whole messages between the WebSocket and the session until either side ends.
async fn pump(socket: WebSocket, handler: Arc<dyn WebSocketHandler>, peer: SocketAddr) {
    let (in_tx, in_rx) = mpsc::channel::<WsIncoming>(CHANNEL_DEPTH);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(CHANNEL_DEPTH);
    let session = tokio::spawn(handler.serve(peer, in_rx, out_tx));
    let (mut sink, mut stream) = socket.split();
    let writer = async move {
        while let Some(text) = out_rx.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
        let _ = sink.close().await;
    };
    let reader = async move {
        while let Some(msg) = stream.next().await {
            let item = match msg {
                Ok(Message::Text(t)) => Ok(t.as_str().to_owned()),
                Ok(Message::Binary(_)) => Err("binary WebSocket messages are not allowed (RFC 7395 §3.2)".to_owned()),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) => return,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "WebSocket read failed");
                    Err(format!("bad WebSocket message: {e}"))
                }
            };
            let fatal = item.is_err();
            if in_tx.send(item).await.is_err() {
                return;
            }
            if fatal {
                // The session answers with a stream error and closes; the writer ends then.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    // A session whose client went away notices its closed channels; nothing to wait for.
    drop(session);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_meta_advertises_the_endpoints() {
        let url = "wss://corp.example:5443/xmpp-websocket";
        let bosh = "https://corp.example:5443/http-bind";
        let links = AltConnections { websocket: Some(url.into()), bosh: Some(bosh.into()) };
        let xrd = host_meta_xml(&links);
        assert!(xrd.contains("rel=\"urn:xmpp:alt-connections:websocket\""), "{xrd}");
        assert!(xrd.contains("href=\"wss://corp.example:5443/xmpp-websocket\""), "{xrd}");
        assert!(xrd.contains("<Link rel=\"urn:xmpp:alt-connections:xbosh\" href=\"https://corp.example:5443/http-bind\"/>"), "{xrd}");
        let json: serde_json::Value = serde_json::from_str(&host_meta_json(&links)).unwrap();
        assert_eq!(json["links"][0]["rel"], "urn:xmpp:alt-connections:websocket");
        assert_eq!(json["links"][0]["href"], url);
        assert_eq!(json["links"][1]["rel"], "urn:xmpp:alt-connections:xbosh");
        assert_eq!(json["links"][1]["href"], bosh);
        let only_bosh = AltConnections { websocket: None, bosh: Some(bosh.into()) };
        assert!(!host_meta_xml(&only_bosh).contains("websocket"));
        let mut out = Vec::new();
        rampart_xml_escape("a\"<&'", &mut out);
        assert_eq!(out, b"a&quot;&lt;&amp;&apos;");
    }
}
