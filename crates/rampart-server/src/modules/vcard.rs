//! XEP-0054 vcard-temp: each account stores its own vCard (verbatim, at most
//! [`MAX_VCARD_BYTES`]); anyone on the server may read it.
//!
//! Addressing: a get or set without `to` (or to the sender's bare JID) is about the sender's
//! own vCard; a get to another local account's bare JID returns theirs (the router hands such
//! IQs to this handler; see its `client_iq`). A set for anyone else is `forbidden`. No stored
//! vCard is `item-not-found` (as Prosody answers); setting an empty `<vCard/>` removes it.

use async_trait::async_trait;
use rampart_proto::vcard::VCard;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};

use crate::router::{IqHandler, Router, SessionCtx};

/// Largest vCard, serialized.
pub const MAX_VCARD_BYTES: usize = 64 * 1024;

pub struct VCardHandler;

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "vCard store failed");
    StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
}

#[async_trait]
impl IqHandler for VCardHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::VCARD]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        let vcard = VCard::try_from(payload)
            .map_err(|e| StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(e.to_string()))?;
        let target = match iq.attr("to") {
            None => ctx.jid.bare(),
            Some(t) => Jid::parse(t).map_err(|_| StanzaError::new(ErrorType::Modify, DefinedCondition::JidMalformed))?,
        };
        let own = target.as_str() == ctx.jid.bare_str();
        match iq.attr("type") {
            Some("get") => {
                if !vcard.is_empty() {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)
                        .with_text("a vCard request is an empty <vCard/>"));
                }
                if target.node().is_none() {
                    // The server has no vCard of its own.
                    return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound));
                }
                if !own && (target.is_full() || !router.is_local(&target) || !router.account_exists(target.as_str()).await) {
                    // RFC 6121 §8.5.1: no such account.
                    return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
                }
                let stored = router.stores.vcards.vcard(target.bare_str()).await.map_err(internal)?;
                match stored.as_deref().map(crate::c2s::parse_stored) {
                    Some(Some(el)) => Ok(Some(el)),
                    Some(None) => {
                        tracing::error!(account = target.bare_str(), "stored vCard does not parse");
                        Err(StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError))
                    }
                    None => Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound)),
                }
            }
            Some("set") => {
                if !own {
                    return Err(StanzaError::new(ErrorType::Auth, DefinedCondition::Forbidden)
                        .with_text("you can only change your own vCard"));
                }
                let owner = ctx.jid.bare_str();
                if vcard.is_empty() {
                    router.stores.vcards.remove_vcard(owner).await.map_err(internal)?;
                    return Ok(None);
                }
                let xml = vcard.as_element().to_xml_string();
                if xml.len() > MAX_VCARD_BYTES {
                    return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable)
                        .with_text(format!("vCard larger than {MAX_VCARD_BYTES} bytes")));
                }
                // Threat defense and the archive see vCards as they see PEP items.
                let seen = crate::modules::pep::gate::gate_publish(router, &ctx.jid, ns::VCARD, "vcard", vcard.as_element()).await?;
                let rec = crate::modules::pep::gate::publish_record(&ctx.jid, ns::VCARD, "vcard", vcard.as_element(), &seen.text, rampart_archive::Verdict::Delivered);
                if router.archive(rec).await.is_err() {
                    return Err(StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
                        .with_text("not stored: the compliance archive is unavailable"));
                }
                router.stores.vcards.set_vcard(owner, &xml).await.map_err(internal)?;
                // XEP-0398: the PHOTO becomes the XEP-0084 avatar.
                crate::modules::pep::convert::vcard_changed(router, ctx, vcard.as_element()).await;
                Ok(None)
            }
            _ => Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)),
        }
    }
}
