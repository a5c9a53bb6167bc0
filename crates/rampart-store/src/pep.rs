//! The personal eventing store (XEP-0163 PEP on XEP-0060 pubsub): each account owns a set of
//! nodes, each with an opaque configuration (serialized by the server) and an ordered list
//! of items (serialized XML), newest last.
//!
//! Bounds are the caller's: [`PepStore::create_node`] refuses the account's `max_nodes`+1-th
//! node, and [`PepStore::publish`] trims the node to its `max_items` newest items in the
//! same transaction. As everywhere in this crate, owners are normalized bare JIDs and writes
//! for an owner that is not an account fail with [`StoreError::NotFound`](crate::StoreError).

use async_trait::async_trait;

use crate::Result;

/// One PEP node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepNode {
    /// The node name (e.g. `urn:xmpp:avatar:metadata`).
    pub name: String,
    /// The node configuration, serialized by the caller.
    pub config: String,
}

/// One published item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepItem {
    pub id: String,
    /// The serialized `<item/>` payload element.
    pub xml: String,
    /// Full JID of the publishing resource.
    pub publisher: String,
    /// Unix milliseconds of the (latest) publication.
    pub published_at_ms: i64,
}

/// XEP-0163 nodes and items per account.
#[async_trait]
pub trait PepStore: Send + Sync {
    /// One node of `owner`.
    async fn pep_node(&self, owner: &str, node: &str) -> Result<Option<PepNode>>;
    /// Every node of `owner`, sorted by name.
    async fn pep_nodes(&self, owner: &str) -> Result<Vec<PepNode>>;
    /// Create a node; `Ok(false)` (and nothing changes) if it exists; `QuotaExceeded` if the
    /// account already has `max_nodes` nodes.
    async fn create_node(&self, owner: &str, node: &str, config: &str, max_nodes: usize) -> Result<bool>;
    /// Replace a node's configuration and trim it to `max_items` items. `NotFound` if there
    /// is no such node. Returns the ids of trimmed items.
    async fn configure_node(&self, owner: &str, node: &str, config: &str, max_items: usize) -> Result<Vec<String>>;
    /// Delete a node and its items; true if it existed.
    async fn delete_node(&self, owner: &str, node: &str) -> Result<bool>;
    /// Publish (insert, or replace the item with the same id and make it the newest), then
    /// keep only the `max_items` newest items. `NotFound` if there is no such node. Returns
    /// the ids of the items dropped to make room.
    async fn publish(&self, owner: &str, node: &str, item: &PepItem, max_items: usize) -> Result<Vec<String>>;
    /// The newest `max` items (all if `None`), newest first.
    async fn items(&self, owner: &str, node: &str, max: Option<usize>) -> Result<Vec<PepItem>>;
    /// The items with these ids that exist (in the order of `ids`).
    async fn items_by_id(&self, owner: &str, node: &str, ids: &[String]) -> Result<Vec<PepItem>>;
    /// Remove one item; true if it existed.
    async fn retract(&self, owner: &str, node: &str, id: &str) -> Result<bool>;
    /// Remove every item of a node; returns how many there were.
    async fn purge(&self, owner: &str, node: &str) -> Result<u64>;
}
