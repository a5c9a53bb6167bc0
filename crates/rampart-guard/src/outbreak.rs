//! The behavioural (outbreak) rules: contact-list blast, auto-reply worm, epidemic spread and
//! bots in rooms, over in-memory sliding windows with bounded memory.
//!
//! Every inspected message becomes an [`Observation`]: sender, recipient (or room), time, and
//! the message's payload keys — normalized untrusted links, file hashes, signature names
//! ([`KeyKind::Url`], [`KeyKind::File`], [`KeyKind::Signature`]) — plus an optional text
//! fingerprint ([`KeyKind::Text`]). The rules count *distinct* accounts per key:
//!
//! | rule | counts | keys |
//! |------|--------|------|
//! | blast | recipients of one sender's key within the window | payload keys only (text-only messages never blast) |
//! | auto_reply | accounts the sender sent the key to within `reply_within_secs` after receiving a message from them | payload keys (+ text if `text_only`) |
//! | epidemic | accounts in a propagation chain: senders who had received the key before sending it on, plus the origin | payload and text keys |
//! | room_bots | senders of the key in one room, for machine-like messages | payload and text keys |
//!
//! A rule fires when a message makes the count reach its threshold; the key then stays
//! flagged for the window, and every further send of it in the same scope fires again (each
//! spreading account is caught). The propagation chain (who sent first, who received, who
//! sent on) is kept per key and returned as evidence.
//!
//! Memory is bounded: every map holds at most `max_tracked` entries in two generations (the
//! older generation is dropped when the newer fills up: least-recently-touched entries go
//! first) and every per-key list at most [`MAX_LIST`] items.

use std::hash::Hash;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::fingerprint::{hamming, to_hex};
use crate::{Action, ChainLink};

/// Most items kept in one per-key list (recipients, chain links).
pub const MAX_LIST: usize = 256;

/// Most sends remembered per key for the epidemic rule: far more than a chain needs to be
/// recognized, small enough to scan on every message.
const MAX_SENDS: usize = 64;

/// Equal accounts: interned names usually share one allocation.
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// Most simhash bits two texts may differ in and still count as the same text.
pub const TEXT_MAX_DISTANCE: u32 = 3;

/// What a key stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Url,
    File,
    Signature,
    Text,
}

/// A behavioural key of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadKey {
    pub kind: KeyKind,
    pub hash: u64,
    /// Human-readable: the normalized URL, `algo:hash` or the signature name (empty for
    /// text; see [`PayloadKey::display`]).
    pub label: Arc<str>,
}

impl PayloadKey {
    fn id(&self) -> (KeyKind, u64) {
        (self.kind, self.hash)
    }
}

/// The outbreak rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    Blast,
    AutoReply,
    Epidemic,
    RoomBots,
}

impl Rule {
    /// Stable id: `outbreak.blast`, ...
    pub fn id(self) -> &'static str {
        match self {
            Rule::Blast => "outbreak.blast",
            Rule::AutoReply => "outbreak.auto_reply",
            Rule::Epidemic => "outbreak.epidemic",
            Rule::RoomBots => "outbreak.room_bots",
        }
    }
}

/// Settings of one rule, in the units the state works in.
#[derive(Clone, Copy, Debug)]
pub struct RuleParams {
    pub enabled: bool,
    pub threshold: usize,
    pub window_ms: i64,
    pub action: Action,
}

/// Settings of the outbreak state.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub blast: RuleParams,
    pub auto_reply: RuleParams,
    /// A reply counts for auto_reply if sent at most this long after receiving.
    pub reply_within_ms: i64,
    /// auto_reply also counts text fingerprints (not only links and files).
    pub auto_reply_text: bool,
    pub epidemic: RuleParams,
    pub room_bots: RuleParams,
    pub max_tracked: usize,
}

/// One message, as the rules see it.
#[derive(Debug)]
pub struct Observation<'a> {
    /// Bare JID of the sender.
    pub from: &'a str,
    /// Bare JID of the recipient (the room for groupchat).
    pub to: &'a str,
    /// The room, for a groupchat message.
    pub room: Option<&'a str>,
    pub at_ms: i64,
    /// Payload keys: untrusted links, files, signature names.
    pub keys: &'a [PayloadKey],
    /// Text fingerprint key (already clustered with [`Outbreak::cluster_text`]), if the text
    /// has enough content.
    pub text: Option<&'a PayloadKey>,
    /// The text's cluster was first seen with this message ([`Outbreak::cluster_text_fresh`]):
    /// the epidemic rule then only notes who sent it to whom, and keeps per-text state from
    /// the second sighting on (most texts are seen once).
    pub text_fresh: bool,
    /// The text looks machine-made (bot commands, long tokens, links): for room_bots.
    pub machine_like: bool,
    /// The message had any content (body, link, file): counts as "received" for auto_reply.
    pub has_content: bool,
    /// The message will be delivered (no content finding blocks it).
    pub delivered: bool,
}

/// A rule that fired.
#[derive(Clone, Debug)]
pub struct Detection {
    pub rule: Rule,
    pub action: Action,
    pub key: PayloadKey,
    /// Distinct accounts counted.
    pub count: usize,
    pub chain: Vec<ChainLink>,
    pub accounts: Vec<String>,
}

/// A map with two generations: bounded, least-recently-touched entries evicted first.
struct GenMap<K, V> {
    cur: HashMap<K, V>,
    old: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> GenMap<K, V> {
    fn new(cap: usize) -> Self {
        GenMap {
            cur: HashMap::new(),
            old: HashMap::new(),
            cap: cap.max(16),
        }
    }

    fn get(&mut self, k: &K) -> Option<&mut V> {
        if !self.cur.contains_key(k) {
            let v = self.old.remove(k)?;
            self.rotate_if_full();
            self.cur.insert(k.clone(), v);
        }
        self.cur.get_mut(k)
    }

    fn get_or_insert_with(&mut self, k: &K, f: impl FnOnce() -> V) -> &mut V {
        if !self.cur.contains_key(k) {
            let v = self.old.remove(k).unwrap_or_else(f);
            self.rotate_if_full();
            return self.cur.entry(k.clone()).or_insert(v);
        }
        self.cur.entry(k.clone()).or_insert_with(f)
    }

    fn rotate_if_full(&mut self) {
        if self.cur.len() >= self.cap / 2 {
            self.old = std::mem::take(&mut self.cur);
        }
    }

    fn len(&self) -> usize {
        self.cur.len() + self.old.len()
    }
}

/// Distinct accounts with their latest time, pruned to a window.
#[derive(Default)]
struct Window {
    items: Vec<(Arc<str>, i64)>,
}

impl Window {
    fn prune(&mut self, now: i64, window: i64) {
        self.items.retain(|(_, t)| now - *t <= window);
    }

    fn touch(&mut self, who: &Arc<str>, now: i64) {
        if let Some(slot) = self.items.iter_mut().find(|(a, _)| same(a, who)) {
            slot.1 = now;
        } else {
            if self.items.len() >= MAX_LIST {
                self.items.remove(0);
            }
            self.items.push((who.clone(), now));
        }
    }
}

/// Per-key propagation state for the epidemic rule.
#[derive(Default)]
struct Spread {
    /// (sender, recipient, time) of every send, oldest first.
    sends: Vec<(Arc<str>, Arc<str>, i64)>,
    /// Senders who had received the key before sending it.
    relays: Vec<Arc<str>>,
    flagged_until: Option<i64>,
}

impl Spread {
    fn prune(&mut self, now: i64, window: i64) {
        self.sends.retain(|(_, _, t)| now - *t <= window);
    }

    /// The earliest delivered send of this key to `who` before `now`.
    fn received_by(&self, who: &Arc<str>, now: i64) -> Option<&(Arc<str>, Arc<str>, i64)> {
        self.sends
            .iter()
            .find(|(_, r, t)| same(r, who) && *t <= now)
    }

    /// Chain from the origin to `from`, ending with `from → to` at `now`.
    fn chain(&self, from: &Arc<str>, to: &Arc<str>, now: i64) -> Vec<ChainLink> {
        let mut links = vec![ChainLink {
            sender: from.to_string(),
            recipient: to.to_string(),
            at_ms: now,
        }];
        let mut seen: Vec<&str> = vec![&**from];
        let mut cur: &str = from;
        let mut before = now;
        while links.len() < 64 {
            let Some((s, r, t)) = self
                .sends
                .iter()
                .find(|(_, r, t)| &**r == cur && *t <= before)
            else {
                break;
            };
            links.push(ChainLink {
                sender: s.to_string(),
                recipient: r.to_string(),
                at_ms: *t,
            });
            if seen.contains(&&**s) {
                break;
            }
            seen.push(&**s);
            cur = &**s;
            before = *t;
        }
        links.reverse();
        links
    }
}

/// A key within a scope (a sender, a room).
type ScopedKey = (Arc<str>, (KeyKind, u64));

/// Distinct accounts, and until when the scope is flagged.
type Flagged = (Window, Option<i64>);

/// Add `member` to a key's sliding window and say whether the rule fires: on the message
/// that crosses the threshold, and on every later one while the key stays flagged (a
/// window's length after the last firing). Returns the window's size when it fires.
fn fires((w, flagged_until): &mut Flagged, member: &Arc<str>, now: i64, r: RuleParams) -> Option<usize> {
    w.prune(now, r.window_ms);
    let before = w.items.len();
    w.touch(member, now);
    let count = w.items.len();
    let crossed = count >= r.threshold && before < r.threshold;
    if !crossed && !flagged_until.is_some_and(|u| u >= now) {
        return None;
    }
    *flagged_until = Some(now + r.window_ms);
    Some(count)
}

/// The in-memory state of all outbreak rules. Not thread-safe by itself: the guard keeps it
/// behind a mutex.
pub struct Outbreak {
    p: Params,
    names: HashSet<Arc<str>>,
    /// recipient → recent (sender, time) of messages received, for auto_reply.
    received: GenMap<Arc<str>, Window>,
    blast: GenMap<ScopedKey, Flagged>,
    auto: GenMap<ScopedKey, (Vec<ChainLink>, Window, Option<i64>)>,
    spread: GenMap<(KeyKind, u64), Spread>,
    rooms: GenMap<ScopedKey, Flagged>,
    /// LSH buckets of recent text fingerprints, indexed directly by (band, band value):
    /// the canonical simhash of the latest text with that band value (0: empty). Fixed
    /// 4 × 65 536 slots (2 MiB): no hashing and no allocation per message; older texts
    /// are overwritten by newer ones sharing a band value.
    bands: Box<[u64]>,
    /// First sighting of recent text clusters, direct-mapped by the canonical simhash.
    firsts: Box<[Option<FirstSend>]>,
}

/// Who first sent a text cluster to whom, and when.
struct FirstSend {
    canonical: u64,
    from: Arc<str>,
    to: Arc<str>,
    at: i64,
}

/// Slots of [`Outbreak::firsts`] (a power of two).
const FIRST_SLOTS: usize = 1 << 15;

impl Outbreak {
    pub fn new(p: Params) -> Self {
        let cap = p.max_tracked.max(64);
        Outbreak {
            p,
            names: HashSet::new(),
            received: GenMap::new(cap),
            blast: GenMap::new(cap),
            auto: GenMap::new(cap),
            spread: GenMap::new(cap),
            rooms: GenMap::new(cap),
            bands: vec![0u64; 4 << 16].into_boxed_slice(),
            firsts: (0..FIRST_SLOTS).map(|_| None).collect(),
        }
    }

    /// Entries tracked over the growing maps (for tests and metrics); the text tables
    /// (`bands`, `firsts`) have a fixed size.
    pub fn tracked(&self) -> usize {
        self.received.len() + self.blast.len() + self.auto.len() + self.spread.len() + self.rooms.len()
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        if self.names.len() >= self.p.max_tracked.max(64) {
            self.names.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(a.clone());
        a
    }

    /// Map a text simhash to the canonical simhash of its cluster: a recent fingerprint at
    /// most [`TEXT_MAX_DISTANCE`] bits away, or itself (then remembered). Four 16-bit bands:
    /// two fingerprints within 3 bits share at least one band exactly.
    pub fn cluster_text(&mut self, simhash: u64) -> u64 {
        self.cluster_text_fresh(simhash).0
    }

    /// [`Outbreak::cluster_text`], and whether this is the cluster's first sighting.
    pub fn cluster_text_fresh(&mut self, simhash: u64) -> (u64, bool) {
        let slot = |i: usize| (i << 16) | ((simhash >> (16 * i)) & 0xffff) as usize;
        for i in 0..4 {
            let c = self.bands[slot(i)];
            if c != 0 && hamming(c, simhash) <= TEXT_MAX_DISTANCE {
                return (c, false);
            }
        }
        for i in 0..4 {
            self.bands[slot(i)] = simhash;
        }
        (simhash, true)
    }

    /// A text cluster seen before: give the epidemic rule the first send, noted when the
    /// cluster was fresh, if it has no state for the text yet.
    fn seed_spread(&mut self, key: &PayloadKey, now: i64) {
        let i = (key.hash as usize) & (FIRST_SLOTS - 1);
        let Some(f) = &self.firsts[i] else { return };
        if f.canonical != key.hash || now - f.at > self.p.epidemic.window_ms || self.spread.get(&key.id()).is_some() {
            return;
        }
        let first = (f.from.clone(), f.to.clone(), f.at);
        self.spread.get_or_insert_with(&key.id(), Spread::default).sends.push(first);
    }

    /// Record a message and return the first rule it fires, if any.
    pub fn observe(&mut self, o: &Observation<'_>) -> Option<Detection> {
        let now = o.at_ms;
        let from = self.intern(o.from);
        let to = self.intern(o.to);
        let mut hit: Option<Detection> = None;

        if let Some(room) = o.room {
            let r = self.p.room_bots;
            if r.enabled && o.machine_like {
                let room = self.intern(room);
                for key in o.keys.iter().chain(o.text) {
                    if let Some(d) = self.room_bots(&room, &from, key, now) {
                        return Some(d);
                    }
                }
            }
            return None;
        }

        // Blast: payload keys only.
        if self.p.blast.enabled {
            for key in o.keys {
                if let Some(d) = self.blast(&from, &to, key, now) {
                    hit.get_or_insert(d);
                }
            }
        }
        // Auto-reply: did `from` receive from `to` just before?
        if hit.is_none() && self.p.auto_reply.enabled {
            let replied_at = self
                .received
                .get(&from)
                .and_then(|w| w.items.iter().find(|(s, _)| *s == to).map(|(_, t)| *t));
            if let Some(t_in) =
                replied_at.filter(|t| now - t <= self.p.reply_within_ms && now >= *t)
            {
                let text = if self.p.auto_reply_text { o.text } else { None };
                for key in o.keys.iter().chain(text) {
                    if let Some(d) = self.auto_reply(&from, &to, key, t_in, now) {
                        hit.get_or_insert(d);
                        break;
                    }
                }
            }
        }
        // A message refused by a rule is not received by anyone.
        let passes = |h: &Option<Detection>| h.as_ref().is_none_or(|d| d.action == Action::Log);
        // Epidemic: every key is tracked (so later relays can be recognized), even when
        // another rule already fired.
        if self.p.epidemic.enabled {
            for key in o.keys {
                let delivered = o.delivered && passes(&hit);
                if let Some(d) = self.epidemic(&from, &to, key, now, delivered) {
                    hit.get_or_insert(d);
                }
            }
            if let Some(key) = o.text {
                let delivered = o.delivered && passes(&hit);
                if o.text_fresh {
                    // First sighting: note the send; no per-text state yet.
                    if delivered {
                        let i = (key.hash as usize) & (FIRST_SLOTS - 1);
                        self.firsts[i] = Some(FirstSend { canonical: key.hash, from: from.clone(), to: to.clone(), at: now });
                    }
                } else {
                    self.seed_spread(key, now);
                    if let Some(d) = self.epidemic(&from, &to, key, now, delivered) {
                        hit.get_or_insert(d);
                    }
                }
            }
        }
        // Remember the receipt for auto_reply.
        if o.has_content && o.delivered && passes(&hit) && self.p.auto_reply.enabled {
            let w = self.received.get_or_insert_with(&to, Window::default);
            w.prune(now, self.p.reply_within_ms);
            if w.items.len() >= 32 {
                w.items.remove(0);
            }
            w.touch(&from, now);
        }
        hit
    }

    fn blast(
        &mut self,
        from: &Arc<str>,
        to: &Arc<str>,
        key: &PayloadKey,
        now: i64,
    ) -> Option<Detection> {
        let r = self.p.blast;
        let flagged = self
            .blast
            .get_or_insert_with(&(from.clone(), key.id()), Default::default);
        let count = fires(flagged, to, now, r)?;
        let w = &flagged.0;
        let chain = w
            .items
            .iter()
            .map(|(rcpt, t)| ChainLink {
                sender: from.to_string(),
                recipient: rcpt.to_string(),
                at_ms: *t,
            })
            .collect();
        let accounts = w.items.iter().map(|(a, _)| a.to_string()).collect();
        Some(Detection {
            rule: Rule::Blast,
            action: r.action,
            key: key.clone(),
            count,
            chain,
            accounts,
        })
    }

    fn auto_reply(
        &mut self,
        from: &Arc<str>,
        to: &Arc<str>,
        key: &PayloadKey,
        t_in: i64,
        now: i64,
    ) -> Option<Detection> {
        let r = self.p.auto_reply;
        let (chain, w, flagged_until) = self
            .auto
            .get_or_insert_with(&(from.clone(), key.id()), Default::default);
        w.prune(now, r.window_ms);
        chain.retain(|l| now - l.at_ms <= r.window_ms);
        let before = w.items.len();
        w.touch(to, now);
        if chain.len() + 2 <= MAX_LIST {
            chain.push(ChainLink {
                sender: to.to_string(),
                recipient: from.to_string(),
                at_ms: t_in,
            });
            chain.push(ChainLink {
                sender: from.to_string(),
                recipient: to.to_string(),
                at_ms: now,
            });
        }
        let count = w.items.len();
        let crossed = count >= r.threshold && before < r.threshold;
        if !crossed && !flagged_until.is_some_and(|u| u >= now) {
            return None;
        }
        *flagged_until = Some(now + r.window_ms);
        let accounts = w.items.iter().map(|(a, _)| a.to_string()).collect();
        Some(Detection {
            rule: Rule::AutoReply,
            action: r.action,
            key: key.clone(),
            count,
            chain: chain.clone(),
            accounts,
        })
    }

    fn epidemic(
        &mut self,
        from: &Arc<str>,
        to: &Arc<str>,
        key: &PayloadKey,
        now: i64,
        delivered: bool,
    ) -> Option<Detection> {
        let r = self.p.epidemic;
        let s = self.spread.get_or_insert_with(&key.id(), Spread::default);
        s.prune(now, r.window_ms);
        if !s.relays.is_empty() {
            s.relays
                .retain(|a| s.sends.iter().any(|(snd, _, _)| same(snd, a)));
        }
        let is_relay = s
            .received_by(from, now)
            .is_some_and(|(snd, _, _)| !same(snd, from));
        let new_relay = is_relay && !s.relays.iter().any(|r| same(r, from));
        if new_relay && s.relays.len() < MAX_LIST {
            s.relays.push(from.clone());
        }
        let chain = if is_relay || s.flagged_until.is_some_and(|u| u >= now) {
            Some(s.chain(from, to, now))
        } else {
            None
        };
        // Distinct accounts in the spread: every relay, plus the origin(s) they got it from.
        let mut accounts: Vec<String> = Vec::new();
        for relay in &s.relays {
            if let Some((snd, _, _)) = s.received_by(relay, now)
                && !accounts.iter().any(|a| a == &**snd)
            {
                accounts.push(snd.to_string());
            }
            if !accounts.iter().any(|a| a == &**relay) {
                accounts.push(relay.to_string());
            }
        }
        let count = accounts.len();
        let fire = (new_relay && count >= r.threshold) || s.flagged_until.is_some_and(|u| u >= now);
        if delivered && (!fire || r.action == Action::Log) {
            if s.sends.len() >= MAX_SENDS {
                s.sends.remove(0);
            }
            s.sends.push((from.clone(), to.clone(), now));
        }
        if !fire {
            return None;
        }
        s.flagged_until = Some(now + r.window_ms);
        let chain = chain.unwrap_or_else(|| s.chain(from, to, now));
        Some(Detection {
            rule: Rule::Epidemic,
            action: r.action,
            key: key.clone(),
            count,
            chain,
            accounts,
        })
    }

    fn room_bots(
        &mut self,
        room: &Arc<str>,
        from: &Arc<str>,
        key: &PayloadKey,
        now: i64,
    ) -> Option<Detection> {
        let r = self.p.room_bots;
        let flagged = self
            .rooms
            .get_or_insert_with(&(room.clone(), key.id()), Default::default);
        let count = fires(flagged, from, now, r)?;
        let w = &flagged.0;
        let chain = w
            .items
            .iter()
            .map(|(a, t)| ChainLink {
                sender: a.to_string(),
                recipient: room.to_string(),
                at_ms: *t,
            })
            .collect();
        let accounts = w.items.iter().map(|(a, _)| a.to_string()).collect();
        Some(Detection {
            rule: Rule::RoomBots,
            action: r.action,
            key: key.clone(),
            count,
            chain,
            accounts,
        })
    }
}

/// A text fingerprint as a key. Its label is left empty (the fingerprint in hex is derived
/// from `hash` when a rule fires), saving two allocations per message.
pub fn text_key(canonical: u64) -> PayloadKey {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    PayloadKey {
        kind: KeyKind::Text,
        hash: canonical,
        label: EMPTY.get_or_init(|| Arc::from("")).clone(),
    }
}

impl PayloadKey {
    /// Human-readable form: the label, or the fingerprint in hex for text keys.
    pub fn display(&self) -> String {
        match self.kind {
            KeyKind::Text => to_hex(self.hash),
            _ => self.label.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
