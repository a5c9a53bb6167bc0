//! The XEP-0357 push registration store: the app servers (a pubsub service JID and a node)
//! each of an account's devices registered, with the publish-options form to send back.
//!
//! Registrations are few per account and change rarely (a device enables push when it
//! connects); they must survive restarts, since a phone registers and then disconnects.
//! As everywhere in this crate, owners and service JIDs are normalized strings, the form is
//! opaque serialized XML, and writes for an owner that is not an account fail with
//! [`StoreError::NotFound`](crate::StoreError).

use async_trait::async_trait;

use crate::Result;

/// One registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRegistration {
    /// The app server's pubsub service JID (normalized).
    pub service: String,
    /// The node on that service that stands for the device.
    pub node: String,
    /// The `pubsub#publish-options` form as the client gave it, serialized.
    pub publish_options: Option<String>,
    /// Unix milliseconds of the latest `<enable/>`.
    pub enabled_at_ms: i64,
}

/// XEP-0357 registrations per account.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Add a registration, or replace the one with the same service and node. If the owner
    /// then has more than `max`, the least recently enabled ones are removed and returned.
    async fn push_enable(&self, owner: &str, reg: &PushRegistration, max: usize) -> Result<Vec<PushRegistration>>;
    /// Remove the registration with this service and node, or with `node == None` every
    /// registration with this service. Returns how many were removed.
    async fn push_disable(&self, owner: &str, service: &str, node: Option<&str>) -> Result<u64>;
    /// The owner's registrations, least recently enabled first.
    async fn push_registrations(&self, owner: &str) -> Result<Vec<PushRegistration>>;
    /// Every account with at least one registration, sorted.
    async fn push_accounts(&self) -> Result<Vec<String>>;
}
