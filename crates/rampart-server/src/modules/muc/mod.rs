//! XEP-0045 Multi-User Chat on `conference.<domain>`, a [`Component`] of the router.
//!
//! Every stanza to the service domain (the service itself, a room's bare JID, an occupant
//! JID `room@service/nick`) arrives at [`MucService::handle`] with `from` stamped. Rooms live
//! in memory, each behind its own async mutex so a room's stanzas are handled in order;
//! persistent rooms (configuration, subject, affiliations) are written through a
//! [`RoomStore`] and loaded on first use after a restart.
//!
//! - [`presence`]: entering (with creation, locking, password, members-only, bans, max
//!   users, nick conflicts), nick changes, leaving, history and subject on entering;
//! - [`message`]: groupchat messages and private messages — each passes the router's guard
//!   (`gate_message` with the room) and is recorded once in the compliance archive before
//!   any occupant sees it — subject changes, mediated invitations and declines, and the
//!   room-bot alert to owners and admins;
//! - [`admin`]: the owner's configuration form and room destruction (`muc#owner`), roles and
//!   affiliations (`muc#admin`);
//! - [`iq`]: disco#info/#items on the service and rooms, XEP-0410 self-ping, XEP-0313 MAM on
//!   rooms served from the compliance archive, IQs between occupants relayed under occupant
//!   JIDs (bounded by [`IqRelay`]);
//! - [`moderation`]: XEP-0425 moderated retraction and XEP-0424 retraction by the author;
//!   history and MAM on the room show tombstones for retracted messages (the archive keeps
//!   the messages and records each moderation act).
//!
//! Copies to occupants are delivered straight to their local sessions, never judged again
//! per occupant; non-local occupants (only when the policy admits other domains) go through
//! [`Router::route`]. An occupant whose session is gone is removed from the room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_store::{RoomStore, StoredAffiliation, StoredRoom};
use tokio::sync::{Mutex as AsyncMutex, OnceCell};

use crate::router::{Component, Router};

pub mod admin;
pub mod form;
pub mod history;
pub mod iq;
pub mod message;
pub mod moderation;
pub mod presence;
pub mod room;

use room::{Affiliation, ItemExtras, Room, RoomConfig};

pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0410: the service answers self-pings itself.
pub const NS_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
/// XEP-0421 anonymous unique occupant identifiers.
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";

/// Who may create rooms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreatePolicy {
    /// Every local account.
    Local,
    /// Only the service admins listed in [`MucSettings::admins`].
    Admins,
    /// Nobody (only rooms that exist already can be used).
    Nobody,
}

/// The administrator's policy for the service (`[muc]` in the configuration).
#[derive(Clone, Debug)]
pub struct MucSettings {
    /// The service domain, `conference.<domain>` by default.
    pub domain: String,
    pub create: CreatePolicy,
    /// Bare JIDs that may create rooms under [`CreatePolicy::Admins`].
    pub admins: Vec<String>,
    /// Whether JIDs of other domains may enter rooms and be invited.
    pub allow_external: bool,
    /// Most rooms one account may own.
    pub max_rooms_per_user: usize,
    /// Most rooms on the service.
    pub max_rooms: usize,
    /// Messages of history each room keeps for new occupants.
    pub max_history: usize,
    /// Most occupants of one room (owners may lower it per room).
    pub max_occupants: usize,
}

impl MucSettings {
    /// The defaults for a server on `domain`.
    pub fn for_domain(domain: &str) -> MucSettings {
        MucSettings {
            domain: format!("conference.{domain}"),
            create: CreatePolicy::Local,
            admins: Vec::new(),
            allow_external: false,
            max_rooms_per_user: 50,
            max_rooms: 10_000,
            max_history: 50,
            max_occupants: 500,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    crate::pipeline::now_ms()
}

/// A fresh stanza id for what the service originates.
pub(crate) fn new_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("muc-{}-{}", now_ms(), N.fetch_add(1, Ordering::Relaxed))
}

/// XEP-0421 occupant id of `bare` in `room`: stable across visits, nicks and restarts,
/// unlinkable across rooms, revealing nothing of the real JID (HMAC-SHA-256 under the
/// server secret, 16 bytes, base64).
pub(crate) fn occupant_id(secret: &[u8], room: &str, bare: &str) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else {
        return String::new();
    };
    Mac::update(&mut mac, room.as_bytes());
    Mac::update(&mut mac, &[0]);
    Mac::update(&mut mac, bare.as_bytes());
    let out = mac.finalize().into_bytes();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(&out[..16])
}

pub(crate) fn err(ty: ErrorType, c: DefinedCondition, text: &str) -> StanzaError {
    StanzaError::new(ty, c).with_text(text)
}

type RoomRef = Arc<AsyncMutex<Room>>;

/// Most IQs relayed to occupants and not answered yet (service-wide).
const MAX_RELAYED_IQS: usize = 10_000;
/// An unanswered relayed IQ is forgotten after this long.
const RELAY_TIMEOUT_MS: i64 = 120_000;

/// IQs relayed to an occupant's client, by the id the service gave them: (asker, asker's id,
/// the occupant's real JID, the occupant's nick, when).
#[derive(Default)]
pub(crate) struct IqRelay {
    pending: Mutex<HashMap<String, (Jid, String, Jid, String, i64)>>,
}

impl IqRelay {
    /// Remember a relayed IQ; `None` when too many are in flight.
    pub(crate) fn start(&self, asker: &Jid, id: &str, target: &Jid, nick: &str) -> Option<String> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        if p.len() >= MAX_RELAYED_IQS {
            p.retain(|_, v| now - v.4 < RELAY_TIMEOUT_MS);
            if p.len() >= MAX_RELAYED_IQS {
                return None;
            }
        }
        let new = new_id();
        p.insert(new.clone(), (asker.clone(), id.to_owned(), target.clone(), nick.to_owned(), now));
        Some(new)
    }

    /// The relayed IQ answered with `id`, if any (forgotten either way).
    pub(crate) fn finish(&self, id: &str) -> Option<(Jid, String, Jid, String)> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.remove(id).map(|(a, i, t, n, _)| (a, i, t, n))
    }
}

/// The multi-user chat service.
pub struct MucService {
    pub settings: MucSettings,
    pub(crate) store: Arc<dyn RoomStore>,
    rooms: Mutex<HashMap<String, RoomRef>>,
    loaded: OnceCell<()>,
    pub(crate) iq_relay: IqRelay,
}

impl MucService {
    pub fn new(settings: MucSettings, store: Arc<dyn RoomStore>) -> MucService {
        MucService { settings, store, rooms: Mutex::new(HashMap::new()), loaded: OnceCell::new(), iq_relay: IqRelay::default() }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomRef>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Load the persistent rooms once.
    async fn ensure_loaded(&self) {
        self.loaded
            .get_or_init(|| async {
                match self.store.rooms().await {
                    Ok(list) => {
                        let mut map = self.rooms();
                        for (r, affs) in list {
                            let Ok(jid) = Jid::parse(&r.jid) else { continue };
                            let mut room = Room::new(jid, "", self.settings.max_history);
                            room.affiliations.clear();
                            room.config = RoomConfig::from_json(&r.config_json);
                            room.config.persistent = true;
                            room.created_at_ms = r.created_at_ms;
                            room.history_loaded = false;
                            room.subject = r.subject.map(|s| (s, r.subject_from.unwrap_or_default()));
                            for a in affs {
                                if let Some(x) = Affiliation::parse(&a.affiliation) {
                                    room.set_affiliation(&a.jid, x, a.reason);
                                }
                            }
                            map.insert(r.jid, Arc::new(AsyncMutex::new(room)));
                        }
                        tracing::info!(rooms = map.len(), "persistent rooms loaded");
                    }
                    Err(e) => tracing::error!(error = %e, "could not load persistent rooms"),
                }
            })
            .await;
    }

    pub(crate) fn get(&self, bare: &str) -> Option<RoomRef> {
        self.rooms().get(bare).cloned()
    }

    /// Forget a room (destroyed, or temporary and empty). Call with its lock held.
    pub(crate) async fn forget(&self, room: &mut Room) {
        room.destroyed = true;
        self.rooms().remove(room.jid.as_str());
        if room.config.persistent {
            if let Err(e) = self.store.remove_room(room.jid.as_str()).await {
                tracing::error!(error = %e, room = %room.jid, "could not remove a persistent room");
            }
        }
    }

    /// Write a persistent room (or remove it from the store once it is no longer
    /// persistent). `Err` if the store failed.
    pub(crate) async fn persist(&self, room: &Room) -> Result<(), StanzaError> {
        let res = if room.config.persistent {
            let stored = StoredRoom {
                jid: room.jid.as_str().to_owned(),
                config_json: room.config.to_json(),
                subject: room.subject.as_ref().map(|s| s.0.clone()),
                subject_from: room.subject.as_ref().map(|s| s.1.clone()),
                created_at_ms: room.created_at_ms,
            };
            let affs: Vec<StoredAffiliation> = room
                .affiliations
                .iter()
                .map(|(j, (a, r))| StoredAffiliation { jid: j.clone(), affiliation: a.as_str().to_owned(), reason: r.clone() })
                .collect();
            self.store.save_room(&stored, &affs).await
        } else {
            self.store.remove_room(room.jid.as_str()).await.map(|_| ())
        };
        res.map_err(|e| {
            tracing::error!(error = %e, room = %room.jid, "room store failed");
            StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError).with_text("the room could not be saved")
        })
    }

    /// Rooms `owner` (a bare JID) owns.
    pub(crate) async fn owned_by(&self, owner: &str) -> usize {
        let rooms: Vec<RoomRef> = self.rooms().values().cloned().collect();
        let mut n = 0;
        for r in rooms {
            if r.lock().await.affiliation(owner) == Affiliation::Owner {
                n += 1;
            }
        }
        n
    }

    /// Every room, for the service's disco#items.
    pub(crate) fn all(&self) -> Vec<RoomRef> {
        self.rooms().values().cloned().collect()
    }

    pub(crate) fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// Insert a new room unless one exists: `(room, created)`.
    pub(crate) fn create(&self, jid: &Jid, owner: &str) -> (RoomRef, bool) {
        let mut map = self.rooms();
        if let Some(r) = map.get(jid.as_str()) {
            return (r.clone(), false);
        }
        let r = Arc::new(AsyncMutex::new(Room::new(jid.clone(), owner, self.settings.max_history)));
        map.insert(jid.as_str().to_owned(), r.clone());
        (r, true)
    }

    /// May `from` create rooms?
    pub(crate) fn may_create(&self, router: &Router, from: &Jid) -> bool {
        match self.settings.create {
            CreatePolicy::Nobody => false,
            CreatePolicy::Admins => self.settings.admins.iter().any(|a| a == from.bare_str()),
            CreatePolicy::Local => router.is_local(from),
        }
    }

    /// Is `jid` allowed to use the service at all (the external-domains policy)?
    pub(crate) fn admits(&self, router: &Router, jid: &Jid) -> bool {
        self.settings.allow_external || router.is_local(jid)
    }
}

/// Refill the history of a room loaded after a restart from the compliance archive: its
/// last messages as occupants saw them (quarantined senders left out, retracted ones as
/// tombstones), each with the room's stanza-id.
pub(crate) async fn reload_history(svc: &MucService, router: &Router, room: &mut Room) {
    room.history_loaded = true;
    let Some(archive) = &router.services.archive else { return };
    let q = rampart_archive::MamQuery {
        before: Some(String::new()),
        max: Some(u32::try_from(room.history.capacity()).unwrap_or(u32::MAX)),
        exclude_peers: router.quarantine.accounts(),
        ..Default::default()
    };
    let page = match archive.mam_query(room.jid.as_str(), &q).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, room = %room.jid, "could not read a room's history back from the archive");
            return;
        }
    };
    let mut msgs = Vec::new();
    let mut meta = Vec::new();
    for rec in page.records.iter().filter(|r| r.record.to == room.jid.as_str()) {
        let Some(mut el) = rec.record.stanza_xml.as_deref().and_then(crate::c2s::parse_stored) else { continue };
        el.ns = ns::CLIENT.to_owned();
        el.remove_attr("to");
        el.remove_children("stanza-id", ns::SID);
        el = el.with_child(Element::new("stanza-id", ns::SID).with_attr("by", room.jid.as_str()).with_attr("id", rec.seq.to_string()));
        let sender = Jid::parse(&rec.record.from).map(|j| j.bare_str().to_owned()).unwrap_or_default();
        msgs.push((rec.seq.to_string(), el));
        meta.push((rec.record.at_ms, sender));
    }
    let ids: Vec<String> = msgs.iter().map(|(id, _)| id.clone()).collect();
    let retracted = moderation::retractions(svc, room.jid.as_str(), &ids).await;
    for ((at_ms, sender), (id, el)) in meta.into_iter().zip(msgs) {
        let el = match retracted.get(&id) {
            Some(r) => moderation::tombstone(&el, r),
            None => el,
        };
        room.history.push(at_ms, &sender, el);
    }
}

/// Send stanzas (each carries its `to`, a real full JID) to occupants: local sessions
/// directly, other domains through the router. Returns the local occupants whose session is
/// gone.
pub(crate) async fn send_all(router: &Router, stanzas: Vec<Element>) -> Vec<Jid> {
    let mut gone = Vec::new();
    for el in stanzas {
        let Some(to) = el.attr("to").and_then(|t| Jid::parse(t).ok()) else { continue };
        if router.is_local(&to) {
            match router.sessions.get(&to) {
                Some(r) => {
                    if !r.send(el) {
                        gone.push(to);
                    }
                }
                None => gone.push(to),
            }
        } else {
            router.route(&to, el).await;
        }
    }
    gone.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    gone.dedup();
    gone
}

/// Deliver a message from the service to a user (invitations, declines, alerts): a local
/// account's available resources or its offline storage; other domains through the
/// router. `false` if there is no such local account.
pub(crate) async fn deliver_to_user(router: &Router, to: &Jid, el: Element) -> bool {
    if !router.is_local(to) {
        router.route(to, el).await;
        return true;
    }
    let targets = router.sessions.message_targets(to.bare_str());
    if !targets.is_empty() {
        for t in targets {
            t.send(el.clone());
        }
        return true;
    }
    if !router.account_exists(to.bare_str()).await {
        return false;
    }
    crate::modules::offline::store(router, &to.bare(), el).await;
    true
}

/// Refuse an attempt to enter a room: the error presence carries `<x xmlns=muc/>` (as in
/// XEP-0045 §7.2), which is how clients tell it from other presence errors.
pub(crate) async fn refuse_join(router: &Router, el: &Element, e: StanzaError) {
    if el.attr("type") == Some("error") {
        return;
    }
    let mut r = rampart_proto::error::error_reply(el, &e);
    r.children.insert(0, rampart_xml::Node::Element(Element::new("x", ns::MUC)));
    send_all(router, vec![r]).await;
}

/// Reply to an IQ with a result from its addressee.
pub(crate) async fn reply(router: &Router, iq: &Element, payload: Option<Element>) {
    let mut r = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    if let Some(id) = iq.attr("id") {
        r.set_attr("id", id);
    }
    if let Some(f) = iq.attr("to") {
        r.set_attr("from", f);
    }
    if let Some(t) = iq.attr("from") {
        r.set_attr("to", t);
    }
    if let Some(p) = payload {
        r = r.with_child(p);
    }
    send_all(router, vec![r]).await;
}

/// Remove occupants whose sessions are gone (`unavailable` to the others), repeatedly until
/// every remaining one was reachable; forget the room if it is temporary and now empty.
pub(crate) async fn remove_gone(svc: &MucService, router: &Router, room: &mut Room, mut gone: Vec<Jid>) {
    // Bounded: each round removes at least one occupant.
    while !gone.is_empty() {
        let mut out = Vec::new();
        for jid in &gone {
            let Some(nick) = room.nick_of(jid).map(str::to_owned) else { continue };
            out.extend(room.presence_to_all(&nick, true, ItemExtras::default(), &[]));
            room.occupants.remove(&nick);
            tracing::debug!(room = %room.jid, nick, "occupant without a session removed");
        }
        if out.is_empty() {
            break;
        }
        // Only to the remaining occupants.
        out.retain(|p| p.attr("to").is_some_and(|t| !gone.iter().any(|g| g.as_str() == t)));
        gone = send_all(router, out).await;
    }
    if room.occupants.is_empty() && !room.config.persistent && !room.destroyed {
        svc.forget(room).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iq_relay_matches_answers_once() {
        let r = IqRelay::default();
        let a = Jid::parse("a@x/1").unwrap();
        let t = Jid::parse("t@x/2").unwrap();
        let id = r.start(&a, "q1", &t, "tee").unwrap();
        assert_eq!(r.finish(&id), Some((a.clone(), "q1".into(), t.clone(), "tee".into())));
        assert_eq!(r.finish(&id), None, "an answer is relayed once");
        assert_eq!(r.finish("made-up"), None);
    }
}

#[async_trait]
impl Component for MucService {
    fn name(&self) -> &str {
        "Chatrooms"
    }

    async fn handle(&self, router: &Router, el: Element) {
        let Some(from) = el.attr("from").and_then(|f| Jid::parse(f).ok()) else { return };
        let Some(to) = el.attr("to").and_then(|t| Jid::parse(t).ok()) else { return };
        self.ensure_loaded().await;
        let ty = el.attr("type").unwrap_or("");
        if !self.admits(router, &from) {
            if ty != "error" && !(el.name == "iq" && matches!(ty, "result")) && !(el.name == "presence" && ty == "unavailable") {
                router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::NotAllowed,
                    "users of other domains may not use the chat rooms of this server"));
            }
            return;
        }
        match (to.node().is_some(), el.name.as_str()) {
            (false, "iq") => iq::service_iq(self, router, &from, &el).await,
            (false, _) => {
                if el.name == "message" && ty != "error" {
                    router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, "this is a chat room service; address a room"));
                }
            }
            (true, "presence") => presence::handle(self, router, from, to, el).await,
            (true, "message") => message::handle(self, router, from, to, el).await,
            (true, "iq") => iq::room_iq(self, router, from, to, el).await,
            _ => {}
        }
    }
}
