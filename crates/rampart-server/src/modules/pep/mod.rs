//! XEP-0163 Personal Eventing Protocol on the XEP-0060 subset it needs: every account is a
//! pubsub service on its bare JID. Publish auto-creates nodes (with publish-options and
//! their §7.1.5 preconditions), retract (with notify), items (all, `max_items`, by id),
//! purge, delete, node configuration (`pubsub#node_config`), and the access models
//! `presence` (default), `open`, `roster` and `whitelist` (the owner and the members and
//! publishers it names). Notifications go to the owner's resources and to presence
//! subscribers whose XEP-0115 / XEP-0390 capabilities carry `node+notify` ([`caps`]), and to
//! explicit XEP-0060 subscribers ([`subs`]: subscriptions and affiliations, owner
//! management); the last item goes to a contact's session when its capabilities become
//! known, when a presence subscription is approved, and on an explicit subscribe.
//!
//! Every accepted publish passes the guard and is archived first ([`gate`]); avatars are
//! converted to and from vCard photos (XEP-0398) and bookmarks mirrored to private XML storage (XEP-0402 `#compat`) in [`convert`].
//!
//! Bounds: [`MAX_NODES`] nodes per account, [`MAX_ITEM_BYTES`] per item,
//! [`config::MAX_ITEMS_PER_NODE`] items per node.

pub mod convert;
pub mod caps;
pub mod config;
pub mod gate;
pub mod notify;
pub mod subs;

use async_trait::async_trait;
use rampart_proto::pubsub::{self, Item, Request, app_error, unsupported};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError};
use rampart_store::{PepItem, StoreError};

use crate::router::{IqHandler, Router, SessionCtx};
use config::{AccessModel, ConfigError, NodeConfig};

/// Most nodes one account owns.
pub const MAX_NODES: usize = 64;
/// Largest item payload, serialized.
pub const MAX_ITEM_BYTES: usize = 192 * 1024;

/// The pubsub features implemented, as advertised on an account's disco#info.
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#member-affiliation",
    "http://jabber.org/protocol/pubsub#modify-affiliations",
    "http://jabber.org/protocol/pubsub#multi-items",
    "http://jabber.org/protocol/pubsub#outcast-affiliation",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#publisher-affiliation",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#subscribe",
    "urn:xmpp:bookmarks:1#compat",
    "urn:xmpp:pep-vcard-conversion:0",
];

/// Server-wide PEP state: the capabilities cache, and the available sessions that were
/// sent the last items of their explicit subscriptions (once per availability).
#[derive(Default)]
pub struct Pep {
    pub caps: caps::CapsCache,
    greeted: std::sync::Mutex<std::collections::HashSet<Jid>>,
}

impl Pep {
    /// True the first time `jid` becomes available (until [`forget_session`]).
    fn first_available(&self, jid: &Jid) -> bool {
        self.greeted.lock().unwrap_or_else(|e| e.into_inner()).insert(jid.clone())
    }
}

/// Handles `pubsub` and `pubsub#owner` IQs addressed to an account.
pub struct PepHandler;

fn err(t: ErrorType, c: DefinedCondition) -> StanzaError {
    StanzaError::new(t, c)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "PEP store failed");
    err(ErrorType::Wait, DefinedCondition::InternalServerError)
}

pub(crate) fn not_found() -> StanzaError {
    err(ErrorType::Cancel, DefinedCondition::ItemNotFound)
}

fn forbidden() -> StanzaError {
    err(ErrorType::Auth, DefinedCondition::Forbidden).with_text("only the account owner may do that")
}

fn feature_not_implemented(feature: &str) -> StanzaError {
    err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented).with_app(unsupported(feature))
}

fn config_error(e: ConfigError, on_publish: bool) -> StanzaError {
    match e {
        ConfigError::PreconditionNotMet(t) => err(ErrorType::Cancel, DefinedCondition::Conflict).with_text(t).with_app(app_error("precondition-not-met")),
        ConfigError::NotAcceptable(t) if on_publish => err(ErrorType::Cancel, DefinedCondition::Conflict).with_text(t).with_app(app_error("precondition-not-met")),
        ConfigError::NotAcceptable(t) => err(ErrorType::Modify, DefinedCondition::NotAcceptable).with_text(t),
    }
}

/// The stored configuration of `owner`'s node, if it exists.
pub async fn node_config(router: &Router, owner: &str, node: &str) -> Result<Option<NodeConfig>, StanzaError> {
    Ok(router.stores.pep.pep_node(owner, node).await.map_err(internal)?.map(|n| NodeConfig::from_stored(&n.config)))
}

/// XEP-0060 §6.1.3 / §6.5.x: may `requester` see `owner`'s items of `node` under `cfg`
/// (its affiliation, then the access model: [`subs::decide`])?
pub async fn may_access(router: &Router, owner: &str, node: &str, requester: &Jid, cfg: &NodeConfig) -> Result<(), StanzaError> {
    if requester.bare_str() == owner {
        return Ok(());
    }
    let aff = subs::affiliation(router, owner, node, requester).await?;
    let needs_roster = aff == subs::Affiliation::None && matches!(cfg.access_model, AccessModel::Presence | AccessModel::Roster);
    let item = if needs_roster { router.stores.roster.item(owner, requester.bare_str()).await.map_err(internal)? } else { None };
    subs::decide(cfg, aff, item.as_ref())
}

/// A stored item as a pubsub `<item/>` (payload parsed back), or `None` if it is corrupt.
pub fn stored_item(i: &PepItem) -> Option<Item> {
    let payload = crate::c2s::parse_stored(&i.xml)?;
    Some(Item { id: Some(i.id.clone()), publisher: Some(i.publisher.clone()), payload: Some(payload) })
}

fn new_item_id() -> String {
    format!("{:x}-{:08x}", crate::pipeline::now_ms(), rand::random::<u32>())
}

#[async_trait]
impl IqHandler for PepHandler {
    fn features(&self) -> &'static [&'static str] {
        // Advertised on accounts (disco#info to a bare JID), not on the server.
        &[]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        let owner = match iq.attr("to") {
            None => ctx.jid.bare(),
            Some(t) => Jid::parse(t).map_err(|_| err(ErrorType::Modify, DefinedCondition::JidMalformed))?,
        };
        if owner.node().is_none() || owner.is_full() || !router.is_local(&owner) {
            // There is no pubsub service on the server itself (PEP lives on accounts).
            return Err(feature_not_implemented("pubsub-service").with_text("PEP is served on account JIDs"));
        }
        let own = owner.as_str() == ctx.jid.bare_str();
        if !own && !router.account_exists(owner.as_str()).await {
            return Err(err(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
        }
        let req = Request::parse(payload).map_err(|e| err(ErrorType::Modify, DefinedCondition::BadRequest).with_text(e.to_string()))?;
        let is_get = iq.attr("type") == Some("get");
        let wants_get = matches!(req, Request::Items { .. } | Request::Subscriptions { .. } | Request::Affiliations { .. } | Request::Default)
            || matches!(req, Request::Configure { form: None, .. });
        let either = matches!(req, Request::Unsupported(_) | Request::OwnerSubscriptions { .. } | Request::OwnerAffiliations { .. });
        if is_get != wants_get && !either {
            return Err(err(ErrorType::Modify, DefinedCondition::BadRequest).with_text("wrong IQ type for this pubsub request"));
        }
        let owner_s = owner.as_str();
        match req {
            Request::Items { node, max_items, ids } => {
                let cfg = node_config(router, owner_s, &node).await?.ok_or_else(not_found)?;
                may_access(router, owner_s, &node, &ctx.jid, &cfg).await?;
                let items = if ids.is_empty() {
                    router.stores.pep.items(owner_s, &node, max_items).await.map_err(internal)?
                } else {
                    router.stores.pep.items_by_id(owner_s, &node, &ids).await.map_err(internal)?
                };
                if !ids.is_empty() && items.is_empty() {
                    return Err(not_found());
                }
                let mut el = Element::new("items", pubsub::NS).with_attr("node", node);
                for i in items.iter().filter_map(stored_item) {
                    el = el.with_child(i.to_element(pubsub::NS));
                }
                Ok(Some(Element::new("pubsub", pubsub::NS).with_child(el)))
            }
            Request::Subscribe { node, jid, with_options } => subs::subscribe(router, ctx, &owner, &node, &jid, with_options).await.map(Some),
            Request::Unsubscribe { node, jid, subid } => subs::unsubscribe(router, ctx, &owner, &node, &jid, subid.as_deref()).await.map(|()| None),
            Request::Subscriptions { node } => subs::own_subscriptions(router, ctx, &owner, node.as_deref()).await.map(Some),
            Request::Affiliations { node } => subs::own_affiliations(router, ctx, &owner, node.as_deref()).await.map(Some),
            Request::Publish { node, item, options } => {
                if !own {
                    publisher_may(router, owner_s, &node, &ctx.jid).await?;
                }
                publish(router, ctx, &owner, &node, item, options).await.map(Some)
            }
            Request::Retract { node, notify, ids } => {
                let cfg = node_config(router, owner_s, &node).await?.ok_or_else(|| if own { not_found() } else { forbidden() })?;
                if !own {
                    publisher_may(router, owner_s, &node, &ctx.jid).await?;
                }
                if ids.is_empty() {
                    return Err(err(ErrorType::Modify, DefinedCondition::BadRequest).with_app(app_error("item-required")));
                }
                if !own {
                    // §7.2.3.1: a publisher retracts only what it published.
                    let theirs = router.stores.pep.items_by_id(owner_s, &node, &ids).await.map_err(internal)?;
                    if theirs.iter().any(|i| Jid::parse(&i.publisher).map_or(true, |p| p.bare_str() != ctx.jid.bare_str())) {
                        return Err(forbidden().with_text("a publisher may retract only its own items"));
                    }
                }
                let mut gone = Vec::new();
                for id in &ids {
                    if router.stores.pep.retract(owner_s, &node, id).await.map_err(internal)? {
                        gone.push(id.clone());
                    }
                }
                if gone.is_empty() {
                    return Err(not_found());
                }
                after_change(router, owner_s, &node).await;
                if notify && cfg.notify_retract {
                    let ev = pubsub::Event::Items { node: node.clone(), items: vec![], retracts: gone };
                    notify::broadcast(router, &owner, &node, &cfg, ev).await;
                }
                Ok(None)
            }
            Request::Unsupported(f) => Err(feature_not_implemented(f)),
            _ if !own => Err(forbidden()),
            Request::Create { node, config } => {
                let node = node.ok_or_else(|| err(ErrorType::Modify, DefinedCondition::NotAcceptable).with_app(app_error("nodeid-required")))?;
                let mut cfg = NodeConfig::default_for(&node);
                if let Some(f) = &config {
                    cfg.apply(f).map_err(|e| config_error(e, false))?;
                }
                match router.stores.pep.create_node(owner_s, &node, &cfg.to_stored(), MAX_NODES).await {
                    Ok(true) => Ok(None),
                    Ok(false) => Err(err(ErrorType::Cancel, DefinedCondition::Conflict).with_text("the node exists")),
                    Err(StoreError::QuotaExceeded) => Err(too_many_nodes()),
                    Err(e) => Err(internal(e)),
                }
            }
            Request::Configure { node, form } => {
                let mut cfg = node_config(router, owner_s, &node).await?.ok_or_else(not_found)?;
                match form {
                    None => {
                        let x: Element = cfg.to_form().into();
                        let c = Element::new("configure", pubsub::NS_OWNER).with_attr("node", node).with_child(x);
                        Ok(Some(Element::new("pubsub", pubsub::NS_OWNER).with_child(c)))
                    }
                    Some(f) if f.type_ == "cancel" => Ok(None),
                    Some(f) => {
                        if f.type_ != "submit" {
                            return Err(err(ErrorType::Modify, DefinedCondition::BadRequest).with_app(app_error("invalid-options")));
                        }
                        cfg.apply(&f).map_err(|e| config_error(e, false))?;
                        router.stores.pep.configure_node(owner_s, &node, &cfg.to_stored(), cfg.kept_items()).await.map_err(internal)?;
                        Ok(None)
                    }
                }
            }
            Request::Default => {
                let x: Element = NodeConfig::default().to_form().into();
                Ok(Some(Element::new("pubsub", pubsub::NS_OWNER).with_child(Element::new("default", pubsub::NS_OWNER).with_child(x))))
            }
            Request::Purge { node } => {
                let cfg = node_config(router, owner_s, &node).await?.ok_or_else(not_found)?;
                router.stores.pep.purge(owner_s, &node).await.map_err(internal)?;
                after_change(router, owner_s, &node).await;
                notify::broadcast(router, &owner, &node, &cfg, pubsub::Event::Purge { node: node.clone() }).await;
                Ok(None)
            }
            Request::Delete { node } => {
                let cfg = node_config(router, owner_s, &node).await?.ok_or_else(not_found)?;
                // Who is told is decided before the node (and its subscriptions) go.
                let told = if cfg.notify_delete { notify::recipients(router, &owner, &node, &cfg).await } else { Vec::new() };
                router.stores.pep.delete_node(owner_s, &node).await.map_err(internal)?;
                after_change(router, owner_s, &node).await;
                notify::send(&owner, &told, &pubsub::Event::Delete { node: node.clone() });
                Ok(None)
            }
            Request::OwnerSubscriptions { node, changes } => subs::owner_subscriptions(router, &owner, &node, is_get, changes).await,
            Request::OwnerAffiliations { node, changes } => subs::owner_affiliations(router, &owner, &node, is_get, changes).await,
        }
    }
}

/// A non-owner publishes to (or retracts from) `owner`'s existing `node` only as a
/// `publisher`, and never to the nodes the server keeps in step with other data (avatar,
/// bookmarks: [`convert`]).
async fn publisher_may(router: &Router, owner: &str, node: &str, who: &Jid) -> Result<(), StanzaError> {
    if matches!(node, convert::AVATAR_METADATA | convert::AVATAR_DATA | convert::BOOKMARKS) {
        return Err(forbidden().with_text("only the account publishes to this node"));
    }
    // §7.1.3.3 would say item-not-found; to a non-publisher the node's existence is not told.
    node_config(router, owner, node).await?.ok_or_else(forbidden)?;
    match subs::affiliation(router, owner, node, who).await? {
        subs::Affiliation::Owner | subs::Affiliation::Publisher => Ok(()),
        _ => Err(forbidden().with_text("only the owner and publishers publish to this node")),
    }
}

fn too_many_nodes() -> StanzaError {
    err(ErrorType::Wait, DefinedCondition::ResourceConstraint)
        .with_text(format!("an account may own at most {MAX_NODES} nodes"))
        .with_app(app_error("max-nodes-exceeded"))
}

/// §7.1: publish one item to `owner`'s node (auto-creating it when the owner publishes),
/// after the guard and the archive.
async fn publish(router: &Router, ctx: &SessionCtx, owner: &Jid, node: &str, item: Option<Item>, options: Option<rampart_proto::dataforms::DataForm>) -> Result<Element, StanzaError> {
    let owner_s = owner.as_str();
    let own = owner_s == ctx.jid.bare_str();
    let item = item.unwrap_or_default();
    let Some(payload) = item.payload else {
        return Err(err(ErrorType::Modify, DefinedCondition::BadRequest).with_app(app_error("item-required")));
    };
    let xml = payload.to_xml_string();
    if xml.len() > MAX_ITEM_BYTES {
        return Err(err(ErrorType::Modify, DefinedCondition::NotAcceptable)
            .with_text(format!("items are limited to {MAX_ITEM_BYTES} bytes"))
            .with_app(app_error("payload-too-big")));
    }
    if let Some(o) = &options
        && o.form_type().is_some_and(|t| t != pubsub::PUBLISH_OPTIONS)
    {
        return Err(err(ErrorType::Modify, DefinedCondition::BadRequest).with_app(app_error("invalid-options")));
    }
    let id = item.id.unwrap_or_else(new_item_id);
    if !own {
        // A publisher adds items; it does not replace someone else's.
        let existing = router.stores.pep.items_by_id(owner_s, node, std::slice::from_ref(&id)).await.map_err(internal)?;
        if existing.iter().any(|i| Jid::parse(&i.publisher).map_or(true, |p| p.bare_str() != ctx.jid.bare_str())) {
            return Err(forbidden().with_text("an item with this id was published by someone else"));
        }
    }
    let cfg = match node_config(router, owner_s, node).await? {
        Some(cfg) => {
            if let Some(o) = &options {
                cfg.check_preconditions(o).map_err(|e| config_error(e, true))?;
            }
            cfg
        }
        None => {
            let mut cfg = NodeConfig::default_for(node);
            if let Some(o) = &options {
                cfg.apply(o).map_err(|e| config_error(e, true))?;
            }
            cfg
        }
    };
    // Threat defense and the archive see the item before anyone else does.
    let inspected = gate::gate_publish_to(router, &ctx.jid, owner, node, &id, &payload).await?;
    let rec = gate::publish_record_to(&ctx.jid, owner, node, &id, &payload, &inspected.text, rampart_archive::Verdict::Delivered);
    if router.archive(rec).await.is_err() {
        return Err(err(ErrorType::Wait, DefinedCondition::InternalServerError).with_text("not published: the compliance archive is unavailable"));
    }
    match router.stores.pep.create_node(owner_s, node, &cfg.to_stored(), MAX_NODES).await {
        Ok(_) => {}
        Err(StoreError::QuotaExceeded) => return Err(too_many_nodes()),
        Err(e) => return Err(internal(e)),
    }
    let stored = PepItem { id: id.clone(), xml, publisher: ctx.jid.as_str().to_owned(), published_at_ms: crate::pipeline::now_ms() };
    router.stores.pep.publish(owner_s, node, &stored, cfg.kept_items()).await.map_err(internal)?;
    let item = Item { id: Some(id.clone()), publisher: Some(ctx.jid.as_str().to_owned()), payload: Some(payload.clone()) };
    notify::broadcast(router, owner, node, &cfg, pubsub::Event::Items { node: node.to_owned(), items: vec![item], retracts: vec![] }).await;
    if own {
        convert::published(router, ctx, node, &id, &payload).await;
    }
    let publish = Element::new("publish", pubsub::NS).with_attr("node", node).with_child(Element::new("item", pubsub::NS).with_attr("id", id));
    Ok(Element::new("pubsub", pubsub::NS).with_child(publish))
}

/// Keep derived state in step after items of a node changed (XEP-0402 compat copy).
async fn after_change(router: &Router, owner: &str, node: &str) {
    if node == convert::BOOKMARKS {
        convert::sync_bookmarks_to_private(router, owner).await;
    }
}

/// A session sent available presence: learn its capabilities (asking once per `ver`) and,
/// when they become known, send it the last items it is interested in.
pub async fn on_available(router: &Router, ctx: &SessionCtx, presence: &Element) {
    match router.pep.caps.presence(&ctx.jid, presence, &router.domain) {
        caps::Seen::Ask(iq) => router.send_to_session(ctx, iq),
        caps::Seen::Known { features, changed: true } => notify::send_last_items(router, &ctx.jid, &features, None).await,
        _ => {}
    }
    // XEP-0060 `on_sub_and_presence`: explicit subscribers get the last items when they
    // become available.
    if router.pep.first_available(&ctx.jid) {
        notify::send_last_subscribed(router, &ctx.jid).await;
    }
}

/// An IQ result or error a session sent to the server: perhaps the answer to a caps query.
pub async fn on_iq_response(router: &Router, ctx: &SessionCtx, iq: &Element) {
    if let Some((features, waiters)) = router.pep.caps.response(&ctx.jid, iq) {
        for jid in waiters {
            if router.sessions.get(&jid).is_some() {
                notify::send_last_items(router, &jid, &features, None).await;
            }
        }
    }
}

/// `subscriber` (a local bare JID) was just allowed to see `user`'s presence: its sessions
/// get `user`'s last items (XEP-0163 §4.3.3 "on subscribe").
pub async fn on_subscribed(router: &Router, subscriber: &Jid, user: &Jid) {
    if !router.is_local(subscriber) || !router.is_local(user) {
        return;
    }
    for r in router.sessions.available(subscriber.bare_str()) {
        if let Some(features) = router.pep.caps.features(&r.jid) {
            notify::send_last_items(router, &r.jid, &features, Some(user)).await;
        }
    }
}

/// A session ended or went unavailable.
pub fn forget_session(router: &Router, jid: &Jid) {
    router.pep.caps.forget(jid);
    router.pep.greeted.lock().unwrap_or_else(|e| e.into_inner()).remove(jid);
}
