//! XEP-0280 Message Carbons: a user's other devices see the chats this device has, in both
//! directions. `<enable/>`/`<disable/>` per session; eligible messages (type `chat`, or
//! `normal` with a body, not marked `<private/>` or `<no-copy/>`) delivered to one resource
//! are copied as `<received/>` to the account's other carbons-enabled resources, and those a
//! resource sends are copied as `<sent/>` to its siblings.

use async_trait::async_trait;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};

use crate::router::{IqHandler, Router, SessionCtx};
use crate::sessions::{Resource, SessionId};

pub struct CarbonsHandler;

#[async_trait]
impl IqHandler for CarbonsHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::CARBONS]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        if iq.attr("type") != Some("set") {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::BadRequest));
        }
        let on = match payload.name.as_str() {
            "enable" => true,
            "disable" => false,
            _ => return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest)),
        };
        router.sessions.set_carbons(ctx.id, &ctx.jid, on);
        Ok(None)
    }
}

/// Should this message be carbon-copied (XEP-0280 §6)?
pub fn eligible(el: &Element) -> bool {
    let ty = el.attr("type").unwrap_or("normal");
    let kind_ok = ty == "chat" || (ty == "normal" && el.child("body", ns::CLIENT).is_some());
    kind_ok
        && el.child("private", ns::CARBONS).is_none()
        && el.child("no-copy", "urn:xmpp:hints").is_none()
        && el.child("received", ns::CARBONS).is_none()
        && el.child("sent", ns::CARBONS).is_none()
        && el.child("x", "http://jabber.org/protocol/muc#user").is_none()
}

fn wrap(kind: &str, owner: &str, to: &Jid, el: &Element) -> Element {
    let mut inner = el.clone();
    inner.ns = ns::CLIENT.to_owned();
    Element::new("message", ns::CLIENT)
        .with_attr("from", owner)
        .with_attr("to", to.as_str())
        .with_attr("type", el.attr("type").unwrap_or("normal"))
        .with_child(Element::new(kind, ns::CARBONS).with_child(Element::new("forwarded", ns::FORWARD).with_child(inner)))
}

/// Copy a message the account `owner` received (delivered to `delivered_to`) to its other
/// carbons-enabled resources.
pub fn copy_received(router: &Router, owner: &str, delivered_to: &[Resource], el: &Element) {
    if !eligible(el) {
        return;
    }
    for r in router.sessions.resources(owner) {
        if r.carbons && !delivered_to.iter().any(|d| d.id == r.id) {
            r.send(wrap("received", owner, &r.jid, el));
        }
    }
}

/// Copy a message sent by session `sender` to its carbons-enabled siblings.
pub fn copy_sent(router: &Router, sender: &Jid, sender_id: Option<SessionId>, el: &Element) {
    if !eligible(el) {
        return;
    }
    let owner = sender.bare_str();
    for r in router.sessions.resources(owner) {
        if r.carbons && Some(r.id) != sender_id && r.jid != *sender {
            r.send(wrap("sent", owner, &r.jid, el));
        }
    }
}
