//! XMPP over WebSocket wiring: the `[websocket]` table, and the adapter that hands the
//! HTTPS listener's WebSocket sessions (`rampart-http`) to the c2s state machine of
//! `rampart-server` (the two crates do not know each other).

use std::net::SocketAddr;

use anyhow::{Result, bail};
use rampart_http::{WebSocketHandler, WsIncoming, WsSessionFuture};
use rampart_server::c2s::websocket::WebSocketEntry;
use serde::Deserialize;
use tokio::sync::mpsc;

/// `[websocket]` as written in the file. Defaults are documented in docs/config.md.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Serve RFC 7395 at `/xmpp-websocket` on `listen.http` (and XEP-0156 host-meta).
    pub enabled: bool,
    /// The URL advertised in host-meta (`wss://host[:port]/path`); derived from the domain
    /// and `listen.http` when absent.
    pub public_url: Option<String>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig { enabled: true, public_url: None }
    }
}

/// A validated WebSocket setup: the URL advertised by XEP-0156 discovery.
#[derive(Debug, Clone)]
pub struct WebSocketSetup {
    pub public_url: String,
}

/// Validate `[websocket]` (`None` when switched off or without an HTTP listener).
pub fn settings(w: &WebSocketConfig, domain: &str, http: Option<SocketAddr>, source: &str) -> Result<Option<WebSocketSetup>> {
    let Some(http) = http.filter(|_| w.enabled) else { return Ok(None) };
    let public_url = match &w.public_url {
        Some(u) => {
            let Some(rest) = u.strip_prefix("wss://") else {
                bail!("{source}: websocket.public_url: must start with wss:// (there is no plaintext path)");
            };
            if rest.is_empty() || rest.starts_with('/') || rest.contains([' ', '?', '#', '"', '<', '>']) {
                bail!("{source}: websocket.public_url: expected wss://HOST[:PORT]/PATH");
            }
            u.clone()
        }
        None if http.port() == 443 => format!("wss://{domain}{}", rampart_http::websocket::WEBSOCKET_PATH),
        None => format!("wss://{domain}:{}{}", http.port(), rampart_http::websocket::WEBSOCKET_PATH),
    };
    Ok(Some(WebSocketSetup { public_url }))
}

/// The HTTPS listener's view of the c2s entry point.
pub struct Handler(pub WebSocketEntry);

impl WebSocketHandler for Handler {
    fn max_message_bytes(&self) -> usize {
        self.0.max_message_bytes()
    }

    fn serve(&self, peer: SocketAddr, incoming: mpsc::Receiver<WsIncoming>, outgoing: mpsc::Sender<String>) -> WsSessionFuture {
        let entry = self.0.clone();
        Box::pin(async move { entry.serve(peer, incoming, outgoing).await })
    }
}

/// The WebSocket upgrade route over the bound server's c2s entry point (host-meta comes
/// from `crate::bosh::web_routes`, which lists BOSH too).
pub fn routes(entry: WebSocketEntry) -> rampart_http::HttpRouter {
    rampart_http::websocket_routes(std::sync::Arc::new(Handler(entry)))
}

/// Bind the HTTPS listener for the web-client routes alone (uploads are off).
pub async fn start_alone(http: SocketAddr, routes: rampart_http::HttpRouter, c2s_tls: &rustls::ServerConfig) -> Result<()> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(http).await.with_context(|| format!("cannot listen on {http} (listen.http)"))?;
    let app = rampart_http::web_app(routes);
    tokio::spawn(rampart_http::serve(listener, rampart_http::http_tls(c2s_tls), app, rampart_http::HttpLimits::default()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let http = Some("127.0.0.1:5443".parse().unwrap());
        let s = settings(&WebSocketConfig::default(), "corp.example", http, "t").unwrap().unwrap();
        assert_eq!(s.public_url, "wss://corp.example:5443/xmpp-websocket");
        assert!(settings(&WebSocketConfig::default(), "x", None, "t").unwrap().is_none());
        let off = WebSocketConfig { enabled: false, ..Default::default() };
        assert!(settings(&off, "x", http, "t").unwrap().is_none());
        let bad = WebSocketConfig { public_url: Some("ws://x/xmpp".into()), ..Default::default() };
        assert!(settings(&bad, "x", http, "t").unwrap_err().to_string().contains("websocket.public_url"));
    }
}
