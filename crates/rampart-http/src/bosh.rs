//! BOSH (XEP-0124, XMPP over BOSH XEP-0206) on the HTTPS listener, transport side only:
//! `POST /http-bind` with a bounded body, CORS for web clients on other origins (off unless
//! configured), `OPTIONS` preflight, and nothing else (`GET` is 405).
//!
//! This crate knows nothing of XMPP sessions: each request body is handed to a
//! [`BoshHandler`] the binary supplies (it runs the BOSH sessions of `rampart-server`),
//! whose answer is sent as `text/xml; charset=utf-8`. A held request (long-polling) is
//! simply a handler future that has not finished yet.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// The path of the BOSH endpoint.
pub const BOSH_PATH: &str = "/http-bind";

/// Longest time a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer to a body larger than allowed (XEP-0124 §17: `policy-violation`).
const TOO_LARGE: &str = "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='policy-violation'/>";

/// The future answering one BOSH request with a `<body/>`.
pub type BoshFuture = Pin<Box<dyn Future<Output = String> + Send>>;

/// The XMPP side of the BOSH endpoint, supplied by the binary.
pub trait BoshHandler: Send + Sync + 'static {
    /// Largest request body accepted, in bytes.
    fn max_body_bytes(&self) -> usize;

    /// Answer one request body (sent with status 200). The future may wait (long-polling);
    /// it is dropped if the client goes away.
    fn request(&self, peer: SocketAddr, body: Vec<u8>) -> BoshFuture;
}

/// Which web origins may call the endpoint from a browser (CORS). Empty: none (the
/// default); `"*"`: any.
#[derive(Clone, Debug, Default)]
pub struct Cors {
    pub origins: Vec<String>,
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if allowed.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.origins.iter().any(|o| o == "*") {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = origin?;
        let text = origin.to_str().ok()?;
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(text)).then(|| origin.clone())
    }

    fn apply(&self, req: &HeaderMap, resp: &mut Response) {
        if self.origins.is_empty() {
            return;
        }
        let h = resp.headers_mut();
        // Answers differ per origin: caches must keep them apart.
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(v) = self.allow(req.get(header::ORIGIN)) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
    }
}

#[derive(Clone)]
struct Endpoint {
    handler: Arc<dyn BoshHandler>,
    cors: Arc<Cors>,
}

/// The route: `POST`/`OPTIONS /http-bind`.
pub fn bosh_routes(handler: Arc<dyn BoshHandler>, cors: Cors) -> Router {
    let state = Endpoint { handler, cors: Arc::new(cors) };
    Router::new()
        .route(BOSH_PATH, post(post_body).options(preflight).get(not_allowed))
        .with_state(state)
}

fn xml(status: StatusCode, body: String) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn post_body(State(ep): State<Endpoint>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Body) -> Response {
    let max = ep.handler.max_body_bytes();
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut resp = if declared.is_some_and(|n| n > max as u64) {
        tracing::info!(%peer, "BOSH body too large");
        xml(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE.to_owned())
    } else {
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, max)).await {
            Ok(Ok(bytes)) => xml(StatusCode::OK, ep.handler.request(peer, bytes.to_vec()).await),
            Ok(Err(_)) => {
                tracing::info!(%peer, "BOSH body too large or broken");
                xml(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE.to_owned())
            }
            Err(_) => (StatusCode::REQUEST_TIMEOUT, "request body not received in time\n").into_response(),
        }
    };
    ep.cors.apply(&headers, &mut resp);
    resp
}

/// CORS preflight: a browser asks whether it may POST XML from its origin.
async fn preflight(State(ep): State<Endpoint>, headers: HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    ep.cors.apply(&headers, &mut resp);
    if resp.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    }
    resp
}

async fn not_allowed() -> Response {
    let mut resp = (StatusCode::METHOD_NOT_ALLOWED, "BOSH (XEP-0206): POST <body/> here\n").into_response();
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    struct Echo;

    impl BoshHandler for Echo {
        fn max_body_bytes(&self) -> usize {
            64
        }

        fn request(&self, _peer: SocketAddr, body: Vec<u8>) -> BoshFuture {
            Box::pin(async move { format!("<body xmlns='http://jabber.org/protocol/httpbind'>{}</body>", body.len()) })
        }
    }

    fn app(origins: &[&str]) -> Router {
        let cors = Cors { origins: origins.iter().map(|s| s.to_string()).collect() };
        bosh_routes(Arc::new(Echo), cors)
    }

    fn req(method: Method, body: &str, origin: Option<&str>) -> Request<Body> {
        let mut r = Request::builder().method(method).uri(BOSH_PATH).header(header::CONTENT_TYPE, "text/xml; charset=utf-8");
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        let mut r = r.body(Body::from(body.to_owned())).unwrap();
        r.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))));
        r
    }

    async fn text(resp: Response) -> String {
        String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn bodies_go_to_the_handler_within_the_limit() {
        let resp = app(&[]).oneshot(req(Method::POST, "<body/>", None)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/xml; charset=utf-8");
        assert!(resp.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "CORS is off by default");
        assert_eq!(text(resp).await, "<body xmlns='http://jabber.org/protocol/httpbind'>7</body>");
        let resp = app(&[]).oneshot(req(Method::POST, &"x".repeat(65), None)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(text(resp).await.contains("condition='policy-violation'"));
        let resp = app(&[]).oneshot(req(Method::GET, "", None)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn cors_only_for_configured_origins() {
        let a = app(&["https://web.corp.example"]);
        let resp = a.clone().oneshot(req(Method::POST, "<body/>", Some("https://web.corp.example"))).await.unwrap();
        assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://web.corp.example");
        let resp = a.clone().oneshot(req(Method::POST, "<body/>", Some("https://evil.example"))).await.unwrap();
        assert!(resp.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let resp = a.clone().oneshot(req(Method::OPTIONS, "", Some("https://web.corp.example"))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_METHODS], "POST, OPTIONS");
        assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS], "Content-Type");
        let any = app(&["*"]).oneshot(req(Method::OPTIONS, "", Some("https://x.example"))).await.unwrap();
        assert_eq!(any.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
