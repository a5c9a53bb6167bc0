//! Security state: the guard's event log and quarantined accounts ([`SecurityStore`]).
//!
//! Accounts are normalized bare JID strings (`user@domain`), local or remote; they need not
//! be accounts of this server, and events outlive removed accounts.

use std::sync::Arc;

use async_trait::async_trait;

use crate::Result;

/// One entry of the security event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Store-assigned, increasing; ignored by [`SecurityStore::record_event`].
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Bare JID of the account concerned (the sender).
    pub account: String,
    /// Stable rule id (`signature`, `lure.executable`, `outbreak.blast`, ...; `operator` for
    /// a manual release).
    pub rule: String,
    /// `block`, `quarantine` or `release`.
    pub action: String,
    /// Human-readable reason.
    pub reason: String,
    /// The guard's evidence as JSON (the caller serializes it).
    pub evidence_json: String,
}

/// An account in quarantine: `(account, rule, reason, since_ms)`.
pub type Quarantined = (String, String, String, i64);

/// The security event log and the quarantine list.
#[async_trait]
pub trait SecurityStore: Send + Sync {
    /// Append an event (its `id` is ignored); returns the new id. An `action` other than
    /// `block`, `quarantine` or `release` fails with `Backend`.
    async fn record_event(&self, ev: &SecurityEvent) -> Result<i64>;
    /// Events at or after `since_ms` (all if `None`), newest first, at most `limit`.
    async fn events(&self, since_ms: Option<i64>, limit: usize) -> Result<Vec<SecurityEvent>>;
    /// Quarantine an account; `false` if it already was (the first rule and reason stay).
    async fn quarantine(&self, account: &str, rule: &str, reason: &str, at_ms: i64)
    -> Result<bool>;
    /// Release an account; `false` if it was not quarantined.
    async fn release(&self, account: &str) -> Result<bool>;
    /// All quarantined accounts, sorted by account.
    async fn quarantined(&self) -> Result<Vec<Quarantined>>;
    async fn is_quarantined(&self, account: &str) -> Result<bool>;
}

/// The security stores a server runs on, beside [`crate::Stores`]. Cheap to clone.
#[derive(Clone)]
pub struct SecurityStores {
    pub security: Arc<dyn SecurityStore>,
}
