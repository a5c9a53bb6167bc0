//! RFC 6121 §4: presence broadcast, probes, directed presence and unavailable-on-disconnect.
//! Subscription stanzas are handed to [`crate::modules::roster`].

use rampart_archive::{Direction, NewRecord, RecordKind, Verdict as ArchiveVerdict};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_store::Subscription;

use crate::modules::{offline, roster};
use crate::router::{Router, SessionCtx};

fn is_subscription(ty: &str) -> bool {
    matches!(ty, "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
}

/// The `<priority/>` of a presence (RFC 6121 §4.7.2.3): 0 when absent or invalid.
fn priority_of(el: &Element) -> i8 {
    el.child("priority", ns::CLIENT).and_then(|p| p.text().trim().parse::<i8>().ok()).unwrap_or(0)
}

/// A presence stanza from a user's session. `el.from` is already stamped with the full JID.
pub async fn outbound(router: &Router, ctx: &mut SessionCtx, to: Option<Jid>, el: Element) {
    let ty = el.attr("type").unwrap_or("").to_owned();
    // A quarantined account reaches no one: it may go online (and receive), but nothing it
    // addresses to others, subscriptions included, is delivered.
    if let Some(reason) = router.quarantine.reason(ctx.jid.bare_str())
        && to.as_ref().is_some_and(|t| t.bare_str() != ctx.jid.bare_str())
    {
        router.bounce(&el, StanzaError::new(ErrorType::Cancel, DefinedCondition::PolicyViolation)
            .with_text(format!("your account is quarantined: {reason}")));
        return;
    }
    match (to, ty.as_str()) {
        (Some(to), t) if is_subscription(t) => {
            archive_subscription(router, &el, &ctx.jid, &to).await;
            roster::outbound(router, ctx, to, el).await
        }
        (None, "" | "unavailable") => broadcast(router, ctx, el, ty.is_empty()).await,
        (None, _) => {} // probes/errors without a destination mean nothing
        (Some(to), t) => {
            // Directed presence (§4.6), or an error/probe to someone.
            if t.is_empty() || t == "unavailable" {
                let subscribed = match router.stores.roster.item(ctx.jid.bare_str(), to.bare_str()).await {
                    Ok(Some(i)) => matches!(i.subscription, Subscription::From | Subscription::Both),
                    _ => false,
                };
                if !subscribed {
                    if t.is_empty() {
                        ctx.directed.insert(to.clone());
                    } else {
                        ctx.directed.remove(&to);
                    }
                }
            }
            router.route(&to, el).await;
        }
    }
}

/// Broadcast a session's available or unavailable presence to its subscribers and to the
/// account's own resources; handle initial presence (probes, offline messages, pending
/// requests) and final presence (directed-presence recipients).
async fn broadcast(router: &Router, ctx: &mut SessionCtx, mut el: Element, available: bool) {
    let owner = ctx.jid.bare_str().to_owned();
    if available {
        // XEP-0398 §5: the avatar hash for XEP-0153 clients.
        crate::modules::pep::convert::decorate_presence(router, &owner, &mut el).await;
    }
    if !available {
        ctx.last_status = el.child("status", ns::CLIENT).map(Element::text);
    }
    let initial = available && !ctx.available;
    let priority = if available { Some(priority_of(&el)) } else { None };
    router.sessions.set_presence(ctx.id, &ctx.jid, priority, available.then(|| el.clone()));
    if !available && !ctx.available {
        return; // unavailable from a session that was never available
    }
    ctx.available = available;

    let roster = match router.stores.roster.roster(&owner).await {
        Ok((_, items)) => items,
        Err(e) => {
            tracing::error!(error = %e, "roster load failed");
            Vec::new()
        }
    };
    // To each subscriber's available resources (not to blocked contacts, and not at all
    // from a quarantined account: status texts carry links too).
    let quarantined = router.quarantine.reason(&owner).is_some();
    for item in roster.iter().filter(|i| matches!(i.subscription, Subscription::From | Subscription::Both)) {
        if quarantined {
            break;
        }
        if let Ok(contact) = Jid::parse(&item.jid) {
            if crate::modules::blocking::is_blocked(router, &owner, &contact).await {
                continue;
            }
            let mut p = el.clone();
            p.set_attr("to", contact.as_str());
            router.route(&contact, p).await;
        }
    }
    // To the account's own resources, the sender included (§4.2.2).
    for r in router.sessions.available(&owner).into_iter().chain(router.sessions.get(&ctx.jid).filter(|_| !available)) {
        let mut p = el.clone();
        p.set_attr("to", r.jid.as_str());
        r.send(p);
    }
    if initial {
        // Probes (§4.3): local contacts answer at once from the session registry.
        for item in roster.iter().filter(|i| matches!(i.subscription, Subscription::To | Subscription::Both)) {
            if let Ok(contact) = Jid::parse(&item.jid) {
                probe(router, &ctx.jid, &contact).await;
            }
        }
        // Presence of the account's other available resources.
        for r in router.sessions.available(&owner).into_iter().filter(|r| r.id != ctx.id) {
            if let Some(mut p) = r.presence.clone() {
                p.set_attr("to", ctx.jid.as_str());
                router.send_to_session(ctx, p);
            }
        }
        roster::deliver_pending(router, ctx).await;
        if priority.unwrap_or(-1) >= 0 {
            offline::flush(router, ctx).await;
        }
    }
    if available {
        // XEP-0163: learn the session's +notify interests; send it the last items.
        crate::modules::pep::on_available(router, ctx, &el).await;
    } else {
        crate::modules::pep::forget_session(router, &ctx.jid);
    }
    if !available {
        if router.sessions.available(&owner).is_empty() {
            crate::modules::last::record_logout(router, &owner, ctx.last_status.as_deref()).await;
        }
        for to in std::mem::take(&mut ctx.directed) {
            let mut p = el.clone();
            p.set_attr("to", to.as_str());
            router.route(&to, p).await;
        }
    }
}

/// Answer a presence probe from `from` (a full JID) about local `contact`.
async fn probe(router: &Router, from: &Jid, contact: &Jid) {
    if !router.is_local(contact) {
        // A remote contact: its server answers the probe (RFC 6121 §4.3.1).
        let p = Element::new("presence", ns::CLIENT)
            .with_attr("type", "probe")
            .with_attr("from", from.bare_str())
            .with_attr("to", contact.bare_str());
        Box::pin(router.route(&contact.bare(), p)).await;
        return;
    }
    if !router.is_local(from) {
        // A remote subscriber probed us: the contact's presence goes back over federation.
        for r in router.sessions.available(contact.bare_str()) {
            if let Some(mut p) = r.presence {
                p.set_attr("to", from.as_str());
                Box::pin(router.route(from, p)).await;
            }
        }
        return;
    }
    let Some(session) = router.sessions.get(from) else { return };
    for r in router.sessions.available(contact.bare_str()) {
        if let Some(mut p) = r.presence {
            p.set_attr("to", from.as_str());
            session.send(p);
        }
    }
}

/// A presence stanza arriving for a local account (from a local session or, later, a peer).
pub async fn inbound(router: &Router, to: &Jid, el: Element) {
    let ty = el.attr("type").unwrap_or("").to_owned();
    let Some(from) = el.attr("from").and_then(|f| Jid::parse(f).ok()) else { return };
    if is_subscription(&ty) {
        roster::inbound(router, &from, to, el).await;
        return;
    }
    if ty == "probe" {
        let subscribed = match router.stores.roster.item(to.bare_str(), from.bare_str()).await {
            Ok(Some(i)) => matches!(i.subscription, Subscription::From | Subscription::Both),
            _ => false,
        };
        if subscribed && (from.is_full() || !router.is_local(&from)) {
            probe(router, &from, &to.bare()).await;
        }
        return;
    }
    if to.is_full() {
        if let Some(r) = router.sessions.get(to) {
            r.send(el);
        }
        return;
    }
    for r in router.sessions.available(to.bare_str()) {
        r.send(el.clone());
    }
}

/// Send `user`'s current presence (each available resource) to `contact` (§3.1.5).
pub async fn send_current_presence(router: &Router, user: &Jid, contact: &Jid) {
    for r in router.sessions.available(user.bare_str()) {
        if let Some(mut p) = r.presence {
            p.set_attr("to", contact.as_str());
            router.route(contact, p).await;
        }
    }
}

/// Tell `contact` that every resource of `user` is unavailable (after a subscription ends).
pub async fn send_unavailable_from_all(router: &Router, user: &Jid, contact: &Jid) {
    for r in router.sessions.available(user.bare_str()) {
        let p = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", r.jid.as_str())
            .with_attr("to", contact.as_str());
        router.route(contact, p).await;
    }
}

/// Journal a subscription change (RFC 6121 §3) the user made.
async fn archive_subscription(router: &Router, el: &Element, from: &Jid, to: &Jid) {
    let meta = serde_json::json!({ "type": el.attr("type") });
    let rec = NewRecord {
        at_ms: crate::pipeline::now_ms(),
        kind: RecordKind::Subscription,
        direction: Direction::Local,
        from: from.bare_str().to_owned(),
        to: to.bare_str().to_owned(),
        remote_domain: None,
        stanza_id: el.attr("id").map(str::to_owned),
        body: None,
        stanza_xml: Some(el.to_xml_string()),
        verdict: ArchiveVerdict::Delivered,
        meta_json: Some(meta.to_string()),
    };
    let _ = router.archive(rec).await;
}
