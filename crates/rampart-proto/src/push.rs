//! XEP-0357: Push Notifications (`urn:xmpp:push:0`).
//!
//! A client registers an "app server" (a pubsub service JID and a node on it) with
//! `<enable jid node>`, optionally with a publish-options data form that the server must
//! send back with every notification, and removes it with `<disable jid [node]>`. The user's
//! server then publishes a `<notification/>` (with an `urn:xmpp:push:summary` form) to that
//! node when something arrives for a device that is not connected.
//!
//! Parsing is strict where the server relies on a value (the service JID, the node name,
//! the form type and size) and bounded everywhere: hostile input cannot make the server keep
//! or send back more than [`MAX_FORM_BYTES`] of publish options.

use crate::dataforms::{DataForm, Field};
use crate::pubsub::{MAX_NAME, PUBLISH_OPTIONS};
use crate::util::{check, req_attr, wrong};
use crate::{Element, Jid, ParseError, ns};

/// The namespace of enable, disable and notification elements.
pub const NS: &str = "urn:xmpp:push:0";
/// `FORM_TYPE` of the notification's summary form.
pub const SUMMARY: &str = "urn:xmpp:push:summary";
/// Largest publish-options form kept, serialized.
pub const MAX_FORM_BYTES: usize = 4096;

/// `<enable xmlns='urn:xmpp:push:0' jid node>`: register an app server for this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enable {
    /// The push service (the app server's pubsub JID).
    pub jid: Jid,
    /// The pubsub node on that service that identifies this device.
    pub node: String,
    /// The `pubsub#publish-options` form to send with each notification (secrets, tokens).
    pub publish_options: Option<DataForm>,
}

/// `<disable xmlns='urn:xmpp:push:0' jid [node]>`: remove one registration (or, without a
/// node, every registration with that service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disable {
    pub jid: Jid,
    pub node: Option<String>,
}

/// The two client commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Enable(Enable),
    Disable(Disable),
}

fn node_attr(e: &Element) -> Result<Option<String>, ParseError> {
    match e.attr("node") {
        None => Ok(None),
        Some(n) if n.is_empty() || n.len() > MAX_NAME => Err(ParseError::bad_value("node", n)),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

fn service_jid(e: &Element) -> Result<Jid, ParseError> {
    Ok(Jid::parse(req_attr(e, "jid")?)?)
}

impl TryFrom<&Element> for Enable {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "enable", NS)?;
        let jid = service_jid(e)?;
        let node = node_attr(e)?.ok_or(ParseError::MissingAttr("node"))?;
        let mut publish_options = None;
        for c in e.elements() {
            if !c.is("x", ns::DATA_FORMS) {
                return Err(ParseError::UnexpectedChild(format!("{{{}}}{}", c.ns, c.name).chars().take(128).collect()));
            }
            if publish_options.is_some() {
                return Err(ParseError::Duplicate("x"));
            }
            if c.to_xml_string().len() > MAX_FORM_BYTES {
                return Err(ParseError::bad_value("x", "publish-options form too large"));
            }
            let form = DataForm::try_from(c)?;
            if form.type_ != "submit" {
                return Err(ParseError::bad_value("type", &form.type_));
            }
            if form.form_type() != Some(PUBLISH_OPTIONS) {
                return Err(ParseError::bad_value("FORM_TYPE", form.form_type().unwrap_or("")));
            }
            publish_options = Some(form);
        }
        Ok(Enable { jid, node, publish_options })
    }
}

impl From<Enable> for Element {
    fn from(en: Enable) -> Element {
        let e = Element::new("enable", NS).with_attr("jid", en.jid.as_str()).with_attr("node", en.node);
        match en.publish_options {
            Some(f) => e.with_child(f.into()),
            None => e,
        }
    }
}

impl TryFrom<&Element> for Disable {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "disable", NS)?;
        if let Some(c) = e.elements().next() {
            return Err(ParseError::UnexpectedChild(c.name.chars().take(64).collect()));
        }
        Ok(Disable { jid: service_jid(e)?, node: node_attr(e)? })
    }
}

impl From<Disable> for Element {
    fn from(d: Disable) -> Element {
        let e = Element::new("disable", NS).with_attr("jid", d.jid.as_str());
        match d.node {
            Some(n) => e.with_attr("node", n),
            None => e,
        }
    }
}

impl TryFrom<&Element> for Command {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        match (e.name.as_str(), e.ns.as_str()) {
            ("enable", NS) => Enable::try_from(e).map(Command::Enable),
            ("disable", NS) => Disable::try_from(e).map(Command::Disable),
            _ => Err(wrong(e, "enable")),
        }
    }
}

/// The `urn:xmpp:push:summary` form of a notification (XEP-0357). Every field is
/// optional: the server decides how much it tells the app server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Messages waiting since the device was last connected.
    pub message_count: Option<u32>,
    /// Bare JID of the last message's sender.
    pub last_message_sender: Option<String>,
    /// The last message's body.
    pub last_message_body: Option<String>,
}

impl From<Summary> for DataForm {
    fn from(s: Summary) -> DataForm {
        let mut f = DataForm::new("submit", SUMMARY);
        if let Some(n) = s.message_count {
            f = f.with_field(Field::new("message-count", None, n.to_string()));
        }
        if let Some(from) = s.last_message_sender {
            f = f.with_field(Field::new("last-message-sender", None, from));
        }
        if let Some(body) = s.last_message_body {
            f = f.with_field(Field::new("last-message-body", None, body));
        }
        f
    }
}

impl TryFrom<&DataForm> for Summary {
    type Error = ParseError;
    fn try_from(f: &DataForm) -> Result<Self, ParseError> {
        if f.form_type() != Some(SUMMARY) {
            return Err(ParseError::bad_value("FORM_TYPE", f.form_type().unwrap_or("")));
        }
        let value = |var: &str| f.field(var).and_then(Field::value).map(str::to_owned);
        let message_count = match value("message-count") {
            None => None,
            Some(n) => Some(n.parse().map_err(|_| ParseError::bad_value("message-count", &n))?),
        };
        Ok(Summary { message_count, last_message_sender: value("last-message-sender"), last_message_body: value("last-message-body") })
    }
}

/// The `<pubsub/>` payload of a notification: publish one item holding the
/// `<notification/>` with the summary to `node`, followed by the registration's
/// publish-options, if it has any (XEP-0357).
pub fn publish(node: &str, summary: Summary, publish_options: Option<&DataForm>) -> Element {
    let notification = Element::new("notification", NS).with_child(DataForm::from(summary).into());
    let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(
        Element::new("publish", ns::PUBSUB)
            .with_attr("node", node)
            .with_child(Element::new("item", ns::PUBSUB).with_child(notification)),
    );
    if let Some(f) = publish_options {
        pubsub = pubsub.with_child(Element::new("publish-options", ns::PUBSUB).with_child(f.clone().into()));
    }
    pubsub
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DataForm {
        DataForm::new("submit", PUBLISH_OPTIONS).with_field(Field::new("secret", None, "eruio234vzxc2kla-91"))
    }

    #[test]
    fn enable_round_trip() {
        for en in [
            Enable { jid: Jid::parse("push-5.client.example").unwrap(), node: "yxs32uqsflafdk3iuqo".into(), publish_options: None },
            Enable { jid: Jid::parse("p2.siacs.eu").unwrap(), node: "n".into(), publish_options: Some(options()) },
        ] {
            let el: Element = en.clone().into();
            assert_eq!(Enable::try_from(&el).unwrap(), en);
            assert_eq!(Command::try_from(&el).unwrap(), Command::Enable(en));
        }
    }

    #[test]
    fn disable_round_trip() {
        for d in [
            Disable { jid: Jid::parse("push.example.com").unwrap(), node: None },
            Disable { jid: Jid::parse("push.example.com").unwrap(), node: Some("abc".into()) },
        ] {
            let el: Element = d.clone().into();
            assert_eq!(Command::try_from(&el).unwrap(), Command::Disable(d));
        }
    }

    #[test]
    fn invalid_enable_is_refused() {
        let base = || Element::new("enable", NS).with_attr("jid", "push.example.com").with_attr("node", "n");
        // No jid, a bad jid, no node, an empty or huge node.
        assert!(Enable::try_from(&Element::new("enable", NS).with_attr("node", "n")).is_err());
        assert!(Enable::try_from(&base().with_attr("jid", "a@b@c")).is_err());
        assert!(Enable::try_from(&Element::new("enable", NS).with_attr("jid", "push.example.com")).is_err());
        assert!(Enable::try_from(&base().with_attr("node", "")).is_err());
        assert!(Enable::try_from(&base().with_attr("node", "x".repeat(MAX_NAME + 1))).is_err());
        // A form of another type, not a submit form, two forms, a stray child, a huge form.
        let other = DataForm::new("submit", "urn:example:other");
        assert!(Enable::try_from(&base().with_child(other.into())).is_err());
        let form = DataForm { type_: "form".into(), ..options() };
        assert!(Enable::try_from(&base().with_child(form.into())).is_err());
        assert!(Enable::try_from(&base().with_child(options().into()).with_child(options().into())).is_err());
        assert!(Enable::try_from(&base().with_child(Element::new("junk", "urn:example"))).is_err());
        let big = options().with_field(Field::new("secret2", None, "x".repeat(MAX_FORM_BYTES)));
        assert!(Enable::try_from(&base().with_child(big.into())).is_err());
        // Wrong element.
        assert!(Command::try_from(&Element::new("enable", "urn:xmpp:push:1")).is_err());
    }

    #[test]
    fn disable_refuses_children_and_bad_jids() {
        let d = Element::new("disable", NS).with_attr("jid", "push.example.com");
        assert!(Disable::try_from(&d.clone().with_child(Element::new("x", ns::DATA_FORMS))).is_err());
        assert!(Disable::try_from(&Element::new("disable", NS)).is_err());
        assert!(Disable::try_from(&d.with_attr("node", "")).is_err());
    }

    #[test]
    fn publish_payload_carries_summary_and_options() {
        let summary = Summary { message_count: Some(2), last_message_sender: None, last_message_body: None };
        let opts = options();
        let p = publish("node1", summary.clone(), Some(&opts));
        let publish = p.child("publish", ns::PUBSUB).unwrap();
        assert_eq!(publish.attr("node"), Some("node1"));
        let x = publish.child("item", ns::PUBSUB).unwrap().child("notification", NS).unwrap().child("x", ns::DATA_FORMS).unwrap();
        let form = DataForm::try_from(x).unwrap();
        assert_eq!(Summary::try_from(&form).unwrap(), summary);
        assert!(form.field("last-message-body").is_none() && form.field("last-message-sender").is_none());
        let po = p.child("publish-options", ns::PUBSUB).unwrap().child("x", ns::DATA_FORMS).unwrap();
        assert_eq!(DataForm::try_from(po).unwrap(), opts);
        assert!(publish_without_options_has_none());
    }

    fn publish_without_options_has_none() -> bool {
        publish("n", Summary::default(), None).child("publish-options", ns::PUBSUB).is_none()
    }

    #[test]
    fn summary_fields_round_trip() {
        let s = Summary { message_count: Some(1), last_message_sender: Some("juliet@example.com".into()), last_message_body: Some("hi".into()) };
        let f: DataForm = s.clone().into();
        assert_eq!(Summary::try_from(&f).unwrap(), s);
        let bad = DataForm::new("submit", SUMMARY).with_field(Field::new("message-count", None, "many"));
        assert!(Summary::try_from(&bad).is_err());
        assert!(Summary::try_from(&DataForm::new("submit", "x")).is_err());
    }
}
