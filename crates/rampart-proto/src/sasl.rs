//! RFC 6120 §6: SASL negotiation elements, and the XEP-0440 channel-binding capability.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::util::{self, req_attr};
use crate::{Element, ParseError, ns};

/// What a client sends during SASL negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslClientMsg {
    /// `<auth mechanism=..>`: `initial` is `None` when no initial response was sent and
    /// `Some(empty)` for `=` (an empty initial response).
    Auth {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    /// `<response>`: empty content (or `=`) is a zero-length response.
    Response(Vec<u8>),
    /// `<abort/>`.
    Abort,
}

/// What a server sends during SASL negotiation (parsed mostly for tests and s2s clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslServerMsg {
    /// `<challenge>`.
    Challenge(Vec<u8>),
    /// `<success>`, with additional data if any.
    Success(Vec<u8>),
    /// `<failure>` with its condition's name and optional text.
    Failure {
        condition: String,
        text: Option<String>,
    },
}

/// Decode base64 character data: `None` for no content (whitespace only), `Some(empty)` for
/// `=`. Whitespace inside the data is ignored.
fn decode(text: &str) -> Result<Option<Vec<u8>>, ParseError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Ok(None);
    }
    if compact == "=" {
        return Ok(Some(Vec::new()));
    }
    STANDARD
        .decode(compact.as_bytes())
        .map(Some)
        .map_err(|_| ParseError::Base64)
}

fn encode(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        STANDARD.encode(data)
    }
}

impl TryFrom<&Element> for SaslClientMsg {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        if e.ns != ns::SASL {
            return Err(util::wrong(e, "auth"));
        }
        match e.name.as_str() {
            "auth" => {
                let mechanism = req_attr(e, "mechanism")?;
                if mechanism.is_empty() || mechanism.len() > 20 {
                    return Err(ParseError::bad_value("mechanism", mechanism));
                }
                Ok(SaslClientMsg::Auth {
                    mechanism: mechanism.to_owned(),
                    initial: decode(&util::text_only(e)?)?,
                })
            }
            "response" => Ok(SaslClientMsg::Response(
                decode(&util::text_only(e)?)?.unwrap_or_default(),
            )),
            "abort" => Ok(SaslClientMsg::Abort),
            _ => Err(util::wrong(e, "auth")),
        }
    }
}

impl TryFrom<Element> for SaslClientMsg {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        SaslClientMsg::try_from(&e)
    }
}

impl From<SaslClientMsg> for Element {
    fn from(m: SaslClientMsg) -> Element {
        match m {
            SaslClientMsg::Auth { mechanism, initial } => {
                let e = Element::new("auth", ns::SASL).with_attr("mechanism", mechanism);
                match initial {
                    Some(d) => e.with_text(encode(&d)),
                    None => e,
                }
            }
            SaslClientMsg::Response(d) if d.is_empty() => Element::new("response", ns::SASL),
            SaslClientMsg::Response(d) => {
                Element::new("response", ns::SASL).with_text(STANDARD.encode(d))
            }
            SaslClientMsg::Abort => Element::new("abort", ns::SASL),
        }
    }
}

impl TryFrom<&Element> for SaslServerMsg {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        if e.ns != ns::SASL {
            return Err(util::wrong(e, "challenge"));
        }
        match e.name.as_str() {
            "challenge" => Ok(SaslServerMsg::Challenge(
                decode(&util::text_only(e)?)?.unwrap_or_default(),
            )),
            "success" => Ok(SaslServerMsg::Success(
                decode(&util::text_only(e)?)?.unwrap_or_default(),
            )),
            "failure" => {
                let mut condition = None;
                let mut text = None;
                for c in e.elements().filter(|c| c.ns == ns::SASL) {
                    if c.name == "text" {
                        util::once(&mut text, c.text(), "text")?;
                    } else {
                        util::once(&mut condition, c.name.clone(), "condition")?;
                    }
                }
                let condition = condition.ok_or(ParseError::MissingChild("condition"))?;
                Ok(SaslServerMsg::Failure { condition, text })
            }
            _ => Err(util::wrong(e, "challenge")),
        }
    }
}

impl TryFrom<Element> for SaslServerMsg {
    type Error = ParseError;
    fn try_from(e: Element) -> Result<Self, ParseError> {
        SaslServerMsg::try_from(&e)
    }
}

impl From<SaslServerMsg> for Element {
    fn from(m: SaslServerMsg) -> Element {
        match m {
            SaslServerMsg::Challenge(d) => challenge(&d),
            SaslServerMsg::Success(d) => success(&d),
            SaslServerMsg::Failure { condition, text } => failure(&condition, text.as_deref()),
        }
    }
}

/// The `<mechanisms/>` stream feature listing `names`.
pub fn mechanisms(names: &[&str]) -> Element {
    let mut e = Element::new("mechanisms", ns::SASL);
    for n in names {
        e = e.with_child(Element::new("mechanism", ns::SASL).with_text(*n));
    }
    e
}

/// Parse a `<mechanisms/>` feature into its mechanism names.
pub fn parse_mechanisms(e: &Element) -> Result<Vec<String>, ParseError> {
    util::check(e, "mechanisms", ns::SASL)?;
    e.elements()
        .filter(|c| c.is("mechanism", ns::SASL))
        .map(|c| {
            let t = util::text_only(c)?;
            let t = t.trim();
            if t.is_empty() {
                Err(ParseError::bad_value("mechanism", t))
            } else {
                Ok(t.to_owned())
            }
        })
        .collect()
}

/// `<challenge>` with base64 `data` (`=` when empty).
pub fn challenge(data: &[u8]) -> Element {
    Element::new("challenge", ns::SASL).with_text(encode(data))
}

/// `<success>` with base64 additional `data`; an empty element when there is none.
pub fn success(data: &[u8]) -> Element {
    let e = Element::new("success", ns::SASL);
    if data.is_empty() {
        e
    } else {
        e.with_text(STANDARD.encode(data))
    }
}

/// `<failure><condition/>[<text xml:lang='en'>…</text>]</failure>`. `condition` is an
/// RFC 6120 §6.5 name such as `not-authorized` (see the constants in [`condition`]).
pub fn failure(condition: &str, text: Option<&str>) -> Element {
    let mut e = Element::new("failure", ns::SASL).with_child(Element::new(condition, ns::SASL));
    if let Some(t) = text {
        e = e.with_child(
            Element::new("text", ns::SASL)
                .with_attr("xml:lang", "en")
                .with_text(t),
        );
    }
    e
}

/// SASL failure conditions (RFC 6120 §6.5).
pub mod condition {
    pub const ABORTED: &str = "aborted";
    pub const ACCOUNT_DISABLED: &str = "account-disabled";
    pub const CREDENTIALS_EXPIRED: &str = "credentials-expired";
    pub const ENCRYPTION_REQUIRED: &str = "encryption-required";
    pub const INCORRECT_ENCODING: &str = "incorrect-encoding";
    pub const INVALID_AUTHZID: &str = "invalid-authzid";
    pub const INVALID_MECHANISM: &str = "invalid-mechanism";
    pub const MALFORMED_REQUEST: &str = "malformed-request";
    pub const MECHANISM_TOO_WEAK: &str = "mechanism-too-weak";
    pub const NOT_AUTHORIZED: &str = "not-authorized";
    pub const TEMPORARY_AUTH_FAILURE: &str = "temporary-auth-failure";
}

/// XEP-0440: `<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>` listing the channel-binding
/// types we support (e.g. `tls-exporter`, `tls-server-end-point`); sent in stream features.
pub fn channel_binding_feature(types: &[&str]) -> Element {
    let mut e = Element::new("sasl-channel-binding", ns::SASL_CB);
    for t in types {
        e = e.with_child(Element::new("channel-binding", ns::SASL_CB).with_attr("type", *t));
    }
    e
}

/// Parse a XEP-0440 `<sasl-channel-binding/>` element into its type names.
pub fn parse_channel_binding_feature(e: &Element) -> Result<Vec<String>, ParseError> {
    util::check(e, "sasl-channel-binding", ns::SASL_CB)?;
    e.elements()
        .filter(|c| c.is("channel-binding", ns::SASL_CB))
        .map(|c| req_attr(c, "type").map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str) -> Element {
        Element::new("auth", ns::SASL)
            .with_attr("mechanism", "PLAIN")
            .with_text(text)
    }

    #[test]
    fn client_round_trip() {
        for m in [
            SaslClientMsg::Auth {
                mechanism: "SCRAM-SHA-256".into(),
                initial: None,
            },
            SaslClientMsg::Auth {
                mechanism: "PLAIN".into(),
                initial: Some(Vec::new()),
            },
            SaslClientMsg::Auth {
                mechanism: "PLAIN".into(),
                initial: Some(b"\0u\0p".to_vec()),
            },
            SaslClientMsg::Response(Vec::new()),
            SaslClientMsg::Response(b"c=biws,r=abc".to_vec()),
            SaslClientMsg::Abort,
        ] {
            let el: Element = m.clone().into();
            assert_eq!(SaslClientMsg::try_from(&el).unwrap(), m, "{el}");
        }
    }

    #[test]
    fn initial_response_forms() {
        let parse = |t: &str| SaslClientMsg::try_from(&auth(t)).unwrap();
        assert_eq!(
            parse("="),
            SaslClientMsg::Auth {
                mechanism: "PLAIN".into(),
                initial: Some(vec![])
            }
        );
        assert_eq!(
            parse(""),
            SaslClientMsg::Auth {
                mechanism: "PLAIN".into(),
                initial: None
            }
        );
        assert_eq!(
            parse("  \n "),
            SaslClientMsg::Auth {
                mechanism: "PLAIN".into(),
                initial: None
            }
        );
        assert_eq!(
            parse("AHUA\ncA=="),
            SaslClientMsg::Auth {
                mechanism: "PLAIN".into(),
                initial: Some(b"\0u\0p".to_vec())
            }
        );
        let resp = Element::new("response", ns::SASL).with_text("=");
        assert_eq!(
            SaslClientMsg::try_from(&resp).unwrap(),
            SaslClientMsg::Response(vec![])
        );
    }

    #[test]
    fn client_invalid() {
        assert_eq!(
            SaslClientMsg::try_from(&auth("not base64!")),
            Err(ParseError::Base64)
        );
        assert_eq!(
            SaslClientMsg::try_from(&auth("AHUAcA=")),
            Err(ParseError::Base64)
        );
        let no_mech = Element::new("auth", ns::SASL);
        assert_eq!(
            SaslClientMsg::try_from(&no_mech),
            Err(ParseError::MissingAttr("mechanism"))
        );
        let empty_mech = Element::new("auth", ns::SASL).with_attr("mechanism", "");
        assert!(matches!(
            SaslClientMsg::try_from(&empty_mech),
            Err(ParseError::BadValue { .. })
        ));
        let wrong_ns = Element::new("auth", ns::TLS).with_attr("mechanism", "PLAIN");
        assert!(matches!(
            SaslClientMsg::try_from(&wrong_ns),
            Err(ParseError::WrongElement { .. })
        ));
        let wrong_name = Element::new("success", ns::SASL);
        assert!(matches!(
            SaslClientMsg::try_from(&wrong_name),
            Err(ParseError::WrongElement { .. })
        ));
        let bad_resp = Element::new("response", ns::SASL).with_text("%%%");
        assert_eq!(SaslClientMsg::try_from(&bad_resp), Err(ParseError::Base64));
        let child = Element::new("response", ns::SASL).with_child(Element::new("x", ns::SASL));
        assert!(matches!(
            SaslClientMsg::try_from(&child),
            Err(ParseError::UnexpectedChild(_))
        ));
    }

    #[test]
    fn server_elements() {
        assert_eq!(challenge(b"").text(), "=");
        assert_eq!(challenge(b"abc").text(), "YWJj");
        assert!(success(b"").children.is_empty());
        assert_eq!(success(b"v=xyz").text(), "dj14eXo=");
        assert_eq!(
            failure(condition::NOT_AUTHORIZED, Some("nope")).to_xml_string(),
            "<failure xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"><not-authorized/>\
             <text xml:lang=\"en\">nope</text></failure>"
        );
        assert_eq!(
            mechanisms(&["SCRAM-SHA-256", "PLAIN"]).to_xml_string(),
            "<mechanisms xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"><mechanism>SCRAM-SHA-256</mechanism>\
             <mechanism>PLAIN</mechanism></mechanisms>"
        );
        assert_eq!(
            parse_mechanisms(&mechanisms(&["A", "B"])).unwrap(),
            vec!["A", "B"]
        );
    }

    #[test]
    fn server_round_trip() {
        for m in [
            SaslServerMsg::Challenge(vec![]),
            SaslServerMsg::Challenge(b"r=abc,s=x,i=4096".to_vec()),
            SaslServerMsg::Success(vec![]),
            SaslServerMsg::Success(b"v=1".to_vec()),
            SaslServerMsg::Failure {
                condition: "aborted".into(),
                text: None,
            },
            SaslServerMsg::Failure {
                condition: "not-authorized".into(),
                text: Some("bad".into()),
            },
        ] {
            let el: Element = m.clone().into();
            assert_eq!(SaslServerMsg::try_from(el).unwrap(), m);
        }
        let no_cond = Element::new("failure", ns::SASL);
        assert_eq!(
            SaslServerMsg::try_from(&no_cond),
            Err(ParseError::MissingChild("condition"))
        );
        assert!(SaslServerMsg::try_from(&Element::new("abort", ns::SASL)).is_err());
    }

    #[test]
    fn channel_binding() {
        let e = channel_binding_feature(&["tls-exporter", "tls-server-end-point"]);
        assert_eq!(
            e.to_xml_string(),
            "<sasl-channel-binding xmlns=\"urn:xmpp:sasl-cb:0\"><channel-binding type=\"tls-exporter\"/>\
             <channel-binding type=\"tls-server-end-point\"/></sasl-channel-binding>"
        );
        assert_eq!(
            parse_channel_binding_feature(&e).unwrap(),
            vec!["tls-exporter", "tls-server-end-point"]
        );
        let bad = Element::new("sasl-channel-binding", ns::SASL_CB)
            .with_child(Element::new("channel-binding", ns::SASL_CB));
        assert_eq!(
            parse_channel_binding_feature(&bad),
            Err(ParseError::MissingAttr("type"))
        );
    }
}
