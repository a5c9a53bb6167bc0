//! Occupant presence (XEP-0045 §7.2–7.6, §7.14): entering a room — creating it when it does
//! not exist and the policy allows — with every refusal XEP-0045 defines, presence updates,
//! nick changes and leaving. On entering, the newcomer gets the occupants' presence, its own
//! presence with status codes (110 self, 100 non-anonymous, 170 archived, 201 created), the
//! history it asked for and the subject.

use rampart_proto::delay::Delay;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, ns};

use super::history::HistoryRequest;
use super::room::{Affiliation, ItemExtras, Occupant, Role};
use super::{MucService, err, now_ms, refuse_join, remove_gone, send_all};
use crate::router::Router;

/// The presence payload kept for an occupant: everything but MUC extensions.
fn payload_of(el: &Element) -> Vec<Element> {
    el.elements()
        .filter(|c| !c.ns.starts_with(ns::MUC) && c.ns != super::NS_OCCUPANT_ID && c.name != "error")
        .take(16)
        .cloned()
        .collect()
}

pub async fn handle(svc: &MucService, router: &Router, from: Jid, to: Jid, el: Element) {
    let ty = el.attr("type").unwrap_or("");
    let Some(nick) = to.resource().map(str::to_owned) else {
        // Presence to the bare room JID means nothing (XEP-0045 §7.2.1 asks for a nick).
        if ty.is_empty() {
            router.bounce(&el, err(ErrorType::Modify, DefinedCondition::JidMalformed, "enter a room as room@service/nick"));
        }
        return;
    };
    match ty {
        "" => available(svc, router, from, to, nick, el).await,
        "unavailable" | "error" => leave(svc, router, &from, &to, el).await,
        _ => {}
    }
}

async fn available(svc: &MucService, router: &Router, from: Jid, to: Jid, nick: String, el: Element) {
    let room_bare = to.bare();
    let muc_x = el.child("x", ns::MUC);
    let mut created = false;
    let room_ref = match svc.get(room_bare.as_str()) {
        Some(r) => r,
        None => {
            if !svc.may_create(router, &from) {
                refuse_join(router, &el, err(ErrorType::Cancel, DefinedCondition::NotAllowed, "you may not create rooms on this service")).await;
                return;
            }
            if svc.room_count() >= svc.settings.max_rooms {
                refuse_join(router, &el, err(ErrorType::Wait, DefinedCondition::ResourceConstraint, "this service has as many rooms as it allows")).await;
                return;
            }
            if svc.owned_by(from.bare_str()).await >= svc.settings.max_rooms_per_user {
                refuse_join(router, &el, err(ErrorType::Wait, DefinedCondition::ResourceConstraint,
                    &format!("you own {} rooms already, the most this service allows", svc.settings.max_rooms_per_user))).await;
                return;
            }
            let (r, c) = svc.create(&room_bare, from.bare_str());
            created = c;
            r
        }
    };
    let mut room = room_ref.lock().await;
    if room.destroyed {
        refuse_join(router, &el, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "this room was just destroyed")).await;
        return;
    }
    if created {
        // A client that speaks MUC configures the room before others may enter (§10.1.1);
        // one that does not (groupchat 1.0) gets an instant room.
        room.locked = muc_x.is_some();
        tracing::info!(room = %room.jid, owner = %from.bare_str(), "room created");
    }

    // Already in the room under some nick: an update or a nick change.
    if let Some(current) = room.nick_of(&from).map(str::to_owned) {
        if current == nick {
            if let Some(o) = room.occupants.get_mut(&nick) {
                o.presence = payload_of(&el);
            }
            let out = room.presence_to_all(&nick, false, ItemExtras::default(), &[]);
            let gone = send_all(router, out).await;
            remove_gone(svc, router, &mut room, gone).await;
        } else {
            change_nick(svc, router, &mut room, &from, &current, &nick, &el).await;
        }
        return;
    }

    let aff = room.affiliation(from.bare_str());
    let refuse = |c: DefinedCondition, ty: ErrorType, text: &str| err(ty, c, text);
    let password = muc_x.and_then(|x| x.child("password", ns::MUC)).map(Element::text);
    let refusal = if aff == Affiliation::Outcast {
        Some(refuse(DefinedCondition::Forbidden, ErrorType::Auth, "you are banned from this room"))
    } else if room.locked && aff != Affiliation::Owner {
        Some(refuse(DefinedCondition::ItemNotFound, ErrorType::Cancel, "this room is being set up by its owner"))
    } else if room.config.members_only && aff < Affiliation::Member {
        Some(refuse(DefinedCondition::RegistrationRequired, ErrorType::Auth, "this room is for members only"))
    } else if room.config.password.as_ref().is_some_and(|p| password.as_deref() != Some(p.as_str())) && aff < Affiliation::Admin {
        Some(refuse(DefinedCondition::NotAuthorized, ErrorType::Auth, "a password is required to enter this room"))
    } else if room.occupants.len() >= room.max_users(svc.settings.max_occupants) && aff < Affiliation::Admin {
        Some(refuse(DefinedCondition::ServiceUnavailable, ErrorType::Wait, "this room is full"))
    } else if room.occupants.len() >= svc.settings.max_occupants {
        Some(refuse(DefinedCondition::ServiceUnavailable, ErrorType::Wait, "this room is full"))
    } else if room.occupants.contains_key(&nick) {
        Some(refuse(DefinedCondition::Conflict, ErrorType::Cancel, "that nickname is in use in this room"))
    } else {
        None
    };
    if let Some(e) = refusal {
        refuse_join(router, &el, e).await;
        if created {
            svc.forget(&mut room).await;
        }
        return;
    }

    let role = room.default_role(aff);
    let occupant_id = super::occupant_id(&router.config.server_secret, room.jid.as_str(), from.bare_str());
    room.occupants.insert(nick.clone(), Occupant { nick: nick.clone(), jid: from.clone(), role, presence: payload_of(&el), occupant_id });
    let Some(me) = room.occupants.get(&nick).cloned() else { return };
    let mut out = Vec::new();
    // 1. Everyone already there, to the newcomer.
    for o in room.occupants.values().filter(|o| o.nick != nick) {
        out.push(room.occupant_presence(o, &me, false, ItemExtras::default(), &[]));
    }
    // 2. The newcomer, to everyone (itself last, with its own status codes).
    let mut codes = vec![170];
    if room.config.whois_anyone {
        codes.push(100);
    }
    if created {
        codes.push(201);
    }
    let mut own = None;
    for p in room.presence_to_all(&nick, false, ItemExtras::default(), &codes) {
        if p.attr("to") == Some(from.as_str()) {
            own = Some(p);
        } else {
            out.push(p);
        }
    }
    out.extend(own);
    // 3. History, then the subject.
    if !room.history_loaded {
        super::reload_history(svc, router, &mut room).await;
    }
    let req = HistoryRequest::parse(muc_x.and_then(|x| x.child("history", ns::MUC)), now_ms());
    for (at, mut m) in room.history.select(&req) {
        m.set_attr("to", from.as_str());
        let delay: Element = Delay::new(Some(room.jid.clone()), at).into();
        m = m.with_child(delay);
        out.push(m);
    }
    out.push(room.subject_message(&from));
    let gone = send_all(router, out).await;
    remove_gone(svc, router, &mut room, gone).await;
    if created && !room.locked {
        tracing::debug!(room = %room.jid, "instant room");
    }
}

async fn change_nick(svc: &MucService, router: &Router, room: &mut super::room::Room, from: &Jid, old: &str, new: &str, el: &Element) {
    if room.occupants.contains_key(new) {
        router.bounce(el, err(ErrorType::Cancel, DefinedCondition::Conflict, "that nickname is in use in this room"));
        return;
    }
    // §7.6: unavailable with 303 and the new nick, then available under the new nick.
    let mut out = room.presence_to_all(old, true, ItemExtras { new_nick: Some(new), ..Default::default() }, &[303]);
    let Some(mut o) = room.occupants.remove(old) else { return };
    o.nick = new.to_owned();
    o.presence = payload_of(el);
    room.occupants.insert(new.to_owned(), o);
    out.extend(room.presence_to_all(new, false, ItemExtras::default(), &[]));
    tracing::debug!(room = %room.jid, old, new, who = %from, "nick changed");
    let gone = send_all(router, out).await;
    remove_gone(svc, router, room, gone).await;
}

async fn leave(svc: &MucService, router: &Router, from: &Jid, to: &Jid, el: Element) {
    let Some(room_ref) = svc.get(to.bare_str()) else { return };
    let mut room = room_ref.lock().await;
    if room.destroyed {
        return;
    }
    let Some(nick) = room.nick_of(from).map(str::to_owned) else { return };
    if let Some(o) = room.occupants.get_mut(&nick) {
        o.presence = payload_of(&el);
    }
    let out = room.presence_to_all(&nick, true, ItemExtras::default(), &[]);
    room.occupants.remove(&nick);
    let gone = send_all(router, out).await;
    remove_gone(svc, router, &mut room, gone).await;
    if room.occupants.is_empty() && !room.destroyed && (!room.config.persistent || room.locked) {
        // A temporary room ends with its last occupant; so does a new room its owner left
        // before configuring it.
        svc.forget(&mut room).await;
    }
}

/// Remove the occupants `nicks` with an unavailable presence carrying `codes` (kick 307,
/// ban 301, membership lost 321), telling everyone — the removed included — who acted and
/// why.
pub(crate) async fn remove_occupants(svc: &MucService, router: &Router, room: &mut super::room::Room, nicks: &[String], codes: &[u16], actor: Option<&str>, reason: Option<&str>) {
    let mut out = Vec::new();
    for nick in nicks {
        if let Some(o) = room.occupants.get_mut(nick) {
            o.role = Role::None;
        }
        out.extend(room.presence_to_all(nick, true, ItemExtras { actor, reason, ..Default::default() }, codes));
    }
    for nick in nicks {
        room.occupants.remove(nick);
    }
    let gone = send_all(router, out).await;
    remove_gone(svc, router, room, gone).await;
}
