//! XEP-0060 explicit subscriptions and affiliations on PEP nodes, as Prosody's mod_pep and
//! ejabberd offer them beside XEP-0163's implicit `+notify` interest.
//!
//! Entities: `subscribe` / `unsubscribe` (§6.1, §6.2; the `jid` must be the requester's bare
//! or full JID), their own `subscriptions` and `affiliations` at an account's service (§5.6,
//! §5.7). The owner: a node's subscriptions and affiliations, retrieved and modified
//! (`pubsub#owner`, §8.8, §8.9). Affiliations are `owner` (the account, implicit),
//! `publisher` (may read, publish and retract its own items), `member` (may read and
//! subscribe whatever the access model, so the owner grants readers of a `whitelist` node),
//! `outcast` (refused everything, its subscriptions dropped) and `none`.
//!
//! Access ([`decide`]) is checked on subscribe *and* again at each notification, so a
//! subscription never outlives the access that allowed it. Subscriptions are stored for
//! local JIDs only (notifications go straight to local sessions, like the implicit ones).
//! Subscription options (§6.3) and pending subscriptions (`authorize` access) are not
//! implemented and answered as such.

use rampart_proto::pubsub::{self, app_error, unsupported};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError};
use rampart_store::{PepSubscription, RosterItem, StoreError, Subscription};

use super::config::{AccessModel, NodeConfig};
use super::{internal, node_config, not_found};
use crate::router::{Router, SessionCtx};

/// Most subscriptions one node keeps.
pub const MAX_SUBSCRIPTIONS_PER_NODE: usize = 1024;
/// Most subscriptions of one account (its bare and full JIDs together) to one node.
pub const MAX_SUBSCRIPTIONS_PER_SUBSCRIBER: usize = 8;
/// Most affiliations (other than the owner's) one node keeps.
pub const MAX_AFFILIATIONS_PER_NODE: usize = 1024;

/// An entity's affiliation with a node (XEP-0060 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affiliation {
    Owner,
    Publisher,
    Member,
    None,
    Outcast,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Publisher => "publisher",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "owner" => Affiliation::Owner,
            "publisher" => Affiliation::Publisher,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }
}

fn err(t: ErrorType, c: DefinedCondition) -> StanzaError {
    StanzaError::new(t, c)
}

/// §6.1.3.8 / §6.5.x: the entity is blocked (outcast).
pub fn blocked() -> StanzaError {
    err(ErrorType::Auth, DefinedCondition::Forbidden).with_text("the node's owner has blocked you")
}

/// May an entity with affiliation `aff` and, in the owner's roster, `item` see a node's items
/// under `cfg` (and so subscribe or be notified)? The owner is decided before this.
/// Publishers and members may whatever the access model; outcasts never.
pub fn decide(cfg: &NodeConfig, aff: Affiliation, item: Option<&RosterItem>) -> Result<(), StanzaError> {
    match aff {
        Affiliation::Owner | Affiliation::Publisher | Affiliation::Member => return Ok(()),
        Affiliation::Outcast => return Err(blocked()),
        Affiliation::None => {}
    }
    match cfg.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence => match item {
            Some(i) if matches!(i.subscription, Subscription::From | Subscription::Both) => Ok(()),
            _ => Err(err(ErrorType::Auth, DefinedCondition::NotAuthorized).with_app(app_error("presence-subscription-required"))),
        },
        AccessModel::Roster => match item {
            Some(i) if i.groups.iter().any(|g| cfg.roster_groups.contains(g)) => Ok(()),
            _ => Err(err(ErrorType::Auth, DefinedCondition::NotAuthorized).with_app(app_error("not-in-roster-group"))),
        },
        AccessModel::Whitelist => Err(err(ErrorType::Cancel, DefinedCondition::NotAllowed).with_app(app_error("closed-node"))),
    }
}

/// The affiliation of `who` (its bare JID) with `owner`'s `node`.
pub async fn affiliation(router: &Router, owner: &str, node: &str, who: &Jid) -> Result<Affiliation, StanzaError> {
    if who.bare_str() == owner {
        return Ok(Affiliation::Owner);
    }
    let affs = router.stores.pep.affiliations(owner, Some(node), Some(who.bare_str())).await.map_err(internal)?;
    Ok(affs.first().and_then(|a| Affiliation::parse(&a.affiliation)).unwrap_or(Affiliation::None))
}

fn subscription_el(ns: &str, node: Option<&str>, s: &PepSubscription, state: &str) -> Element {
    let mut e = Element::new("subscription", ns).with_attr("jid", s.jid.as_str()).with_attr("subscription", state);
    if let Some(n) = node {
        e.set_attr("node", n);
    }
    if state == "subscribed" {
        e.set_attr("subid", s.subid.as_str());
    }
    e
}

/// §6.1.3.1 / §6.2.3.3: the `jid` of a (un)subscribe request, which must be the requester's
/// bare or full JID.
fn own_jid(ctx: &SessionCtx, jid: &str) -> Result<Jid, StanzaError> {
    let invalid = || err(ErrorType::Modify, DefinedCondition::BadRequest).with_app(app_error("invalid-jid"));
    let j = Jid::parse(jid).map_err(|_| invalid())?;
    if j == ctx.jid || j.as_str() == ctx.jid.bare_str() { Ok(j) } else { Err(invalid()) }
}

/// §6.1: subscribe `jid` (the requester's own) to `owner`'s `node`; the last item follows.
pub async fn subscribe(router: &Router, ctx: &SessionCtx, owner: &Jid, node: &str, jid: &str, with_options: bool) -> Result<Element, StanzaError> {
    let jid = own_jid(ctx, jid)?;
    if with_options {
        // §6.3.7 is optional; we do not keep per-subscription options.
        return Err(err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented).with_app(unsupported("subscription-options")));
    }
    let cfg = node_config(router, owner.as_str(), node).await?.ok_or_else(not_found)?;
    super::may_access(router, owner.as_str(), node, &ctx.jid, &cfg).await?;
    let wanted = PepSubscription { node: node.to_owned(), jid: jid.as_str().to_owned(), subid: format!("{:016x}", rand::random::<u64>()) };
    let sub = match router
        .stores
        .pep
        .subscribe(owner.as_str(), &wanted, jid.bare_str(), MAX_SUBSCRIPTIONS_PER_NODE, MAX_SUBSCRIPTIONS_PER_SUBSCRIBER)
        .await
    {
        Ok(s) => s,
        Err(StoreError::NotFound) => return Err(not_found()),
        Err(StoreError::QuotaExceeded) => {
            return Err(err(ErrorType::Wait, DefinedCondition::ResourceConstraint).with_text("the node has too many subscriptions"));
        }
        Err(e) => return Err(internal(e)),
    };
    // §6.1.7: the last published item goes to the new subscriber.
    super::notify::send_last_to(router, owner, node, &cfg, &jid).await;
    Ok(Element::new("pubsub", pubsub::NS).with_child(subscription_el(pubsub::NS, Some(node), &sub, "subscribed")))
}

/// §6.2: unsubscribe `jid` (the requester's own) from `owner`'s `node`.
pub async fn unsubscribe(router: &Router, ctx: &SessionCtx, owner: &Jid, node: &str, jid: &str, subid: Option<&str>) -> Result<(), StanzaError> {
    let jid = own_jid(ctx, jid)?;
    node_config(router, owner.as_str(), node).await?.ok_or_else(not_found)?;
    let mine = router.stores.pep.subscriptions(owner.as_str(), Some(node), Some(jid.bare_str())).await.map_err(internal)?;
    let Some(sub) = mine.iter().find(|s| s.jid == jid.as_str()) else {
        return Err(err(ErrorType::Cancel, DefinedCondition::UnexpectedRequest).with_app(app_error("not-subscribed")));
    };
    if subid.is_some_and(|s| s != sub.subid) {
        return Err(err(ErrorType::Modify, DefinedCondition::NotAcceptable).with_app(app_error("invalid-subid")));
    }
    router.stores.pep.unsubscribe(owner.as_str(), node, jid.as_str(), false).await.map_err(internal)?;
    Ok(())
}

/// §5.6.4 / §5.7.4: a request about one node needs the node.
async fn node_exists(router: &Router, owner: &Jid, node: Option<&str>) -> Result<(), StanzaError> {
    match node {
        Some(n) => node_config(router, owner.as_str(), n).await?.map(|_| ()).ok_or_else(not_found),
        None => Ok(()),
    }
}

/// §5.6: the requester's subscriptions at `owner`'s service (of one node, or all).
pub async fn own_subscriptions(router: &Router, ctx: &SessionCtx, owner: &Jid, node: Option<&str>) -> Result<Element, StanzaError> {
    node_exists(router, owner, node).await?;
    let subs = router.stores.pep.subscriptions(owner.as_str(), node, Some(ctx.jid.bare_str())).await.map_err(internal)?;
    let mut el = Element::new("subscriptions", pubsub::NS);
    if let Some(n) = node {
        el.set_attr("node", n);
    }
    for s in &subs {
        el = el.with_child(subscription_el(pubsub::NS, Some(&s.node), s, "subscribed"));
    }
    Ok(Element::new("pubsub", pubsub::NS).with_child(el))
}

/// §5.7: the requester's affiliations at `owner`'s service (of one node, or all): `owner`
/// of every node of its own service, else what the owner gave it.
pub async fn own_affiliations(router: &Router, ctx: &SessionCtx, owner: &Jid, node: Option<&str>) -> Result<Element, StanzaError> {
    node_exists(router, owner, node).await?;
    let mut el = Element::new("affiliations", pubsub::NS);
    if let Some(n) = node {
        el.set_attr("node", n);
    }
    let aff = |node: &str, a: &str| Element::new("affiliation", pubsub::NS).with_attr("node", node).with_attr("affiliation", a);
    if owner.as_str() == ctx.jid.bare_str() {
        for n in router.stores.pep.pep_nodes(owner.as_str()).await.map_err(internal)? {
            if node.is_none_or(|x| x == n.name) {
                el = el.with_child(aff(&n.name, "owner"));
            }
        }
    } else {
        for a in router.stores.pep.affiliations(owner.as_str(), node, Some(ctx.jid.bare_str())).await.map_err(internal)? {
            el = el.with_child(aff(&a.node, &a.affiliation));
        }
    }
    Ok(Element::new("pubsub", pubsub::NS).with_child(el))
}

fn not_acceptable(text: impl Into<String>) -> StanzaError {
    err(ErrorType::Modify, DefinedCondition::NotAcceptable).with_text(text)
}

/// §8.8: the owner retrieves (`changes` unused, IQ get) or modifies a node's subscriptions.
/// A change list is checked whole before any of it is applied.
pub async fn owner_subscriptions(router: &Router, owner: &Jid, node: &str, is_get: bool, changes: Vec<(String, String)>) -> Result<Option<Element>, StanzaError> {
    let cfg = node_config(router, owner.as_str(), node).await?.ok_or_else(not_found)?;
    if is_get {
        let subs = router.stores.pep.subscriptions(owner.as_str(), Some(node), None).await.map_err(internal)?;
        let list = subs.iter().fold(Element::new("subscriptions", pubsub::NS_OWNER).with_attr("node", node), |e, s| {
            e.with_child(subscription_el(pubsub::NS_OWNER, None, s, "subscribed"))
        });
        return Ok(Some(Element::new("pubsub", pubsub::NS_OWNER).with_child(list)));
    }
    let mut checked = Vec::new();
    for (jid, state) in changes {
        let j = Jid::parse(&jid).map_err(|_| err(ErrorType::Modify, DefinedCondition::JidMalformed).with_text(format!("invalid JID {jid:?}")))?;
        let subscribe = match state.as_str() {
            "subscribed" => true,
            "none" => false,
            "pending" | "unconfigured" => {
                return Err(err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented).with_app(unsupported("subscription-options")));
            }
            other => return Err(not_acceptable(format!("unknown subscription state {other:?}"))),
        };
        if subscribe {
            if !router.is_local(&j) || j.node().is_none() || !router.account_exists(j.bare_str()).await {
                return Err(not_acceptable(format!("{j} is not a local account: only local accounts can be subscribed")));
            }
            if j.bare_str() != owner.as_str() {
                let aff = affiliation(router, owner.as_str(), node, &j).await?;
                let item = router.stores.roster.item(owner.as_str(), j.bare_str()).await.map_err(internal)?;
                if decide(&cfg, aff, item.as_ref()).is_err() {
                    return Err(not_acceptable(format!("{j} may not see this node: make it a member first")));
                }
            }
        }
        checked.push((j, subscribe));
    }
    for (j, subscribe) in checked {
        if subscribe {
            let s = PepSubscription { node: node.to_owned(), jid: j.as_str().to_owned(), subid: format!("{:016x}", rand::random::<u64>()) };
            match router.stores.pep.subscribe(owner.as_str(), &s, j.bare_str(), MAX_SUBSCRIPTIONS_PER_NODE, MAX_SUBSCRIPTIONS_PER_SUBSCRIBER).await {
                Ok(_) => {}
                Err(StoreError::QuotaExceeded) => {
                    return Err(err(ErrorType::Wait, DefinedCondition::ResourceConstraint).with_text("the node has too many subscriptions"));
                }
                Err(e) => return Err(internal(e)),
            }
        } else {
            router.stores.pep.unsubscribe(owner.as_str(), node, j.as_str(), false).await.map_err(internal)?;
        }
    }
    Ok(None)
}

/// §8.9: the owner retrieves (IQ get) or modifies a node's affiliations. The owner's own
/// affiliation cannot change (a PEP node has exactly one owner, the account); an outcast
/// loses its subscriptions to the node.
pub async fn owner_affiliations(router: &Router, owner: &Jid, node: &str, is_get: bool, changes: Vec<(String, String)>) -> Result<Option<Element>, StanzaError> {
    node_config(router, owner.as_str(), node).await?.ok_or_else(not_found)?;
    if is_get {
        let affs = router.stores.pep.affiliations(owner.as_str(), Some(node), None).await.map_err(internal)?;
        let el = |jid: &str, a: &str| Element::new("affiliation", pubsub::NS_OWNER).with_attr("jid", jid).with_attr("affiliation", a);
        let list = affs
            .iter()
            .fold(Element::new("affiliations", pubsub::NS_OWNER).with_attr("node", node).with_child(el(owner.as_str(), "owner")), |e, a| {
                e.with_child(el(&a.jid, &a.affiliation))
            });
        return Ok(Some(Element::new("pubsub", pubsub::NS_OWNER).with_child(list)));
    }
    let mut checked = Vec::new();
    for (jid, a) in changes {
        let j = Jid::parse(&jid).map_err(|_| err(ErrorType::Modify, DefinedCondition::JidMalformed).with_text(format!("invalid JID {jid:?}")))?.bare();
        let aff = match Affiliation::parse(&a) {
            Some(x) => x,
            None if a == "publish-only" => {
                return Err(err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented).with_app(unsupported("publish-only-affiliation")));
            }
            None => return Err(not_acceptable(format!("unknown affiliation {a:?}"))),
        };
        if j.as_str() == owner.as_str() {
            if aff != Affiliation::Owner {
                return Err(not_acceptable("the account owns its PEP nodes; its affiliation cannot change"));
            }
            continue;
        }
        if aff == Affiliation::Owner {
            return Err(not_acceptable("a PEP node has one owner, the account"));
        }
        checked.push((j, aff));
    }
    for (j, aff) in checked {
        let value = (aff != Affiliation::None).then_some(aff.as_str());
        match router.stores.pep.set_affiliation(owner.as_str(), node, j.as_str(), value, MAX_AFFILIATIONS_PER_NODE).await {
            Ok(()) => {}
            Err(StoreError::QuotaExceeded) => {
                return Err(err(ErrorType::Wait, DefinedCondition::ResourceConstraint).with_text(format!("a node keeps at most {MAX_AFFILIATIONS_PER_NODE} affiliations")));
            }
            Err(StoreError::NotFound) => return Err(not_found()),
            Err(e) => return Err(internal(e)),
        }
        if aff == Affiliation::Outcast {
            router.stores.pep.unsubscribe(owner.as_str(), node, j.as_str(), true).await.map_err(internal)?;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sub: Subscription, groups: &[&str]) -> RosterItem {
        RosterItem { jid: "c@x".into(), name: None, subscription: sub, ask: false, approved: false, groups: groups.iter().map(|g| (*g).to_owned()).collect() }
    }

    fn cfg(model: AccessModel) -> NodeConfig {
        NodeConfig { access_model: model, roster_groups: vec!["Friends".into()], ..NodeConfig::default() }
    }

    fn cond(r: Result<(), StanzaError>) -> Option<DefinedCondition> {
        r.err().map(|e| e.condition)
    }

    #[test]
    fn access_by_model_and_affiliation() {
        let both = item(Subscription::Both, &[]);
        let friend = item(Subscription::To, &["Friends"]);
        // No affiliation: the access model decides.
        assert_eq!(cond(decide(&cfg(AccessModel::Open), Affiliation::None, None)), None);
        assert_eq!(cond(decide(&cfg(AccessModel::Presence), Affiliation::None, Some(&both))), None);
        assert_eq!(cond(decide(&cfg(AccessModel::Presence), Affiliation::None, Some(&friend))), Some(DefinedCondition::NotAuthorized));
        assert_eq!(cond(decide(&cfg(AccessModel::Roster), Affiliation::None, Some(&friend))), None);
        assert_eq!(cond(decide(&cfg(AccessModel::Roster), Affiliation::None, Some(&both))), Some(DefinedCondition::NotAuthorized));
        assert_eq!(cond(decide(&cfg(AccessModel::Whitelist), Affiliation::None, Some(&both))), Some(DefinedCondition::NotAllowed));
        // Members and publishers are on the whitelist (and pass every other model).
        for a in [Affiliation::Member, Affiliation::Publisher] {
            for m in [AccessModel::Whitelist, AccessModel::Presence, AccessModel::Roster] {
                assert_eq!(cond(decide(&cfg(m), a, None)), None);
            }
        }
        // Outcasts are refused even on an open node.
        assert_eq!(cond(decide(&cfg(AccessModel::Open), Affiliation::Outcast, Some(&both))), Some(DefinedCondition::Forbidden));
    }

    #[test]
    fn affiliation_names() {
        for a in [Affiliation::Owner, Affiliation::Publisher, Affiliation::Member, Affiliation::None, Affiliation::Outcast] {
            assert_eq!(Affiliation::parse(a.as_str()), Some(a));
        }
        assert_eq!(Affiliation::parse("publish-only"), None);
    }
}
