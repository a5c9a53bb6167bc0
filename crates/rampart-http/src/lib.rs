//! Rampart's HTTPS side: the XEP-0363 HTTP File Upload service (with room for an admin API).
//!
//! - [`service::Uploads`] is the service: slot requests (size, quota, forbidden types), PUT
//!   (sniff the content type by magic bytes, scan with the guard's engines, *then* store),
//!   GET of accepted files only, archive records and security events for every outcome,
//!   retention, and [`rampart_guard::UploadResolver`] so the guard sees the file hash
//!   behind our URLs.
//! - [`routes::app`] is the axum application; [`listener::serve`] runs it over TLS with
//!   per-IP connection limits and deadlines.
//! - [`sniff`] tells what a file really is; [`sign`] makes the HMAC-signed, expiring URLs.
//! - [`websocket`] is the RFC 7395 endpoint and XEP-0156 discovery; the XMPP session behind
//!   it is a [`websocket::WebSocketHandler`] the binary supplies.
//! - [`bosh`] is the XEP-0124/XEP-0206 endpoint (`POST /http-bind`, CORS); the BOSH
//!   sessions behind it are a [`bosh::BoshHandler`] the binary supplies.
//!
//! This crate depends on the store, guard and archive crates, never on `rampart-server`:
//! the binary wires the XMPP slot-request component to [`service::Uploads`].

pub mod bosh;
pub mod listener;
pub mod routes;
pub mod service;
pub mod sign;
pub mod sniff;
pub mod websocket;

pub use listener::{HttpLimits, http_tls, serve};
pub use routes::app;
pub use service::{Refusal, Slot, SlotError, SlotRequest, UploadSettings, Uploads};
pub use sniff::Category;
pub use bosh::{BoshFuture, BoshHandler, Cors, bosh_routes};
pub use websocket::{AltConnections, WebSocketHandler, WsIncoming, WsSessionFuture, discovery_routes, web_app, websocket_routes};
/// The HTTP application type, for the binary to combine routes.
pub use axum::Router as HttpRouter;

#[cfg(test)]
mod tests;
