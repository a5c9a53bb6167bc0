//! The personal eventing store (XEP-0163 PEP on XEP-0060 pubsub): each account owns a set of
//! nodes, each with an opaque configuration (serialized by the server) and an ordered list
//! of items (serialized XML), newest last.
//!
//! Bounds are the caller's: [`PepStore::create_node`] refuses the account's `max_nodes`+1-th
//! node, and [`PepStore::publish`] trims the node to its `max_items` newest items in the
//! same transaction. As everywhere in this crate, owners are normalized bare JIDs and writes
//! for an owner that is not an account fail with [`StoreError::NotFound`](crate::StoreError).
//!
//! Explicit XEP-0060 subscriptions ([`PepSubscription`]) and affiliations
//! ([`PepAffiliation`]) hang off a node and go with it; both are bounded per node by the
//! caller's limits. The store keeps affiliation names opaque (the server validates them).

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

/// One explicit subscription to a node (XEP-0060 §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepSubscription {
    /// The node name.
    pub node: String,
    /// The subscribed JID, bare or full, normalized.
    pub jid: String,
    /// The subscription id the service assigned.
    pub subid: String,
}

/// One affiliation with a node other than the owner's (XEP-0060 §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepAffiliation {
    /// The node name.
    pub node: String,
    /// A normalized bare JID.
    pub jid: String,
    /// `publisher`, `member`, `outcast`, ... (validated by the server).
    pub affiliation: String,
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

    /// Subscriptions to `owner`'s nodes: of one node (or all), of one subscriber's bare JID
    /// (or everyone's), sorted by node and JID.
    async fn subscriptions(&self, owner: &str, node: Option<&str>, bare: Option<&str>) -> Result<Vec<PepSubscription>>;
    /// Every subscription of `bare` (its bare and full JIDs) to anyone's nodes, as
    /// `(owner, subscription)`, the most recent `max` first.
    async fn subscriptions_of(&self, bare: &str, max: usize) -> Result<Vec<(String, PepSubscription)>>;
    /// Subscribe `sub.jid` (whose bare JID is `bare`) to `sub.node`. If it is subscribed
    /// already, nothing changes and the existing subscription is returned. `NotFound` if
    /// there is no such node; `QuotaExceeded` if the node has `max_per_node` subscriptions
    /// or `bare` holds `max_per_subscriber` of them.
    async fn subscribe(&self, owner: &str, sub: &PepSubscription, bare: &str, max_per_node: usize, max_per_subscriber: usize) -> Result<PepSubscription>;
    /// Remove the subscriptions of `jid` to `node` (exactly `jid`; or, with `bare_too`, every
    /// JID whose bare JID is `jid`). Returns how many there were.
    async fn unsubscribe(&self, owner: &str, node: &str, jid: &str, bare_too: bool) -> Result<u64>;
    /// Affiliations with `owner`'s nodes: of one node (or all), of one bare JID (or
    /// everyone's), sorted by node and JID.
    async fn affiliations(&self, owner: &str, node: Option<&str>, jid: Option<&str>) -> Result<Vec<PepAffiliation>>;
    /// Set (or with `None` remove) the affiliation of the bare JID `jid` with `node`.
    /// `NotFound` if there is no such node; `QuotaExceeded` if the node would get more than
    /// `max_per_node` affiliations.
    async fn set_affiliation(&self, owner: &str, node: &str, jid: &str, affiliation: Option<&str>, max_per_node: usize) -> Result<()>;
}
