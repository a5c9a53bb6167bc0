//! RFC 6120 §8 / RFC 6121: typed `<message/>`, `<presence/>` and `<iq/>` stanzas, plus cheap
//! helpers for the routing hot path that avoid a full typed parse.
//!
//! Parsing accepts stanzas in `jabber:client` or `jabber:server`; conversion back to an
//! [`Element`] always writes `jabber:client` (payload elements that were in the stanza's own
//! namespace, such as `<error/>`, are moved along with it).

use crate::error::{StanzaError, string_enum};
use crate::util::{self, req_attr};
use crate::{Element, Jid, ParseError, ns};

/// The three stanza kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

impl StanzaKind {
    /// The element name.
    pub fn as_str(self) -> &'static str {
        match self {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
        }
    }
}

/// The kind of a stanza, if `e` is `message`, `presence` or `iq` in `jabber:client` or
/// `jabber:server`.
pub fn kind(e: &Element) -> Option<StanzaKind> {
    if e.ns != ns::CLIENT && e.ns != ns::SERVER {
        return None;
    }
    match e.name.as_str() {
        "message" => Some(StanzaKind::Message),
        "presence" => Some(StanzaKind::Presence),
        "iq" => Some(StanzaKind::Iq),
        _ => None,
    }
}

/// Move `e` from the stanza namespace `from` into `jabber:client`.
fn to_client(mut e: Element, from: &str) -> Element {
    util::renamespace(&mut e, from, ns::CLIENT);
    e
}

/// Push `(lang, text)` unless a value with the same language is already there.
fn push_lang(
    v: &mut Vec<(Option<String>, String)>,
    c: &Element,
    name: &'static str,
) -> Result<(), ParseError> {
    let lang = util::lang(c);
    if v.iter().any(|(l, _)| *l == lang) {
        return Err(ParseError::Duplicate(name));
    }
    v.push((lang, util::text_only(c)?));
    Ok(())
}

fn lang_el(name: &str, lang: Option<String>, text: String) -> Element {
    let mut e = util::text_el(name, ns::CLIENT, text);
    if let Some(l) = lang {
        e.set_attr("xml:lang", l);
    }
    e
}

fn set_addrs(e: &mut Element, from: Option<Jid>, to: Option<Jid>, id: Option<String>) {
    if let Some(f) = from {
        e.set_attr("from", f.as_str());
    }
    if let Some(t) = to {
        e.set_attr("to", t.as_str());
    }
    if let Some(i) = id {
        e.set_attr("id", i);
    }
}

/// The `type` of a message (RFC 6121 §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MessageType {
    Chat,
    Error,
    Groupchat,
    Headline,
    #[default]
    Normal,
}

impl MessageType {
    /// Parse the attribute. A missing or unknown type means `normal` (RFC 6121 §5.2.2).
    pub fn parse(s: Option<&str>) -> MessageType {
        match s {
            Some("chat") => MessageType::Chat,
            Some("error") => MessageType::Error,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            _ => MessageType::Normal,
        }
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Chat => "chat",
            MessageType::Error => "error",
            MessageType::Groupchat => "groupchat",
            MessageType::Headline => "headline",
            MessageType::Normal => "normal",
        }
    }
}

/// A message stanza (RFC 6121 §5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub from: Option<Jid>,
    pub to: Option<Jid>,
    pub id: Option<String>,
    pub type_: MessageType,
    /// The stanza's `xml:lang`.
    pub lang: Option<String>,
    /// `(xml:lang, text)` of each `<body/>`.
    pub bodies: Vec<(Option<String>, String)>,
    /// `(xml:lang, text)` of each `<subject/>`.
    pub subjects: Vec<(Option<String>, String)>,
    pub thread: Option<String>,
    /// Every other child element (extensions, `<error/>`), in order.
    pub payloads: Vec<Element>,
}

impl Message {
    /// An empty message of this type.
    pub fn new(type_: MessageType) -> Self {
        Message {
            type_,
            ..Message::default()
        }
    }

    /// The body without `xml:lang` (else the first body), if any.
    pub fn body(&self) -> Option<&str> {
        self.bodies
            .iter()
            .find(|(l, _)| l.is_none())
            .or(self.bodies.first())
            .map(|(_, b)| b.as_str())
    }

    /// The stanza error, for `type='error'` messages.
    pub fn error(&self) -> Option<StanzaError> {
        self.payloads
            .iter()
            .find(|p| p.is("error", ns::CLIENT))
            .and_then(|p| StanzaError::try_from(p).ok())
    }

    /// The first payload with this name and namespace.
    pub fn payload(&self, name: &str, ns: &str) -> Option<&Element> {
        self.payloads.iter().find(|p| p.is(name, ns))
    }
}

impl TryFrom<&Element> for Message {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        util::check_stanza_ns(e, "message")?;
        let mut m = Message {
            from: util::opt_jid(e, "from")?,
            to: util::opt_jid(e, "to")?,
            id: util::opt_attr(e, "id"),
            type_: MessageType::parse(e.attr("type")),
            lang: util::lang(e),
            ..Message::default()
        };
        for c in e.elements() {
            if c.ns == e.ns {
                match c.name.as_str() {
                    "body" => push_lang(&mut m.bodies, c, "body")?,
                    "subject" => push_lang(&mut m.subjects, c, "subject")?,
                    "thread" => util::once(&mut m.thread, util::text_only(c)?, "thread")?,
                    _ => m.payloads.push(to_client(c.clone(), &e.ns)),
                }
            } else {
                m.payloads.push(c.clone());
            }
        }
        Ok(m)
    }
}

impl TryFrom<Element> for Message {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        Message::try_from(&e)
    }
}

impl From<Message> for Element {
    fn from(m: Message) -> Element {
        let mut e = Element::new("message", ns::CLIENT);
        set_addrs(&mut e, m.from, m.to, m.id);
        if m.type_ != MessageType::Normal {
            e.set_attr("type", m.type_.as_str());
        }
        if let Some(l) = m.lang {
            e.set_attr("xml:lang", l);
        }
        for (l, s) in m.subjects {
            e = e.with_child(lang_el("subject", l, s));
        }
        for (l, b) in m.bodies {
            e = e.with_child(lang_el("body", l, b));
        }
        if let Some(t) = m.thread {
            e = e.with_child(util::text_el("thread", ns::CLIENT, t));
        }
        for p in m.payloads {
            e = e.with_child(p);
        }
        e
    }
}

/// The `type` of a presence stanza (RFC 6121 §4.7.1); `Available` is the absent attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PresenceType {
    #[default]
    Available,
    Unavailable,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Probe,
    Error,
}

impl PresenceType {
    /// Parse the attribute (`None` is available); unknown values are errors.
    pub fn parse(s: Option<&str>) -> Result<PresenceType, ParseError> {
        Ok(match s {
            None => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("subscribe") => PresenceType::Subscribe,
            Some("subscribed") => PresenceType::Subscribed,
            Some("unsubscribe") => PresenceType::Unsubscribe,
            Some("unsubscribed") => PresenceType::Unsubscribed,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some(other) => return Err(ParseError::bad_value("type", other)),
        })
    }

    /// The wire value; `None` for available (no attribute).
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            PresenceType::Available => None,
            PresenceType::Unavailable => Some("unavailable"),
            PresenceType::Subscribe => Some("subscribe"),
            PresenceType::Subscribed => Some("subscribed"),
            PresenceType::Unsubscribe => Some("unsubscribe"),
            PresenceType::Unsubscribed => Some("unsubscribed"),
            PresenceType::Probe => Some("probe"),
            PresenceType::Error => Some("error"),
        }
    }

    /// True for the subscription-management types.
    pub fn is_subscription(self) -> bool {
        matches!(
            self,
            PresenceType::Subscribe
                | PresenceType::Subscribed
                | PresenceType::Unsubscribe
                | PresenceType::Unsubscribed
        )
    }
}

string_enum! {
    /// The `<show/>` of an available presence (RFC 6121 §4.7.2.1).
    Show {
        Away => "away",
        Chat => "chat",
        Dnd => "dnd",
        Xa => "xa",
    }
}

/// A presence stanza (RFC 6121 §4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presence {
    pub from: Option<Jid>,
    pub to: Option<Jid>,
    pub id: Option<String>,
    pub type_: PresenceType,
    pub show: Option<Show>,
    /// `(xml:lang, text)` of each `<status/>`.
    pub statuses: Vec<(Option<String>, String)>,
    /// `<priority/>`, 0 when absent.
    pub priority: i8,
    /// Every other child element (caps, vCard updates, `<error/>`…), in order.
    pub payloads: Vec<Element>,
}

impl Presence {
    /// An empty presence of this type.
    pub fn new(type_: PresenceType) -> Self {
        Presence {
            type_,
            ..Presence::default()
        }
    }

    /// The stanza error, for `type='error'` presences.
    pub fn error(&self) -> Option<StanzaError> {
        self.payloads
            .iter()
            .find(|p| p.is("error", ns::CLIENT))
            .and_then(|p| StanzaError::try_from(p).ok())
    }
}

impl TryFrom<&Element> for Presence {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        util::check_stanza_ns(e, "presence")?;
        let mut p = Presence {
            from: util::opt_jid(e, "from")?,
            to: util::opt_jid(e, "to")?,
            id: util::opt_attr(e, "id"),
            type_: PresenceType::parse(e.attr("type"))?,
            ..Presence::default()
        };
        let mut priority = None;
        for c in e.elements() {
            if c.ns == e.ns {
                match c.name.as_str() {
                    "show" => {
                        let t = util::text_only(c)?;
                        let s = Show::parse(t.trim())
                            .ok_or_else(|| ParseError::bad_value("show", &t))?;
                        util::once(&mut p.show, s, "show")?;
                    }
                    "status" => push_lang(&mut p.statuses, c, "status")?,
                    "priority" => {
                        let t = util::text_only(c)?;
                        let v = t
                            .trim()
                            .parse::<i8>()
                            .map_err(|_| ParseError::bad_value("priority", &t))?;
                        util::once(&mut priority, v, "priority")?;
                    }
                    _ => p.payloads.push(to_client(c.clone(), &e.ns)),
                }
            } else {
                p.payloads.push(c.clone());
            }
        }
        p.priority = priority.unwrap_or(0);
        Ok(p)
    }
}

impl TryFrom<Element> for Presence {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        Presence::try_from(&e)
    }
}

impl From<Presence> for Element {
    fn from(p: Presence) -> Element {
        let mut e = Element::new("presence", ns::CLIENT);
        set_addrs(&mut e, p.from, p.to, p.id);
        if let Some(t) = p.type_.as_str() {
            e.set_attr("type", t);
        }
        if let Some(s) = p.show {
            e = e.with_child(Element::new("show", ns::CLIENT).with_text(s.as_str()));
        }
        for (l, s) in p.statuses {
            e = e.with_child(lang_el("status", l, s));
        }
        if p.priority != 0 {
            e = e
                .with_child(Element::new("priority", ns::CLIENT).with_text(p.priority.to_string()));
        }
        for c in p.payloads {
            e = e.with_child(c);
        }
        e
    }
}

/// The `type` of an IQ (RFC 6120 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    /// Parse the attribute value.
    pub fn parse(s: &str) -> Result<IqType, ParseError> {
        match s {
            "get" => Ok(IqType::Get),
            "set" => Ok(IqType::Set),
            "result" => Ok(IqType::Result),
            "error" => Ok(IqType::Error),
            other => Err(ParseError::bad_value("type", other)),
        }
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            IqType::Get => "get",
            IqType::Set => "set",
            IqType::Result => "result",
            IqType::Error => "error",
        }
    }

    /// True for get and set (requests that demand a reply).
    pub fn is_request(self) -> bool {
        matches!(self, IqType::Get | IqType::Set)
    }
}

/// An IQ stanza (RFC 6120 §8.2.3).
///
/// `get`/`set` carry exactly one payload and `result` zero or one. For `error`, `payload` is
/// the `<error/>` element (in `jabber:client`); a copy of the original request that may
/// precede it is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iq {
    pub from: Option<Jid>,
    pub to: Option<Jid>,
    pub id: String,
    pub type_: IqType,
    pub payload: Option<Element>,
}

impl Iq {
    /// A get request.
    pub fn get(id: impl Into<String>, payload: Element) -> Self {
        Iq {
            from: None,
            to: None,
            id: id.into(),
            type_: IqType::Get,
            payload: Some(payload),
        }
    }

    /// A set request.
    pub fn set(id: impl Into<String>, payload: Element) -> Self {
        Iq {
            from: None,
            to: None,
            id: id.into(),
            type_: IqType::Set,
            payload: Some(payload),
        }
    }

    /// A result.
    pub fn result(id: impl Into<String>, payload: Option<Element>) -> Self {
        Iq {
            from: None,
            to: None,
            id: id.into(),
            type_: IqType::Result,
            payload,
        }
    }

    /// An error IQ carrying `err`.
    pub fn error(id: impl Into<String>, err: StanzaError) -> Self {
        Iq {
            from: None,
            to: None,
            id: id.into(),
            type_: IqType::Error,
            payload: Some(err.into()),
        }
    }

    /// The result reply to this request: same id, `from`/`to` swapped.
    pub fn reply(&self, payload: Option<Element>) -> Iq {
        Iq {
            from: self.to.clone(),
            to: self.from.clone(),
            id: self.id.clone(),
            type_: IqType::Result,
            payload,
        }
    }

    /// The error reply to this request: same id, `from`/`to` swapped.
    pub fn error_reply(&self, err: StanzaError) -> Iq {
        Iq {
            from: self.to.clone(),
            to: self.from.clone(),
            ..Iq::error(self.id.clone(), err)
        }
    }

    /// Builder-style: set the addresses.
    pub fn with_addrs(mut self, from: Option<Jid>, to: Option<Jid>) -> Self {
        self.from = from;
        self.to = to;
        self
    }

    /// The stanza error of an `error` IQ.
    pub fn stanza_error(&self) -> Option<StanzaError> {
        match (&self.type_, &self.payload) {
            (IqType::Error, Some(p)) => StanzaError::try_from(p).ok(),
            _ => None,
        }
    }
}

impl TryFrom<&Element> for Iq {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        util::check_stanza_ns(e, "iq")?;
        let id = req_attr(e, "id")?;
        if id.is_empty() {
            return Err(ParseError::bad_value("id", id));
        }
        let type_ = IqType::parse(req_attr(e, "type")?)?;
        let mut children = e.elements();
        let payload = match type_ {
            IqType::Get | IqType::Set => {
                let (Some(p), None) = (children.next(), children.next()) else {
                    return Err(ParseError::ChildCount(
                        "iq get/set must contain exactly one child element",
                    ));
                };
                Some(p)
            }
            IqType::Result => {
                let (p, None) = (children.next(), children.next()) else {
                    return Err(ParseError::ChildCount(
                        "iq result must contain at most one child element",
                    ));
                };
                p
            }
            IqType::Error => Some(
                e.elements()
                    .find(|c| c.is("error", &e.ns))
                    .ok_or(ParseError::MissingChild("error"))?,
            ),
        };
        Ok(Iq {
            from: util::opt_jid(e, "from")?,
            to: util::opt_jid(e, "to")?,
            id: id.to_owned(),
            type_,
            payload: payload.map(|p| to_client(p.clone(), &e.ns)),
        })
    }
}

impl TryFrom<Element> for Iq {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        Iq::try_from(&e)
    }
}

impl From<Iq> for Element {
    fn from(iq: Iq) -> Element {
        let mut e = Element::new("iq", ns::CLIENT);
        set_addrs(&mut e, iq.from, iq.to, Some(iq.id));
        e.set_attr("type", iq.type_.as_str());
        match iq.payload {
            Some(p) => e.with_child(p),
            None => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DefinedCondition;

    fn jid(s: &str) -> Option<Jid> {
        Some(Jid::parse(s).unwrap())
    }

    #[test]
    fn kinds() {
        assert_eq!(
            kind(&Element::new("message", ns::CLIENT)),
            Some(StanzaKind::Message)
        );
        assert_eq!(
            kind(&Element::new("presence", ns::SERVER)),
            Some(StanzaKind::Presence)
        );
        assert_eq!(kind(&Element::new("iq", ns::CLIENT)), Some(StanzaKind::Iq));
        assert_eq!(kind(&Element::new("iq", ns::ROSTER)), None);
        assert_eq!(kind(&Element::new("features", ns::STREAM)), None);
        assert_eq!(kind(&Element::new("error", ns::CLIENT)), None);
        assert_eq!(StanzaKind::Iq.as_str(), "iq");
    }

    #[test]
    fn message_round_trip() {
        let m = Message {
            from: jid("juliet@example.com/balcony"),
            to: jid("romeo@example.net"),
            id: Some("m1".into()),
            type_: MessageType::Chat,
            lang: Some("en".into()),
            bodies: vec![
                (None, "Wherefore art thou?".into()),
                (Some("de".into()), "Wo bist du?".into()),
            ],
            subjects: vec![(None, "I implore you!".into())],
            thread: Some("e0ffe42b".into()),
            payloads: vec![Element::new("active", ns::CHATSTATES)],
        };
        let el: Element = m.clone().into();
        assert!(el.is("message", ns::CLIENT));
        assert_eq!(Message::try_from(&el).unwrap(), m);
        assert_eq!(m.body(), Some("Wherefore art thou?"));
        for t in [
            MessageType::Normal,
            MessageType::Error,
            MessageType::Groupchat,
            MessageType::Headline,
        ] {
            let m = Message::new(t);
            assert_eq!(Message::try_from(Element::from(m.clone())).unwrap(), m);
        }
    }

    #[test]
    fn message_type_rules_and_server_ns() {
        assert_eq!(MessageType::parse(None), MessageType::Normal);
        assert_eq!(MessageType::parse(Some("bogus")), MessageType::Normal);
        assert_eq!(MessageType::parse(Some("chat")), MessageType::Chat);
        let el = Element::new("message", ns::SERVER)
            .with_attr("type", "error")
            .with_attr("from", "Example.COM")
            .with_child(Element::new("body", ns::SERVER).with_text("x"))
            .with_child(
                Element::new("error", ns::SERVER)
                    .with_attr("type", "cancel")
                    .with_child(Element::new("item-not-found", ns::STANZAS)),
            );
        let m = Message::try_from(&el).unwrap();
        assert_eq!(m.from.as_ref().unwrap().as_str(), "example.com");
        assert_eq!(m.bodies, vec![(None, "x".to_owned())]);
        assert!(m.payloads[0].is("error", ns::CLIENT));
        assert_eq!(m.error().unwrap().condition, DefinedCondition::ItemNotFound);
        assert_eq!(Message::try_from(Element::from(m.clone())).unwrap(), m);
    }

    #[test]
    fn message_invalid() {
        let m = || Element::new("message", ns::CLIENT);
        let body = |l: Option<&str>| {
            let b = Element::new("body", ns::CLIENT).with_text("x");
            match l {
                Some(l) => b.with_attr("xml:lang", l),
                None => b,
            }
        };
        assert!(matches!(
            Message::try_from(&m().with_attr("to", "@x")),
            Err(ParseError::Jid(_))
        ));
        assert!(matches!(
            Message::try_from(&m().with_attr("from", "a@b/")),
            Err(ParseError::Jid(_))
        ));
        let dup = m().with_child(body(None)).with_child(body(None));
        assert_eq!(Message::try_from(&dup), Err(ParseError::Duplicate("body")));
        let dup_lang = m()
            .with_child(body(Some("de")))
            .with_child(body(Some("de")));
        assert_eq!(
            Message::try_from(&dup_lang),
            Err(ParseError::Duplicate("body"))
        );
        assert!(
            Message::try_from(&m().with_child(body(None)).with_child(body(Some("de")))).is_ok()
        );
        let threads = m()
            .with_child(Element::new("thread", ns::CLIENT).with_text("a"))
            .with_child(Element::new("thread", ns::CLIENT).with_text("b"));
        assert_eq!(
            Message::try_from(&threads),
            Err(ParseError::Duplicate("thread"))
        );
        let nested =
            m().with_child(Element::new("body", ns::CLIENT).with_child(Element::new("b", "x")));
        assert!(matches!(
            Message::try_from(&nested),
            Err(ParseError::UnexpectedChild(_))
        ));
        assert!(matches!(
            Message::try_from(&Element::new("message", ns::ROSTER)),
            Err(ParseError::WrongElement { .. })
        ));
        assert!(matches!(
            Message::try_from(&Element::new("presence", ns::CLIENT)),
            Err(ParseError::WrongElement { .. })
        ));
    }

    #[test]
    fn presence_round_trip() {
        let p = Presence {
            from: jid("juliet@example.com/balcony"),
            to: None,
            id: Some("p1".into()),
            type_: PresenceType::Available,
            show: Some(Show::Dnd),
            statuses: vec![(None, "busy".into()), (Some("fr".into()), "occupée".into())],
            priority: -128,
            payloads: vec![Element::new("c", ns::CAPS).with_attr("node", "n")],
        };
        let el: Element = p.clone().into();
        assert_eq!(Presence::try_from(&el).unwrap(), p);
        for t in [
            PresenceType::Available,
            PresenceType::Unavailable,
            PresenceType::Subscribe,
            PresenceType::Subscribed,
            PresenceType::Unsubscribe,
            PresenceType::Unsubscribed,
            PresenceType::Probe,
            PresenceType::Error,
        ] {
            assert_eq!(PresenceType::parse(t.as_str()).unwrap(), t);
            let p = Presence {
                priority: 127,
                ..Presence::new(t)
            };
            assert_eq!(Presence::try_from(Element::from(p.clone())).unwrap(), p);
        }
        for s in Show::ALL {
            let p = Presence {
                show: Some(*s),
                ..Presence::default()
            };
            assert_eq!(Presence::try_from(Element::from(p.clone())).unwrap(), p);
        }
        let spaced = Element::new("presence", ns::CLIENT)
            .with_child(Element::new("priority", ns::CLIENT).with_text(" 5 "));
        assert_eq!(Presence::try_from(&spaced).unwrap().priority, 5);
        assert!(PresenceType::Subscribe.is_subscription());
    }

    #[test]
    fn presence_invalid() {
        let p = || Element::new("presence", ns::CLIENT);
        let prio = |t: &str| p().with_child(Element::new("priority", ns::CLIENT).with_text(t));
        for t in ["128", "-129", "high", "", "1.5"] {
            assert!(
                matches!(
                    Presence::try_from(&prio(t)),
                    Err(ParseError::BadValue {
                        name: "priority",
                        ..
                    })
                ),
                "{t}"
            );
        }
        let two = prio("1").with_child(Element::new("priority", ns::CLIENT).with_text("2"));
        assert_eq!(
            Presence::try_from(&two),
            Err(ParseError::Duplicate("priority"))
        );
        let show = p().with_child(Element::new("show", ns::CLIENT).with_text("sleeping"));
        assert!(matches!(
            Presence::try_from(&show),
            Err(ParseError::BadValue { name: "show", .. })
        ));
        let shows = p()
            .with_child(Element::new("show", ns::CLIENT).with_text("xa"))
            .with_child(Element::new("show", ns::CLIENT).with_text("dnd"));
        assert_eq!(
            Presence::try_from(&shows),
            Err(ParseError::Duplicate("show"))
        );
        assert!(matches!(
            Presence::try_from(&p().with_attr("type", "invisible")),
            Err(ParseError::BadValue { name: "type", .. })
        ));
        assert!(matches!(
            PresenceType::parse(Some("available")),
            Err(ParseError::BadValue { .. })
        ));
        let st = p()
            .with_child(Element::new("status", ns::CLIENT).with_text("a"))
            .with_child(Element::new("status", ns::CLIENT).with_text("b"));
        assert_eq!(
            Presence::try_from(&st),
            Err(ParseError::Duplicate("status"))
        );
        assert!(matches!(
            Presence::try_from(&p().with_attr("to", "a@b@c")),
            Err(ParseError::Jid(_))
        ));
        assert!(matches!(
            Presence::try_from(&Element::new("presence", ns::SASL)),
            Err(ParseError::WrongElement { .. })
        ));
    }

    fn iq(t: &str) -> Element {
        Element::new("iq", ns::CLIENT)
            .with_attr("id", "i1")
            .with_attr("type", t)
    }

    #[test]
    fn iq_round_trip() {
        let cases = [
            Iq::get("a", crate::ping::ping()).with_addrs(jid("u@d/r"), jid("d")),
            Iq::set("b", Element::new("query", ns::ROSTER)),
            Iq::result("c", None),
            Iq::result("d", Some(crate::bind::bind_result("u@d/r"))),
            Iq::error(
                "e",
                StanzaError::from_condition(DefinedCondition::ServiceUnavailable),
            ),
        ];
        for i in cases {
            let el: Element = i.clone().into();
            assert_eq!(Iq::try_from(&el).unwrap(), i, "{el}");
        }
        let req = Iq::get("x", crate::ping::ping()).with_addrs(jid("u@d/r"), jid("d"));
        let rep = req.reply(None);
        assert_eq!(
            (rep.from, rep.to, rep.id.as_str(), rep.type_),
            (jid("d"), jid("u@d/r"), "x", IqType::Result)
        );
        let err = req.error_reply(StanzaError::from_condition(DefinedCondition::Forbidden));
        assert_eq!(
            err.stanza_error().unwrap().condition,
            DefinedCondition::Forbidden
        );
        assert_eq!(err.to, jid("u@d/r"));
        for t in ["get", "set", "result", "error"] {
            assert_eq!(IqType::parse(t).unwrap().as_str(), t);
        }
    }

    #[test]
    fn iq_error_with_original_payload_in_server_ns() {
        let el = Element::new("iq", ns::SERVER)
            .with_attr("id", "z")
            .with_attr("type", "error")
            .with_child(Element::new("query", ns::VERSION))
            .with_child(
                Element::new("error", ns::SERVER)
                    .with_attr("type", "cancel")
                    .with_child(Element::new("feature-not-implemented", ns::STANZAS)),
            );
        let i = Iq::try_from(&el).unwrap();
        assert!(i.payload.as_ref().unwrap().is("error", ns::CLIENT));
        assert_eq!(
            i.stanza_error().unwrap().condition,
            DefinedCondition::FeatureNotImplemented
        );
    }

    #[test]
    fn iq_invalid() {
        let p = || Element::new("ping", ns::PING);
        assert_eq!(
            Iq::try_from(&iq("get")),
            Err(ParseError::ChildCount(
                "iq get/set must contain exactly one child element"
            ))
        );
        assert!(matches!(
            Iq::try_from(&iq("set")),
            Err(ParseError::ChildCount(_))
        ));
        assert!(matches!(
            Iq::try_from(&iq("get").with_child(p()).with_child(p())),
            Err(ParseError::ChildCount(_))
        ));
        assert!(matches!(
            Iq::try_from(&iq("result").with_child(p()).with_child(p())),
            Err(ParseError::ChildCount(_))
        ));
        assert_eq!(
            Iq::try_from(&iq("error")),
            Err(ParseError::MissingChild("error"))
        );
        assert!(matches!(
            Iq::try_from(&iq("fetch").with_child(p())),
            Err(ParseError::BadValue { name: "type", .. })
        ));
        let no_id = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(p());
        assert_eq!(Iq::try_from(&no_id), Err(ParseError::MissingAttr("id")));
        let empty_id = Element::new("iq", ns::CLIENT)
            .with_attr("id", "")
            .with_attr("type", "get")
            .with_child(p());
        assert!(matches!(
            Iq::try_from(&empty_id),
            Err(ParseError::BadValue { name: "id", .. })
        ));
        let no_type = Element::new("iq", ns::CLIENT)
            .with_attr("id", "x")
            .with_child(p());
        assert_eq!(Iq::try_from(&no_type), Err(ParseError::MissingAttr("type")));
        assert!(matches!(
            Iq::try_from(&iq("get").with_child(p()).with_attr("to", "x@")),
            Err(ParseError::Jid(_))
        ));
        // Text between elements is not a child element.
        assert!(Iq::try_from(&iq("get").with_text(" ").with_child(p()).with_text("\n")).is_ok());
        assert!(matches!(
            Iq::try_from(&Element::new("iq", ns::STREAM)),
            Err(ParseError::WrongElement { .. })
        ));
    }
}
