//! Federation state: the durable per-domain outbound queue and the link table that
//! `rampart s2s status` reads ([`S2sStore`]).
//!
//! Domains are normalized domain strings; stanzas are serialized XML. The queue keeps
//! delivery order per domain (`seq` increases with every insert, never reused).

use async_trait::async_trait;

use crate::Result;

/// A stanza waiting for a remote domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedStanza {
    /// Store-assigned, increasing: delivery order.
    pub seq: i64,
    pub domain: String,
    /// The serialized stanza.
    pub stanza: String,
    /// Unix milliseconds when it was queued.
    pub queued_at_ms: i64,
}

/// One server-to-server link as the running server sees it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LinkRow {
    /// Server-assigned link id (unique while the server runs).
    pub id: i64,
    /// The peer's domain.
    pub domain: String,
    /// `in` (the peer connected to us) or `out` (we connected to it).
    pub direction: String,
    /// `connecting`, `up`, `failed`, ...
    pub state: String,
    pub remote_addr: Option<String>,
    /// Negotiated TLS version and cipher suite.
    pub tls: Option<String>,
    /// How the peer was authenticated (`sasl-external`), if it was.
    pub auth: Option<String>,
    /// Unix milliseconds when the link entered its state.
    pub since_ms: i64,
    /// Unix milliseconds of the last change.
    pub updated_ms: i64,
    pub last_error: Option<String>,
    pub stanzas_in: i64,
    pub stanzas_out: i64,
}

/// The outbound federation queue and link table.
#[async_trait]
pub trait S2sStore: Send + Sync {
    /// Queue a stanza for `domain` (durable on return); returns its `seq`.
    async fn enqueue(&self, domain: &str, stanza: &str, queued_at_ms: i64) -> Result<i64>;
    /// The oldest `limit` stanzas waiting for `domain`, in order.
    async fn peek(&self, domain: &str, limit: usize) -> Result<Vec<QueuedStanza>>;
    /// Delete the given entries (after they were written to the peer).
    async fn remove(&self, seqs: &[i64]) -> Result<()>;
    /// Delete and return the entries for `domain` queued before `before_ms` (to bounce them).
    async fn expire(&self, domain: &str, before_ms: i64) -> Result<Vec<QueuedStanza>>;
    /// `(domain, waiting stanzas)` for every domain with a non-empty queue, sorted.
    async fn queue_depths(&self) -> Result<Vec<(String, u64)>>;
    /// Insert or replace one link's row.
    async fn put_link(&self, link: &LinkRow) -> Result<()>;
    /// Forget a link (it closed).
    async fn remove_link(&self, id: i64) -> Result<()>;
    /// Forget every link (the server starts with none).
    async fn clear_links(&self) -> Result<()>;
    /// Every link, sorted by domain, direction and id.
    async fn links(&self) -> Result<Vec<LinkRow>>;
}
