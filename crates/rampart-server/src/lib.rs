//! Rampart's XMPP server: listeners, TLS, client sessions, the stanza router and feature modules.
//!
//! The data path is one straight line (see ARCHITECTURE.md):
//! socket → TLS → [`rampart_xml::Framer`] (limits) → session state machine ([`c2s`]: STARTTLS,
//! SASL, bind) → [`router::Router::route`] (stamp, policy, deliver) → local session | offline
//! store | server modules ([`modules`]).
//!
//! This crate knows no configuration file format and no concrete database: the binary builds a
//! [`ServerConfig`], opens [`rampart_store::Stores`] and a rustls config, and calls
//! [`Server::bind`].

pub mod c2s;
pub mod config;
pub mod limits;
pub mod modules;
pub mod pipeline;
pub mod router;
pub mod s2s;
pub mod server;
pub mod sessions;
pub mod tls;

pub use config::{ServerConfig, ServerLimits};
pub use pipeline::Services;
pub use server::{BoundServer, Server};
