//! BOSH wiring (XEP-0124/XEP-0206): the `[http]` table's `bosh*` keys, the adapter that
//! hands the HTTPS listener's BOSH requests (`rampart-http`) to the BOSH sessions of
//! `rampart-server` (the two crates do not know each other), and the web-client routes
//! (WebSocket, BOSH, XEP-0156 host-meta listing both) merged for the HTTPS listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use rampart_http::{BoshFuture, BoshHandler};
use rampart_server::ServerLimits;
use rampart_server::c2s::bosh::{BoshEntry, BoshSettings};
use rampart_server::c2s::websocket::WebSocketEntry;
use serde::Deserialize;

/// `[http]` as written in the file. Defaults are documented in docs/config.md.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve BOSH at `/http-bind` on `listen.http`.
    pub bosh: bool,
    /// The URL advertised in host-meta (`https://host[:port]/path`); derived from the
    /// domain and `listen.http` when absent.
    pub bosh_public_url: Option<String>,
    /// Longest a request is held, in seconds (clients asking for more get this).
    pub bosh_max_wait: u64,
    /// A session with no request for this long ends, in seconds.
    pub bosh_max_inactivity: u64,
    /// Largest request body; `limits.max_stanza_bytes` + 4 KiB when absent.
    pub bosh_max_body_bytes: Option<usize>,
    /// Web origins allowed to call BOSH from a browser (CORS): `https://host[:port]`, or
    /// `"*"` for any. Empty (the default): no CORS headers.
    pub bosh_cors_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bosh: true,
            bosh_public_url: None,
            bosh_max_wait: 60,
            bosh_max_inactivity: 60,
            bosh_max_body_bytes: None,
            bosh_cors_origins: Vec::new(),
        }
    }
}

/// A validated BOSH setup.
#[derive(Debug, Clone)]
pub struct BoshSetup {
    /// The URL advertised by XEP-0156 discovery.
    pub public_url: String,
    pub settings: BoshSettings,
    pub cors: Vec<String>,
}

/// Validate the `bosh*` keys of `[http]` (`None` when switched off or without an HTTP
/// listener).
pub fn settings(h: &HttpConfig, domain: &str, http: Option<SocketAddr>, limits: &ServerLimits, source: &str) -> Result<Option<BoshSetup>> {
    let Some(http) = http.filter(|_| h.bosh) else { return Ok(None) };
    let public_url = match &h.bosh_public_url {
        Some(u) => {
            let Some(rest) = u.strip_prefix("https://") else {
                bail!("{source}: http.bosh_public_url: must start with https:// (there is no plaintext path)");
            };
            if rest.is_empty() || rest.starts_with('/') || rest.contains([' ', '?', '#', '"', '<', '>']) {
                bail!("{source}: http.bosh_public_url: expected https://HOST[:PORT]/PATH");
            }
            u.clone()
        }
        None if http.port() == 443 => format!("https://{domain}{}", rampart_http::bosh::BOSH_PATH),
        None => format!("https://{domain}:{}{}", http.port(), rampart_http::bosh::BOSH_PATH),
    };
    if !(1..=3600).contains(&h.bosh_max_wait) {
        bail!("{source}: http.bosh_max_wait: must be between 1 and 3600 seconds");
    }
    if !(1..=86400).contains(&h.bosh_max_inactivity) {
        bail!("{source}: http.bosh_max_inactivity: must be between 1 and 86400 seconds");
    }
    let max_body_bytes = match h.bosh_max_body_bytes {
        Some(n) if !(1024..=16 * 1024 * 1024 + 65536).contains(&n) => {
            bail!("{source}: http.bosh_max_body_bytes: must be between 1024 and 16842752")
        }
        Some(n) => n,
        None => limits.max_stanza_bytes.saturating_add(4096),
    };
    for o in &h.bosh_cors_origins {
        let ok = o == "*"
            || ["https://", "http://"].iter().any(|p| {
                o.strip_prefix(p).is_some_and(|host| !host.is_empty() && !host.contains(['/', ' ', '?', '#', '"', ',', '*']))
            });
        if !ok {
            bail!("{source}: http.bosh_cors_origins: {o:?} is not an origin (https://HOST[:PORT], or \"*\")");
        }
    }
    Ok(Some(BoshSetup {
        public_url,
        settings: BoshSettings {
            max_wait: Duration::from_secs(h.bosh_max_wait),
            max_inactivity: Duration::from_secs(h.bosh_max_inactivity),
            max_body_bytes,
        },
        cors: h.bosh_cors_origins.clone(),
    }))
}

/// The HTTPS listener's view of the BOSH sessions.
pub struct Handler(pub BoshEntry);

impl BoshHandler for Handler {
    fn max_body_bytes(&self) -> usize {
        self.0.max_body_bytes()
    }

    fn request(&self, peer: SocketAddr, body: Vec<u8>) -> BoshFuture {
        let entry = self.0.clone();
        Box::pin(async move { entry.handle(peer, &body).await })
    }
}

/// The web-client routes: the WebSocket endpoint, the BOSH endpoint and XEP-0156
/// host-meta listing whichever of them is on (`None` when both are off).
pub fn web_routes(
    ws: Option<(&crate::websocket::WebSocketSetup, WebSocketEntry)>,
    bosh: Option<(&BoshSetup, BoshEntry)>,
) -> Option<rampart_http::HttpRouter> {
    if ws.is_none() && bosh.is_none() {
        return None;
    }
    let links = rampart_http::AltConnections {
        websocket: ws.as_ref().map(|(w, _)| w.public_url.clone()),
        bosh: bosh.as_ref().map(|(b, _)| b.public_url.clone()),
    };
    let mut app = rampart_http::discovery_routes(&links);
    if let Some((_, entry)) = ws {
        app = app.merge(crate::websocket::routes(entry));
    }
    if let Some((b, entry)) = bosh {
        let cors = rampart_http::Cors { origins: b.cors.clone() };
        app = app.merge(rampart_http::bosh_routes(Arc::new(Handler(entry)), cors));
    }
    Some(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let http = Some("127.0.0.1:5443".parse().unwrap());
        let limits = ServerLimits::default();
        let s = settings(&HttpConfig::default(), "corp.example", http, &limits, "t").unwrap().unwrap();
        assert_eq!(s.public_url, "https://corp.example:5443/http-bind");
        assert_eq!(s.settings.max_body_bytes, limits.max_stanza_bytes + 4096);
        assert_eq!(s.settings.max_inactivity, Duration::from_secs(60));
        assert!(s.cors.is_empty());
        assert!(settings(&HttpConfig::default(), "x", None, &limits, "t").unwrap().is_none());
        let off = HttpConfig { bosh: false, ..Default::default() };
        assert!(settings(&off, "x", http, &limits, "t").unwrap().is_none());
        let bad = |c: HttpConfig, key: &str| {
            let e = settings(&c, "x", http, &limits, "t").unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        bad(HttpConfig { bosh_public_url: Some("http://x/http-bind".into()), ..Default::default() }, "http.bosh_public_url");
        bad(HttpConfig { bosh_max_wait: 0, ..Default::default() }, "http.bosh_max_wait");
        bad(HttpConfig { bosh_max_inactivity: 0, ..Default::default() }, "http.bosh_max_inactivity");
        bad(HttpConfig { bosh_max_body_bytes: Some(10), ..Default::default() }, "http.bosh_max_body_bytes");
        bad(HttpConfig { bosh_cors_origins: vec!["web.example".into()], ..Default::default() }, "http.bosh_cors_origins");
        bad(HttpConfig { bosh_cors_origins: vec!["https://web.example/path".into()], ..Default::default() }, "http.bosh_cors_origins");
        let cors = HttpConfig { bosh_cors_origins: vec!["https://web.example:8443".into(), "*".into()], ..Default::default() };
        assert_eq!(settings(&cors, "x", http, &limits, "t").unwrap().unwrap().cors.len(), 2);
    }
}
