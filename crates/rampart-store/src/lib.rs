//! Rampart's persistent state, as domain stores behind traits.
//!
//! Each store is a trait ([`AccountStore`], [`RosterStore`], [`OfflineStore`]) so that the
//! server depends on what it needs, never on a database. [`sqlite`] implements all of them on
//! one embedded SQLite file (the default); a PostgreSQL implementation will sit beside it.
//!
//! Accounts are keyed by their bare JID as a normalized string (`user@domain`), so several
//! virtual hosts can share one store. This crate does not parse JIDs or XML: stanzas are kept
//! as serialized XML strings, and the caller normalizes JIDs before calling.
//!
//! Invariant: no method loses accepted data. A write that returns `Ok` is durable (committed).

use std::sync::Arc;

use async_trait::async_trait;
pub use rampart_sasl::{ScramCredentials, ScramHash};

pub mod muc;
pub mod s2s;
pub mod pep;
pub mod push;
pub mod security;
pub mod sqlite;
pub mod uploads;
pub mod xeps;

pub use muc::{RoomStore, StoredAffiliation, StoredRetraction, StoredRoom};
pub use pep::{PepAffiliation, PepItem, PepNode, PepStore, PepSubscription};
pub use push::{PushRegistration, PushStore};
pub use security::{Quarantined, SecurityEvent, SecurityStore, SecurityStores};
pub use uploads::{Upload, UploadState, UploadStore};
pub use xeps::{
    BlockingStore, BlocklistCache, LastActivity, LastActivityStore, PrivateItem, PrivateStore,
    VCardStore,
};

/// Errors from any store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record to create exists already (e.g. the account).
    #[error("already exists")]
    AlreadyExists,
    /// The record to change does not exist.
    #[error("not found")]
    NotFound,
    /// A per-account quota was reached (e.g. offline messages).
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The backend failed (I/O, corruption, connection).
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A local account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Normalized bare JID, `user@domain`.
    pub jid: String,
    /// One entry per SCRAM hash (SHA-1 and SHA-256). PLAIN logins verify against these too.
    pub credentials: Vec<ScramCredentials>,
    /// Unix seconds.
    pub created_at: i64,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Create an account; `AlreadyExists` if the JID is taken.
    async fn create(&self, jid: &str, credentials: Vec<ScramCredentials>) -> Result<()>;
    async fn get(&self, jid: &str) -> Result<Option<Account>>;
    /// All account JIDs, sorted.
    async fn list(&self) -> Result<Vec<String>>;
    /// Remove an account and everything it owns (roster, pending subscriptions, offline
    /// messages). `NotFound` if there is no such account.
    async fn remove(&self, jid: &str) -> Result<()>;
    /// Replace the credentials (password change). `NotFound` if there is no such account.
    async fn set_credentials(&self, jid: &str, credentials: Vec<ScramCredentials>) -> Result<()>;
}

/// RFC 6121 subscription state of a roster item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }
}

/// One item of an account's roster (RFC 6121 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// Contact's normalized bare JID.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// Outbound subscription request pending (`ask='subscribe'`).
    pub ask: bool,
    /// Subscription pre-approved by the user (RFC 6121 §3.4).
    pub approved: bool,
    pub groups: Vec<String>,
}

/// Roster items and pending inbound subscription requests.
///
/// Every change to an account's roster bumps its version (a per-account counter, returned by
/// the writing call), for roster versioning (RFC 6121 §2.6).
///
/// The owner must be an existing account: `put_item` and `put_pending_in` fail with
/// `NotFound` otherwise, and reads for an unknown owner return nothing.
#[async_trait]
pub trait RosterStore: Send + Sync {
    /// `(version, items)` of an account's roster; version 0 for a never-written roster.
    async fn roster(&self, owner: &str) -> Result<(u64, Vec<RosterItem>)>;
    async fn item(&self, owner: &str, contact: &str) -> Result<Option<RosterItem>>;
    /// Insert or replace an item; returns the new roster version.
    async fn put_item(&self, owner: &str, item: &RosterItem) -> Result<u64>;
    /// Remove an item; returns the new roster version, or `None` if there was no such item
    /// (and the version did not change).
    async fn remove_item(&self, owner: &str, contact: &str) -> Result<Option<u64>>;
    /// Remember an inbound subscription request (the serialized presence stanza) from
    /// `contact` until the owner answers it; replaces an earlier one from the same contact.
    async fn put_pending_in(&self, owner: &str, contact: &str, stanza: &str) -> Result<()>;
    /// Forget a pending inbound request; true if there was one.
    async fn remove_pending_in(&self, owner: &str, contact: &str) -> Result<bool>;
    /// Pending inbound requests as `(contact, stanza)`, oldest first.
    async fn pending_in(&self, owner: &str) -> Result<Vec<(String, String)>>;
}

/// A message waiting for an account that had no available resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Store-assigned, increasing per store: delivery order.
    pub seq: i64,
    /// Serialized stanza as it would have been delivered.
    pub stanza: String,
    /// Unix milliseconds when it was stored (for the XEP-0203 delay stamp).
    pub stored_at_ms: i64,
}

/// Offline messages per account. `push` for an owner that is not an existing account fails
/// with `NotFound`; reads for an unknown owner return nothing.
#[async_trait]
pub trait OfflineStore: Send + Sync {
    /// Store a message for `owner` from `sender` (a bare JID); `QuotaExceeded` if the owner
    /// has `limit` or more already.
    async fn push(&self, owner: &str, sender: &str, stanza: &str, stored_at_ms: i64, limit: usize) -> Result<i64>;
    /// Delete every waiting message sent by `sender`, whoever it waits for (a quarantined
    /// account's copies are withdrawn). Returns how many were deleted.
    async fn withdraw_from(&self, sender: &str) -> Result<u64>;
    /// All waiting messages, in order.
    async fn peek(&self, owner: &str) -> Result<Vec<OfflineMessage>>;
    /// Delete waiting messages with `seq <= up_to` (after they were handed to a session).
    async fn ack(&self, owner: &str, up_to: i64) -> Result<()>;
    async fn count(&self, owner: &str) -> Result<usize>;
}

/// The set of stores a server runs on. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub accounts: Arc<dyn AccountStore>,
    pub roster: Arc<dyn RosterStore>,
    pub offline: Arc<dyn OfflineStore>,
    /// XEP-0049 private XML storage.
    pub private: Arc<dyn PrivateStore>,
    /// XEP-0054 vCards.
    pub vcards: Arc<dyn VCardStore>,
    /// XEP-0012 last activity.
    pub last_activity: Arc<dyn LastActivityStore>,
    /// XEP-0191 blocklists (cached in memory by the backend).
    pub blocking: Arc<dyn BlockingStore>,
    /// XEP-0163 personal eventing nodes and items.
    pub pep: Arc<dyn PepStore>,
    /// XEP-0357 push registrations.
    pub push: Arc<dyn PushStore>,
}
