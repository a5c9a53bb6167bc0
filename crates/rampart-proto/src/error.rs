//! RFC 6120 §8.3 stanza errors and §4.9 stream errors.

use crate::util::{self, check, req_attr};
use crate::{Element, ParseError, ns};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }

            /// Parse the wire name.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$var),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// The `type` attribute of a stanza `<error/>` (RFC 6120 §8.3.2).
    ErrorType {
        Auth => "auth",
        Cancel => "cancel",
        Continue => "continue",
        Modify => "modify",
        Wait => "wait",
    }
}

string_enum! {
    /// Defined stanza error conditions (RFC 6120 §8.3.3).
    DefinedCondition {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        Gone => "gone",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        Redirect => "redirect",
        RegistrationRequired => "registration-required",
        RemoteServerNotFound => "remote-server-not-found",
        RemoteServerTimeout => "remote-server-timeout",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        SubscriptionRequired => "subscription-required",
        UndefinedCondition => "undefined-condition",
        UnexpectedRequest => "unexpected-request",
    }
}

impl DefinedCondition {
    /// The error type RFC 6120 §8.3.3 gives (or suggests) for this condition.
    pub fn default_type(self) -> ErrorType {
        use DefinedCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            Conflict
            | FeatureNotImplemented
            | Gone
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }
}

/// A stanza-level error (RFC 6120 §8.3): `<error type=.. [by=..]><condition/>[<text/>]</error>`.
///
/// The content of `<gone/>`/`<redirect/>` is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub type_: ErrorType,
    pub condition: DefinedCondition,
    pub text: Option<String>,
    pub by: Option<String>,
    /// An application-specific condition (RFC 6120 §8.3.4), e.g. XEP-0060's
    /// `<precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>`.
    pub app: Option<Element>,
}

impl StanzaError {
    /// An error with this type and condition, no text.
    pub fn new(type_: ErrorType, condition: DefinedCondition) -> Self {
        StanzaError {
            type_,
            condition,
            text: None,
            by: None,
            app: None,
        }
    }

    /// Builder-style: add an application-specific condition element.
    pub fn with_app(mut self, app: Element) -> Self {
        self.app = Some(app);
        self
    }

    /// Builder-style: add human-readable text (sent with `xml:lang='en'`).
    pub fn with_text(mut self, t: impl Into<String>) -> Self {
        self.text = Some(t.into());
        self
    }

    /// Builder-style: set the `by` attribute.
    pub fn with_by(mut self, by: impl Into<String>) -> Self {
        self.by = Some(by.into());
        self
    }

    /// An error with the condition's default type.
    pub fn from_condition(c: DefinedCondition) -> Self {
        StanzaError::new(c.default_type(), c)
    }
}

impl From<DefinedCondition> for StanzaError {
    fn from(c: DefinedCondition) -> Self {
        StanzaError::from_condition(c)
    }
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.condition, self.type_)?;
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

impl From<StanzaError> for Element {
    fn from(e: StanzaError) -> Element {
        let mut el = Element::new("error", ns::CLIENT).with_attr("type", e.type_.as_str());
        if let Some(by) = e.by {
            el.set_attr("by", by);
        }
        el = el.with_child(Element::new(e.condition.as_str(), ns::STANZAS));
        if let Some(t) = e.text {
            el = el.with_child(
                Element::new("text", ns::STANZAS)
                    .with_attr("xml:lang", "en")
                    .with_text(t),
            );
        }
        if let Some(app) = e.app {
            el = el.with_child(app);
        }
        el
    }
}

impl TryFrom<&Element> for StanzaError {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        util::check_stanza_ns(e, "error")?;
        let t = req_attr(e, "type")?;
        let type_ = ErrorType::parse(t).ok_or_else(|| ParseError::bad_value("type", t))?;
        let mut condition = None;
        let mut text = None;
        let app = e.elements().find(|c| c.ns != ns::STANZAS && c.ns != e.ns).cloned();
        for c in e.elements().filter(|c| c.ns == ns::STANZAS) {
            if c.name == "text" {
                if text.is_none() {
                    text = Some(c.text());
                }
            } else {
                let cond = DefinedCondition::parse(&c.name)
                    .ok_or_else(|| ParseError::bad_value("condition", &c.name))?;
                util::once(&mut condition, cond, "condition")?;
            }
        }
        let condition = condition.ok_or(ParseError::MissingChild("condition"))?;
        Ok(StanzaError {
            type_,
            condition,
            text,
            by: util::opt_attr(e, "by"),
            app,
        })
    }
}

impl TryFrom<Element> for StanzaError {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        StanzaError::try_from(&e)
    }
}

/// Build an error reply to `stanza` (message/presence/iq in any namespace): same name and
/// namespace, `from` and `to` swapped (an attribute the original lacked is omitted), same `id`,
/// `type='error'`, and only the `<error/>` child (in the stanza's namespace).
pub fn error_reply(stanza: &Element, err: &StanzaError) -> Element {
    let mut reply = Element::new(stanza.name.clone(), stanza.ns.clone());
    if let Some(from) = stanza.attr("to") {
        reply.set_attr("from", from);
    }
    if let Some(to) = stanza.attr("from") {
        reply.set_attr("to", to);
    }
    if let Some(id) = stanza.attr("id") {
        reply.set_attr("id", id);
    }
    reply.set_attr("type", "error");
    let mut e: Element = err.clone().into();
    e.ns = stanza.ns.clone();
    reply.with_child(e)
}

string_enum! {
    /// Stream error conditions (RFC 6120 §4.9.3).
    StreamErrorCondition {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostGone => "host-gone",
        HostUnknown => "host-unknown",
        ImproperAddressing => "improper-addressing",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        InvalidXml => "invalid-xml",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        RemoteConnectionFailed => "remote-connection-failed",
        Reset => "reset",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        SeeOtherHost => "see-other-host",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
}

/// A stream error (RFC 6120 §4.9): `<stream:error><condition/>[<text/>]</stream:error>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: Option<String>,
}

impl StreamError {
    /// A stream error without text.
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    /// Builder-style: add human-readable text (sent with `xml:lang='en'`).
    pub fn with_text(mut self, t: impl Into<String>) -> Self {
        self.text = Some(t.into());
        self
    }
}

impl From<StreamErrorCondition> for StreamError {
    fn from(c: StreamErrorCondition) -> Self {
        StreamError::new(c)
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.as_str())?;
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

impl From<StreamError> for Element {
    fn from(e: StreamError) -> Element {
        let mut el = Element::new("error", ns::STREAM)
            .with_child(Element::new(e.condition.as_str(), ns::STREAMS));
        if let Some(t) = e.text {
            el = el.with_child(
                Element::new("text", ns::STREAMS)
                    .with_attr("xml:lang", "en")
                    .with_text(t),
            );
        }
        el
    }
}

impl TryFrom<&Element> for StreamError {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "error", ns::STREAM)?;
        let mut condition = None;
        let mut text = None;
        for c in e.elements().filter(|c| c.ns == ns::STREAMS) {
            if c.name == "text" {
                if text.is_none() {
                    text = Some(c.text());
                }
            } else {
                let cond = StreamErrorCondition::parse(&c.name)
                    .ok_or_else(|| ParseError::bad_value("condition", &c.name))?;
                util::once(&mut condition, cond, "condition")?;
            }
        }
        let condition = condition.ok_or(ParseError::MissingChild("condition"))?;
        Ok(StreamError { condition, text })
    }
}

impl TryFrom<Element> for StreamError {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        StreamError::try_from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip() {
        for t in ErrorType::ALL {
            assert_eq!(ErrorType::parse(t.as_str()), Some(*t));
        }
        for c in DefinedCondition::ALL {
            assert_eq!(DefinedCondition::parse(c.as_str()), Some(*c));
        }
        for c in StreamErrorCondition::ALL {
            assert_eq!(StreamErrorCondition::parse(c.as_str()), Some(*c));
        }
        assert_eq!(DefinedCondition::ALL.len(), 22);
        assert_eq!(StreamErrorCondition::ALL.len(), 25);
        assert_eq!(ErrorType::parse("fatal"), None);
        assert_eq!(
            DefinedCondition::ItemNotFound.default_type(),
            ErrorType::Cancel
        );
        assert_eq!(DefinedCondition::Forbidden.default_type(), ErrorType::Auth);
        assert_eq!(
            DefinedCondition::BadRequest.default_type(),
            ErrorType::Modify
        );
        assert_eq!(
            DefinedCondition::ResourceConstraint.default_type(),
            ErrorType::Wait
        );
    }

    #[test]
    fn stanza_error_round_trip() {
        for c in DefinedCondition::ALL {
            let e = StanzaError::from_condition(*c);
            let el: Element = e.clone().into();
            assert_eq!(StanzaError::try_from(&el).unwrap(), e);
        }
        let e = StanzaError::new(ErrorType::Wait, DefinedCondition::ResourceConstraint)
            .with_text("slow down")
            .with_by("example.com");
        let el: Element = e.clone().into();
        assert_eq!(
            el.to_xml_string(),
            "<error xmlns=\"jabber:client\" type=\"wait\" by=\"example.com\">\
             <resource-constraint xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\" xml:lang=\"en\">slow down</text></error>"
        );
        assert_eq!(StanzaError::try_from(el).unwrap(), e);
    }

    #[test]
    fn stanza_error_with_app_condition() {
        let el = Element::new("error", ns::SERVER)
            .with_attr("type", "modify")
            .with_child(Element::new("bad-request", ns::STANZAS))
            .with_child(Element::new(
                "too-many-subscriptions",
                "http://jabber.org/protocol/pubsub#errors",
            ));
        let e = StanzaError::try_from(&el).unwrap();
        assert_eq!(e.condition, DefinedCondition::BadRequest);
        assert!(e.app.as_ref().is_some_and(|a| a.name == "too-many-subscriptions"));
        // And back: the application condition follows the defined one and the text.
        let out: Element = e.clone().with_text("t").into();
        let names: Vec<&str> = out.elements().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["bad-request", "text", "too-many-subscriptions"]);
        let mut back = StanzaError::try_from(&out).unwrap();
        back.text = None;
        assert_eq!(back.app, e.app);
    }

    #[test]
    fn stanza_error_invalid() {
        let cond = || Element::new("bad-request", ns::STANZAS);
        // Missing type.
        let el = Element::new("error", ns::CLIENT).with_child(cond());
        assert_eq!(
            StanzaError::try_from(&el),
            Err(ParseError::MissingAttr("type"))
        );
        // Bad type.
        let el = Element::new("error", ns::CLIENT)
            .with_attr("type", "fatal")
            .with_child(cond());
        assert!(matches!(
            StanzaError::try_from(&el),
            Err(ParseError::BadValue { name: "type", .. })
        ));
        // Missing condition.
        let el = Element::new("error", ns::CLIENT).with_attr("type", "cancel");
        assert_eq!(
            StanzaError::try_from(&el),
            Err(ParseError::MissingChild("condition"))
        );
        // Unknown condition.
        let el = Element::new("error", ns::CLIENT)
            .with_attr("type", "cancel")
            .with_child(Element::new("oops", ns::STANZAS));
        assert!(matches!(
            StanzaError::try_from(&el),
            Err(ParseError::BadValue { .. })
        ));
        // Two conditions.
        let el = Element::new("error", ns::CLIENT)
            .with_attr("type", "cancel")
            .with_child(cond())
            .with_child(cond());
        assert_eq!(
            StanzaError::try_from(&el),
            Err(ParseError::Duplicate("condition"))
        );
        // Wrong element / namespace.
        let el = Element::new("error", "urn:other")
            .with_attr("type", "cancel")
            .with_child(cond());
        assert!(matches!(
            StanzaError::try_from(&el),
            Err(ParseError::WrongElement { .. })
        ));
        let el = Element::new("err", ns::CLIENT)
            .with_attr("type", "cancel")
            .with_child(cond());
        assert!(matches!(
            StanzaError::try_from(&el),
            Err(ParseError::WrongElement { .. })
        ));
    }

    #[test]
    fn error_reply_iq() {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("from", "a@b/c")
            .with_attr("to", "b")
            .with_attr("id", "x1")
            .with_attr("type", "get")
            .with_child(Element::new("query", ns::VERSION));
        let r = error_reply(
            &iq,
            &StanzaError::from_condition(DefinedCondition::ServiceUnavailable),
        );
        assert_eq!(
            r.to_bytes(ns::CLIENT),
            b"<iq from=\"b\" to=\"a@b/c\" id=\"x1\" type=\"error\"><error type=\"cancel\">\
              <service-unavailable xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>"
        );
    }

    #[test]
    fn error_reply_server_ns_and_missing_attrs() {
        let m = Element::new("message", ns::SERVER)
            .with_attr("to", "u@d")
            .with_child(Element::new("body", ns::SERVER).with_text("hi"));
        let r = error_reply(
            &m,
            &StanzaError::from_condition(DefinedCondition::ItemNotFound).with_text("gone"),
        );
        assert!(r.is("message", ns::SERVER));
        assert_eq!(r.attr("from"), Some("u@d"));
        assert_eq!(r.attr("to"), None);
        assert_eq!(r.attr("id"), None);
        assert_eq!(r.attr("type"), Some("error"));
        assert_eq!(r.elements().count(), 1);
        let err = r.child("error", ns::SERVER).unwrap();
        let parsed = StanzaError::try_from(err).unwrap();
        assert_eq!(parsed.condition, DefinedCondition::ItemNotFound);
        assert_eq!(parsed.text.as_deref(), Some("gone"));
    }

    #[test]
    fn stream_error_round_trip() {
        for c in StreamErrorCondition::ALL {
            let e = StreamError::new(*c);
            let el: Element = e.clone().into();
            assert_eq!(StreamError::try_from(&el).unwrap(), e);
        }
        let e = StreamError::new(StreamErrorCondition::NotWellFormed).with_text("bad");
        let el: Element = e.clone().into();
        assert!(el.is("error", ns::STREAM));
        assert!(el.child("not-well-formed", ns::STREAMS).is_some());
        assert_eq!(
            el.child("text", ns::STREAMS).unwrap().attr("xml:lang"),
            Some("en")
        );
        assert_eq!(StreamError::try_from(el).unwrap(), e);
    }

    #[test]
    fn stream_error_invalid() {
        let el = Element::new("error", ns::STREAM);
        assert_eq!(
            StreamError::try_from(&el),
            Err(ParseError::MissingChild("condition"))
        );
        let el = Element::new("error", ns::STREAM).with_child(Element::new("nope", ns::STREAMS));
        assert!(matches!(
            StreamError::try_from(&el),
            Err(ParseError::BadValue { .. })
        ));
        let el = Element::new("error", ns::CLIENT).with_child(Element::new("reset", ns::STREAMS));
        assert!(matches!(
            StreamError::try_from(&el),
            Err(ParseError::WrongElement { .. })
        ));
    }
}
