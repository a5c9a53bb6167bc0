//! XEP-0191 Blocking Command: each account's blocklist (get, block, unblock, unblock all),
//! pushed to every resource that requested it, and [`is_blocked`], the per-stanza check the
//! router applies in both directions.
//!
//! Blocking a JID also hides the user's presence from matching contacts that were
//! subscribed to it (§3.3: unavailable presence is sent); unblocking shows it again (§3.4).
//! The list holds at most [`MAX_BLOCKLIST_ITEMS`] JIDs. The store keeps an in-memory copy
//! of every list it has read, so [`is_blocked`] costs a few hash lookups.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use rampart_proto::blocking::{BlockingCommand, match_candidates};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, ParseError, StanzaError, ns};
use rampart_store::{StoreError, Subscription};

use crate::router::{IqHandler, Router, SessionCtx};
use crate::sessions::SessionId;

/// Most JIDs on one account's blocklist.
pub const MAX_BLOCKLIST_ITEMS: usize = 1000;

/// Answers `urn:xmpp:blocking` and remembers which sessions asked for the blocklist.
#[derive(Default)]
pub struct BlockingHandler {
    /// Sessions that requested the blocklist (§3.2: they get pushes), by account. Entries of
    /// ended sessions are pruned whenever the account's entry is touched.
    interested: Mutex<HashMap<String, HashSet<SessionId>>>,
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "blocklist store failed");
    StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
}

/// Does `owner` (a local bare JID) block `other`? Matches the full JID, bare JID,
/// `domain/resource` and domain (XEP-0191 §3.1). The server itself and the owner's own
/// account are never blocked. A store failure is logged and counts as not blocked.
pub async fn is_blocked(router: &Router, owner: &str, other: &Jid) -> bool {
    if other.bare_str() == owner || other.as_str() == router.domain {
        return false;
    }
    let candidates = match_candidates(other);
    let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
    match router.stores.blocking.is_blocked(owner, &refs).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, owner, "blocklist check failed");
            false
        }
    }
}

impl BlockingHandler {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<SessionId>>> {
        self.interested.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark_interested(&self, router: &Router, ctx: &SessionCtx) {
        let owner = ctx.jid.bare_str();
        let live: HashSet<SessionId> = router.sessions.resources(owner).iter().map(|r| r.id).collect();
        let mut map = self.lock();
        let set = map.entry(owner.to_owned()).or_default();
        set.retain(|id| live.contains(id));
        set.insert(ctx.id);
    }

    /// §3.3/§3.4: send `cmd` as an IQ set to every interested resource of `owner`.
    fn push(&self, router: &Router, owner: &str, cmd: BlockingCommand) {
        let resources = router.sessions.resources(owner);
        let targets: Vec<_> = {
            let mut map = self.lock();
            let Some(set) = map.get_mut(owner) else { return };
            set.retain(|id| resources.iter().any(|r| r.id == *id));
            if set.is_empty() {
                map.remove(owner);
                return;
            }
            resources.into_iter().filter(|r| set.contains(&r.id)).collect()
        };
        let payload: Element = cmd.into();
        for r in targets {
            let iq = Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", format!("block-{:x}", rand::random::<u64>()))
                .with_attr("to", r.jid.as_str())
                .with_child(payload.clone());
            r.send(iq);
        }
    }
}

/// Roster contacts that see `owner`'s presence and match one of `jids`.
async fn subscribed_contacts_matching(router: &Router, owner: &str, jids: &[String]) -> Vec<Jid> {
    if jids.is_empty() {
        return Vec::new();
    }
    let set: HashSet<&str> = jids.iter().map(String::as_str).collect();
    let Ok((_, items)) = router.stores.roster.roster(owner).await else { return Vec::new() };
    items
        .into_iter()
        .filter(|i| matches!(i.subscription, Subscription::From | Subscription::Both))
        .filter_map(|i| Jid::parse(&i.jid).ok())
        .filter(|c| match_candidates(c).iter().any(|m| set.contains(m.as_str())))
        .collect()
}

fn bad_request(e: ParseError) -> StanzaError {
    match e {
        ParseError::Jid(_) => StanzaError::new(ErrorType::Modify, DefinedCondition::JidMalformed),
        e => StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(e.to_string()),
    }
}

#[async_trait]
impl IqHandler for BlockingHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::BLOCKING]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        if !crate::modules::private::to_own_account(iq, ctx) {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::Forbidden));
        }
        let cmd = BlockingCommand::try_from(payload).map_err(bad_request)?;
        let owner = ctx.jid.bare_str().to_owned();
        let owner_jid = ctx.jid.bare();
        match (iq.attr("type"), cmd) {
            (Some("get"), BlockingCommand::Blocklist(items)) if items.is_empty() => {
                self.mark_interested(router, ctx);
                let list = router.stores.blocking.blocklist(&owner).await.map_err(internal)?;
                let jids = list.iter().filter_map(|j| Jid::parse(j).ok()).collect();
                Ok(Some(BlockingCommand::Blocklist(jids).into()))
            }
            (Some("set"), BlockingCommand::Block(items)) => {
                if items.len() > MAX_BLOCKLIST_ITEMS {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable)
                        .with_text(format!("at most {MAX_BLOCKLIST_ITEMS} items")));
                }
                let mut jids: Vec<String> = items.iter().map(|j| j.as_str().to_owned()).collect();
                jids.sort();
                jids.dedup();
                let added = match router.stores.blocking.block(&owner, &jids, MAX_BLOCKLIST_ITEMS).await {
                    Ok(a) => a,
                    Err(StoreError::QuotaExceeded) => {
                        return Err(StanzaError::new(ErrorType::Wait, DefinedCondition::ResourceConstraint)
                            .with_text(format!("the blocklist holds at most {MAX_BLOCKLIST_ITEMS} items")));
                    }
                    Err(e) => return Err(internal(e)),
                };
                self.push(router, &owner, BlockingCommand::Block(items));
                for contact in subscribed_contacts_matching(router, &owner, &added).await {
                    crate::modules::presence::send_unavailable_from_all(router, &owner_jid, &contact).await;
                }
                Ok(None)
            }
            (Some("set"), BlockingCommand::Unblock(items)) => {
                if items.len() > MAX_BLOCKLIST_ITEMS {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable)
                        .with_text(format!("at most {MAX_BLOCKLIST_ITEMS} items")));
                }
                let removed = if items.is_empty() {
                    router.stores.blocking.unblock_all(&owner).await.map_err(internal)?
                } else {
                    let jids: Vec<String> = items.iter().map(|j| j.as_str().to_owned()).collect();
                    router.stores.blocking.unblock(&owner, &jids).await.map_err(internal)?
                };
                self.push(router, &owner, BlockingCommand::Unblock(items));
                for contact in subscribed_contacts_matching(router, &owner, &removed).await {
                    if !is_blocked(router, &owner, &contact).await {
                        crate::modules::presence::send_current_presence(router, &owner_jid, &contact).await;
                    }
                }
                Ok(None)
            }
            _ => Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)),
        }
    }
}
