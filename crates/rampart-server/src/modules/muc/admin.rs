//! Room administration IQs: the owner's `muc#owner` namespace (configuration form, instant
//! rooms, cancel, destruction with reason and alternate venue — XEP-0045 §10) and the
//! `muc#admin` namespace (lists and changes of roles and affiliations: kick, voice,
//! moderator, member, admin, owner, ban — XEP-0045 §§8–10). Changes take effect at once for
//! occupants present (presence with status 307 kick, 301 ban, 321 membership lost) and
//! persistent rooms are written to the store.

use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};

use super::form::{apply_config, config_form};
use super::room::{Affiliation, ItemExtras, MAX_AFFILIATIONS, Role, Room};
use super::{MucService, NS_MUC_ADMIN, NS_MUC_OWNER, NS_MUC_USER, err, remove_gone, send_all};
use crate::router::Router;

/// Most items in one `muc#admin` set.
const MAX_ITEMS: usize = 100;

fn forbidden(text: &str) -> StanzaError {
    err(ErrorType::Auth, DefinedCondition::Forbidden, text)
}

fn not_allowed(text: &str) -> StanzaError {
    err(ErrorType::Cancel, DefinedCondition::NotAllowed, text)
}

/// A `muc#owner` query: `Ok(Some(payload))` for a result with payload.
pub async fn owner(svc: &MucService, router: &Router, room: &mut Room, from: &Jid, iq: &Element, q: &Element) -> Result<Option<Element>, StanzaError> {
    if room.affiliation(from.bare_str()) != Affiliation::Owner {
        return Err(forbidden("only the room's owners may do this"));
    }
    let ty = iq.attr("type").unwrap_or("");
    if ty == "get" {
        return Ok(Some(Element::new("query", NS_MUC_OWNER).with_child(config_form(room, svc.settings.max_occupants))));
    }
    if let Some(d) = q.child("destroy", NS_MUC_OWNER) {
        destroy(svc, router, room, d).await;
        return Ok(None);
    }
    let Some(form) = q.child("x", ns::DATA_FORMS) else {
        return Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "expected a data form or <destroy/>"));
    };
    match form.attr("type") {
        Some("cancel") => {
            if room.locked {
                // Cancelling the initial configuration destroys the new room (§10.1.3).
                let el = Element::new("destroy", NS_MUC_OWNER);
                destroy(svc, router, room, &el).await;
            }
            Ok(None)
        }
        Some("submit") => {
            let new = apply_config(&room.config, form, svc.settings.max_occupants)?;
            let was_locked = room.locked;
            let whois_changed = new.whois_anyone != room.config.whois_anyone;
            let was_persistent = room.config.persistent;
            room.config = new;
            room.locked = false;
            if room.config.persistent || was_persistent {
                svc.persist(room).await?;
            }
            if !was_locked {
                let mut codes = vec![104];
                if whois_changed {
                    codes.push(if room.config.whois_anyone { 172 } else { 173 });
                }
                let out = room.status_message_to_all(&codes);
                let gone = send_all(router, out).await;
                remove_gone(svc, router, room, gone).await;
            }
            // Members-only now: those without membership leave (status 322).
            if room.config.members_only {
                let out: Vec<String> = room
                    .occupants
                    .values()
                    .filter(|o| room.affiliation(o.jid.bare_str()) < Affiliation::Member)
                    .map(|o| o.nick.clone())
                    .collect();
                if !out.is_empty() {
                    super::presence::remove_occupants(svc, router, room, &out, &[322], None, Some("the room is now members-only")).await;
                }
            }
            tracing::info!(room = %room.jid, "room configured");
            Ok(None)
        }
        _ => Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "expected a form of type submit or cancel")),
    }
}

/// Destroy the room: every occupant gets unavailable presence with `<destroy/>` (§10.9).
pub async fn destroy(svc: &MucService, router: &Router, room: &mut Room, d: &Element) {
    let mut info = Element::new("destroy", NS_MUC_USER);
    if let Some(alt) = d.attr("jid").and_then(|j| Jid::parse(j).ok()) {
        info.set_attr("jid", alt.as_str());
    }
    if let Some(r) = d.child("reason", NS_MUC_OWNER) {
        info = info.with_child(Element::new("reason", NS_MUC_USER).with_text(r.text()));
    }
    if let Some(p) = d.child("password", NS_MUC_OWNER) {
        info = info.with_child(Element::new("password", NS_MUC_USER).with_text(p.text()));
    }
    let mut out = Vec::new();
    let nicks: Vec<String> = room.occupants.keys().cloned().collect();
    for nick in &nicks {
        let Some(o) = room.occupants.get(nick) else { continue };
        for v in room.occupants.values() {
            let mut p = room.occupant_presence(o, v, true, ItemExtras { extra: Some(&info), ..Default::default() }, &[]);
            // Destruction: affiliation none too.
            if let Some(x) = p.child_mut("x", NS_MUC_USER)
                && let Some(item) = x.child_mut("item", NS_MUC_USER)
            {
                item.set_attr("affiliation", "none");
            }
            out.push(p);
        }
    }
    room.occupants.clear();
    send_all(router, out).await;
    svc.forget(room).await;
    tracing::info!(room = %room.jid, "room destroyed");
}

/// A `muc#admin` query.
pub async fn admin(svc: &MucService, router: &Router, room: &mut Room, from: &Jid, iq: &Element, q: &Element) -> Result<Option<Element>, StanzaError> {
    let actor_aff = room.affiliation(from.bare_str());
    let actor_nick = room.nick_of(from).map(str::to_owned);
    let actor_role = actor_nick.as_ref().and_then(|n| room.occupants.get(n)).map_or(Role::None, |o| o.role);
    let items: Vec<&Element> = q.elements().filter(|i| i.is("item", NS_MUC_ADMIN)).take(MAX_ITEMS + 1).collect();
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "expected 1 to 100 <item/>s"));
    }
    if iq.attr("type") == Some("get") {
        return list(room, actor_aff, actor_role, items[0]);
    }
    // Validate every item first, then apply them all.
    enum Change {
        Role(String, Role),
        Aff(String, Affiliation),
    }
    let mut changes = Vec::new();
    let mut reasons = Vec::new();
    for it in &items {
        let reason = it.child("reason", NS_MUC_ADMIN).map(Element::text).filter(|r| !r.is_empty());
        if let Some(r) = it.attr("role") {
            let role = Role::parse(r).ok_or_else(|| err(ErrorType::Modify, DefinedCondition::BadRequest, "unknown role"))?;
            let nick = it.attr("nick").ok_or_else(|| err(ErrorType::Modify, DefinedCondition::BadRequest, "a role change needs a nick"))?;
            let target = room.occupants.get(nick).ok_or_else(|| err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such occupant"))?;
            let target_aff = room.affiliation(target.jid.bare_str());
            if actor_role != Role::Moderator {
                return Err(forbidden("only moderators may change roles"));
            }
            if role == Role::Moderator && actor_aff < Affiliation::Admin {
                return Err(forbidden("only admins and owners may grant moderation"));
            }
            if target_aff >= Affiliation::Admin && role < Role::Moderator && actor_aff <= target_aff && actor_aff != Affiliation::Owner {
                return Err(not_allowed("you may not change the role of an admin or owner"));
            }
            changes.push(Change::Role(nick.to_owned(), role));
        } else if let Some(a) = it.attr("affiliation") {
            let aff = Affiliation::parse(a).ok_or_else(|| err(ErrorType::Modify, DefinedCondition::BadRequest, "unknown affiliation"))?;
            let bare = match (it.attr("jid"), it.attr("nick")) {
                (Some(j), _) => Jid::parse(j).map_err(|_| err(ErrorType::Modify, DefinedCondition::JidMalformed, "bad jid"))?.bare_str().to_owned(),
                (None, Some(n)) => room.occupants.get(n).ok_or_else(|| err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such occupant"))?.jid.bare_str().to_owned(),
                (None, None) => return Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "an affiliation change needs a jid")),
            };
            let current = room.affiliation(&bare);
            if actor_aff < Affiliation::Admin {
                return Err(forbidden("only admins and owners may change affiliations"));
            }
            if (aff >= Affiliation::Admin || current >= Affiliation::Admin) && actor_aff != Affiliation::Owner {
                return Err(forbidden("only owners may grant or revoke admin and owner"));
            }
            if aff != Affiliation::None && current == Affiliation::None && room.affiliations.len() >= MAX_AFFILIATIONS {
                return Err(err(ErrorType::Wait, DefinedCondition::ResourceConstraint, "this room has as many affiliations as it may keep"));
            }
            changes.push(Change::Aff(bare, aff));
        } else {
            return Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "an item needs a role or an affiliation"));
        }
        reasons.push(reason);
    }
    // The room keeps at least one owner.
    let mut owners: Vec<String> = room.with_affiliation(Affiliation::Owner);
    for c in &changes {
        if let Change::Aff(j, a) = c {
            owners.retain(|o| o != j);
            if *a == Affiliation::Owner {
                owners.push(j.clone());
            }
        }
    }
    if owners.is_empty() {
        return Err(err(ErrorType::Cancel, DefinedCondition::Conflict, "a room needs at least one owner"));
    }
    let actor = actor_nick.as_deref();
    let mut aff_changed = false;
    for (c, reason) in changes.into_iter().zip(reasons) {
        let reason = reason.as_deref();
        match c {
            Change::Role(nick, Role::None) => {
                super::presence::remove_occupants(svc, router, room, &[nick], &[307], actor, reason).await;
            }
            Change::Role(nick, role) => {
                if let Some(o) = room.occupants.get_mut(&nick) {
                    o.role = role;
                }
                let out = room.presence_to_all(&nick, false, ItemExtras { actor, reason, ..Default::default() }, &[]);
                let gone = send_all(router, out).await;
                remove_gone(svc, router, room, gone).await;
            }
            Change::Aff(bare, aff) => {
                room.set_affiliation(&bare, aff, reason.map(str::to_owned));
                aff_changed = true;
                let nicks = room.nicks_of_bare(&bare);
                if aff == Affiliation::Outcast {
                    super::presence::remove_occupants(svc, router, room, &nicks, &[301], actor, reason).await;
                } else if room.config.members_only && aff < Affiliation::Member {
                    super::presence::remove_occupants(svc, router, room, &nicks, &[321], actor, reason).await;
                } else {
                    for nick in nicks {
                        let role = room.default_role(aff);
                        if let Some(o) = room.occupants.get_mut(&nick) {
                            o.role = role;
                        }
                        let out = room.presence_to_all(&nick, false, ItemExtras { actor, reason, ..Default::default() }, &[]);
                        let gone = send_all(router, out).await;
                        remove_gone(svc, router, room, gone).await;
                    }
                }
            }
        }
    }
    if aff_changed && room.config.persistent {
        svc.persist(room).await?;
    }
    Ok(None)
}

/// A list of occupants by role or of JIDs by affiliation (§§8.5, 9.5, 10.5).
fn list(room: &Room, actor_aff: Affiliation, actor_role: Role, item: &Element) -> Result<Option<Element>, StanzaError> {
    let mut q = Element::new("query", NS_MUC_ADMIN);
    if let Some(r) = item.attr("role") {
        let role = Role::parse(r).ok_or_else(|| err(ErrorType::Modify, DefinedCondition::BadRequest, "unknown role"))?;
        if actor_role != Role::Moderator {
            return Err(forbidden("only moderators may list roles"));
        }
        for o in room.occupants.values().filter(|o| o.role == role) {
            q = q.with_child(
                Element::new("item", NS_MUC_ADMIN)
                    .with_attr("nick", o.nick.clone())
                    .with_attr("role", role.as_str())
                    .with_attr("affiliation", room.affiliation(o.jid.bare_str()).as_str())
                    .with_attr("jid", o.jid.as_str()),
            );
        }
        return Ok(Some(q));
    }
    let Some(aff) = item.attr("affiliation").and_then(Affiliation::parse) else {
        return Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "list by role or affiliation"));
    };
    if aff == Affiliation::None {
        return Err(err(ErrorType::Modify, DefinedCondition::BadRequest, "there is no list of affiliation none"));
    }
    if actor_aff < Affiliation::Admin && !(aff == Affiliation::Member && actor_aff == Affiliation::Member && room.config.members_only) {
        return Err(forbidden("only admins and owners may list affiliations"));
    }
    for j in room.with_affiliation(aff) {
        let mut it = Element::new("item", NS_MUC_ADMIN).with_attr("affiliation", aff.as_str()).with_attr("jid", j.clone());
        if let Some((_, Some(r))) = room.affiliations.get(&j) {
            it = it.with_child(Element::new("reason", NS_MUC_ADMIN).with_text(r.clone()));
        }
        q = q.with_child(it);
    }
    Ok(Some(q))
}
