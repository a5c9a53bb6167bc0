//! PEP notifications (XEP-0163 §4.3): who receives an event, and the last-item delivery to
//! a session whose interests (`+notify` features) became known.
//!
//! Recipients are available sessions only (notifications are `headline` messages, never
//! stored offline): the owner's own resources and those of local contacts with a presence
//! subscription to the owner, each filtered by its capabilities, the node's access model and
//! blocking. Notifications are delivered straight to the sessions: the publish itself passed
//! the guard and the archive once ([`super::gate`]), the copies are not judged again.

use rampart_proto::pubsub::Event;
use rampart_proto::{Element, Jid, ns};
use rampart_store::Subscription;

use super::caps::Features;
use super::config::{AccessModel, NodeConfig, SendLast};
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

/// Contacts of `owner` (bare JIDs) allowed to receive the node's notifications.
async fn audience(router: &Router, owner: &Jid, cfg: &NodeConfig) -> Vec<Jid> {
    if cfg.access_model == AccessModel::Whitelist {
        return Vec::new();
    }
    let items = match router.stores.roster.roster(owner.as_str()).await {
        Ok((_, items)) => items,
        Err(e) => {
            tracing::error!(error = %e, "roster load failed");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for i in items {
        if !matches!(i.subscription, Subscription::From | Subscription::Both) {
            continue;
        }
        if cfg.access_model == AccessModel::Roster && !i.groups.iter().any(|g| cfg.roster_groups.contains(g)) {
            continue;
        }
        let Ok(contact) = Jid::parse(&i.jid) else { continue };
        if !router.is_local(&contact) || crate::modules::blocking::is_blocked(router, owner.as_str(), &contact).await {
            continue;
        }
        out.push(contact);
    }
    out
}

/// Send `ev` about `owner`'s `node` to everyone interested and allowed.
pub async fn broadcast(router: &Router, owner: &Jid, node: &str, cfg: &NodeConfig, ev: Event) {
    if !cfg.deliver_notifications {
        return;
    }
    let mut targets: Vec<Resource> = router.sessions.available(owner.as_str());
    for contact in audience(router, owner, cfg).await {
        targets.extend(router.sessions.available(contact.as_str()));
    }
    for r in targets {
        if wants(router.pep.caps.features(&r.jid), node) {
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
                && (super::may_access(router, owner.as_str(), session, &cfg).await.is_err()
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
