//! The HTTP routes, as an axum [`Router`]: `PUT /upload/{id}/{expires}/{tag}/{name}` and
//! `GET`/`HEAD /file/{id}/{tag}/{name}`; everything else is 404. Bodies are bounded by the
//! largest file size and every request by a deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::service::{Refusal, Uploads};

/// Uploads whose bodies are read and scanned at once, server-wide; more wait their turn
/// (within the request deadline). A body is held in memory while it is scanned, so this
/// times `max_file_size` bounds the memory uploads can take.
pub const MAX_CONCURRENT_UPLOADS: usize = 16;

/// The HTTP application over an upload service. `request_timeout` bounds each request,
/// body included (a slow client gets 408).
pub fn app(uploads: Arc<Uploads>, request_timeout: Duration) -> Router {
    let max_body = usize::try_from(uploads.settings().max_file_size).unwrap_or(usize::MAX);
    let put_route = put(put_file).layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_UPLOADS));
    Router::new()
        .route("/upload/{id}/{expires}/{tag}/{name}", put_route)
        .route("/file/{id}/{tag}/{name}", get(get_file))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(DefaultBodyLimit::max(max_body))
        // A declared Content-Length over the limit is refused before anything is read.
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .with_state(uploads)
}

fn refusal(r: Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut text = r.text;
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn put_file(
    State(up): State<Arc<Uploads>>,
    Path((id, expires, tag, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // The slot is checked first; its size bounds what is read of the body.
    let upload = match up.check_put(&id, &expires, &tag, &name, content_type).await {
        Ok(u) => u,
        Err(r) => return refusal(r),
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n != upload.size) {
        return refusal(Refusal { status: 400, text: format!("the slot is for exactly {} bytes", upload.size) });
    }
    let limit = usize::try_from(upload.size).unwrap_or(usize::MAX);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return refusal(Refusal { status: 413, text: format!("the slot is for exactly {} bytes", upload.size) });
        }
    };
    match up.store_put(upload, &bytes).await {
        Ok(()) => (StatusCode::CREATED, "stored\n").into_response(),
        Err(r) => refusal(r),
    }
}

/// Types a browser may show inline; everything else is a download.
fn inline(content_type: &str) -> bool {
    let m = content_type.to_ascii_lowercase();
    (m.starts_with("image/") && !m.starts_with("image/svg")) || m.starts_with("audio/") || m.starts_with("video/") || m.starts_with("text/plain")
}

async fn get_file(State(up): State<Arc<Uploads>>, Path((id, tag, name)): Path<(String, String, String)>) -> Response {
    let served = match up.get(&id, &tag, &name).await {
        Ok(s) => s,
        Err(r) => return refusal(r),
    };
    let u = &served.upload;
    let disposition = format!(
        "{}; filename*=UTF-8''{}",
        if inline(&u.content_type) { "inline" } else { "attachment" },
        percent_encoding::utf8_percent_encode(&u.name, percent_encoding::NON_ALPHANUMERIC)
    );
    // Streamed from disk in chunks: concurrent downloads do not hold whole files in memory.
    let mut resp = Body::from_stream(tokio_util::io::ReaderStream::new(served.file)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(served.len));
    let ct = HeaderValue::from_str(&u.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ct);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // Uploaded content never runs in our origin.
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    resp
}
