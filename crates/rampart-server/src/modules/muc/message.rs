//! Messages through a room (XEP-0045 §7.4–7.5, §7.8): groupchat messages, subject changes,
//! private messages between occupants, mediated invitations and declines.
//!
//! Each one passes the router's policy and guard stages (`gate_message` with the room, so
//! the room-bot rule sees it) before any occupant sees it; a refused message is answered to
//! the sender with `policy-violation` by the gate and reaches no one. An accepted message is
//! recorded once in the compliance archive (`from` = the sender's real full JID, `to` = the
//! room, the nick in the record's metadata, the stanza as occupants see it) before fan-out,
//! and every copy carries the archive id as an XEP-0359 `<stanza-id by=room/>`; if the
//! record cannot be made durable, nothing is delivered (fail closed).
//!
//! A groupchat message carrying an XEP-0424 `<retract/>` is checked by
//! [`super::moderation`] first (only the author may retract a message this way) and, once
//! recorded, marks its target retracted.
//!
//! When the room-bot rule quarantines a sender, the other accounts of the swarm are
//! quarantined too, removed from the room, the event is recorded, and the room's owners and
//! admins get a message from the room naming the accounts and the reason.

use rampart_archive::Verdict as ArchiveVerdict;
use rampart_guard::Finding;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, ns};
use rampart_store::security::SecurityEvent;
use rampart_xml::Node;

use super::room::{Affiliation, AllowPm, Role, Room};
use super::{MucService, NS_MUC_USER, NS_OCCUPANT_ID, deliver_to_user, err, new_id, now_ms, remove_gone, send_all};
use crate::pipeline::{Gate, is_archivable, message_record};
use crate::router::Router;

/// Namespace of the alert sent to owners and admins when a room rule fires.
pub const NS_ALERT: &str = "urn:xmpp:rampart:security:0";
/// Most invitations in one message.
const MAX_INVITES: usize = 10;

pub async fn handle(svc: &MucService, router: &Router, from: Jid, to: Jid, el: Element) {
    let ty = el.attr("type").unwrap_or("normal").to_owned();
    if ty == "error" {
        return;
    }
    let Some(room_ref) = svc.get(to.bare_str()) else {
        router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such room"));
        return;
    };
    let mut room = room_ref.lock().await;
    if room.destroyed {
        router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such room"));
        return;
    }
    if let Some(nick) = to.resource() {
        let nick = nick.to_owned();
        return private_message(svc, router, &mut room, &from, &nick, el).await;
    }
    if ty == "groupchat" {
        return groupchat(svc, router, &mut room, &from, el).await;
    }
    let x = el.child("x", NS_MUC_USER);
    if x.is_some_and(|x| x.child("invite", NS_MUC_USER).is_some()) {
        return invite(svc, router, &mut room, &from, el).await;
    }
    if x.is_some_and(|x| x.child("decline", NS_MUC_USER).is_some()) {
        return decline(svc, router, &mut room, &from, el).await;
    }
    if let Some(form) = el.child("x", ns::DATA_FORMS).filter(|f| form_value(f, "FORM_TYPE").as_deref() == Some(NS_REQUEST)) {
        let form = form.clone();
        return voice_request(svc, router, &mut room, &from, &el, &form).await;
    }
    router.bounce(&el, err(ErrorType::Modify, DefinedCondition::BadRequest, "messages to a room must be of type groupchat"));
}

/// XEP-0045 §7.13 / §8.6 voice requests.
const NS_REQUEST: &str = "http://jabber.org/protocol/muc#request";

fn form_value(form: &Element, var: &str) -> Option<String> {
    form.elements()
        .find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))
        .and_then(|f| f.child("value", ns::DATA_FORMS))
        .map(Element::text)
}

/// A visitor asks for voice (the request goes to the moderators as a form), or a moderator
/// answers one (`muc#request_allow` true: the occupant becomes a participant).
async fn voice_request(svc: &MucService, router: &Router, room: &mut Room, from: &Jid, el: &Element, form: &Element) {
    let Some(me) = room.nick_of(from).and_then(|n| room.occupants.get(n)).cloned() else {
        router.bounce(el, err(ErrorType::Cancel, DefinedCondition::NotAcceptable, "you are not in this room"));
        return;
    };
    if me.role == Role::Moderator {
        let allow = form_value(form, "muc#request_allow").is_some_and(|v| matches!(v.trim(), "1" | "true"));
        let Some(nick) = form_value(form, "muc#roomnick") else { return };
        if !allow {
            return;
        }
        let Some(o) = room.occupants.get_mut(nick.trim()) else {
            router.bounce(el, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such occupant"));
            return;
        };
        if o.role == Role::Visitor {
            o.role = Role::Participant;
            let nick = o.nick.clone();
            let out = room.presence_to_all(&nick, false, super::room::ItemExtras { actor: Some(&me.nick), ..Default::default() }, &[]);
            let gone = send_all(router, out).await;
            remove_gone(svc, router, room, gone).await;
        }
        return;
    }
    if me.role != Role::Visitor {
        return; // has voice already
    }
    let field = |var: &str, ty: &str, label: &str, v: &str| {
        Element::new("field", ns::DATA_FORMS)
            .with_attr("var", var)
            .with_attr("type", ty)
            .with_attr("label", label)
            .with_child(Element::new("value", ns::DATA_FORMS).with_text(v))
    };
    let request = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(Element::new("title", ns::DATA_FORMS).with_text("Voice request"))
        .with_child(Element::new("instructions", ns::DATA_FORMS).with_text(format!("Grant {} voice in this room?", me.nick)))
        .with_child(field("FORM_TYPE", "hidden", "", NS_REQUEST))
        .with_child(field("muc#role", "list-single", "Requested role", "participant"))
        .with_child(field("muc#jid", "jid-single", "User ID", me.jid.as_str()))
        .with_child(field("muc#roomnick", "text-single", "Room nickname", &me.nick))
        .with_child(field("muc#request_allow", "boolean", "Grant voice?", "false"));
    let out = room
        .occupants
        .values()
        .filter(|o| o.role == Role::Moderator)
        .map(|m| {
            Element::new("message", ns::CLIENT)
                .with_attr("from", room.jid.as_str())
                .with_attr("to", m.jid.as_str())
                .with_attr("id", new_id())
                .with_child(request.clone())
        })
        .collect();
    let gone = send_all(router, out).await;
    remove_gone(svc, router, room, gone).await;
}

/// Clean a client's message for the room: `from` the occupant JID, no `to`, no ids claimed
/// in the room's name; the sender's XEP-0421 occupant id.
fn as_broadcast(el: &Element, room: &Room, nick: &str) -> Element {
    let mut b = el.clone();
    b.set_attr("from", room.occupant_jid(nick));
    b.remove_attr("to");
    let by = room.jid.as_str();
    b.children.retain(|n| match n {
        Node::Element(c) => !(c.is("stanza-id", ns::SID) && c.attr("by") == Some(by)) && c.ns != NS_OCCUPANT_ID,
        Node::Text(_) => true,
    });
    if let Some(id) = room.occupants.get(nick).map(|o| o.occupant_id.as_str()).filter(|i| !i.is_empty()) {
        b.children.push(Node::Element(Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", id)));
    }
    b
}

async fn groupchat(svc: &MucService, router: &Router, room: &mut Room, from: &Jid, el: Element) {
    let Some((nick, role)) = room.nick_of(from).and_then(|n| room.occupants.get(n)).map(|o| (o.nick.clone(), o.role)) else {
        router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::NotAcceptable, "you are not in this room"));
        return;
    };
    let subject = el.child("subject", ns::CLIENT).map(Element::text);
    let has_body = el.child("body", ns::CLIENT).is_some();
    if let (Some(subject), false) = (&subject, has_body) {
        if !(role == Role::Moderator || (room.config.change_subject && role >= Role::Participant)) {
            router.bounce(&el, err(ErrorType::Auth, DefinedCondition::Forbidden, "you may not change the subject of this room"));
            return;
        }
        if let Gate::Refused = router.gate_message(from, &room.jid, Some(&room.jid), &el).await {
            return;
        }
        room.subject = Some((subject.clone(), nick.clone()));
        let _ = svc.persist(room).await;
        let b = as_broadcast(&el, room, &nick);
        let out = room.occupants.values().map(|o| b.clone().with_attr("to", o.jid.as_str())).collect();
        let gone = send_all(router, out).await;
        remove_gone(svc, router, room, gone).await;
        return;
    }
    if role < Role::Participant {
        router.bounce(&el, err(ErrorType::Auth, DefinedCondition::Forbidden, "you have no voice in this moderated room"));
        return;
    }
    // XEP-0424: an author may retract their own messages, nobody else's (moderators use
    // XEP-0425 requests).
    let retraction = match super::moderation::check_self_retraction(router, room, from, &el).await {
        Ok(r) => r,
        Err(e) => {
            router.bounce(&el, e);
            return;
        }
    };
    let (gate, finding) = router.gate_message_finding(from, &room.jid, Some(&room.jid), &el).await;
    if let Gate::Refused = gate {
        if let Some(f) = finding.filter(|f| f.rule == "outbreak.room_bots") {
            bot_alert(svc, router, room, &f, from).await;
        }
        return;
    }
    let mut b = as_broadcast(&el, room, &nick);
    if is_archivable(&el) {
        let mut stored = b.clone();
        stored.set_attr("to", room.jid.as_str());
        let mut rec = message_record(&stored, from.as_str(), room.jid.as_str(), ArchiveVerdict::Delivered);
        rec.meta_json = Some(serde_json::json!({ "room_nick": nick }).to_string());
        match router.archive(rec).await {
            Ok(Some(seq)) => b.children.push(Node::Element(
                Element::new("stanza-id", ns::SID).with_attr("by", room.jid.as_str()).with_attr("id", seq.to_string()),
            )),
            Ok(None) => {}
            Err(()) => {
                router.bounce_unarchived(&el);
                return;
            }
        }
    }
    if let super::moderation::SelfRetraction::Apply(target) = &retraction {
        super::moderation::apply_self_retraction(svc, room, &el, target).await;
    }
    if has_body || subject.is_some() {
        room.history.push(now_ms(), from.bare_str(), b.clone());
    }
    let out = room.occupants.values().map(|o| b.clone().with_attr("to", o.jid.as_str())).collect();
    let gone = send_all(router, out).await;
    remove_gone(svc, router, room, gone).await;
}

async fn private_message(svc: &MucService, router: &Router, room: &mut Room, from: &Jid, to_nick: &str, el: Element) {
    if el.attr("type") == Some("groupchat") {
        router.bounce(&el, err(ErrorType::Modify, DefinedCondition::BadRequest, "groupchat messages go to the room, not to an occupant"));
        return;
    }
    let Some((nick, role)) = room.nick_of(from).and_then(|n| room.occupants.get(n)).map(|o| (o.nick.clone(), o.role)) else {
        router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::NotAcceptable, "you are not in this room"));
        return;
    };
    let Some(target) = room.occupants.get(to_nick).map(|o| o.jid.clone()) else {
        router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such occupant"));
        return;
    };
    let allowed = match room.config.allow_pm {
        AllowPm::Anyone => true,
        AllowPm::Participants => role >= Role::Participant,
        AllowPm::Moderators => role == Role::Moderator,
        AllowPm::Nobody => false,
    };
    if !allowed {
        router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::Forbidden, "private messages are not allowed in this room"));
        return;
    }
    if let Gate::Refused = router.gate_message(from, &room.jid, Some(&room.jid), &el).await {
        return;
    }
    let mut copy = as_broadcast(&el, room, &nick);
    if copy.child("x", NS_MUC_USER).is_none() {
        copy = copy.with_child(Element::new("x", NS_MUC_USER));
    }
    if is_archivable(&el) {
        // On the record between the real parties; the stored stanza names occupants only.
        let mut stored = copy.clone();
        stored.set_attr("to", room.occupant_jid(to_nick));
        let mut rec = message_record(&stored, from.as_str(), target.as_str(), ArchiveVerdict::Delivered);
        rec.meta_json = Some(serde_json::json!({ "room": room.jid.as_str(), "room_nick": nick, "to_nick": to_nick }).to_string());
        if router.archive(rec).await.is_err() {
            router.bounce_unarchived(&el);
            return;
        }
    }
    copy.set_attr("to", target.as_str());
    let gone = send_all(router, vec![copy]).await;
    remove_gone(svc, router, room, gone).await;
}

/// Record a message the service sends on a user's behalf (invitation, decline); `Err` if
/// the archive failed (the caller bounces).
async fn archive_notice(router: &Router, el: &Element, from: &Jid, to: &Jid, room: &Room, kind: &str) -> Result<(), ()> {
    let mut rec = message_record(el, from.as_str(), to.as_str(), ArchiveVerdict::Delivered);
    rec.meta_json = Some(serde_json::json!({ "room": room.jid.as_str(), "muc": kind }).to_string());
    router.archive(rec).await.map(|_| ())
}

async fn invite(svc: &MucService, router: &Router, room: &mut Room, from: &Jid, el: Element) {
    let aff = room.affiliation(from.bare_str());
    if room.nick_of(from).is_none() && aff < Affiliation::Admin {
        router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::NotAcceptable, "enter the room before inviting others"));
        return;
    }
    if room.config.members_only && aff < Affiliation::Admin && !(room.config.allow_invites && aff >= Affiliation::Member) {
        router.bounce(&el, err(ErrorType::Auth, DefinedCondition::Forbidden, "only admins may invite others into this members-only room"));
        return;
    }
    let Some(x) = el.child("x", NS_MUC_USER) else { return };
    let mut invitees = Vec::new();
    for inv in x.elements().filter(|c| c.is("invite", NS_MUC_USER)).take(MAX_INVITES) {
        let Some(to) = inv.attr("to").and_then(|t| Jid::parse(t).ok()) else {
            router.bounce(&el, err(ErrorType::Modify, DefinedCondition::JidMalformed, "an invitation needs a valid 'to' address"));
            return;
        };
        if !svc.admits(router, &to) {
            router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::NotAllowed, "users of other domains may not be invited to rooms on this server"));
            return;
        }
        if room.affiliation(to.bare_str()) == Affiliation::Outcast {
            router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::NotAllowed, "that user is banned from this room"));
            return;
        }
        let reason = inv.child("reason", NS_MUC_USER).map(Element::text).filter(|r| !r.is_empty());
        invitees.push((to, reason));
    }
    if let Gate::Refused = router.gate_message(from, &room.jid, Some(&room.jid), &el).await {
        return;
    }
    let mut changed = false;
    for (to, reason) in invitees {
        if room.config.members_only && room.affiliation(to.bare_str()) < Affiliation::Member {
            if room.affiliations.len() >= super::room::MAX_AFFILIATIONS {
                router.bounce(&el, err(ErrorType::Wait, DefinedCondition::ResourceConstraint, "this room has as many members as it may keep"));
                break;
            }
            room.set_affiliation(to.bare_str(), Affiliation::Member, None);
            changed = true;
        }
        let mut i = Element::new("invite", NS_MUC_USER).with_attr("from", from.bare_str());
        if let Some(r) = &reason {
            i = i.with_child(Element::new("reason", NS_MUC_USER).with_text(r.clone()));
        }
        let mut x = Element::new("x", NS_MUC_USER).with_child(i);
        if let Some(p) = &room.config.password {
            x = x.with_child(Element::new("password", NS_MUC_USER).with_text(p.clone()));
        }
        let body = match &reason {
            Some(r) => format!("{} invites you to the room {}: {r}", from.bare_str(), room.jid.as_str()),
            None => format!("{} invites you to the room {}", from.bare_str(), room.jid.as_str()),
        };
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("from", room.jid.as_str())
            .with_attr("to", to.as_str())
            .with_attr("id", new_id())
            .with_child(x)
            .with_child(Element::new("body", ns::CLIENT).with_text(body));
        if archive_notice(router, &msg, from, &to, room, "invite").await.is_err() {
            router.bounce_unarchived(&el);
            return;
        }
        if !deliver_to_user(router, &to, msg).await {
            router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, &format!("no such user: {}", to.as_str())));
        }
    }
    if changed {
        let _ = svc.persist(room).await;
    }
}

async fn decline(svc: &MucService, router: &Router, room: &mut Room, from: &Jid, el: Element) {
    let _ = svc;
    let Some(d) = el.child("x", NS_MUC_USER).and_then(|x| x.child("decline", NS_MUC_USER)) else { return };
    let Some(to) = d.attr("to").and_then(|t| Jid::parse(t).ok()) else {
        router.bounce(&el, err(ErrorType::Modify, DefinedCondition::JidMalformed, "a decline needs a valid 'to' address"));
        return;
    };
    if !svc.admits(router, &to) {
        router.bounce(&el, err(ErrorType::Cancel, DefinedCondition::NotAllowed, "users of other domains are not served by this room"));
        return;
    }
    if let Gate::Refused = router.gate_message(from, &room.jid, Some(&room.jid), &el).await {
        return;
    }
    let mut dec = Element::new("decline", NS_MUC_USER).with_attr("from", from.bare_str());
    if let Some(r) = d.child("reason", NS_MUC_USER) {
        dec = dec.with_child(Element::new("reason", NS_MUC_USER).with_text(r.text()));
    }
    let msg = Element::new("message", ns::CLIENT)
        .with_attr("from", room.jid.as_str())
        .with_attr("to", to.as_str())
        .with_attr("id", new_id())
        .with_child(Element::new("x", NS_MUC_USER).with_child(dec));
    if archive_notice(router, &msg, from, &to, room, "decline").await.is_err() {
        router.bounce_unarchived(&el);
        return;
    }
    deliver_to_user(router, &to, msg).await;
}

/// The room-bot rule quarantined `sender`: quarantine the rest of the swarm, remove them
/// from the room, record the event and tell the room's owners and admins.
async fn bot_alert(svc: &MucService, router: &Router, room: &mut Room, f: &Finding, sender: &Jid) {
    let mut accounts: Vec<String> = f.evidence.accounts.iter().filter_map(|a| Jid::parse(a).ok()).map(|j| j.bare_str().to_owned()).collect();
    accounts.push(sender.bare_str().to_owned());
    accounts.sort();
    accounts.dedup();
    for a in accounts.iter().filter(|a| a.as_str() != sender.bare_str()) {
        let local = Jid::parse(a).is_ok_and(|j| router.is_local(&j));
        if local && router.quarantine.reason(a).is_none() {
            router.quarantine_account(a, f).await;
        }
    }
    let text = format!(
        "Threat defense quarantined {} account{} for posting the same machine-like message in {} within a short time (rule {}): {}. {}",
        accounts.len(),
        if accounts.len() == 1 { "" } else { "s" },
        room.jid.as_str(),
        f.rule,
        accounts.join(", "),
        f.reason
    );
    tracing::warn!(room = %room.jid, accounts = ?accounts, rule = %f.rule, "bots in a room quarantined");
    let ev = SecurityEvent {
        id: 0,
        at_ms: now_ms(),
        account: room.jid.as_str().to_owned(),
        rule: f.rule.clone(),
        // The event log knows block/quarantine/release: this is the swarm's quarantine,
        // filed under the room.
        action: "quarantine".into(),
        reason: text.clone(),
        evidence_json: serde_json::to_string(&f.evidence).unwrap_or_else(|_| "{}".into()),
    };
    if let Err(e) = router.services.security.record_event(&ev).await {
        tracing::error!(error = %e, "could not record a security event");
    }
    // What the swarm posted is not shown to newcomers (MAM on the room hides it too).
    room.history.withdraw_from(&accounts);
    let nicks: Vec<String> = room.occupants.values().filter(|o| accounts.iter().any(|a| a == o.jid.bare_str())).map(|o| o.nick.clone()).collect();
    super::presence::remove_occupants(svc, router, room, &nicks, &[307], None, Some("quarantined by threat defense")).await;
    let mut alert = Element::new("alert", NS_ALERT).with_attr("rule", f.rule.clone()).with_attr("room", room.jid.as_str());
    for a in &accounts {
        alert = alert.with_child(Element::new("account", NS_ALERT).with_text(a.clone()));
    }
    let mut staff = room.with_affiliation(Affiliation::Owner);
    staff.extend(room.with_affiliation(Affiliation::Admin));
    for s in staff {
        let Ok(to) = Jid::parse(&s) else { continue };
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("type", "normal")
            .with_attr("from", room.jid.as_str())
            .with_attr("to", to.as_str())
            .with_attr("id", new_id())
            .with_child(Element::new("subject", ns::CLIENT).with_text(format!("Security alert in {}", room.jid.as_str())))
            .with_child(Element::new("body", ns::CLIENT).with_text(text.clone()))
            .with_child(alert.clone());
        deliver_to_user(router, &to, msg).await;
    }
}
