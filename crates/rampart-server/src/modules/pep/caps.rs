//! XEP-0115 and XEP-0390 entity capabilities of client sessions, for PEP's `+notify`
//! filtering: which `ver` (XEP-0115) or hash (XEP-0390, preferred when a presence carries
//! both) each available session announced, and the features behind it, learned by asking
//! one session per `ver` for its disco#info and **verifying the hash** with that
//! protocol's algorithm before the answer is cached (an unverifiable answer is not trusted
//! for anyone). XEP-0390 hashes are cached under their disco node
//! (`urn:xmpp:caps#<algo>.<hash>`), which no XEP-0115 `ver` can equal.
//!
//! Bounded: at most [`MAX_VERS`] cached `ver`s (then the cache starts over) and
//! [`MAX_PENDING`] queries in flight.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rampart_proto::caps::{self, Caps, Caps2};
use rampart_proto::disco::DiscoInfo;
use rampart_proto::{Element, Jid, ns};

/// Most distinct `ver`s remembered.
pub const MAX_VERS: usize = 4096;
/// Most disco#info queries in flight.
pub const MAX_PENDING: usize = 1024;
/// Most features kept for one `ver`.
pub const MAX_FEATURES: usize = 512;

pub type Features = Arc<HashSet<String>>;

/// How an answer for a `ver` is verified.
enum Check {
    /// XEP-0115 with this hash function.
    Legacy(String),
    /// XEP-0390 with this algorithm and value.
    Caps2 { algo: String, value: String },
}

impl Check {
    fn verifies(&self, info: &DiscoInfo, ver: &str) -> Result<bool, caps::CapsError> {
        match self {
            Check::Legacy(hash) => caps::hash(info, hash).map(|v| v == ver),
            Check::Caps2 { algo, value } => caps::caps2_hash(info, algo).map(|v| &v == value),
        }
    }
}

struct Pending {
    ver: String,
    check: Check,
    asked: Jid,
}

#[derive(Default)]
struct Inner {
    features: HashMap<String, Features>,
    sessions: HashMap<Jid, String>,
    pending: HashMap<String, Pending>,
    /// Sessions waiting for a `ver` being asked about.
    waiting: HashMap<String, Vec<Jid>>,
}

/// What to do after a session's presence.
pub enum Seen {
    /// Features are known; `changed` if this session announced a new `ver`.
    Known { features: Features, changed: bool },
    /// Send this disco#info query to the session.
    Ask(Element),
    /// Nothing to do (no caps, unchanged, or a query is on its way).
    Nothing,
}

/// The capabilities cache (one per server).
#[derive(Default)]
pub struct CapsCache {
    inner: Mutex<Inner>,
}

impl CapsCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The features of an available session, if known.
    pub fn features(&self, jid: &Jid) -> Option<Features> {
        let g = self.lock();
        g.sessions.get(jid).and_then(|v| g.features.get(v)).cloned()
    }

    /// What a presence announces: the cache key (`ver`), how to verify it, the node to ask.
    fn announced(presence: &Element) -> Option<(String, Check, String)> {
        if let Some(c2) = presence.child("c", caps::NS_CAPS2).and_then(|c| Caps2::try_from(c).ok())
            && let Some((algo, value)) = c2.supported()
        {
            let node = caps::caps2_node(algo, value);
            return Some((node.clone(), Check::Caps2 { algo: algo.to_owned(), value: value.to_owned() }, node));
        }
        let c = presence.child("c", ns::CAPS).and_then(|c| Caps::try_from(c).ok())?;
        // Legacy caps (no hash) cannot be verified; they are not trusted.
        let hash = c.hash.clone().filter(|h| matches!(h.as_str(), "sha-1" | "sha-256"))?;
        Some((c.ver.clone(), Check::Legacy(hash), c.disco_node()))
    }

    /// A session sent available presence (with or without `<c/>`).
    pub fn presence(&self, jid: &Jid, presence: &Element, domain: &str) -> Seen {
        let Some((ver, check, disco_node)) = Self::announced(presence) else {
            return Seen::Nothing;
        };
        let mut g = self.lock();
        let changed = g.sessions.get(jid) != Some(&ver);
        if changed {
            g.sessions.insert(jid.clone(), ver.clone());
        }
        if let Some(f) = g.features.get(&ver) {
            return if changed { Seen::Known { features: f.clone(), changed } } else { Seen::Nothing };
        }
        if let Some(w) = g.waiting.get_mut(&ver) {
            if !w.contains(jid) && w.len() < 256 {
                w.push(jid.clone());
            }
            return Seen::Nothing;
        }
        // One question in flight per session, and a global bound: a session that never
        // answers (or keeps changing its ver) cannot crowd out the others.
        if g.pending.len() >= MAX_PENDING || g.pending.values().any(|p| &p.asked == jid) {
            return Seen::Nothing;
        }
        let id = format!("caps-{:016x}", rand::random::<u64>());
        g.pending.insert(id.clone(), Pending { ver: ver.clone(), check, asked: jid.clone() });
        g.waiting.insert(ver, vec![jid.clone()]);
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", id)
            .with_attr("from", domain)
            .with_attr("to", jid.as_str())
            .with_child(Element::new("query", ns::DISCO_INFO).with_attr("node", disco_node));
        Seen::Ask(iq)
    }

    /// An IQ result or error from `from`: if it answers one of our queries, verify and cache
    /// it and return the features with the sessions that were waiting for them.
    pub fn response(&self, from: &Jid, iq: &Element) -> Option<(Features, Vec<Jid>)> {
        let id = iq.attr("id")?;
        let mut g = self.lock();
        if g.pending.get(id).is_none_or(|p| &p.asked != from) {
            return None;
        }
        let p = g.pending.remove(id)?;
        let waiters = g.waiting.remove(&p.ver).unwrap_or_default();
        if iq.attr("type") != Some("result") {
            return None;
        }
        let info = iq.child("query", ns::DISCO_INFO).and_then(|q| DiscoInfo::try_from(q).ok())?;
        match p.check.verifies(&info, &p.ver) {
            Ok(true) => {}
            other => {
                tracing::warn!(from = %from, ver = %p.ver, computed = ?other, "entity capabilities do not verify; not cached");
                return None;
            }
        }
        let features: Features = Arc::new(info.features.into_iter().take(MAX_FEATURES).collect());
        if g.features.len() >= MAX_VERS {
            g.features.clear();
        }
        g.features.insert(p.ver, features.clone());
        Some((features, waiters))
    }

    /// A session went unavailable or ended: forget its caps and any question it did not
    /// answer (whoever waited on that `ver` is asked again on its next presence).
    pub fn forget(&self, jid: &Jid) {
        let mut g = self.lock();
        g.sessions.remove(jid);
        let unanswered: Vec<(String, String)> =
            g.pending.iter().filter(|(_, p)| &p.asked == jid).map(|(id, p)| (id.clone(), p.ver.clone())).collect();
        for (id, ver) in unanswered {
            g.pending.remove(&id);
            g.waiting.remove(&ver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(ver: &str) -> Element {
        Element::new("presence", ns::CLIENT).with_child(Caps { hash: Some("sha-1".into()), node: "n".into(), ver: ver.into() }.into())
    }

    fn answer(to_query: &Element, info: DiscoInfo) -> Element {
        Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", to_query.attr("id").unwrap_or(""))
            .with_child(info.into())
    }

    #[test]
    fn verified_answers_are_cached_and_forgeries_are_not() {
        let cache = CapsCache::default();
        let (a, b) = (Jid::parse("a@x/1").unwrap(), Jid::parse("b@x/1").unwrap());
        let info = DiscoInfo { features: vec!["urn:t+notify".into()], ..DiscoInfo::default() };
        let ver = caps::hash(&info, "sha-1").unwrap();
        let Seen::Ask(q) = cache.presence(&a, &presence(&ver), "x") else { panic!("expected a query") };
        // A second session with the same ver waits for the same answer; no second query.
        assert!(matches!(cache.presence(&b, &presence(&ver), "x"), Seen::Nothing));
        // Only the asked session's answer counts.
        assert!(cache.response(&b, &answer(&q, info.clone())).is_none());
        let (f, waiters) = cache.response(&a, &answer(&q, info.clone())).unwrap();
        assert!(f.contains("urn:t+notify"));
        assert_eq!(waiters, vec![a.clone(), b.clone()]);
        assert!(cache.features(&b).is_some());

        // A ver the answer does not hash to is not trusted.
        let c = Jid::parse("c@x/1").unwrap();
        let Seen::Ask(q) = cache.presence(&c, &presence("Zm9yZ2Vk"), "x") else { panic!("expected a query") };
        assert!(cache.response(&c, &answer(&q, info)).is_none());
        assert!(cache.features(&c).is_none());
    }

    fn presence2(algo: &str, value: &str) -> Element {
        Element::new("presence", ns::CLIENT).with_child(Caps2 { hashes: vec![(algo.into(), value.into())] }.into())
    }

    #[test]
    fn caps2_answers_are_verified_with_the_xep_0390_algorithm() {
        let cache = CapsCache::default();
        let (a, b) = (Jid::parse("a@x/1").unwrap(), Jid::parse("b@x/1").unwrap());
        let info = DiscoInfo { features: vec!["urn:t+notify".into()], ..DiscoInfo::default() };
        let value = caps::caps2_hash(&info, "sha-256").unwrap();
        let Seen::Ask(q) = cache.presence(&a, &presence2("sha-256", &value), "x") else { panic!("expected a query") };
        let node = q.child("query", ns::DISCO_INFO).and_then(|q| q.attr("node")).unwrap_or("");
        assert_eq!(node, format!("urn:xmpp:caps#sha-256.{value}"));
        assert!(cache.response(&a, &answer(&q, info.clone())).is_some());
        assert!(cache.features(&a).is_some_and(|f| f.contains("urn:t+notify")));
        // A second session with the same hash is known at once.
        assert!(matches!(cache.presence(&b, &presence2("sha-256", &value), "x"), Seen::Known { changed: true, .. }));

        // The XEP-0115 hash of the same info is not a valid XEP-0390 hash: not trusted.
        let c = Jid::parse("c@x/1").unwrap();
        let legacy = caps::hash(&info, "sha-256").unwrap();
        let Seen::Ask(q) = cache.presence(&c, &presence2("sha-256", &legacy), "x") else { panic!("expected a query") };
        assert!(cache.response(&c, &answer(&q, info.clone())).is_none());
        assert!(cache.features(&c).is_none());
        // An algorithm we cannot compute is ignored (no query).
        let d = Jid::parse("d@x/1").unwrap();
        assert!(matches!(cache.presence(&d, &presence2("blake2b-256", "eA=="), "x"), Seen::Nothing));
        // sha3-256 works too.
        let v3 = caps::caps2_hash(&info, "sha3-256").unwrap();
        let Seen::Ask(q) = cache.presence(&d, &presence2("sha3-256", &v3), "x") else { panic!("expected a query") };
        assert!(cache.response(&d, &answer(&q, info)).is_some());
    }

    #[test]
    fn caps2_is_preferred_and_a_broken_caps2_falls_back_to_xep_0115() {
        let cache = CapsCache::default();
        let info = DiscoInfo { features: vec!["urn:t+notify".into()], ..DiscoInfo::default() };
        let v1 = caps::hash(&info, "sha-1").unwrap();
        let v2 = caps::caps2_hash(&info, "sha-256").unwrap();
        let both = presence(&v1).with_child(Caps2 { hashes: vec![("sha-256".into(), v2.clone())] }.into());
        let a = Jid::parse("a@x/1").unwrap();
        let Seen::Ask(q) = cache.presence(&a, &both, "x") else { panic!("expected a query") };
        assert_eq!(q.child("query", ns::DISCO_INFO).and_then(|q| q.attr("node")), Some(caps::caps2_node("sha-256", &v2).as_str()));
        // A <c xmlns='urn:xmpp:caps'/> without hashes is ignored; the XEP-0115 element counts.
        let broken = presence(&v1).with_child(Element::new("c", caps::NS_CAPS2));
        let b = Jid::parse("b@x/1").unwrap();
        let Seen::Ask(q) = cache.presence(&b, &broken, "x") else { panic!("expected a query") };
        assert_eq!(q.child("query", ns::DISCO_INFO).and_then(|q| q.attr("node")), Some(format!("n#{v1}").as_str()));
    }

    #[test]
    fn one_question_per_session_and_forget_clears_it() {
        let cache = CapsCache::default();
        let a = Jid::parse("a@x/1").unwrap();
        assert!(matches!(cache.presence(&a, &presence("djE="), "x"), Seen::Ask(_)));
        assert!(matches!(cache.presence(&a, &presence("djI="), "x"), Seen::Nothing));
        cache.forget(&a);
        assert!(matches!(cache.presence(&a, &presence("djI="), "x"), Seen::Ask(_)));
        // No caps, or legacy caps without a hash: nothing to learn.
        assert!(matches!(cache.presence(&a, &Element::new("presence", ns::CLIENT), "x"), Seen::Nothing));
    }
}
