//! The registry of bound client sessions: who is connected with which resource, their
//! availability and priority, and the channel that reaches each session's writer.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rampart_proto::{Element, Jid, StreamError};
use tokio::sync::mpsc;

/// Identifies one session for its whole life (resources can be reused, ids are not).
pub type SessionId = u64;

/// What the router asks a session's writer to do.
#[derive(Debug)]
///
/// Boxed payloads keep the item small: a channel allocates room for 32 items up front, per
/// session, idle or not.
pub enum Outbound {
    /// Write this stanza to the client.
    Stanza(Box<Element>),
    /// Close the stream with this error (e.g. `conflict` when the resource is taken over).
    Close(Box<StreamError>),
}

pub type OutboundTx = mpsc::UnboundedSender<Outbound>;

/// A bound resource as the router sees it.
#[derive(Clone, Debug)]
pub struct Resource {
    pub id: SessionId,
    pub jid: Jid,
    pub tx: OutboundTx,
    /// `Some(priority)` once the resource sent available presence.
    pub priority: Option<i8>,
    /// Last broadcast available presence (for probes).
    pub presence: Option<Element>,
    /// Requested the roster (RFC 6121 §2.1.6 "interested resource").
    pub interested: bool,
    /// Enabled XEP-0280 message carbons.
    pub carbons: bool,
    /// The connection broke and the XEP-0198 session waits to be resumed (its queue fills).
    pub hibernating: bool,
}

impl Resource {
    pub fn send(&self, stanza: Element) -> bool {
        self.tx.send(Outbound::Stanza(Box::new(stanza))).is_ok()
    }
}

/// All bound sessions, by bare JID.
#[derive(Default)]
pub struct Sessions {
    by_bare: RwLock<HashMap<String, Vec<Resource>>>,
    next_id: AtomicU64,
}

impl Sessions {
    /// A fresh session id.
    pub fn new_id(&self) -> SessionId {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Register a bound resource. If the full JID was taken, the old session is removed and
    /// returned so the caller can close it with `conflict`.
    pub fn bind(&self, id: SessionId, jid: Jid, tx: OutboundTx) -> Option<Resource> {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(jid.bare_str().to_owned()).or_default();
        let old = list.iter().position(|r| r.jid == jid).map(|i| list.remove(i));
        list.push(Resource { id, jid, tx, priority: None, presence: None, interested: false, carbons: false, hibernating: false });
        old
    }

    /// Remove a session (if it is still registered under this id); returns its last state.
    pub fn unbind(&self, id: SessionId, jid: &Jid) -> Option<Resource> {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        let list = map.get_mut(jid.bare_str())?;
        let pos = list.iter().position(|r| r.id == id)?;
        let r = list.remove(pos);
        if list.is_empty() {
            map.remove(jid.bare_str());
        }
        Some(r)
    }

    /// The session bound to exactly this full JID.
    pub fn get(&self, full: &Jid) -> Option<Resource> {
        let map = self.by_bare.read().unwrap_or_else(|e| e.into_inner());
        map.get(full.bare_str())?.iter().find(|r| r.jid == *full).cloned()
    }

    /// Every bound resource of an account.
    pub fn resources(&self, bare: &str) -> Vec<Resource> {
        let map = self.by_bare.read().unwrap_or_else(|e| e.into_inner());
        map.get(bare).cloned().unwrap_or_default()
    }

    /// True if the account has at least one bound session.
    pub fn is_bound(&self, bare: &str) -> bool {
        self.by_bare.read().unwrap_or_else(|e| e.into_inner()).contains_key(bare)
    }

    /// Resources that sent available presence.
    pub fn available(&self, bare: &str) -> Vec<Resource> {
        let map = self.by_bare.read().unwrap_or_else(|e| e.into_inner());
        map.get(bare)
            .map(|l| l.iter().filter(|r| r.priority.is_some()).cloned().collect())
            .unwrap_or_default()
    }

    /// Where a message to the bare JID goes (RFC 6121 §8.5.2.1.1): the available resources
    /// with the highest non-negative priority (all of them on a tie).
    pub fn message_targets(&self, bare: &str) -> Vec<Resource> {
        let map = self.by_bare.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get(bare) else { return Vec::new() };
        let best = list.iter().filter_map(|r| r.priority).filter(|p| *p >= 0).max();
        match best {
            Some(best) => list.iter().filter(|r| r.priority == Some(best)).cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Record a session's presence. `priority == None` means unavailable. Returns the
    /// previous priority.
    pub fn set_presence(&self, id: SessionId, jid: &Jid, priority: Option<i8>, presence: Option<Element>) -> Option<i8> {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        let Some(r) = map.get_mut(jid.bare_str()).and_then(|l| l.iter_mut().find(|r| r.id == id)) else {
            return None;
        };
        let prev = r.priority;
        r.priority = priority;
        r.presence = presence;
        prev
    }

    /// Mark a session as having requested the roster.
    pub fn set_interested(&self, id: SessionId, jid: &Jid) {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get_mut(jid.bare_str()).and_then(|l| l.iter_mut().find(|r| r.id == id)) {
            r.interested = true;
        }
    }

    /// Switch XEP-0280 carbons on or off for a session.
    pub fn set_carbons(&self, id: SessionId, jid: &Jid, on: bool) {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get_mut(jid.bare_str()).and_then(|l| l.iter_mut().find(|r| r.id == id)) {
            r.carbons = on;
        }
    }

    /// Mark a session as hibernating (XEP-0198, connection lost) or connected again.
    pub fn set_hibernating(&self, id: SessionId, jid: &Jid, on: bool) {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get_mut(jid.bare_str()).and_then(|l| l.iter_mut().find(|r| r.id == id)) {
            r.hibernating = on;
        }
    }

    /// Number of bound sessions (for metrics and tests).
    pub fn len(&self) -> usize {
        self.by_bare.read().unwrap_or_else(|e| e.into_inner()).values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
