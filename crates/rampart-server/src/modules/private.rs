//! XEP-0049 Private XML Storage: an account keeps arbitrary XML fragments on the server, one
//! per root element name and namespace, readable and writable only by its own resources.
//!
//! Limits: a fragment is at most [`MAX_ITEM_BYTES`] serialized (`not-acceptable`), a set
//! carries at most [`MAX_ITEMS_PER_SET`] fragments (`not-acceptable`), and an account keeps
//! at most [`MAX_ITEMS`] (`resource-constraint`).

use async_trait::async_trait;
use rampart_proto::private::{PrivateQuery, is_reserved_namespace};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_store::{PrivateItem, StoreError};

use crate::router::{IqHandler, Router, SessionCtx};

/// Largest fragment, serialized.
pub const MAX_ITEM_BYTES: usize = 64 * 1024;
/// Most fragments one account keeps.
pub const MAX_ITEMS: usize = 256;
/// Most fragments in one set.
pub const MAX_ITEMS_PER_SET: usize = 16;

pub struct PrivateHandler;

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "private XML store failed");
    StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
}

fn not_acceptable(text: &str) -> StanzaError {
    StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable).with_text(text)
}

/// True if the IQ has no `to` or is addressed to the sender's own bare JID.
pub(crate) fn to_own_account(iq: &Element, ctx: &SessionCtx) -> bool {
    match iq.attr("to") {
        None => true,
        Some(t) => Jid::parse(t).is_ok_and(|j| j.as_str() == ctx.jid.bare_str()),
    }
}

#[async_trait]
impl IqHandler for PrivateHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::PRIVATE]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        // §2.3: nobody reads or writes another account's private data (nor the server's).
        if !to_own_account(iq, ctx) {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::Forbidden));
        }
        let query = PrivateQuery::try_from(payload)
            .map_err(|e| StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(e.to_string()))?;
        if query.items.is_empty() {
            return Err(not_acceptable("the query must contain the element to store or retrieve"));
        }
        if query.items.iter().any(|i| is_reserved_namespace(&i.ns)) {
            return Err(not_acceptable("that namespace is reserved"));
        }
        let owner = ctx.jid.bare_str();
        match iq.attr("type") {
            Some("get") => {
                let [wanted] = query.items.as_slice() else {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)
                        .with_text("ask for one element at a time"));
                };
                let stored = router.stores.private.private_get(owner, &wanted.ns, &wanted.name).await.map_err(internal)?;
                let item = match stored.as_deref().map(crate::c2s::parse_stored) {
                    Some(Some(el)) => el,
                    Some(None) => {
                        tracing::error!(account = owner, ns = %wanted.ns, "stored private XML does not parse");
                        return Err(StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError));
                    }
                    // Nothing stored: the empty element, as requested (XEP-0049 practice).
                    None => Element::new(wanted.name.clone(), wanted.ns.clone()),
                };
                Ok(Some(PrivateQuery { items: vec![item] }.into()))
            }
            Some("set") => {
                if query.items.len() > MAX_ITEMS_PER_SET {
                    return Err(not_acceptable("too many elements in one request"));
                }
                let mut items = Vec::with_capacity(query.items.len());
                for el in &query.items {
                    let xml = el.to_xml_string();
                    if xml.len() > MAX_ITEM_BYTES {
                        return Err(not_acceptable("element too large to store"));
                    }
                    items.push(PrivateItem { namespace: el.ns.clone(), name: el.name.clone(), xml });
                }
                // XEP-0402 compat: legacy bookmarks become PEP bookmarks (after the guard).
                for el in query.items.iter().filter(|e| e.is("storage", crate::modules::pep::convert::LEGACY_BOOKMARKS)) {
                    crate::modules::pep::convert::private_bookmarks_set(router, ctx, el).await?;
                }
                match router.stores.private.private_set(owner, &items, MAX_ITEMS).await {
                    Ok(()) => Ok(None),
                    Err(StoreError::QuotaExceeded) => Err(StanzaError::new(ErrorType::Wait, DefinedCondition::ResourceConstraint)
                        .with_text("private storage is full")),
                    Err(e) => Err(internal(e)),
                }
            }
            _ => Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)),
        }
    }
}
