//! Stores for per-account XEP data: private XML (XEP-0049), vCards (XEP-0054), last
//! activity (XEP-0012) and blocklists (XEP-0191), plus [`BlocklistCache`], the in-memory
//! copy of blocklists that backends keep so the per-stanza block check is a hash lookup.
//!
//! As everywhere in this crate, accounts are normalized bare JIDs, fragments are XML text,
//! and writes for an owner that is not an account fail with [`StoreError::NotFound`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::{Result, StoreError};

/// One private XML fragment, identified by its root element's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateItem {
    pub namespace: String,
    pub name: String,
    /// The serialized fragment.
    pub xml: String,
}

/// XEP-0049 private XML storage: at most one fragment per (namespace, name) and account.
#[async_trait]
pub trait PrivateStore: Send + Sync {
    /// The stored fragment, if any.
    async fn private_get(&self, owner: &str, namespace: &str, name: &str) -> Result<Option<String>>;
    /// Insert or replace `items` in one transaction. `QuotaExceeded` (and nothing changes) if
    /// the account would hold more than `max_items` fragments afterwards.
    async fn private_set(&self, owner: &str, items: &[PrivateItem], max_items: usize) -> Result<()>;
}

/// XEP-0054 vCards, one per account.
#[async_trait]
pub trait VCardStore: Send + Sync {
    async fn vcard(&self, owner: &str) -> Result<Option<String>>;
    /// Insert or replace the account's vCard.
    async fn set_vcard(&self, owner: &str, xml: &str) -> Result<()>;
    /// Forget the account's vCard; true if there was one.
    async fn remove_vcard(&self, owner: &str) -> Result<bool>;
}

/// When an account was last seen going offline, and with which status text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastActivity {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub status: Option<String>,
}

/// XEP-0012 last activity: the latest logout per account.
#[async_trait]
pub trait LastActivityStore: Send + Sync {
    /// Record a logout (replacing the previous one).
    async fn set_last(&self, owner: &str, at_ms: i64, status: Option<&str>) -> Result<()>;
    async fn last(&self, owner: &str) -> Result<Option<LastActivity>>;
}

/// XEP-0191 blocklists: a set of normalized JID strings (bare, full, domain or
/// domain/resource) per account.
///
/// Implementations keep a [`BlocklistCache`], so [`BlockingStore::is_blocked`] costs a few
/// hash lookups after the first call for an owner.
#[async_trait]
pub trait BlockingStore: Send + Sync {
    /// The blocked JIDs, sorted.
    async fn blocklist(&self, owner: &str) -> Result<Vec<String>>;
    /// Add JIDs; returns those that were not blocked before. `QuotaExceeded` (and nothing
    /// changes) if the list would hold more than `max_items`.
    async fn block(&self, owner: &str, jids: &[String], max_items: usize) -> Result<Vec<String>>;
    /// Remove JIDs; returns those that were blocked.
    async fn unblock(&self, owner: &str, jids: &[String]) -> Result<Vec<String>>;
    /// Remove every JID; returns them.
    async fn unblock_all(&self, owner: &str) -> Result<Vec<String>>;
    /// True if any of `candidates` is on the owner's list.
    async fn is_blocked(&self, owner: &str, candidates: &[&str]) -> Result<bool>;
}

/// How many accounts' blocklists a [`BlocklistCache`] keeps before it starts over.
pub const BLOCKLIST_CACHE_ACCOUNTS: usize = 100_000;

/// An in-memory copy of blocklists, per account, loaded on first use.
///
/// Writers call [`BlocklistCache::changed`] after committing; a load that overlapped a
/// change is used once but not kept, so the cache never holds a list older than a committed
/// change. Memory is bounded by [`BLOCKLIST_CACHE_ACCOUNTS`] entries (then it is cleared
/// and refills on demand); accounts with an empty list share one allocation.
#[derive(Debug, Default)]
pub struct BlocklistCache {
    lists: Mutex<HashMap<String, Arc<HashSet<String>>>>,
    /// Bumped under the lock by every change, so loads can tell they raced one.
    generation: AtomicU64,
    empty: Arc<HashSet<String>>,
}

impl BlocklistCache {
    /// The cached list, if loaded.
    pub fn get(&self, owner: &str) -> Option<Arc<HashSet<String>>> {
        self.lock().get(owner).cloned()
    }

    /// The generation to pass to [`BlocklistCache::insert`] for a load starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keep a freshly loaded list unless a change committed since `generation`.
    pub fn insert(&self, owner: &str, generation: u64, jids: Vec<String>) -> Arc<HashSet<String>> {
        let set = if jids.is_empty() { self.empty.clone() } else { Arc::new(jids.into_iter().collect()) };
        let mut lists = self.lock();
        if self.generation.load(Ordering::Acquire) == generation {
            if lists.len() >= BLOCKLIST_CACHE_ACCOUNTS {
                lists.clear();
            }
            lists.insert(owner.to_owned(), set.clone());
        }
        set
    }

    /// A change for `owner` committed: apply it to the cached copy (if any).
    pub fn changed(&self, owner: &str, added: &[String], removed: &[String], cleared: bool) {
        let mut lists = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(set) = lists.get_mut(owner) {
            let mut new: HashSet<String> = if cleared { HashSet::new() } else { (**set).clone() };
            for r in removed {
                new.remove(r);
            }
            new.extend(added.iter().cloned());
            *set = if new.is_empty() { self.empty.clone() } else { Arc::new(new) };
        }
    }

    /// Forget an account's list (e.g. the account was removed).
    pub fn forget(&self, owner: &str) {
        let mut lists = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        lists.remove(owner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HashSet<String>>>> {
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `QuotaExceeded` unless `n <= max`.
pub(crate) fn within(n: usize, max: usize) -> Result<()> {
    if n > max { Err(StoreError::QuotaExceeded) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn cache_applies_changes_and_refuses_stale_loads() {
        let c = BlocklistCache::default();
        assert!(c.get("o@x").is_none());
        let g = c.generation();
        let set = c.insert("o@x", g, s(&["a@y"]));
        assert!(set.contains("a@y"));
        c.changed("o@x", &s(&["b@y"]), &s(&["a@y"]), false);
        let now = c.get("o@x").unwrap();
        assert!(now.contains("b@y") && !now.contains("a@y"));
        c.changed("o@x", &[], &[], true);
        assert!(c.get("o@x").unwrap().is_empty());

        // A load that started before a change is returned but not kept.
        let g = c.generation();
        c.changed("p@x", &s(&["z@y"]), &[], false);
        assert!(c.insert("p@x", g, vec![]).is_empty());
        assert!(c.get("p@x").is_none());
        c.forget("o@x");
        assert!(c.get("o@x").is_none());
    }
}
