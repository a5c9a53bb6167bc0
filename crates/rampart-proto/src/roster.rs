//! RFC 6121 §2: roster management (`<query xmlns='jabber:iq:roster'>`).

use crate::util::{self, check, req_attr};
use crate::{Element, Jid, ParseError, ns};

/// Valid values of an item's `subscription` attribute (`remove` only in a client's set).
pub const SUBSCRIPTIONS: &[&str] = &["none", "to", "from", "both", "remove"];

/// A roster get, set, result or push.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RosterQuery {
    /// Roster version (RFC 6121 §2.6).
    pub ver: Option<String>,
    pub items: Vec<RosterItem>,
}

/// One roster item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    pub jid: Jid,
    pub name: Option<String>,
    /// `none`, `to`, `from`, `both` or `remove`; `None` if absent.
    pub subscription: Option<String>,
    /// `ask='subscribe'`: an outbound subscription request is pending.
    pub ask: bool,
    /// `approved='true'`: an inbound subscription is pre-approved.
    pub approved: bool,
    pub groups: Vec<String>,
}

impl RosterItem {
    /// An item with only a JID.
    pub fn new(jid: Jid) -> Self {
        RosterItem {
            jid,
            name: None,
            subscription: None,
            ask: false,
            approved: false,
            groups: Vec::new(),
        }
    }
}

impl TryFrom<&Element> for RosterItem {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "item", ns::ROSTER)?;
        let jid = Jid::parse(req_attr(e, "jid")?)?;
        let subscription = match e.attr("subscription") {
            Some(s) if SUBSCRIPTIONS.contains(&s) => Some(s.to_owned()),
            Some(s) => return Err(ParseError::bad_value("subscription", s)),
            None => None,
        };
        let ask = match e.attr("ask") {
            None => false,
            Some("subscribe") => true,
            Some(s) => return Err(ParseError::bad_value("ask", s)),
        };
        let approved = match e.attr("approved") {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(s) => return Err(ParseError::bad_value("approved", s)),
        };
        let mut groups: Vec<String> = Vec::new();
        for c in e.elements() {
            if c.is("group", ns::ROSTER) {
                let g = util::text_only(c)?;
                if g.is_empty() {
                    return Err(ParseError::bad_value("group", &g));
                }
                if groups.contains(&g) {
                    return Err(ParseError::Duplicate("group"));
                }
                groups.push(g);
            } else if c.ns == ns::ROSTER {
                return Err(ParseError::UnexpectedChild(c.name.clone()));
            }
        }
        Ok(RosterItem {
            jid,
            name: util::opt_attr(e, "name"),
            subscription,
            ask,
            approved,
            groups,
        })
    }
}

impl TryFrom<Element> for RosterItem {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        RosterItem::try_from(&e)
    }
}

impl From<RosterItem> for Element {
    fn from(i: RosterItem) -> Element {
        let mut e = Element::new("item", ns::ROSTER).with_attr("jid", i.jid.as_str());
        if let Some(n) = i.name {
            e.set_attr("name", n);
        }
        if let Some(s) = i.subscription {
            e.set_attr("subscription", s);
        }
        if i.ask {
            e.set_attr("ask", "subscribe");
        }
        if i.approved {
            e.set_attr("approved", "true");
        }
        for g in i.groups {
            e = e.with_child(Element::new("group", ns::ROSTER).with_text(g));
        }
        e
    }
}

impl TryFrom<&Element> for RosterQuery {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "query", ns::ROSTER)?;
        let mut items = Vec::new();
        for c in e.elements() {
            if c.is("item", ns::ROSTER) {
                items.push(RosterItem::try_from(c)?);
            } else if c.ns == ns::ROSTER {
                return Err(ParseError::UnexpectedChild(c.name.clone()));
            }
        }
        Ok(RosterQuery {
            ver: util::opt_attr(e, "ver"),
            items,
        })
    }
}

impl TryFrom<Element> for RosterQuery {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        RosterQuery::try_from(&e)
    }
}

impl From<RosterQuery> for Element {
    fn from(q: RosterQuery) -> Element {
        let mut e = Element::new("query", ns::ROSTER);
        if let Some(v) = q.ver {
            e.set_attr("ver", v);
        }
        for i in q.items {
            e = e.with_child(i.into());
        }
        e
    }
}

/// The `<ver/>` stream feature (roster versioning).
pub fn rosterver_feature() -> Element {
    Element::new("ver", ns::ROSTERVER)
}

/// The `<sub/>` stream feature (subscription pre-approval).
pub fn pre_approval_feature() -> Element {
    Element::new("sub", ns::PRE_APPROVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(attrs: &[(&str, &str)]) -> Element {
        let mut e = Element::new("item", ns::ROSTER).with_attr("jid", "juliet@example.com");
        for (k, v) in attrs {
            e.set_attr(*k, *v);
        }
        e
    }

    fn query(children: Vec<Element>) -> Element {
        let mut q = Element::new("query", ns::ROSTER);
        for c in children {
            q = q.with_child(c);
        }
        q
    }

    #[test]
    fn round_trip() {
        let q = RosterQuery {
            ver: Some("ver14".into()),
            items: vec![
                RosterItem::new(Jid::parse("nurse@example.com").unwrap()),
                RosterItem {
                    jid: Jid::parse("romeo@example.net").unwrap(),
                    name: Some("Romeo".into()),
                    subscription: Some("both".into()),
                    ask: true,
                    approved: true,
                    groups: vec!["Friends".into(), "Lovers".into()],
                },
            ],
        };
        let el: Element = q.clone().into();
        assert_eq!(RosterQuery::try_from(&el).unwrap(), q);
        assert_eq!(RosterQuery::try_from(el).unwrap(), q);
        let empty = RosterQuery::default();
        assert_eq!(
            RosterQuery::try_from(Element::from(empty.clone())).unwrap(),
            empty
        );
        let ri = RosterItem::try_from(&item(&[("subscription", "remove"), ("approved", "false")]))
            .unwrap();
        assert_eq!(ri.subscription.as_deref(), Some("remove"));
        assert!(!ri.approved);
        assert_eq!(RosterItem::try_from(Element::from(ri.clone())).unwrap(), ri);
        // Unknown foreign-namespace children are ignored.
        let ext = query(vec![item(&[])]).with_child(Element::new("x", "urn:example"));
        assert_eq!(RosterQuery::try_from(&ext).unwrap().items.len(), 1);
    }

    #[test]
    fn invalid() {
        let no_jid = query(vec![Element::new("item", ns::ROSTER)]);
        assert_eq!(
            RosterQuery::try_from(&no_jid),
            Err(ParseError::MissingAttr("jid"))
        );
        let bad_jid = query(vec![
            Element::new("item", ns::ROSTER).with_attr("jid", "@example.com"),
        ]);
        assert!(matches!(
            RosterQuery::try_from(&bad_jid),
            Err(ParseError::Jid(_))
        ));
        for (k, v) in [
            ("subscription", "maybe"),
            ("ask", "unsubscribe"),
            ("approved", "yes"),
        ] {
            let q = query(vec![item(&[(k, v)])]);
            assert!(
                matches!(RosterQuery::try_from(&q), Err(ParseError::BadValue { .. })),
                "{k}={v}"
            );
        }
        let group = |t: &str| Element::new("group", ns::ROSTER).with_text(t);
        let dup = query(vec![
            item(&[]).with_child(group("A")).with_child(group("A")),
        ]);
        assert_eq!(
            RosterQuery::try_from(&dup),
            Err(ParseError::Duplicate("group"))
        );
        let empty = query(vec![
            item(&[]).with_child(Element::new("group", ns::ROSTER)),
        ]);
        assert!(matches!(
            RosterQuery::try_from(&empty),
            Err(ParseError::BadValue { name: "group", .. })
        ));
        let unknown = query(vec![Element::new("entry", ns::ROSTER)]);
        assert!(matches!(
            RosterQuery::try_from(&unknown),
            Err(ParseError::UnexpectedChild(_))
        ));
        assert!(matches!(
            RosterQuery::try_from(&Element::new("query", ns::DISCO_INFO)),
            Err(ParseError::WrongElement { .. })
        ));
        assert!(matches!(
            RosterItem::try_from(&query(vec![])),
            Err(ParseError::WrongElement { .. })
        ));
    }

    #[test]
    fn features() {
        assert!(rosterver_feature().is("ver", ns::ROSTERVER));
        assert!(pre_approval_feature().is("sub", ns::PRE_APPROVAL));
    }
}
