//! RFC 6121 §2–3: roster management (with versioning) and the presence-subscription state
//! machine, for both the user's side (outbound subscription stanzas) and the contact's side
//! (inbound ones), including pre-approval (§3.4) and stored pending requests.

use async_trait::async_trait;
use rampart_proto::roster::{RosterItem as ProtoItem, RosterQuery};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_store::{RosterItem, Subscription};

use crate::router::{IqHandler, Router, SessionCtx};

pub struct RosterHandler;

const MAX_NAME_BYTES: usize = 1024;
const MAX_GROUPS: usize = 64;
const MAX_ROSTER_ITEMS: usize = 5000;

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "roster store failed");
    StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
}

fn to_proto(item: &RosterItem) -> Option<ProtoItem> {
    Some(ProtoItem {
        jid: Jid::parse(&item.jid).ok()?,
        name: item.name.clone(),
        subscription: Some(item.subscription.as_str().to_owned()),
        ask: item.ask,
        approved: item.approved,
        groups: item.groups.clone(),
    })
}

#[async_trait]
impl IqHandler for RosterHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::ROSTER]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        // RFC 6121 §2.3.3: an empty group name is `not-acceptable` (other malformations,
        // duplicate groups among them, are `bad-request`).
        let empty_group = payload
            .elements()
            .flat_map(|i| i.elements())
            .any(|g| g.is("group", ns::ROSTER) && g.text().is_empty());
        if empty_group {
            return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable)
                .with_text("empty group name"));
        }
        let query = RosterQuery::try_from(payload)
            .map_err(|e| StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(e.to_string()))?;
        let owner = ctx.jid.bare_str().to_owned();
        match iq.attr("type") {
            Some("get") => {
                if !query.items.is_empty() {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest));
                }
                router.sessions.set_interested(ctx.id, &ctx.jid);
                let (ver, items) = router.stores.roster.roster(&owner).await.map_err(internal)?;
                let ver = ver.to_string();
                if query.ver.as_deref() == Some(ver.as_str()) {
                    // RFC 6121 §2.6.3: the client's copy is current; changes come as pushes.
                    return Ok(None);
                }
                let items = items.iter().filter_map(to_proto).collect();
                Ok(Some(RosterQuery { ver: Some(ver), items }.into()))
            }
            Some("set") => {
                let [item] = query.items.as_slice() else {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)
                        .with_text("a roster set carries exactly one item"));
                };
                let contact = item.jid.bare();
                if contact.as_str() == owner {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::NotAllowed)
                        .with_text("you cannot add yourself to your roster"));
                }
                if item.subscription.as_deref() == Some("remove") {
                    remove_item(router, ctx, &contact).await?;
                    return Ok(None);
                }
                if item.name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) || item.groups.len() > MAX_GROUPS {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable));
                }
                let _lock = router.subscription_lock.lock().await;
                let existing = router.stores.roster.item(&owner, contact.as_str()).await.map_err(internal)?;
                if existing.is_none() {
                    let (_, all) = router.stores.roster.roster(&owner).await.map_err(internal)?;
                    if all.len() >= MAX_ROSTER_ITEMS {
                        return Err(StanzaError::new(ErrorType::Wait, DefinedCondition::ResourceConstraint)
                            .with_text("roster is full"));
                    }
                }
                // The client may change name and groups only; subscription state is the server's.
                let mut new = existing.unwrap_or_else(|| blank_item(&contact));
                new.name = item.name.clone();
                new.groups = item.groups.clone();
                save_and_push(router, &owner, &new).await.map_err(internal)?;
                Ok(None)
            }
            _ => Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)),
        }
    }
}

/// The subscription after the contact gains a subscription to the user's presence.
fn add_from(s: Subscription) -> Subscription {
    match s {
        Subscription::None | Subscription::From => Subscription::From,
        Subscription::To | Subscription::Both => Subscription::Both,
    }
}

/// ...after the user gains a subscription to the contact's presence.
fn add_to(s: Subscription) -> Subscription {
    match s {
        Subscription::None | Subscription::To => Subscription::To,
        Subscription::From | Subscription::Both => Subscription::Both,
    }
}

/// ...after the contact's subscription to the user ends.
fn drop_from(s: Subscription) -> Subscription {
    match s {
        Subscription::Both | Subscription::To => Subscription::To,
        Subscription::None | Subscription::From => Subscription::None,
    }
}

/// ...after the user's subscription to the contact ends.
fn drop_to(s: Subscription) -> Subscription {
    match s {
        Subscription::Both | Subscription::From => Subscription::From,
        Subscription::None | Subscription::To => Subscription::None,
    }
}

fn blank_item(contact: &Jid) -> RosterItem {
    RosterItem {
        jid: contact.as_str().to_owned(),
        name: None,
        subscription: Subscription::None,
        ask: false,
        approved: false,
        groups: Vec::new(),
    }
}

/// Persist an item and push it to the owner's interested resources.
async fn save_and_push(router: &Router, owner: &str, item: &RosterItem) -> rampart_store::Result<()> {
    let ver = router.stores.roster.put_item(owner, item).await?;
    if let Some(p) = to_proto(item) {
        push(router, owner, ver, p);
    }
    Ok(())
}

/// RFC 6121 §2.1.6: a roster push to every interested resource.
fn push(router: &Router, owner: &str, ver: u64, item: ProtoItem) {
    let query: Element = RosterQuery { ver: Some(ver.to_string()), items: vec![item] }.into();
    for r in router.sessions.resources(owner).into_iter().filter(|r| r.interested) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", format!("push-{:x}", rand::random::<u64>()))
            .with_attr("to", r.jid.as_str())
            .with_child(query.clone());
        r.send(iq);
    }
}

/// RFC 6121 §2.5: removing an item cancels the subscriptions both ways first.
async fn remove_item(router: &Router, ctx: &SessionCtx, contact: &Jid) -> Result<(), StanzaError> {
    let owner = ctx.jid.bare_str();
    let (existing, _lock) = {
        let lock = router.subscription_lock.lock().await;
        (router.stores.roster.item(owner, contact.as_str()).await.map_err(internal)?, lock)
    };
    let Some(item) = existing else {
        return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    };
    let ver = router.stores.roster.remove_item(owner, contact.as_str()).await.map_err(internal)?;
    router.stores.roster.remove_pending_in(owner, contact.as_str()).await.map_err(internal)?;
    if let Some(ver) = ver {
        let removed = ProtoItem {
            jid: contact.clone(),
            name: None,
            subscription: Some("remove".into()),
            ask: false,
            approved: false,
            groups: vec![],
        };
        push(router, owner, ver, removed);
    }
    drop(_lock);
    let from = Jid::parse(owner).map_err(internal)?;
    if matches!(item.subscription, Subscription::To | Subscription::Both) || item.ask {
        send_subscription(router, &from, contact, "unsubscribe").await;
    }
    if matches!(item.subscription, Subscription::From | Subscription::Both) {
        send_subscription(router, &from, contact, "unsubscribed").await;
        // §3.2.2 (as for an outbound `unsubscribed`): the contact stops seeing us.
        crate::modules::presence::send_unavailable_from_all(router, &from, contact).await;
    }
    Ok(())
}

async fn send_subscription(router: &Router, from: &Jid, to: &Jid, ty: &str) {
    let p = Element::new("presence", ns::CLIENT)
        .with_attr("type", ty)
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str());
    inbound(router, from, to, p).await;
}

/// Outbound subscription stanza (`subscribe`, `subscribed`, `unsubscribe`, `unsubscribed`)
/// from a user's session (RFC 6121 §3, the user's server). `el.from` is already stamped.
pub async fn outbound(router: &Router, ctx: &SessionCtx, to: Jid, mut el: Element) {
    let owner = ctx.jid.bare_str().to_owned();
    let contact = to.bare();
    // Subscription stanzas are stamped with the bare JID (RFC 6121 §3.1.2).
    el.set_attr("from", owner.as_str());
    el.set_attr("to", contact.as_str());
    let ty = el.attr("type").unwrap_or("").to_owned();
    let user = ctx.jid.bare();
    {
        let _lock = router.subscription_lock.lock().await;
        let existing = match router.stores.roster.item(&owner, contact.as_str()).await {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "roster store failed");
                return;
            }
        };
        let result = match ty.as_str() {
            "subscribe" => {
                let mut item = existing.unwrap_or_else(|| blank_item(&contact));
                if !matches!(item.subscription, Subscription::To | Subscription::Both) && !item.ask {
                    item.ask = true;
                    save_and_push(router, &owner, &item).await
                } else {
                    Ok(())
                }
            }
            "subscribed" => {
                let pending = router.stores.roster.remove_pending_in(&owner, contact.as_str()).await.unwrap_or(false);
                let mut item = existing.clone().unwrap_or_else(|| blank_item(&contact));
                if pending {
                    item.subscription = add_from(item.subscription);
                    item.approved = false;
                    save_and_push(router, &owner, &item).await
                } else if matches!(item.subscription, Subscription::None | Subscription::To) {
                    // §3.4 pre-approval: remember it, tell no one yet.
                    if !item.approved {
                        item.approved = true;
                        if let Err(e) = save_and_push(router, &owner, &item).await {
                            tracing::error!(error = %e, "roster store failed");
                        }
                    }
                    return;
                } else {
                    return; // already approved: nothing to route (§3.1.5)
                }
            }
            "unsubscribe" => match existing {
                Some(mut item) if matches!(item.subscription, Subscription::To | Subscription::Both) || item.ask => {
                    item.subscription = drop_to(item.subscription);
                    item.ask = false;
                    save_and_push(router, &owner, &item).await
                }
                _ => Ok(()),
            },
            "unsubscribed" => {
                let pending = router.stores.roster.remove_pending_in(&owner, contact.as_str()).await.unwrap_or(false);
                match existing {
                    Some(mut item) if matches!(item.subscription, Subscription::From | Subscription::Both) || item.approved => {
                        let was_from = matches!(item.subscription, Subscription::From | Subscription::Both);
                        item.subscription = drop_from(item.subscription);
                        item.approved = false;
                        let r = save_and_push(router, &owner, &item).await;
                        if was_from {
                            // The contact no longer sees our presence.
                            crate::modules::presence::send_unavailable_from_all(router, &user, &contact).await;
                        }
                        r
                    }
                    _ if pending => Ok(()),
                    _ => Ok(()),
                }
            }
            _ => return,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "roster store failed");
            return;
        }
    }
    inbound(router, &user, &contact, el.clone()).await;
    if ty == "subscribed" {
        // §3.1.5: the new subscriber gets our current presence.
        crate::modules::presence::send_current_presence(router, &user, &contact).await;
        // XEP-0163 §4.3.3: and the last items of our nodes it is interested in.
        crate::modules::pep::on_subscribed(router, &contact, &user).await;
    }
}

/// Inbound subscription stanza for a local contact (RFC 6121 §3, the contact's server).
pub async fn inbound(router: &Router, from: &Jid, to: &Jid, el: Element) {
    if !router.is_local(to) {
        // A remote contact: its own server keeps its side (federation, if enabled).
        Box::pin(router.route(to, el)).await;
        return;
    }
    let owner = to.bare_str().to_owned();
    if !router.account_exists(&owner).await {
        return; // §3.1.3: silently ignore subscription stanzas for unknown accounts
    }
    if crate::modules::blocking::is_blocked(router, &owner, from).await {
        return; // XEP-0191: nothing from a blocked entity reaches the user
    }
    let user = from.bare();
    let ty = el.attr("type").unwrap_or("").to_owned();
    let _lock = router.subscription_lock.lock().await;
    let existing = match router.stores.roster.item(&owner, user.as_str()).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "roster store failed");
            return;
        }
    };
    let deliver = match ty.as_str() {
        "subscribe" => match existing {
            Some(item) if matches!(item.subscription, Subscription::From | Subscription::Both) => {
                drop(_lock);
                // Already subscribed: answer on the contact's behalf (§3.1.3).
                auto_reply(router, to, from, "subscribed").await;
                return;
            }
            Some(mut item) if item.approved => {
                item.subscription = add_from(item.subscription);
                item.approved = false;
                if let Err(e) = save_and_push(router, &owner, &item).await {
                    tracing::error!(error = %e, "roster store failed");
                    return;
                }
                drop(_lock);
                auto_reply(router, to, from, "subscribed").await;
                Box::pin(crate::modules::presence::send_current_presence(router, &to.bare(), &user)).await;
                return;
            }
            _ => {
                // Keep it until answered; deliver to available resources now.
                if let Err(e) = router.stores.roster.put_pending_in(&owner, user.as_str(), &el.to_xml_string()).await {
                    tracing::error!(error = %e, "roster store failed");
                    return;
                }
                true
            }
        },
        "subscribed" => match existing {
            Some(mut item) if item.ask => {
                item.subscription = add_to(item.subscription);
                item.ask = false;
                if let Err(e) = save_and_push(router, &owner, &item).await {
                    tracing::error!(error = %e, "roster store failed");
                    return;
                }
                true
            }
            _ => false,
        },
        "unsubscribe" => {
            let had_pending = router.stores.roster.remove_pending_in(&owner, user.as_str()).await.unwrap_or(false);
            match existing {
                Some(mut item) if matches!(item.subscription, Subscription::From | Subscription::Both) || item.approved => {
                    let was_from = matches!(item.subscription, Subscription::From | Subscription::Both);
                    item.subscription = drop_from(item.subscription);
                    item.approved = false;
                    if let Err(e) = save_and_push(router, &owner, &item).await {
                        tracing::error!(error = %e, "roster store failed");
                        return;
                    }
                    if was_from {
                        drop(_lock);
                        Box::pin(crate::modules::presence::send_unavailable_from_all(router, &to.bare(), &user)).await;
                        deliver_to_available(router, &owner, el);
                        return;
                    }
                    true
                }
                _ => had_pending,
            }
        }
        "unsubscribed" => match existing {
            Some(mut item) if matches!(item.subscription, Subscription::To | Subscription::Both) || item.ask => {
                item.subscription = drop_to(item.subscription);
                item.ask = false;
                if let Err(e) = save_and_push(router, &owner, &item).await {
                    tracing::error!(error = %e, "roster store failed");
                    return;
                }
                true
            }
            _ => false,
        },
        _ => false,
    };
    if deliver {
        deliver_to_available(router, &owner, el);
    }
}

fn deliver_to_available(router: &Router, owner: &str, el: Element) {
    for r in router.sessions.available(owner) {
        r.send(el.clone());
    }
}

async fn auto_reply(router: &Router, from: &Jid, to: &Jid, ty: &str) {
    let p = Element::new("presence", ns::CLIENT)
        .with_attr("type", ty)
        .with_attr("from", from.bare_str())
        .with_attr("to", to.bare_str());
    Box::pin(inbound(router, &from.bare(), &to.bare(), p)).await;
}

/// Pending inbound subscription requests, for a resource that just came online.
pub async fn deliver_pending(router: &Router, ctx: &SessionCtx) {
    let Ok(pending) = router.stores.roster.pending_in(ctx.jid.bare_str()).await else { return };
    let Some(session) = router.sessions.get(&ctx.jid) else { return };
    for (_, xml) in pending {
        if let Some(el) = crate::c2s::parse_stored(&xml) {
            session.send(el);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Subscription::*;

    #[test]
    fn subscription_transitions() {
        for (s, from, to, no_from, no_to) in [
            (None, From, To, None, None),
            (To, Both, To, To, None),
            (From, From, Both, None, From),
            (Both, Both, Both, To, From),
        ] {
            assert_eq!(add_from(s), from, "add_from({s:?})");
            assert_eq!(add_to(s), to, "add_to({s:?})");
            assert_eq!(drop_from(s), no_from, "drop_from({s:?})");
            assert_eq!(drop_to(s), no_to, "drop_to({s:?})");
        }
    }
}
