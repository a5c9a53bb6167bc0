//! IQs to the chat service and its rooms: XEP-0030 disco#info/#items (the service lists its
//! public rooms; a room describes its configuration with `muc_*` features and the
//! `muc#roominfo` form), XEP-0199 ping and XEP-0410 self-ping to an occupant JID, XEP-0313
//! MAM queries to a room (served from the compliance archive, messages as occupants saw
//! them, retracted ones as tombstones, moderators' retraction announcements included),
//! XEP-0425 moderation requests to [`super::moderation`], dispatch of `muc#owner` and `muc#admin` to [`super::admin`], and other IQs to an
//! occupant JID relayed to the occupant's client under the asker's occupant JID (real JIDs
//! stay hidden both ways).

use rampart_proto::disco::{DiscoInfo, DiscoItem, DiscoItems, Identity};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};

use super::room::Affiliation;
use super::{MucService, NS_MUC_ADMIN, NS_MUC_OWNER, err, reply, send_all};
use crate::modules::mam;
use crate::router::Router;

const NS_RSM: &str = "http://jabber.org/protocol/rsm";

/// The single payload of a get/set IQ, or the error to answer with.
fn payload(iq: &Element) -> Result<Option<&Element>, ()> {
    match iq.attr("type") {
        Some("get" | "set") => {}
        _ => return Err(()),
    }
    let mut c = iq.elements();
    match (c.next(), c.next()) {
        (Some(p), None) => Ok(Some(p)),
        _ => Ok(None),
    }
}

async fn answer(router: &Router, iq: &Element, res: Result<Option<Element>, StanzaError>) {
    match res {
        Ok(p) => reply(router, iq, p).await,
        Err(e) => router.bounce(iq, e),
    }
}

fn bad_request() -> StanzaError {
    StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)
}

/// An IQ to the service domain itself.
pub async fn service_iq(svc: &MucService, router: &Router, _from: &Jid, iq: &Element) {
    let Ok(p) = payload(iq) else { return };
    let Some(p) = p else { return router.bounce(iq, bad_request()) };
    let get = iq.attr("type") == Some("get");
    let res = if p.is("query", ns::DISCO_INFO) && get && p.attr("node").is_none() {
        let info = DiscoInfo {
            node: None,
            identities: vec![Identity::new("conference", "text").with_name("Chatrooms")],
            features: [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::MUC, NS_UNIQUE, ns::PING].iter().map(|s| (*s).to_owned()).collect(),
            extensions: vec![],
        };
        Ok(Some(info.into()))
    } else if p.is("query", ns::DISCO_ITEMS) && get && p.attr("node").is_none() {
        let mut items = Vec::new();
        for r in svc.all() {
            let r = r.lock().await;
            if r.config.public && !r.locked && !r.destroyed {
                let name = if r.config.name.is_empty() { r.jid.node().unwrap_or_default().to_owned() } else { r.config.name.clone() };
                items.push(DiscoItem { jid: r.jid.clone(), node: None, name: Some(name) });
            }
        }
        items.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
        Ok(Some(DiscoItems { node: None, items }.into()))
    } else if p.is("ping", ns::PING) && get {
        Ok(None)
    } else if p.is("unique", NS_UNIQUE) && get {
        // XEP-0045 §10.1.4: a room name nobody uses.
        let name = loop {
            let n = format!("{:016x}", rand::random::<u64>());
            if svc.get(&format!("{n}@{}", svc.settings.domain)).is_none() {
                break n;
            }
        };
        Ok(Some(Element::new("unique", NS_UNIQUE).with_text(name)))
    } else {
        Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable))
    };
    answer(router, iq, res).await;
}

/// XEP-0045 §10.1.4 unique room names.
const NS_UNIQUE: &str = "http://jabber.org/protocol/muc#unique";

/// An IQ to a room or an occupant JID.
pub async fn room_iq(svc: &MucService, router: &Router, from: Jid, to: Jid, iq: Element) {
    if matches!(iq.attr("type"), Some("result" | "error")) && to.resource().is_some() {
        return relay_response(svc, router, &from, &to, iq).await;
    }
    let Ok(p) = payload(&iq) else { return };
    let Some(p) = p else { return router.bounce(&iq, bad_request()) };
    let Some(room_ref) = svc.get(to.bare_str()) else {
        return router.bounce(&iq, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such room"));
    };
    let mut room = room_ref.lock().await;
    if room.destroyed {
        return router.bounce(&iq, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such room"));
    }
    let get = iq.attr("type") == Some("get");
    if let Some(nick) = to.resource() {
        // XEP-0410: a ping to one's own occupant JID says whether one is still in the room.
        let res = if p.is("ping", ns::PING) && get {
            match room.occupants.get(nick) {
                Some(o) if o.jid == from => Ok(None),
                Some(_) if room.nick_of(&from).is_some() => Ok(None),
                _ => Err(err(ErrorType::Cancel, DefinedCondition::NotAcceptable, "you are not in this room under that nick")),
            }
        } else {
            // Other IQs go on to the occupant's client (vCards, versions, ...) under the
            // sender's occupant JID; the answer comes back through `relay_response`.
            let Some(sender_nick) = room.nick_of(&from).map(str::to_owned) else {
                return router.bounce(&iq, err(ErrorType::Cancel, DefinedCondition::NotAcceptable, "you are not in this room"));
            };
            let Some(target) = room.occupants.get(nick).map(|o| o.jid.clone()) else {
                return router.bounce(&iq, err(ErrorType::Cancel, DefinedCondition::ItemNotFound, "no such occupant"));
            };
            let Some(id) = svc.iq_relay.start(&from, iq.attr("id").unwrap_or(""), &target, nick) else {
                return router.bounce(&iq, err(ErrorType::Wait, DefinedCondition::ResourceConstraint, "too many requests in flight"));
            };
            let mut fwd = iq.clone();
            fwd.set_attr("from", room.occupant_jid(&sender_nick));
            fwd.set_attr("to", target.as_str());
            fwd.set_attr("id", id);
            send_all(router, vec![fwd]).await;
            return;
        };
        return answer(router, &iq, res).await;
    }
    let res = if p.is("query", ns::DISCO_INFO) && get && p.attr("node").is_none() {
        let name = if room.config.name.is_empty() { room.jid.node().unwrap_or_default().to_owned() } else { room.config.name.clone() };
        let info = DiscoInfo {
            node: None,
            identities: vec![Identity::new("conference", "text").with_name(name)],
            features: room.features(router.services.archive.is_some()),
            extensions: vec![super::form::room_info(&room)],
        };
        Ok(Some(info.into()))
    } else if p.is("query", ns::DISCO_ITEMS) && get && p.attr("node").is_none() {
        // Occupants are not listed: that would defeat semi-anonymity and members-only.
        Ok(Some(DiscoItems { node: None, items: vec![] }.into()))
    } else if p.is("ping", ns::PING) && get {
        Ok(None)
    } else if p.is("query", NS_MUC_OWNER) {
        super::admin::owner(svc, router, &mut room, &from, &iq, p).await
    } else if p.is("query", NS_MUC_ADMIN) {
        super::admin::admin(svc, router, &mut room, &from, &iq, p).await
    } else if p.is("query", mam::NS_MAM) {
        room_mam(svc, router, &room, &from, &iq, p).await
    } else if super::moderation::is_request(p) {
        super::moderation::moderate(svc, router, &mut room, &from, &iq, p).await
    } else {
        Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented))
    };
    answer(router, &iq, res).await;
}

/// An occupant's client answers an IQ relayed to it: back to the original asker, from the
/// answering occupant's JID, with the asker's id. Answers nobody asked for are dropped.
async fn relay_response(svc: &MucService, router: &Router, from: &Jid, to: &Jid, iq: Element) {
    let Some((asker, id, target, nick)) = iq.attr("id").and_then(|i| svc.iq_relay.finish(i)) else { return };
    if &target != from {
        return;
    }
    let mut back = iq;
    back.set_attr("from", format!("{}/{}", to.bare_str(), nick));
    back.set_attr("to", asker.as_str());
    back.set_attr("id", id);
    send_all(router, vec![back]).await;
}

/// XEP-0313 §5 on a room: the room's messages from the compliance archive, as occupants saw
/// them. Outcasts may not read; in members-only rooms only members (and occupants) may.
async fn room_mam(svc: &MucService, router: &Router, room: &super::room::Room, from: &Jid, iq: &Element, q: &Element) -> Result<Option<Element>, StanzaError> {
    let aff = room.affiliation(from.bare_str());
    if aff == Affiliation::Outcast || (room.config.members_only && aff < Affiliation::Member && room.nick_of(from).is_none()) {
        return Err(err(ErrorType::Auth, DefinedCondition::Forbidden, "you may not read this room's history"));
    }
    if iq.attr("type") == Some("get") {
        return Ok(Some(mam::form_fields()));
    }
    let Some(archive) = &router.services.archive else {
        return Err(err(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, "the message archive is switched off on this server"));
    };
    let mut query = mam::parse_query(q)?;
    // `with` names an occupant JID here; the archive knows real JIDs, so it is not offered.
    query.with = None;
    query.exclude_peers = router.quarantine.accounts();
    // Moderators' retraction announcements replay, so clients catching up apply them.
    query.with_moderation = true;
    let page = match archive.mam_query(room.jid.as_str(), &query).await {
        Ok(p) => p,
        Err(rampart_archive::ArchiveError::ItemNotFound(id)) => {
            return Err(err(ErrorType::Cancel, DefinedCondition::ItemNotFound, &format!("no archived message with id {id}")));
        }
        Err(e) => {
            tracing::error!(error = %e, "room MAM query failed");
            return Err(StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError));
        }
    };
    let queryid = q.attr("queryid");
    // Retracted messages are shown as tombstones (XEP-0424 §5, XEP-0425 §4).
    let mut forwarded: Vec<(String, Element)> = page
        .records
        .iter()
        // Only messages to the room itself (private messages are between their parties).
        .filter(|rec| rec.record.to == room.jid.as_str())
        .filter_map(|rec| mam::forwarded(rec).map(|f| (rec.seq.to_string(), f)))
        .collect();
    let ids: Vec<String> = forwarded.iter().map(|(id, _)| id.clone()).collect();
    let retracted = super::moderation::retractions(svc, room.jid.as_str(), &ids).await;
    for (id, f) in &mut forwarded {
        if let (Some(r), Some(m)) = (retracted.get(id.as_str()), f.child_mut("message", ns::CLIENT)) {
            *m = super::moderation::tombstone(m, r);
        }
    }
    let mut out = Vec::new();
    for (seq, fwd) in forwarded {
        let mut result = Element::new("result", mam::NS_MAM).with_attr("id", seq.clone());
        if let Some(qid) = queryid {
            result.set_attr("queryid", qid);
        }
        out.push(
            Element::new("message", ns::CLIENT)
                .with_attr("to", from.as_str())
                .with_attr("from", room.jid.as_str())
                .with_attr("id", format!("mam-{seq}"))
                .with_child(result.with_child(fwd)),
        );
    }
    send_all(router, out).await;
    let mut set = Element::new("set", NS_RSM);
    if let (Some(first), Some(last)) = (&page.first, &page.last) {
        let mut f = Element::new("first", NS_RSM).with_text(first.clone());
        if let Some(i) = page.first_index {
            f.set_attr("index", i.to_string());
        }
        set = set.with_child(f).with_child(Element::new("last", NS_RSM).with_text(last.clone()));
    }
    set = set.with_child(Element::new("count", NS_RSM).with_text(page.count.to_string()));
    let mut fin = Element::new("fin", mam::NS_MAM).with_child(set);
    if page.complete {
        fin.set_attr("complete", "true");
    }
    Ok(Some(fin))
}
