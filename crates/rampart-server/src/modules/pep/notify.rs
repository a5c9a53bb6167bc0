//! PEP notifications (XEP-0163 §4.3): who receives an event, and the last-item delivery to
//! a session whose interests (`+notify` features) became known.
//!
//! Recipients are available sessions only (notifications are `headline` messages, never
//! stored offline): the owner's own resources and those of local contacts with a presence
//! subscription to the owner, each filtered by its capabilities, and the sessions of
//! explicit XEP-0060 subscribers; all of them by the node's access model, their affiliation
//! and blocking. Notifications are delivered straight to the sessions: the publish itself passed
//! the guard and the archive once ([`super::gate`]), the copies are not judged again.

use std::collections::{HashMap, HashSet};

use rampart_proto::pubsub::Event;
use rampart_proto::{Element, Jid, ns};
use rampart_store::{RosterItem, Subscription};

use super::caps::Features;
use super::config::{NodeConfig, SendLast};
use super::subs::{Affiliation, decide};
use crate::router::Router;
use crate::sessions::Resource;

fn event_message(from: &str, to: &Jid, ev: Event) -> Element {
    let id = format!("pep-{:016x}", rand::random::<u64>());
    Element::new("message", ns::CLIENT)
        .with_attr("from", from)
        .with_attr("to", to.as_str())
        .with_attr("type", "headline")
        .with_attr("id", id)
        .with_child(ev.into())
}

fn wants(features: Option<Features>, node: &str) -> bool {
    features.is_some_and(|f| f.contains(&format!("{node}+notify")))
}

/// Every available session that gets `owner`'s notifications about `node` under `cfg`:
/// the owner's own resources and its contacts' (with a presence subscription to the owner)
/// that asked for `node+notify`, and the sessions of explicit subscribers (a full JID's
/// session, or every available resource of a bare JID), whether or not they asked with
/// `+notify`. Everyone but the owner must pass the access check ([`super::subs::decide`]:
/// affiliation, then access model) and not be blocked by the owner. Each session once.
pub async fn recipients(router: &Router, owner: &Jid, node: &str, cfg: &NodeConfig) -> Vec<Resource> {
    if !cfg.deliver_notifications {
        return Vec::new();
    }
    let load = async {
        let (_, roster) = router.stores.roster.roster(owner.as_str()).await?;
        let affs = router.stores.pep.affiliations(owner.as_str(), Some(node), None).await?;
        let subs = router.stores.pep.subscriptions(owner.as_str(), Some(node), None).await?;
        Ok::<_, rampart_store::StoreError>((roster, affs, subs))
    };
    let (roster, affs, subs) = match load.await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "PEP recipients could not be loaded");
            return router.sessions.available(owner.as_str()).into_iter().filter(|r| wants(router.pep.caps.features(&r.jid), node)).collect();
        }
    };
    let roster: HashMap<String, RosterItem> = roster.into_iter().map(|i| (i.jid.clone(), i)).collect();
    let affs: HashMap<String, Affiliation> = affs.into_iter().filter_map(|a| Some((a.jid, Affiliation::parse(&a.affiliation)?))).collect();
    let mut allowed_cache: HashMap<String, bool> = HashMap::new();
    let mut out: Vec<Resource> = Vec::new();
    let mut seen: HashSet<Jid> = HashSet::new();
    for r in router.sessions.available(owner.as_str()) {
        if wants(router.pep.caps.features(&r.jid), node) && seen.insert(r.jid.clone()) {
            out.push(r);
        }
    }
    // Implicit (+notify) interest of presence subscribers, then explicit subscriptions.
    let contacts = roster.values().filter(|i| matches!(i.subscription, Subscription::From | Subscription::Both)).map(|i| (i.jid.clone(), None));
    let explicit: Vec<(String, Option<Jid>)> = subs.iter().filter_map(|s| Jid::parse(&s.jid).ok()).map(|j| (j.bare_str().to_owned(), Some(j))).collect();
    for (bare, subscribed) in contacts.collect::<Vec<_>>().into_iter().chain(explicit) {
        let Ok(contact) = Jid::parse(&bare) else { continue };
        if !router.is_local(&contact) || contact.node().is_none() {
            continue;
        }
        let ok = match allowed_cache.get(&bare) {
            Some(ok) => *ok,
            None => {
                let ok = bare == owner.as_str()
                    || (decide(cfg, affs.get(&bare).copied().unwrap_or(Affiliation::None), roster.get(&bare)).is_ok()
                        && !crate::modules::blocking::is_blocked(router, owner.as_str(), &contact).await);
                allowed_cache.insert(bare.clone(), ok);
                ok
            }
        };
        if !ok {
            continue;
        }
        for r in router.sessions.available(&bare) {
            let take = match &subscribed {
                None => wants(router.pep.caps.features(&r.jid), node),
                Some(j) if j.is_full() => &r.jid == j,
                Some(_) => true,
            };
            if take && seen.insert(r.jid.clone()) {
                out.push(r);
            }
        }
    }
    out
}

/// Send `ev` about `owner`'s node to `targets`.
pub fn send(owner: &Jid, targets: &[Resource], ev: &Event) {
    for r in targets {
        r.send(event_message(owner.as_str(), &r.jid, ev.clone()));
    }
}

/// Send `ev` about `owner`'s `node` to everyone interested and allowed ([`recipients`]).
pub async fn broadcast(router: &Router, owner: &Jid, node: &str, cfg: &NodeConfig, ev: Event) {
    let targets = recipients(router, owner, node, cfg).await;
    send(owner, &targets, &ev);
}

/// XEP-0060 §6.1.7: after an explicit subscription of `jid` (bare: its available
/// resources; full: that session), the node's last item, unless the node says `never`.
pub async fn send_last_to(router: &Router, owner: &Jid, node: &str, cfg: &NodeConfig, jid: &Jid) {
    if cfg.send_last == SendLast::Never || !cfg.deliver_notifications {
        return;
    }
    let items = match router.stores.pep.items(owner.as_str(), node, Some(1)).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "PEP store failed");
            return;
        }
    };
    let items: Vec<_> = items.iter().filter_map(super::stored_item).collect();
    if items.is_empty() {
        return;
    }
    let ev = Event::Items { node: node.to_owned(), items, retracts: vec![] };
    for r in router.sessions.available(jid.bare_str()) {
        if !jid.is_full() || &r.jid == jid {
            r.send(event_message(owner.as_str(), &r.jid, ev.clone()));
        }
    }
}

/// Send `session` the last item of every node it is interested in, of its own account and
/// of each contact whose presence it sees (or only of `only`).
pub async fn send_last_items(router: &Router, session: &Jid, features: &Features, only: Option<&Jid>) {
    let Some(target) = router.sessions.get(session) else { return };
    let me = session.bare();
    let mut owners = Vec::new();
    match only {
        Some(o) => owners.push(o.bare()),
        None => {
            owners.push(me.clone());
            if let Ok((_, items)) = router.stores.roster.roster(me.as_str()).await {
                for i in items.into_iter().filter(|i| matches!(i.subscription, Subscription::To | Subscription::Both)) {
                    if let Ok(j) = Jid::parse(&i.jid)
                        && router.is_local(&j)
                    {
                        owners.push(j);
                    }
                }
            }
        }
    }
    for owner in owners {
        let nodes = match router.stores.pep.pep_nodes(owner.as_str()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "PEP store failed");
                continue;
            }
        };
        for n in nodes {
            if !features.contains(&format!("{}+notify", n.name)) {
                continue;
            }
            let cfg = NodeConfig::from_stored(&n.config);
            let due = match cfg.send_last {
                SendLast::Never => false,
                SendLast::OnSub => only.is_some(),
                SendLast::OnSubAndPresence => true,
            };
            if !due || !cfg.deliver_notifications {
                continue;
            }
            if owner != me
                && (super::may_access(router, owner.as_str(), &n.name, session, &cfg).await.is_err()
                    || crate::modules::blocking::is_blocked(router, owner.as_str(), session).await)
            {
                continue;
            }
            let Ok(items) = router.stores.pep.items(owner.as_str(), &n.name, Some(1)).await else { continue };
            let items: Vec<_> = items.iter().filter_map(super::stored_item).collect();
            if items.is_empty() {
                continue;
            }
            let ev = Event::Items { node: n.name.clone(), items, retracts: vec![] };
            target.send(event_message(owner.as_str(), session, ev));
        }
    }
}

/// Most explicit subscriptions looked at when a session becomes available.
pub const MAX_LAST_ON_PRESENCE: usize = 256;

/// `session` became available: the last item of each node it (its bare or this full JID)
/// is explicitly subscribed to whose `send_last_published_item` is `on_sub_and_presence`,
/// if it may still see the node. Nodes it gets through `+notify` already are skipped.
pub async fn send_last_subscribed(router: &Router, session: &Jid) {
    let Some(target) = router.sessions.get(session) else { return };
    let subs = match router.stores.pep.subscriptions_of(session.bare_str(), MAX_LAST_ON_PRESENCE).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "PEP store failed");
            return;
        }
    };
    let features = router.pep.caps.features(session);
    let mut done: HashSet<(String, String)> = HashSet::new();
    for (owner, s) in subs {
        if s.jid != session.bare_str() && s.jid != session.as_str() {
            continue;
        }
        if !done.insert((owner.clone(), s.node.clone())) {
            continue;
        }
        let Ok(owner) = Jid::parse(&owner) else { continue };
        if wants(features.clone(), &s.node) {
            // send_last_items covers the account's own nodes and those of contacts whose
            // presence it sees.
            let implicit = owner.as_str() == session.bare_str()
                || matches!(router.stores.roster.item(session.bare_str(), owner.as_str()).await,
                    Ok(Some(i)) if matches!(i.subscription, Subscription::To | Subscription::Both));
            if implicit {
                continue;
            }
        }
        let cfg = match super::node_config(router, owner.as_str(), &s.node).await {
            Ok(Some(c)) => c,
            _ => continue,
        };
        if cfg.send_last != SendLast::OnSubAndPresence || !cfg.deliver_notifications {
            continue;
        }
        if super::may_access(router, owner.as_str(), &s.node, session, &cfg).await.is_err()
            || crate::modules::blocking::is_blocked(router, owner.as_str(), session).await
        {
            continue;
        }
        let Ok(items) = router.stores.pep.items(owner.as_str(), &s.node, Some(1)).await else { continue };
        let items: Vec<_> = items.iter().filter_map(super::stored_item).collect();
        if items.is_empty() {
            continue;
        }
        target.send(event_message(owner.as_str(), session, Event::Items { node: s.node.clone(), items, retracts: vec![] }));
    }
}
