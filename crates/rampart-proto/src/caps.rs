//! XEP-0115 Entity Capabilities: the `<c xmlns='http://jabber.org/protocol/caps'/>` element
//! (in presence and stream features) and the verification string and hash computed from a
//! disco#info result (§5.1), so a server can check what a client claims before caching it
//! and advertise a stable hash of its own features.

use base64::Engine;
use sha1::Digest as _;

use crate::dataforms::DataForm;
use crate::disco::DiscoInfo;
use crate::util::{check, req_attr};
use crate::{Element, ParseError, ns};

/// Longest `ver`/`node` accepted (hostile input is bounded; real values are short).
pub const MAX_ATTR: usize = 1024;

/// A `<c hash=.. node=.. ver=../>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// The hash function (`sha-1`, `sha-256`, ...); `None` for the legacy form.
    pub hash: Option<String>,
    pub node: String,
    pub ver: String,
}

impl Caps {
    /// The disco node a client answers for these capabilities: `node#ver`.
    pub fn disco_node(&self) -> String {
        format!("{}#{}", self.node, self.ver)
    }
}

impl TryFrom<&Element> for Caps {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "c", ns::CAPS)?;
        let node = req_attr(e, "node")?;
        let ver = req_attr(e, "ver")?;
        if node.len() > MAX_ATTR || ver.is_empty() || ver.len() > MAX_ATTR {
            return Err(ParseError::bad_value("ver", ver));
        }
        Ok(Caps { hash: e.attr("hash").map(str::to_owned), node: node.to_owned(), ver: ver.to_owned() })
    }
}

impl From<Caps> for Element {
    fn from(c: Caps) -> Element {
        let mut e = Element::new("c", ns::CAPS);
        if let Some(h) = c.hash {
            e.set_attr("hash", h);
        }
        e.with_attr("node", c.node).with_attr("ver", c.ver)
    }
}

/// Why a disco#info result cannot be hashed (§5.4: such results must not be cached).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("duplicate identity")]
    DuplicateIdentity,
    #[error("duplicate feature")]
    DuplicateFeature,
    #[error("extended form without a hidden FORM_TYPE, or a duplicate FORM_TYPE")]
    BadForm,
    #[error("unsupported hash function")]
    UnsupportedHash,
}

/// The XEP-0115 §5.1 verification string of a disco#info result.
pub fn verification_string(info: &DiscoInfo) -> Result<String, CapsError> {
    let mut ids: Vec<String> = info
        .identities
        .iter()
        .map(|i| format!("{}/{}/{}/{}", i.category, i.type_, i.lang.as_deref().unwrap_or(""), i.name.as_deref().unwrap_or("")))
        .collect();
    ids.sort();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(CapsError::DuplicateIdentity);
    }
    let mut features: Vec<&str> = info.features.iter().map(String::as_str).collect();
    features.sort_unstable();
    if features.windows(2).any(|w| w[0] == w[1]) {
        return Err(CapsError::DuplicateFeature);
    }
    let mut forms = Vec::new();
    for x in &info.extensions {
        let form = DataForm::try_from(x).map_err(|_| CapsError::BadForm)?;
        let ft = form.field("FORM_TYPE").ok_or(CapsError::BadForm)?;
        if ft.type_.as_deref() != Some("hidden") {
            return Err(CapsError::BadForm);
        }
        forms.push((ft.value().unwrap_or("").to_owned(), form));
    }
    forms.sort_by(|a, b| a.0.cmp(&b.0));
    if forms.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(CapsError::BadForm);
    }
    let mut s = String::new();
    for i in ids {
        s.push_str(&i);
        s.push('<');
    }
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    for (ft, form) in forms {
        s.push_str(&ft);
        s.push('<');
        let mut fields: Vec<_> = form.fields.iter().filter(|f| f.var.as_deref() != Some("FORM_TYPE")).collect();
        fields.sort_by(|a, b| a.var.cmp(&b.var));
        for f in fields {
            s.push_str(f.var.as_deref().unwrap_or(""));
            s.push('<');
            let mut values = f.values.clone();
            values.sort();
            for v in values {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    Ok(s)
}

/// The `ver` of a disco#info result with hash function `hash` (`sha-1` or `sha-256`).
pub fn hash(info: &DiscoInfo, hash: &str) -> Result<String, CapsError> {
    let s = verification_string(info)?;
    let digest = match hash {
        "sha-1" => sha1::Sha1::digest(s.as_bytes()).to_vec(),
        "sha-256" => sha2::Sha256::digest(s.as_bytes()).to_vec(),
        _ => return Err(CapsError::UnsupportedHash),
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataforms::Field;
    use crate::disco::Identity;

    /// XEP-0115 §5.2, the simple example.
    #[test]
    fn simple_example() {
        let info = DiscoInfo {
            node: None,
            identities: vec![Identity::new("client", "pc").with_name("Exodus 0.9.1")],
            features: vec![
                "http://jabber.org/protocol/disco#info".into(),
                "http://jabber.org/protocol/disco#items".into(),
                "http://jabber.org/protocol/muc".into(),
                "http://jabber.org/protocol/caps".into(),
            ],
            extensions: vec![],
        };
        assert_eq!(hash(&info, "sha-1").unwrap(), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    /// XEP-0115 §5.3, the complex example (languages and an extended form).
    #[test]
    fn complex_example() {
        let mut en = Identity::new("client", "pc").with_name("Psi 0.11");
        en.lang = Some("en".into());
        let mut el = Identity::new("client", "pc").with_name("Ψ 0.11");
        el.lang = Some("el".into());
        let form = DataForm::new("result", "urn:xmpp:dataforms:softwareinfo")
            .with_field(Field { var: Some("ip_version".into()), type_: Some("text-multi".into()), label: None, values: vec!["ipv4".into(), "ipv6".into()] })
            .with_field(Field::new("os", None, "Mac"))
            .with_field(Field::new("os_version", None, "10.5.1"))
            .with_field(Field::new("software", None, "Psi"))
            .with_field(Field::new("software_version", None, "0.11"));
        let info = DiscoInfo {
            node: None,
            identities: vec![en, el],
            features: vec![
                "http://jabber.org/protocol/caps".into(),
                "http://jabber.org/protocol/disco#info".into(),
                "http://jabber.org/protocol/disco#items".into(),
                "http://jabber.org/protocol/muc".into(),
            ],
            extensions: vec![form.into()],
        };
        assert_eq!(hash(&info, "sha-1").unwrap(), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    }

    #[test]
    fn refuses_duplicates_and_unknown_hashes() {
        let mut info = DiscoInfo { features: vec!["a".into(), "a".into()], ..DiscoInfo::default() };
        assert_eq!(hash(&info, "sha-1"), Err(CapsError::DuplicateFeature));
        info.features = vec!["a".into()];
        assert_eq!(hash(&info, "md5"), Err(CapsError::UnsupportedHash));
        info.extensions = vec![DataForm { type_: "result".into(), fields: vec![] }.into()];
        assert_eq!(hash(&info, "sha-1"), Err(CapsError::BadForm));
    }

    #[test]
    fn caps_element_round_trip_and_invalid() {
        let c = Caps { hash: Some("sha-1".into()), node: "http://slixmpp.com/ver/1.17".into(), ver: "abc=".into() };
        let e: Element = c.clone().into();
        assert_eq!(Caps::try_from(&e).unwrap(), c);
        assert_eq!(c.disco_node(), "http://slixmpp.com/ver/1.17#abc=");
        assert!(Caps::try_from(&Element::new("c", ns::CAPS).with_attr("node", "n")).is_err());
        assert!(Caps::try_from(&Element::new("c", ns::CAPS).with_attr("node", "n").with_attr("ver", "")).is_err());
        assert!(Caps::try_from(&Element::new("x", ns::CAPS)).is_err());
    }
}
