//! XEP-0060 Publish-Subscribe, the subset XEP-0163 (PEP) needs: the requests in
//! `<pubsub xmlns='http://jabber.org/protocol/pubsub'/>` and `…#owner` (with explicit
//! subscriptions and the owner's subscription and affiliation management), the event
//! notifications in `…#event`, items, and the application error conditions in `…#errors`.
//!
//! [`Request`] is what a client asks (one action per IQ, as §7–§8 require); [`Event`] is what
//! subscribers receive. Limits: at most [`MAX_IDS`] item ids in one request, node names and
//! ids at most [`MAX_NAME`] bytes.

use crate::dataforms::DataForm;
use crate::util::{check, opt_attr, req_attr};
use crate::{Element, ParseError};

/// XEP-0060 pubsub requests.
pub const NS: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 owner use cases (configure, purge, delete, subscriptions, affiliations).
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// XEP-0060 event notifications.
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060 application error conditions.
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0060 node configuration form type.
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// XEP-0060 publish-options form type.
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// Longest node name or item id accepted.
pub const MAX_NAME: usize = 1024;
/// Most item ids in one items or retract request.
pub const MAX_IDS: usize = 64;

/// One `<item/>`: its id, its publisher (set by the service) and its payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    pub id: Option<String>,
    pub publisher: Option<String>,
    /// The single payload element (absent in requests by id and in retractions).
    pub payload: Option<Element>,
}

impl Item {
    /// Parse an `<item/>` in namespace `ns` (pubsub or pubsub#event).
    pub fn parse(e: &Element, ns: &str) -> Result<Item, ParseError> {
        check_in(e, "item", ns)?;
        let id = name_attr(e, "id")?;
        let mut children = e.elements();
        let payload = children.next().cloned();
        if children.next().is_some() {
            return Err(ParseError::ChildCount("an item carries at most one payload"));
        }
        Ok(Item { id, publisher: opt_attr(e, "publisher"), payload })
    }

    /// Serialize as an `<item/>` in namespace `ns`.
    pub fn to_element(&self, ns: &str) -> Element {
        let mut e = Element::new("item", ns);
        if let Some(id) = &self.id {
            e.set_attr("id", id);
        }
        if let Some(p) = &self.publisher {
            e.set_attr("publisher", p);
        }
        if let Some(p) = &self.payload {
            e = e.with_child(p.clone());
        }
        e
    }
}

/// A pubsub request (the one action element inside `<pubsub/>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// §7.1 publish (with §7.1.5 publish-options).
    Publish { node: String, item: Option<Item>, options: Option<DataForm> },
    /// §7.2 retract.
    Retract { node: String, notify: bool, ids: Vec<String> },
    /// §6.5 retrieve items: all, the newest `max_items`, or by id.
    Items { node: String, max_items: Option<usize>, ids: Vec<String> },
    /// §8.1 create a node (with an optional configuration).
    Create { node: Option<String>, config: Option<DataForm> },
    /// §6.1 subscribe; `with_options` if the request carries `<options/>` (§6.3.7).
    Subscribe { node: String, jid: String, with_options: bool },
    /// §6.2 unsubscribe (of one `subid`, if given).
    Unsubscribe { node: String, jid: String, subid: Option<String> },
    /// §5.6 the requester's subscriptions.
    Subscriptions { node: Option<String> },
    /// §5.7 the requester's affiliations.
    Affiliations { node: Option<String> },
    /// §8.2 (owner) the node's configuration form; `form` set to change it.
    Configure { node: String, form: Option<DataForm> },
    /// §8.3 (owner) the default configuration.
    Default,
    /// §8.5 (owner) purge all items.
    Purge { node: String },
    /// §8.4 (owner) delete the node.
    Delete { node: String },
    /// §8.8 (owner) a node's subscriptions: retrieve (IQ get) or modify (IQ set) with these
    /// `(jid, subscription)` changes.
    OwnerSubscriptions { node: String, changes: Vec<(String, String)> },
    /// §8.9 (owner) a node's affiliations: retrieve (IQ get) or modify (IQ set) with these
    /// `(jid, affiliation)` changes.
    OwnerAffiliations { node: String, changes: Vec<(String, String)> },
    /// A request this module recognizes but the XEP-0060 feature it needs, named here (the
    /// `feature` of `<unsupported/>`), is not part of the subset.
    Unsupported(&'static str),
}

fn check_in(e: &Element, name: &'static str, ns: &str) -> Result<(), ParseError> {
    check(e, name, ns)
}

/// An optional name-like attribute (node, id): non-empty and at most [`MAX_NAME`] bytes.
fn name_attr(e: &Element, attr: &'static str) -> Result<Option<String>, ParseError> {
    match e.attr(attr) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > MAX_NAME => Err(ParseError::bad_value(attr, v)),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

fn jid_attr(e: &Element) -> Result<String, ParseError> {
    let j = req_attr(e, "jid")?;
    if j.len() > MAX_NAME {
        return Err(ParseError::bad_value("jid", j));
    }
    Ok(j.to_owned())
}

fn node_of(e: &Element) -> Result<String, ParseError> {
    name_attr(e, "node")?.ok_or(ParseError::MissingAttr("node"))
}

fn form_in(e: &Element) -> Result<Option<DataForm>, ParseError> {
    e.elements().find(|c| c.is("x", crate::ns::DATA_FORMS)).map(DataForm::try_from).transpose()
}

/// The `(jid, <attr>)` pairs of an owner's `<subscription/>` or `<affiliation/>` list.
fn changes_of(e: &Element, child: &'static str, attr: &'static str) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    for c in e.elements() {
        if !c.is(child, NS_OWNER) {
            return Err(ParseError::UnexpectedChild(c.name.clone()));
        }
        if out.len() >= MAX_IDS {
            return Err(ParseError::ChildCount("too many changes"));
        }
        let jid = req_attr(c, "jid")?;
        let value = req_attr(c, attr)?;
        if jid.len() > MAX_NAME || value.len() > 64 {
            return Err(ParseError::bad_value(attr, value));
        }
        out.push((jid.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn ids_of(e: &Element, ns: &str) -> Result<Vec<String>, ParseError> {
    let mut ids = Vec::new();
    for i in e.elements().filter(|c| c.is("item", ns)) {
        if ids.len() >= MAX_IDS {
            return Err(ParseError::ChildCount("too many items"));
        }
        ids.push(name_attr(i, "id")?.ok_or(ParseError::MissingAttr("id"))?);
    }
    Ok(ids)
}

impl TryFrom<&Element> for Request {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        let owner = e.is("pubsub", NS_OWNER);
        if !owner {
            check(e, "pubsub", NS)?;
        }
        let ns = e.ns.as_str();
        let mut actions = e.elements().filter(|c| c.ns == ns && !matches!(c.name.as_str(), "publish-options" | "configure" | "options"));
        let action = actions.next();
        if owner {
            // Owner requests carry exactly one action.
            let action = action.ok_or(ParseError::ChildCount("no pubsub action"))?;
            if actions.next().is_some() {
                return Err(ParseError::ChildCount("more than one pubsub action"));
            }
            return Ok(match action.name.as_str() {
                "purge" => Request::Purge { node: node_of(action)? },
                "delete" => Request::Delete { node: node_of(action)? },
                "default" => Request::Default,
                "affiliations" => Request::OwnerAffiliations { node: node_of(action)?, changes: changes_of(action, "affiliation", "affiliation")? },
                "subscriptions" => Request::OwnerSubscriptions { node: node_of(action)?, changes: changes_of(action, "subscription", "subscription")? },
                other => return Err(ParseError::UnexpectedChild(other.to_owned())),
            });
        }
        let configure = e.child("configure", NS);
        let options = e.child("options", NS);
        let Some(action) = action else {
            // <configure/> alone in the owner namespace is handled above; here it is only
            // valid beside <create/>. <options/> alone is a subscription options request.
            return match (e.child("configure", NS_OWNER).or(configure), options) {
                (None, Some(_)) => Ok(Request::Unsupported("subscription-options")),
                (Some(_), _) => Err(ParseError::ChildCount("configure without create")),
                (None, None) => Err(ParseError::ChildCount("no pubsub action")),
            };
        };
        if actions.next().is_some() {
            return Err(ParseError::ChildCount("more than one pubsub action"));
        }
        Ok(match action.name.as_str() {
            "publish" => {
                let node = node_of(action)?;
                let mut items = action.elements().filter(|c| c.is("item", NS));
                let item = items.next().map(|i| Item::parse(i, NS)).transpose()?;
                if items.next().is_some() {
                    return Err(ParseError::ChildCount("publish one item at a time"));
                }
                let options = match e.child("publish-options", NS) {
                    Some(po) => form_in(po)?,
                    None => None,
                };
                Request::Publish { node, item, options }
            }
            "retract" => {
                let notify = matches!(action.attr("notify"), Some("true" | "1"));
                Request::Retract { node: node_of(action)?, notify, ids: ids_of(action, NS)? }
            }
            "items" => {
                let max_items = match action.attr("max_items") {
                    None => None,
                    Some(m) => Some(m.parse::<usize>().map_err(|_| ParseError::bad_value("max_items", m))?),
                };
                Request::Items { node: node_of(action)?, max_items, ids: ids_of(action, NS)? }
            }
            "create" => {
                let config = match configure {
                    Some(c) => form_in(c)?,
                    None => None,
                };
                Request::Create { node: name_attr(action, "node")?, config }
            }
            "subscribe" => Request::Subscribe { node: node_of(action)?, jid: jid_attr(action)?, with_options: options.is_some() },
            "unsubscribe" => Request::Unsubscribe { node: node_of(action)?, jid: jid_attr(action)?, subid: name_attr(action, "subid")? },
            // §6.4: the default subscription options.
            "default" => Request::Unsupported("retrieve-default-sub"),
            "subscriptions" => Request::Subscriptions { node: name_attr(action, "node")? },
            "affiliations" => Request::Affiliations { node: name_attr(action, "node")? },
            other => return Err(ParseError::UnexpectedChild(other.to_owned())),
        })
    }
}

impl Request {
    /// Parse a `<pubsub/>` payload whose owner-namespace `<configure/>` is its action (§8.2).
    pub fn parse(e: &Element) -> Result<Request, ParseError> {
        if e.is("pubsub", NS_OWNER)
            && let Some(c) = e.child("configure", NS_OWNER)
        {
            if e.elements().count() != 1 {
                return Err(ParseError::ChildCount("more than one pubsub action"));
            }
            return Ok(Request::Configure { node: node_of(c)?, form: form_in(c)? });
        }
        Request::try_from(e)
    }
}

impl From<Request> for Element {
    fn from(r: Request) -> Element {
        let ps = Element::new("pubsub", NS);
        let owner = Element::new("pubsub", NS_OWNER);
        let with_node = |name: &str, ns: &str, node: String| Element::new(name, ns).with_attr("node", node);
        match r {
            Request::Publish { node, item, options } => {
                let mut p = with_node("publish", NS, node);
                if let Some(i) = item {
                    p = p.with_child(i.to_element(NS));
                }
                let mut e = ps.with_child(p);
                if let Some(o) = options {
                    e = e.with_child(Element::new("publish-options", NS).with_child(o.into()));
                }
                e
            }
            Request::Retract { node, notify, ids } => {
                let mut r = with_node("retract", NS, node);
                if notify {
                    r.set_attr("notify", "true");
                }
                ps.with_child(ids.into_iter().fold(r, |r, id| r.with_child(Element::new("item", NS).with_attr("id", id))))
            }
            Request::Items { node, max_items, ids } => {
                let mut i = with_node("items", NS, node);
                if let Some(m) = max_items {
                    i.set_attr("max_items", m.to_string());
                }
                ps.with_child(ids.into_iter().fold(i, |r, id| r.with_child(Element::new("item", NS).with_attr("id", id))))
            }
            Request::Create { node, config } => {
                let mut c = Element::new("create", NS);
                if let Some(n) = node {
                    c.set_attr("node", n);
                }
                let mut e = ps.with_child(c);
                if let Some(f) = config {
                    e = e.with_child(Element::new("configure", NS).with_child(f.into()));
                }
                e
            }
            Request::Subscribe { node, jid, with_options } => {
                let e = ps.with_child(with_node("subscribe", NS, node).with_attr("jid", jid));
                if with_options { e.with_child(Element::new("options", NS)) } else { e }
            }
            Request::Unsubscribe { node, jid, subid } => {
                let mut u = with_node("unsubscribe", NS, node).with_attr("jid", jid);
                if let Some(s) = subid {
                    u.set_attr("subid", s);
                }
                ps.with_child(u)
            }
            Request::OwnerSubscriptions { node, changes } => owner.with_child(changes.into_iter().fold(with_node("subscriptions", NS_OWNER, node), |e, (jid, s)| {
                e.with_child(Element::new("subscription", NS_OWNER).with_attr("jid", jid).with_attr("subscription", s))
            })),
            Request::OwnerAffiliations { node, changes } => owner.with_child(changes.into_iter().fold(with_node("affiliations", NS_OWNER, node), |e, (jid, a)| {
                e.with_child(Element::new("affiliation", NS_OWNER).with_attr("jid", jid).with_attr("affiliation", a))
            })),
            Request::Subscriptions { node } => {
                let mut s = Element::new("subscriptions", NS);
                if let Some(n) = node {
                    s.set_attr("node", n);
                }
                ps.with_child(s)
            }
            Request::Affiliations { node } => {
                let mut s = Element::new("affiliations", NS);
                if let Some(n) = node {
                    s.set_attr("node", n);
                }
                ps.with_child(s)
            }
            Request::Configure { node, form } => {
                let mut c = with_node("configure", NS_OWNER, node);
                if let Some(f) = form {
                    c = c.with_child(f.into());
                }
                owner.with_child(c)
            }
            Request::Default => owner.with_child(Element::new("default", NS_OWNER)),
            Request::Purge { node } => owner.with_child(with_node("purge", NS_OWNER, node)),
            Request::Delete { node } => owner.with_child(with_node("delete", NS_OWNER, node)),
            Request::Unsupported(_) => ps,
        }
    }
}

/// A `<pubsub#event/>` notification payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Published items and retractions on a node.
    Items { node: String, items: Vec<Item>, retracts: Vec<String> },
    /// The node's items were purged.
    Purge { node: String },
    /// The node was deleted.
    Delete { node: String },
}

impl From<Event> for Element {
    fn from(ev: Event) -> Element {
        let e = Element::new("event", NS_EVENT);
        match ev {
            Event::Items { node, items, retracts } => {
                let mut i = Element::new("items", NS_EVENT).with_attr("node", node);
                for it in items {
                    i = i.with_child(it.to_element(NS_EVENT));
                }
                for r in retracts {
                    i = i.with_child(Element::new("retract", NS_EVENT).with_attr("id", r));
                }
                e.with_child(i)
            }
            Event::Purge { node } => e.with_child(Element::new("purge", NS_EVENT).with_attr("node", node)),
            Event::Delete { node } => e.with_child(Element::new("delete", NS_EVENT).with_attr("node", node)),
        }
    }
}

impl TryFrom<&Element> for Event {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "event", NS_EVENT)?;
        let mut children = e.elements();
        let c = children.next().ok_or(ParseError::MissingChild("items"))?;
        if children.next().is_some() {
            return Err(ParseError::ChildCount("one event per notification"));
        }
        match c.name.as_str() {
            "items" if c.ns == NS_EVENT => {
                let node = node_of(c)?;
                let mut items = Vec::new();
                let mut retracts = Vec::new();
                for x in c.elements() {
                    if x.is("item", NS_EVENT) {
                        items.push(Item::parse(x, NS_EVENT)?);
                    } else if x.is("retract", NS_EVENT) {
                        retracts.push(name_attr(x, "id")?.ok_or(ParseError::MissingAttr("id"))?);
                    } else {
                        return Err(ParseError::UnexpectedChild(x.name.clone()));
                    }
                }
                Ok(Event::Items { node, items, retracts })
            }
            "purge" if c.ns == NS_EVENT => Ok(Event::Purge { node: node_of(c)? }),
            "delete" if c.ns == NS_EVENT => Ok(Event::Delete { node: node_of(c)? }),
            other => Err(ParseError::UnexpectedChild(other.to_owned())),
        }
    }
}

/// `<condition xmlns='http://jabber.org/protocol/pubsub#errors'/>`, e.g.
/// `precondition-not-met`, `item-required`, `payload-too-big`.
pub fn app_error(condition: &str) -> Element {
    Element::new(condition, NS_ERRORS)
}

/// `<unsupported xmlns='…#errors' feature='…'/>` (§7.1.3.x and others).
pub fn unsupported(feature: &str) -> Element {
    Element::new("unsupported", NS_ERRORS).with_attr("feature", feature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataforms::Field;

    fn tune() -> Element {
        Element::new("tune", "http://jabber.org/protocol/tune").with_child(Element::new("title", "http://jabber.org/protocol/tune").with_text("Yes"))
    }

    #[test]
    fn requests_round_trip() {
        let opts = DataForm::new("submit", PUBLISH_OPTIONS).with_field(Field::new("pubsub#access_model", None, "open"));
        let cases = vec![
            Request::Publish { node: "n".into(), item: Some(Item { id: Some("current".into()), publisher: None, payload: Some(tune()) }), options: None },
            Request::Publish { node: "n".into(), item: Some(Item { id: None, publisher: None, payload: Some(tune()) }), options: Some(opts.clone()) },
            Request::Publish { node: "n".into(), item: None, options: None },
            Request::Retract { node: "n".into(), notify: true, ids: vec!["a".into()] },
            Request::Items { node: "n".into(), max_items: Some(2), ids: vec![] },
            Request::Items { node: "n".into(), max_items: None, ids: vec!["a".into(), "b".into()] },
            Request::Create { node: Some("n".into()), config: Some(DataForm::new("submit", NODE_CONFIG)) },
            Request::Create { node: Some("n".into()), config: None },
            Request::Subscribe { node: "n".into(), jid: "a@b".into(), with_options: false },
            Request::Subscribe { node: "n".into(), jid: "a@b/r".into(), with_options: true },
            Request::Unsubscribe { node: "n".into(), jid: "a@b".into(), subid: None },
            Request::Unsubscribe { node: "n".into(), jid: "a@b".into(), subid: Some("s1".into()) },
            Request::OwnerSubscriptions { node: "n".into(), changes: vec![] },
            Request::OwnerSubscriptions { node: "n".into(), changes: vec![("a@b".into(), "subscribed".into()), ("c@d/r".into(), "none".into())] },
            Request::OwnerAffiliations { node: "n".into(), changes: vec![] },
            Request::OwnerAffiliations { node: "n".into(), changes: vec![("a@b".into(), "member".into())] },
            Request::Subscriptions { node: None },
            Request::Affiliations { node: Some("n".into()) },
            Request::Configure { node: "n".into(), form: None },
            Request::Configure { node: "n".into(), form: Some(DataForm::new("submit", NODE_CONFIG)) },
            Request::Default,
            Request::Purge { node: "n".into() },
            Request::Delete { node: "n".into() },
        ];
        for r in cases {
            let el: Element = r.clone().into();
            assert_eq!(Request::parse(&el).unwrap(), r, "{}", el.to_xml_string());
        }
    }

    #[test]
    fn invalid_requests() {
        let bad = |e: Element| assert!(Request::parse(&e).is_err(), "{}", e.to_xml_string());
        bad(Element::new("pubsub", "urn:other"));
        bad(Element::new("pubsub", NS));
        bad(Element::new("pubsub", NS).with_child(Element::new("publish", NS)));
        bad(Element::new("pubsub", NS).with_child(Element::new("publish", NS).with_attr("node", "")));
        bad(Element::new("pubsub", NS).with_child(Element::new("publish", NS).with_attr("node", "x".repeat(MAX_NAME + 1))));
        bad(Element::new("pubsub", NS).with_child(
            Element::new("publish", NS).with_attr("node", "n").with_child(Element::new("item", NS)).with_child(Element::new("item", NS)),
        ));
        bad(Element::new("pubsub", NS).with_child(
            Element::new("publish", NS).with_attr("node", "n").with_child(Element::new("item", NS).with_child(tune()).with_child(tune())),
        ));
        bad(Element::new("pubsub", NS).with_child(Element::new("items", NS).with_attr("node", "n").with_attr("max_items", "-1")));
        bad(Element::new("pubsub", NS).with_child(Element::new("retract", NS).with_attr("node", "n").with_child(Element::new("item", NS))));
        bad(Element::new("pubsub", NS).with_child(Element::new("items", NS).with_attr("node", "n")).with_child(Element::new("retract", NS).with_attr("node", "n")));
        bad(Element::new("pubsub", NS).with_child(Element::new("frobnicate", NS)));
        bad(Element::new("pubsub", NS_OWNER).with_child(Element::new("purge", NS_OWNER)));
        let mut many = Element::new("items", NS).with_attr("node", "n");
        for i in 0..=MAX_IDS {
            many = many.with_child(Element::new("item", NS).with_attr("id", i.to_string()));
        }
        bad(Element::new("pubsub", NS).with_child(many));
        // Owner lists need a node and well-formed entries.
        bad(Element::new("pubsub", NS_OWNER).with_child(Element::new("affiliations", NS_OWNER)));
        bad(Element::new("pubsub", NS_OWNER).with_child(
            Element::new("affiliations", NS_OWNER).with_attr("node", "n").with_child(Element::new("affiliation", NS_OWNER).with_attr("jid", "a@b")),
        ));
        bad(Element::new("pubsub", NS_OWNER).with_child(
            Element::new("subscriptions", NS_OWNER).with_attr("node", "n").with_child(Element::new("affiliation", NS_OWNER).with_attr("jid", "a@b").with_attr("affiliation", "member")),
        ));
        bad(Element::new("pubsub", NS).with_child(Element::new("subscribe", NS).with_attr("node", "n")));
        // Subscription options are recognized (and answered as unsupported by the service).
        assert_eq!(
            Request::parse(&Element::new("pubsub", NS).with_child(Element::new("options", NS).with_attr("node", "n").with_attr("jid", "a@b"))).unwrap(),
            Request::Unsupported("subscription-options")
        );
        assert_eq!(
            Request::parse(&Element::new("pubsub", NS).with_child(Element::new("default", NS).with_attr("node", "n"))).unwrap(),
            Request::Unsupported("retrieve-default-sub")
        );
    }

    #[test]
    fn events_round_trip_and_invalid() {
        for ev in [
            Event::Items { node: "n".into(), items: vec![Item { id: Some("1".into()), publisher: Some("a@b".into()), payload: Some(tune()) }], retracts: vec![] },
            Event::Items { node: "n".into(), items: vec![], retracts: vec!["1".into()] },
            Event::Purge { node: "n".into() },
            Event::Delete { node: "n".into() },
        ] {
            let el: Element = ev.clone().into();
            assert_eq!(Event::try_from(&el).unwrap(), ev);
        }
        assert!(Event::try_from(&Element::new("event", NS_EVENT)).is_err());
        assert!(Event::try_from(&Element::new("event", NS)).is_err());
        assert!(Event::try_from(&Element::new("event", NS_EVENT).with_child(Element::new("items", NS_EVENT))).is_err());
    }

    #[test]
    fn error_elements() {
        assert!(app_error("precondition-not-met").is("precondition-not-met", NS_ERRORS));
        assert_eq!(unsupported("purge-nodes").attr("feature"), Some("purge-nodes"));
    }
}
