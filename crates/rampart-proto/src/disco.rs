//! XEP-0030: service discovery (disco#info and disco#items), with XEP-0128 extensions kept raw.

use crate::util::{self, check, req_attr};
use crate::{Element, Jid, ParseError, ns};

/// An identity of an entity (`<identity category=.. type=.. [name=..] [xml:lang=..]/>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub category: String,
    pub type_: String,
    pub name: Option<String>,
    pub lang: Option<String>,
}

impl Identity {
    /// An identity without name or language.
    pub fn new(category: impl Into<String>, type_: impl Into<String>) -> Self {
        Identity {
            category: category.into(),
            type_: type_.into(),
            name: None,
            lang: None,
        }
    }

    /// Builder-style: set the human-readable name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl TryFrom<&Element> for Identity {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "identity", ns::DISCO_INFO)?;
        let category = req_attr(e, "category")?;
        if category.is_empty() {
            return Err(ParseError::bad_value("category", category));
        }
        let type_ = req_attr(e, "type")?;
        if type_.is_empty() {
            return Err(ParseError::bad_value("type", type_));
        }
        Ok(Identity {
            category: category.to_owned(),
            type_: type_.to_owned(),
            name: util::opt_attr(e, "name"),
            lang: util::lang(e),
        })
    }
}

impl From<Identity> for Element {
    fn from(i: Identity) -> Element {
        let mut e = Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", i.category)
            .with_attr("type", i.type_);
        if let Some(n) = i.name {
            e.set_attr("name", n);
        }
        if let Some(l) = i.lang {
            e.set_attr("xml:lang", l);
        }
        e
    }
}

/// A disco#info query or result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoInfo {
    pub node: Option<String>,
    pub identities: Vec<Identity>,
    pub features: Vec<String>,
    /// XEP-0128 extended information: `<x xmlns='jabber:x:data'/>` forms, unparsed.
    pub extensions: Vec<Element>,
}

impl DiscoInfo {
    /// True if `var` is among the features.
    pub fn has_feature(&self, var: &str) -> bool {
        self.features.iter().any(|f| f == var)
    }

    /// True for a request (no identities, features or extensions).
    pub fn is_query(&self) -> bool {
        self.identities.is_empty() && self.features.is_empty() && self.extensions.is_empty()
    }
}

impl TryFrom<&Element> for DiscoInfo {
    type Error = ParseError;
    /// Children in foreign namespaces other than data forms are ignored.
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "query", ns::DISCO_INFO)?;
        let mut info = DiscoInfo {
            node: util::opt_attr(e, "node"),
            ..DiscoInfo::default()
        };
        for c in e.elements() {
            if c.is("identity", ns::DISCO_INFO) {
                info.identities.push(Identity::try_from(c)?);
            } else if c.is("feature", ns::DISCO_INFO) {
                let var = req_attr(c, "var")?;
                if var.is_empty() {
                    return Err(ParseError::bad_value("var", var));
                }
                info.features.push(var.to_owned());
            } else if c.is("x", ns::DATA_FORMS) {
                info.extensions.push(c.clone());
            } else if c.ns == ns::DISCO_INFO {
                return Err(ParseError::UnexpectedChild(c.name.clone()));
            }
        }
        Ok(info)
    }
}

impl TryFrom<Element> for DiscoInfo {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        DiscoInfo::try_from(&e)
    }
}

impl From<DiscoInfo> for Element {
    fn from(d: DiscoInfo) -> Element {
        let mut e = Element::new("query", ns::DISCO_INFO);
        if let Some(n) = d.node {
            e.set_attr("node", n);
        }
        for i in d.identities {
            e = e.with_child(i.into());
        }
        for f in d.features {
            e = e.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        for x in d.extensions {
            e = e.with_child(x);
        }
        e
    }
}

/// One `<item jid=.. [node=..] [name=..]/>` of a disco#items result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoItem {
    pub jid: Jid,
    pub node: Option<String>,
    pub name: Option<String>,
}

impl DiscoItem {
    /// An item with only a JID.
    pub fn new(jid: Jid) -> Self {
        DiscoItem {
            jid,
            node: None,
            name: None,
        }
    }
}

impl TryFrom<&Element> for DiscoItem {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "item", ns::DISCO_ITEMS)?;
        Ok(DiscoItem {
            jid: Jid::parse(req_attr(e, "jid")?)?,
            node: util::opt_attr(e, "node"),
            name: util::opt_attr(e, "name"),
        })
    }
}

impl From<DiscoItem> for Element {
    fn from(i: DiscoItem) -> Element {
        let mut e = Element::new("item", ns::DISCO_ITEMS).with_attr("jid", i.jid.as_str());
        if let Some(n) = i.node {
            e.set_attr("node", n);
        }
        if let Some(n) = i.name {
            e.set_attr("name", n);
        }
        e
    }
}

/// A disco#items query or result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoItems {
    pub node: Option<String>,
    pub items: Vec<DiscoItem>,
}

impl TryFrom<&Element> for DiscoItems {
    type Error = ParseError;
    /// Children in foreign namespaces (e.g. XEP-0059 result sets) are ignored.
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "query", ns::DISCO_ITEMS)?;
        let mut items = Vec::new();
        for c in e.elements() {
            if c.is("item", ns::DISCO_ITEMS) {
                items.push(DiscoItem::try_from(c)?);
            } else if c.ns == ns::DISCO_ITEMS {
                return Err(ParseError::UnexpectedChild(c.name.clone()));
            }
        }
        Ok(DiscoItems {
            node: util::opt_attr(e, "node"),
            items,
        })
    }
}

impl TryFrom<Element> for DiscoItems {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        DiscoItems::try_from(&e)
    }
}

impl From<DiscoItems> for Element {
    fn from(d: DiscoItems) -> Element {
        let mut e = Element::new("query", ns::DISCO_ITEMS);
        if let Some(n) = d.node {
            e.set_attr("node", n);
        }
        for i in d.items {
            e = e.with_child(i.into());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DiscoInfo {
        DiscoInfo {
            node: Some("http://rampart.example/caps#abc".into()),
            identities: vec![
                Identity::new("server", "im").with_name("Rampart"),
                Identity {
                    category: "pubsub".into(),
                    type_: "pep".into(),
                    name: None,
                    lang: Some("en".into()),
                },
            ],
            features: vec![ns::DISCO_INFO.into(), ns::PING.into()],
            extensions: vec![Element::new("x", ns::DATA_FORMS).with_attr("type", "result")],
        }
    }

    #[test]
    fn info_round_trip() {
        for d in [info(), DiscoInfo::default()] {
            let el: Element = d.clone().into();
            assert_eq!(DiscoInfo::try_from(&el).unwrap(), d);
        }
        assert!(info().has_feature(ns::PING));
        assert!(DiscoInfo::default().is_query());
        let el: Element = info().into();
        assert_eq!(
            el.child("identity", ns::DISCO_INFO).unwrap().attr("name"),
            Some("Rampart")
        );
    }

    #[test]
    fn info_invalid() {
        let q = || Element::new("query", ns::DISCO_INFO);
        let no_cat =
            q().with_child(Element::new("identity", ns::DISCO_INFO).with_attr("type", "im"));
        assert_eq!(
            DiscoInfo::try_from(&no_cat),
            Err(ParseError::MissingAttr("category"))
        );
        let no_type = q()
            .with_child(Element::new("identity", ns::DISCO_INFO).with_attr("category", "server"));
        assert_eq!(
            DiscoInfo::try_from(&no_type),
            Err(ParseError::MissingAttr("type"))
        );
        let empty_cat = q().with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "")
                .with_attr("type", "im"),
        );
        assert!(matches!(
            DiscoInfo::try_from(&empty_cat),
            Err(ParseError::BadValue { .. })
        ));
        let no_var = q().with_child(Element::new("feature", ns::DISCO_INFO));
        assert_eq!(
            DiscoInfo::try_from(&no_var),
            Err(ParseError::MissingAttr("var"))
        );
        let unknown = q().with_child(Element::new("item", ns::DISCO_INFO));
        assert!(matches!(
            DiscoInfo::try_from(&unknown),
            Err(ParseError::UnexpectedChild(_))
        ));
        let wrong = Element::new("query", ns::DISCO_ITEMS);
        assert!(matches!(
            DiscoInfo::try_from(&wrong),
            Err(ParseError::WrongElement { .. })
        ));
    }

    #[test]
    fn items_round_trip() {
        let d = DiscoItems {
            node: None,
            items: vec![
                DiscoItem::new(Jid::parse("conference.example.com").unwrap()),
                DiscoItem {
                    jid: Jid::parse("pubsub.example.com").unwrap(),
                    node: Some("n".into()),
                    name: Some("PubSub".into()),
                },
            ],
        };
        let el: Element = d.clone().into();
        assert_eq!(DiscoItems::try_from(&el).unwrap(), d);
        let q = DiscoItems {
            node: Some("x".into()),
            items: vec![],
        };
        assert_eq!(DiscoItems::try_from(Element::from(q.clone())).unwrap(), q);
    }

    #[test]
    fn items_invalid() {
        let q = || Element::new("query", ns::DISCO_ITEMS);
        let no_jid = q().with_child(Element::new("item", ns::DISCO_ITEMS));
        assert_eq!(
            DiscoItems::try_from(&no_jid),
            Err(ParseError::MissingAttr("jid"))
        );
        let bad_jid = q().with_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", "a@"));
        assert!(matches!(
            DiscoItems::try_from(&bad_jid),
            Err(ParseError::Jid(_))
        ));
        let unknown = q().with_child(Element::new("feature", ns::DISCO_ITEMS));
        assert!(matches!(
            DiscoItems::try_from(&unknown),
            Err(ParseError::UnexpectedChild(_))
        ));
        assert!(matches!(
            DiscoItems::try_from(&Element::new("query", ns::DISCO_INFO)),
            Err(ParseError::WrongElement { .. })
        ));
    }
}
