//! Retracting room messages: XEP-0425 moderated retraction (v0.3 `urn:xmpp:message-moderate:1`,
//! and the v0.2 `urn:xmpp:fasten:0` `<apply-to/>` form with `urn:xmpp:message-moderate:0`
//! that older clients send) and XEP-0424 retraction by the author (`<retract id/>` in a
//! groupchat message).
//!
//! A moderator's request names the room's XEP-0359 stanza-id of a groupchat message. The
//! room checks the requester is an occupant with the moderator role (`forbidden`), that the
//! id names a message of this room on the compliance archive (`item-not-found`, also when it
//! was retracted already), runs the reason through quarantine and the guard (the reason is
//! shown to every occupant), records the act as a [`RecordKind::Moderation`] archive record
//! (fail closed: no record, no retraction), remembers the retraction in the
//! [`rampart_store::RoomStore`], and sends every occupant the announcement from the room's
//! bare JID carrying both the v0.3 `<retract><moderated/></retract>` and the v0.2
//! `<apply-to><moderated/></apply-to>` forms, then the IQ result to the moderator.
//!
//! An author's retraction is an ordinary groupchat message (guard, archive, fan-out: it
//! stays in MAM, as XEP-0424 requires); its target is found by stanza-id, or by the
//! message's `id`/origin-id among the author's recent messages. Retracting someone else's
//! message this way is refused with `forbidden` and relayed to no one; a target the room
//! does not know is relayed without effect.
//!
//! The compliance archive keeps the retracted message unchanged. New occupants' history and
//! MAM on the room show a tombstone in its place (see [`tombstone`]): the message's
//! addressing, stanza-id and occupant id, with `<retracted/>` instead of its content.

use std::collections::HashMap;

use rampart_archive::{NewRecord, RecordKind, Verdict as ArchiveVerdict};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, datetime, ns};
use rampart_store::StoredRetraction;
use rampart_xml::Node;

use super::room::{Role, Room};
use super::{MucService, NS_OCCUPANT_ID, err, new_id, now_ms, remove_gone, send_all};
use crate::pipeline::Gate;
use crate::router::Router;

/// XEP-0424 v0.4 message retraction.
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
/// XEP-0424 tombstones in archives (advertised by services that keep them).
pub const NS_RETRACT_TOMBSTONE: &str = "urn:xmpp:message-retract:1#tombstone";
/// XEP-0425 v0.3 moderated retraction.
pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";
/// XEP-0425 v0.2 message moderation (with XEP-0422 fastening and retract:0).
pub const NS_MODERATE_0: &str = "urn:xmpp:message-moderate:0";
/// XEP-0424 v0.2/0.3, used inside the v0.2 moderation form.
pub const NS_RETRACT_0: &str = "urn:xmpp:message-retract:0";
/// XEP-0422 message fastening (the v0.2 moderation form only).
pub const NS_FASTEN: &str = "urn:xmpp:fasten:0";

/// Longest moderation reason, in characters.
pub const MAX_REASON_CHARS: usize = 1024;
/// Longest message id a retraction may name.
const MAX_ID_LEN: usize = 256;
/// How many of an author's latest messages in a room are searched for an `id`/origin-id.
const OWN_SEARCH_LIMIT: u32 = 200;

/// A moderator's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModerateRequest {
    /// The room's stanza-id of the message.
    pub id: String,
    pub reason: Option<String>,
    /// Sent in the v0.2 (`urn:xmpp:message-moderate:0`) form.
    pub legacy: bool,
}

/// Is `p` (an IQ payload) a moderation request of either form?
pub fn is_request(p: &Element) -> bool {
    p.is("moderate", NS_MODERATE) || p.is("apply-to", NS_FASTEN)
}

/// Read a moderation request (`p` passed [`is_request`]).
pub fn parse_request(p: &Element) -> Result<ModerateRequest, StanzaError> {
    let bad = |t: &str| err(ErrorType::Modify, DefinedCondition::BadRequest, t);
    let (moderate, retract_ns, legacy) = if p.is("moderate", NS_MODERATE) {
        (p, NS_RETRACT, false)
    } else {
        let m = p.child("moderate", NS_MODERATE_0).ok_or_else(|| {
            err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented, "only message moderation can be applied to a room message")
        })?;
        (m, NS_RETRACT_0, true)
    };
    let id = p.attr("id").map(str::trim).unwrap_or_default();
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(bad("the request must name the message's stanza-id in 'id'"));
    }
    if moderate.child("retract", retract_ns).is_none() {
        return Err(err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented, "retraction is the only moderation action this room supports"));
    }
    let reason = moderate.elements().find(|c| c.name == "reason").map(|r| r.text().trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(bad("the reason is too long"));
    }
    Ok(ModerateRequest { id: id.to_owned(), reason, legacy })
}

/// The room's stanza-id on a broadcast copy, if any.
pub fn stanza_id_by<'a>(el: &'a Element, room: &str) -> Option<&'a str> {
    el.elements().find(|c| c.is("stanza-id", ns::SID) && c.attr("by") == Some(room)).and_then(|c| c.attr("id"))
}

/// The `id` an author may retract a message by: its origin-id or the stanza's `id`.
fn own_ids(el: &Element) -> impl Iterator<Item = &str> {
    el.attr("id").into_iter().chain(el.elements().filter(|c| c.is("origin-id", ns::SID)).filter_map(|c| c.attr("id")))
}

/// The message shown in place of a retracted one: its addressing, stanza-id, origin-id and
/// occupant id, and the `<retracted/>` marker (with the moderator and reason when moderated,
/// in the v0.3 and v0.2 forms) instead of every other child.
pub fn tombstone(original: &Element, r: &StoredRetraction) -> Element {
    let mut t = Element::new(&original.name, &original.ns);
    t.attrs = original.attrs.clone();
    for c in original.elements() {
        if c.is("stanza-id", ns::SID) || c.is("origin-id", ns::SID) || c.ns == NS_OCCUPANT_ID || c.ns == ns::DELAY {
            t.children.push(Node::Element(c.clone()));
        }
    }
    let stamp = chrono::DateTime::from_timestamp_millis(r.at_ms).map(|s| datetime::format(&s)).unwrap_or_default();
    let mut retracted = Element::new("retracted", NS_RETRACT).with_attr("stamp", stamp.clone());
    if let Some(id) = &r.retraction_id {
        retracted.set_attr("id", id.clone());
    }
    if r.moderator.is_some() || r.moderator_occupant_id.is_some() {
        retracted = retracted.with_child(moderated(NS_MODERATE, r.moderator.as_deref(), r.moderator_occupant_id.as_deref()));
        if let Some(reason) = &r.reason {
            retracted = retracted.with_child(Element::new("reason", NS_RETRACT).with_text(reason.clone()));
        }
        let mut legacy = moderated(NS_MODERATE_0, r.moderator.as_deref(), r.moderator_occupant_id.as_deref())
            .with_child(Element::new("retracted", NS_RETRACT_0).with_attr("stamp", stamp));
        if let Some(reason) = &r.reason {
            legacy = legacy.with_child(Element::new("reason", NS_MODERATE_0).with_text(reason.clone()));
        }
        t.children.push(Node::Element(retracted));
        t.children.push(Node::Element(legacy));
    } else {
        t.children.push(Node::Element(retracted));
    }
    t
}

fn moderated(ns: &str, by: Option<&str>, occupant_id: Option<&str>) -> Element {
    let mut m = Element::new("moderated", ns);
    if let Some(by) = by {
        m.set_attr("by", by);
    }
    if let Some(o) = occupant_id.filter(|o| !o.is_empty()) {
        m = m.with_child(Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", o));
    }
    m
}

/// The announcement every occupant gets (without `to`), in both forms.
pub fn announcement(room: &str, target: &str, by: &str, occupant_id: &str, reason: Option<&str>) -> Element {
    let mut retract = Element::new("retract", NS_RETRACT)
        .with_attr("id", target)
        .with_child(moderated(NS_MODERATE, Some(by), Some(occupant_id)));
    let mut legacy = moderated(NS_MODERATE_0, Some(by), None).with_child(Element::new("retract", NS_RETRACT_0));
    if let Some(r) = reason {
        retract = retract.with_child(Element::new("reason", NS_RETRACT).with_text(r));
        legacy = legacy.with_child(Element::new("reason", NS_MODERATE_0).with_text(r));
    }
    Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_attr("from", room)
        .with_attr("id", new_id())
        .with_child(retract)
        .with_child(Element::new("apply-to", NS_FASTEN).with_attr("id", target).with_child(legacy))
}

fn internal(text: &str) -> StanzaError {
    err(ErrorType::Wait, DefinedCondition::InternalServerError, text)
}

/// The archived groupchat message of this room with stanza-id `id`: `(real sender, nick)`.
async fn room_message(router: &Router, room: &Room, id: &str) -> Result<Option<(String, Option<String>)>, StanzaError> {
    let Some(archive) = &router.services.archive else { return Ok(None) };
    let Ok(seq) = id.parse::<u64>() else { return Ok(None) };
    let rows = archive.backend().rows(seq, seq, 1).await.map_err(|e| {
        tracing::error!(error = %e, "could not read the archive");
        internal("the message could not be looked up")
    })?;
    let Some(rec) = rows.into_iter().next().and_then(|r| r.into_record().ok()).filter(|r| r.seq == seq) else { return Ok(None) };
    let r = rec.record;
    let groupchat = r.kind == RecordKind::Message
        && r.verdict == ArchiveVerdict::Delivered
        && r.to == room.jid.as_str()
        && r.body.is_some();
    if !groupchat {
        return Ok(None);
    }
    let nick = r
        .meta_json
        .as_deref()
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .and_then(|v| v.get("room_nick").and_then(|n| n.as_str()).map(str::to_owned));
    Ok(Some((r.from, nick)))
}

async fn already_retracted(svc: &MucService, room: &Room, id: &str) -> Result<bool, StanzaError> {
    svc.store.retractions(room.jid.as_str(), &[id.to_owned()]).await.map(|r| !r.is_empty()).map_err(|e| {
        tracing::error!(error = %e, "room store failed");
        internal("the room could not look up its retractions")
    })
}

/// Serve a moderation request to the room (the IQ result is the caller's `Ok(None)`).
pub async fn moderate(svc: &MucService, router: &Router, room: &mut Room, from: &Jid, iq: &Element, p: &Element) -> Result<Option<Element>, StanzaError> {
    if iq.attr("type") != Some("set") {
        return Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "a moderation request is an IQ of type set"));
    }
    if router.services.archive.is_none() {
        return Err(err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented,
            "messages of this room carry no stanza-ids to moderate (the archive is switched off)"));
    }
    let Some((nick, occupant_id)) =
        room.nick_of(from).and_then(|n| room.occupants.get(n)).filter(|o| o.role == Role::Moderator).map(|o| (o.nick.clone(), o.occupant_id.clone()))
    else {
        return Err(err(ErrorType::Auth, DefinedCondition::Forbidden, "only moderators may retract other occupants' messages"));
    };
    let req = parse_request(p)?;
    let Some((author, author_nick)) = room_message(router, room, &req.id).await? else {
        return Err(err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "this room has no message with that stanza-id"));
    };
    if already_retracted(svc, room, &req.id).await? {
        return Err(err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "that message was retracted already"));
    }
    // Every occupant will read the reason: it passes quarantine and the guard like a message
    // of the moderator's. The probe has no `from`, so a refusal is answered once, here.
    if let Some(reason) = &req.reason {
        let probe = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("id", iq.attr("id").unwrap_or_default())
            .with_child(Element::new("body", ns::CLIENT).with_text(reason.clone()));
        if let Gate::Refused = router.gate_message(from, &room.jid, Some(&room.jid), &probe).await {
            return Err(err(ErrorType::Modify, DefinedCondition::PolicyViolation, "the reason was refused by threat defense"));
        }
    }
    let by = room.occupant_jid(&nick);
    let mut ann = announcement(room.jid.as_str(), &req.id, &by, &occupant_id, req.reason.as_deref());
    let mut stored = ann.clone();
    stored.set_attr("to", room.jid.as_str());
    let rec = NewRecord {
        at_ms: now_ms(),
        kind: RecordKind::Moderation,
        direction: rampart_archive::Direction::Local,
        from: from.as_str().to_owned(),
        to: room.jid.as_str().to_owned(),
        remote_domain: None,
        stanza_id: Some(req.id.clone()),
        body: req.reason.clone(),
        stanza_xml: Some(stored.to_xml_string()),
        verdict: ArchiveVerdict::Delivered,
        meta_json: Some(
            serde_json::json!({
                "action": "retract",
                "room_nick": nick,
                "target": req.id,
                "target_from": author,
                "target_nick": author_nick,
                "protocol": if req.legacy { NS_MODERATE_0 } else { NS_MODERATE },
            })
            .to_string(),
        ),
    };
    // Fail closed: an act that is not on the record is not done.
    let Ok(seq) = router.archive(rec).await else {
        return Err(internal("not done: the compliance archive is unavailable"));
    };
    if let Some(seq) = seq {
        ann.children.push(Node::Element(Element::new("stanza-id", ns::SID).with_attr("by", room.jid.as_str()).with_attr("id", seq.to_string())));
    }
    let r = StoredRetraction {
        room: room.jid.as_str().to_owned(),
        stanza_id: req.id.clone(),
        at_ms: now_ms(),
        retraction_id: ann.attr("id").map(str::to_owned),
        moderator: Some(by),
        moderator_occupant_id: Some(occupant_id).filter(|o| !o.is_empty()),
        reason: req.reason.clone(),
    };
    svc.store.add_retraction(&r).await.map_err(|e| {
        tracing::error!(error = %e, room = %room.jid, "could not store a retraction");
        internal("the retraction could not be stored")
    })?;
    let by_room = room.jid.as_str().to_owned();
    room.history.replace(&by_room, &req.id, |old| tombstone(old, &r));
    tracing::info!(room = %room.jid, moderator = %from, target = %req.id, "room message retracted by a moderator");
    let out = room.occupants.values().map(|o| ann.clone().with_attr("to", o.jid.as_str())).collect();
    let gone = send_all(router, out).await;
    remove_gone(svc, router, room, gone).await;
    Ok(None)
}

/// What to do with an author's `<retract id/>` groupchat message.
pub enum SelfRetraction {
    /// Not a retraction.
    None,
    /// Retracts this stanza-id of the sender's: apply after the message is recorded.
    Apply(String),
    /// The target is unknown (or retracted already): relay without effect.
    Relay,
}

/// Check an author's retraction before it is relayed. `Err` (forbidden, bad-request) is
/// answered to the sender and nothing is relayed.
pub async fn check_self_retraction(router: &Router, room: &Room, from: &Jid, el: &Element) -> Result<SelfRetraction, StanzaError> {
    let Some(retract) = el.child("retract", NS_RETRACT) else { return Ok(SelfRetraction::None) };
    if retract.elements().any(|c| c.name == "moderated") {
        return Err(err(ErrorType::Auth, DefinedCondition::Forbidden, "moderated retractions come from the room; ask it with a moderation request"));
    }
    let id = retract.attr("id").map(str::trim).unwrap_or_default();
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "a retraction names the message in 'id'"));
    }
    let author = |real: &str| Jid::parse(real).is_ok_and(|j| j.bare_str() == from.bare_str());
    // The room's stanza-id (what XEP-0424 asks for in group chats).
    if let Some((real, _)) = room_message(router, room, id).await? {
        if !author(&real) {
            return Err(err(ErrorType::Auth, DefinedCondition::Forbidden, "you may only retract your own messages"));
        }
        return Ok(SelfRetraction::Apply(id.to_owned()));
    }
    // The sender's own id or origin-id, among the recent history...
    if let Some(sid) = room.history.find_own(from.bare_str(), room.jid.as_str(), id) {
        return Ok(SelfRetraction::Apply(sid));
    }
    // ... or among the sender's latest messages to the room on the record.
    let Some(archive) = &router.services.archive else { return Ok(SelfRetraction::Relay) };
    let q = rampart_archive::SearchQuery {
        account: Some(from.bare_str().to_owned()),
        with: Some(room.jid.as_str().to_owned()),
        kind: Some(RecordKind::Message),
        limit: Some(OWN_SEARCH_LIMIT),
        ..Default::default()
    };
    let recs = archive.search(&q).await.map_err(|e| {
        tracing::error!(error = %e, "archive search failed");
        internal("the message could not be looked up")
    })?;
    for rec in recs {
        let r = &rec.record;
        if r.to != room.jid.as_str() || r.verdict != ArchiveVerdict::Delivered || r.body.is_none() || !author(&r.from) {
            continue;
        }
        let Some(stored) = r.stanza_xml.as_deref().and_then(crate::c2s::parse_stored) else { continue };
        if own_ids(&stored).any(|i| i == id) {
            return Ok(SelfRetraction::Apply(rec.seq.to_string()));
        }
    }
    Ok(SelfRetraction::Relay)
}

/// The author's retraction `el` (already recorded) of stanza-id `target`: remember it and
/// show the tombstone in the history. Failures are logged (the retraction itself is on the
/// record and relayed either way).
pub async fn apply_self_retraction(svc: &MucService, room: &mut Room, el: &Element, target: &str) {
    let r = StoredRetraction {
        room: room.jid.as_str().to_owned(),
        stanza_id: target.to_owned(),
        at_ms: now_ms(),
        retraction_id: el.attr("id").map(str::to_owned),
        moderator: None,
        moderator_occupant_id: None,
        reason: None,
    };
    match svc.store.add_retraction(&r).await {
        Ok(true) => {
            let by = room.jid.as_str().to_owned();
            room.history.replace(&by, target, |old| tombstone(old, &r));
        }
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, room = %room.jid, "could not store a retraction"),
    }
}

/// The retractions among these stanza-ids of `room`, by stanza-id (empty if the store
/// fails: the failure is logged).
pub async fn retractions(svc: &MucService, room: &str, ids: &[String]) -> HashMap<String, StoredRetraction> {
    if ids.is_empty() {
        return HashMap::new();
    }
    match svc.store.retractions(room, ids).await {
        Ok(found) => found.into_iter().map(|r| (r.stanza_id.clone(), r)).collect(),
        Err(e) => {
            tracing::error!(error = %e, room, "could not read a room's retractions");
            HashMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        crate::c2s::parse_stored(xml).expect("test XML parses")
    }

    #[test]
    fn parses_both_request_forms() {
        let v3 = parse("<moderate xmlns='urn:xmpp:message-moderate:1' id='42'><retract xmlns='urn:xmpp:message-retract:1'/><reason> spam </reason></moderate>");
        assert!(is_request(&v3));
        assert_eq!(parse_request(&v3).unwrap(), ModerateRequest { id: "42".into(), reason: Some("spam".into()), legacy: false });
        let v2 = parse("<apply-to xmlns='urn:xmpp:fasten:0' id='7'><moderate xmlns='urn:xmpp:message-moderate:0'><retract xmlns='urn:xmpp:message-retract:0'/></moderate></apply-to>");
        assert!(is_request(&v2));
        assert_eq!(parse_request(&v2).unwrap(), ModerateRequest { id: "7".into(), reason: None, legacy: true });
        let cond = |x: &str| parse_request(&parse(x)).unwrap_err().condition;
        assert_eq!(cond("<moderate xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/></moderate>"), DefinedCondition::BadRequest);
        assert_eq!(cond("<moderate xmlns='urn:xmpp:message-moderate:1' id='1'/>"), DefinedCondition::FeatureNotImplemented);
        assert_eq!(cond("<apply-to xmlns='urn:xmpp:fasten:0' id='1'><x xmlns='y'/></apply-to>"), DefinedCondition::FeatureNotImplemented);
        let long = "r".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            cond(&format!("<moderate xmlns='urn:xmpp:message-moderate:1' id='1'><retract xmlns='urn:xmpp:message-retract:1'/><reason>{long}</reason></moderate>")),
            DefinedCondition::BadRequest
        );
        assert!(!is_request(&parse("<query xmlns='http://jabber.org/protocol/disco#info'/>")));
    }

    fn original() -> Element {
        parse(
            "<message xmlns='jabber:client' type='groupchat' from='r@c.x/bob' id='m1'>\
             <body>secret</body><x xmlns='jabber:x:oob'><url>https://x/</url></x>\
             <origin-id xmlns='urn:xmpp:sid:0' id='o1'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='occ-bob'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='r@c.x' id='5'/></message>",
        )
    }

    #[test]
    fn tombstones_hide_content_and_keep_ids() {
        let r = StoredRetraction {
            room: "r@c.x".into(),
            stanza_id: "5".into(),
            at_ms: 1_767_225_600_000,
            retraction_id: Some("ann-1".into()),
            moderator: Some("r@c.x/mod".into()),
            moderator_occupant_id: Some("occ-mod".into()),
            reason: Some("spam".into()),
        };
        let t = tombstone(&original(), &r);
        let xml = t.to_xml_string();
        assert!(!xml.contains("secret") && !xml.contains("https://x/"), "{xml}");
        assert_eq!(t.attr("from"), Some("r@c.x/bob"));
        assert_eq!(t.attr("id"), Some("m1"));
        assert_eq!(stanza_id_by(&t, "r@c.x"), Some("5"));
        assert!(t.child("occupant-id", NS_OCCUPANT_ID).is_some());
        let retracted = t.child("retracted", NS_RETRACT).unwrap();
        assert_eq!(retracted.attr("stamp"), Some("2026-01-01T00:00:00.000Z"));
        assert_eq!(retracted.attr("id"), Some("ann-1"));
        let m = retracted.child("moderated", NS_MODERATE).unwrap();
        assert_eq!(m.attr("by"), Some("r@c.x/mod"));
        assert_eq!(m.child("occupant-id", NS_OCCUPANT_ID).unwrap().attr("id"), Some("occ-mod"));
        assert_eq!(retracted.child("reason", NS_RETRACT).unwrap().text(), "spam");
        let legacy = t.child("moderated", NS_MODERATE_0).unwrap();
        assert!(legacy.child("retracted", NS_RETRACT_0).is_some());
        // An author's retraction: no moderator.
        let own = StoredRetraction { moderator: None, moderator_occupant_id: None, reason: None, retraction_id: Some("r9".into()), ..r };
        let t = tombstone(&original(), &own);
        let retracted = t.child("retracted", NS_RETRACT).unwrap();
        assert!(retracted.child("moderated", NS_MODERATE).is_none() && t.child("moderated", NS_MODERATE_0).is_none());
        assert_eq!(retracted.attr("id"), Some("r9"));
        assert_eq!(own_ids(&original()).collect::<Vec<_>>(), ["m1", "o1"]);
    }

    #[test]
    fn announcement_carries_both_forms() {
        let a = announcement("r@c.x", "5", "r@c.x/mod", "occ-mod", Some("spam"));
        assert_eq!(a.attr("from"), Some("r@c.x"));
        assert_eq!(a.attr("type"), Some("groupchat"));
        let r = a.child("retract", NS_RETRACT).unwrap();
        assert_eq!(r.attr("id"), Some("5"));
        assert_eq!(r.child("moderated", NS_MODERATE).unwrap().attr("by"), Some("r@c.x/mod"));
        assert_eq!(r.child("reason", NS_RETRACT).unwrap().text(), "spam");
        let f = a.child("apply-to", NS_FASTEN).unwrap();
        assert_eq!(f.attr("id"), Some("5"));
        let m = f.child("moderated", NS_MODERATE_0).unwrap();
        assert!(m.child("retract", NS_RETRACT_0).is_some());
        assert_eq!(m.child("reason", NS_MODERATE_0).unwrap().text(), "spam");
        assert!(a.child("body", ns::CLIENT).is_none());
    }
}
