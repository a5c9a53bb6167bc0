//! The server's runtime settings, as plain data (the binary parses TOML into this).

use std::net::SocketAddr;
use std::time::Duration;

/// Everything the server needs to know that is not a backend.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The XMPP domain served (e.g. `example.com`), normalized.
    pub domain: String,
    /// STARTTLS client listener (RFC 6120), if any.
    pub c2s: Option<SocketAddr>,
    /// Direct-TLS client listener (XEP-0368), if any.
    pub c2s_tls: Option<SocketAddr>,
    pub limits: ServerLimits,
    /// Secret that derives fake SCRAM salts for unknown users (kept in data_dir).
    pub server_secret: Vec<u8>,
    /// XEP-0357 push notifications.
    pub push: crate::modules::push::PushSettings,
}

/// Bounds on what clients may do. Defaults are documented in docs/config.md.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub max_stanza_bytes: usize,
    pub max_connections_per_ip: usize,
    /// From TCP accept until the session is bound.
    pub handshake_timeout: Duration,
    /// A started stanza must be complete within this.
    pub stanza_timeout: Duration,
    /// Failed SASL attempts per IP within `auth_window` before refusing.
    pub auth_failures: u32,
    pub auth_window: Duration,
    pub auth_block: Duration,
    /// Offline messages kept per account.
    pub offline_limit: usize,
    /// How long a broken XEP-0198 session waits to be resumed.
    pub resume_timeout: Duration,
    /// Stanzas queued at most for a session that waits to be resumed (see
    /// [`crate::sessions::OutboundRx::set_limit`]).
    pub resume_queue: usize,
    /// Stanzas queued at most for a live session whose client does not read them (see
    /// [`crate::sessions::OutboundRx::set_live_limit`]).
    pub session_queue: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_stanza_bytes: 256 * 1024,
            max_connections_per_ip: 256,
            handshake_timeout: Duration::from_secs(30),
            stanza_timeout: Duration::from_secs(30),
            auth_failures: 5,
            auth_window: Duration::from_secs(600),
            auth_block: Duration::from_secs(300),
            offline_limit: 1000,
            resume_timeout: Duration::from_secs(300),
            resume_queue: 10_000,
            session_queue: 10_000,
        }
    }
}
