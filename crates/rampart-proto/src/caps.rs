//! XEP-0115 Entity Capabilities: the `<c xmlns='http://jabber.org/protocol/caps'/>` element
//! (in presence and stream features) and the verification string and hash computed from a
//! disco#info result (§5.1), so a server can check what a client claims before caching it
//! and advertise a stable hash of its own features. Also XEP-0390 Entity Capabilities 2.0:
//! [`Caps2`] (`<c xmlns='urn:xmpp:caps'>` with XEP-0300 hashes) and its own hash input
//! ([`caps2_input`], §4.1), with `sha-256` and `sha3-256`.

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

/// XEP-0390 Entity Capabilities 2.0.
pub const NS_CAPS2: &str = "urn:xmpp:caps";
/// XEP-0300 hash elements (`<hash algo='…'>base64</hash>`).
pub const NS_HASHES2: &str = "urn:xmpp:hashes:2";
/// Most `<hash/>` elements read from one `<c xmlns='urn:xmpp:caps'/>`.
pub const MAX_CAPS2_HASHES: usize = 8;
/// The XEP-0390 hash functions this crate computes (XEP-0300 names).
pub const CAPS2_ALGOS: &[&str] = &["sha-256", "sha3-256"];

/// A XEP-0390 `<c xmlns='urn:xmpp:caps'>` element: one hash of the same disco#info per
/// algorithm, as `(algo, base64 value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps2 {
    pub hashes: Vec<(String, String)>,
}

impl Caps2 {
    /// The first hash this crate can verify, if any.
    pub fn supported(&self) -> Option<(&str, &str)> {
        self.hashes.iter().find(|(a, _)| CAPS2_ALGOS.contains(&a.as_str())).map(|(a, v)| (a.as_str(), v.as_str()))
    }
}

/// The disco#info node an entity answers for a XEP-0390 hash (§3.2):
/// `urn:xmpp:caps#<algo>.<base64>`.
pub fn caps2_node(algo: &str, value: &str) -> String {
    format!("{NS_CAPS2}#{algo}.{value}")
}

impl TryFrom<&Element> for Caps2 {
    type Error = ParseError;
    fn try_from(e: &Element) -> Result<Self, ParseError> {
        check(e, "c", NS_CAPS2)?;
        let mut hashes = Vec::new();
        for h in e.elements() {
            if !h.is("hash", NS_HASHES2) {
                return Err(ParseError::UnexpectedChild(h.name.clone()));
            }
            if hashes.len() >= MAX_CAPS2_HASHES {
                return Err(ParseError::ChildCount("too many hashes"));
            }
            let algo = req_attr(h, "algo")?;
            let value = h.text();
            let value = value.trim();
            if algo.is_empty() || algo.len() > 64 {
                return Err(ParseError::bad_value("algo", algo));
            }
            if value.is_empty() || value.len() > MAX_ATTR {
                return Err(ParseError::bad_value("hash", value));
            }
            hashes.push((algo.to_owned(), value.to_owned()));
        }
        if hashes.is_empty() {
            return Err(ParseError::MissingChild("hash"));
        }
        Ok(Caps2 { hashes })
    }
}

impl From<Caps2> for Element {
    fn from(c: Caps2) -> Element {
        c.hashes.into_iter().fold(Element::new("c", NS_CAPS2), |e, (algo, value)| {
            e.with_child(Element::new("hash", NS_HASHES2).with_attr("algo", algo).with_text(value))
        })
    }
}

/// XEP-0390 §4.1: the hash function input of a disco#info result. Unlike XEP-0115 it
/// separates with the ASCII control characters (unit 0x1f, record 0x1e, group 0x1d, file
/// 0x1c), which cannot occur in XML 1.0 text, so no input is ambiguous. Features come
/// first, then identities, then extension forms (every field, `FORM_TYPE` included,
/// sorted with its values sorted). Results §4.3 forbids caching (duplicates, forms without
/// a hidden `FORM_TYPE`) are refused.
pub fn caps2_input(info: &DiscoInfo) -> Result<Vec<u8>, CapsError> {
    fn item(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0x1f);
    }
    fn sorted_with(mut parts: Vec<Vec<u8>>, end: u8) -> Result<Vec<u8>, ()> {
        parts.sort();
        if parts.windows(2).any(|w| w[0] == w[1]) {
            return Err(());
        }
        let mut out = parts.concat();
        out.push(end);
        Ok(out)
    }
    let features = info.features.iter().map(|f| {
        let mut b = Vec::new();
        item(&mut b, f);
        b
    });
    let mut out = sorted_with(features.collect(), 0x1c).map_err(|()| CapsError::DuplicateFeature)?;
    let identities = info.identities.iter().map(|i| {
        let mut b = Vec::new();
        item(&mut b, &i.category);
        item(&mut b, &i.type_);
        item(&mut b, i.lang.as_deref().unwrap_or(""));
        item(&mut b, i.name.as_deref().unwrap_or(""));
        b.push(0x1e);
        b
    });
    out.extend(sorted_with(identities.collect(), 0x1c).map_err(|()| CapsError::DuplicateIdentity)?);
    let mut forms = Vec::new();
    let mut form_types = Vec::new();
    for x in &info.extensions {
        let form = DataForm::try_from(x).map_err(|_| CapsError::BadForm)?;
        let ft = form.field("FORM_TYPE").ok_or(CapsError::BadForm)?;
        if ft.type_.as_deref() != Some("hidden") {
            return Err(CapsError::BadForm);
        }
        form_types.push(ft.value().unwrap_or("").to_owned());
        let fields = form.fields.iter().map(|f| {
            let mut b = Vec::new();
            item(&mut b, f.var.as_deref().unwrap_or(""));
            let mut values: Vec<&String> = f.values.iter().collect();
            values.sort();
            for v in values {
                item(&mut b, v);
            }
            b.push(0x1e);
            b
        });
        forms.push(sorted_with(fields.collect(), 0x1d).map_err(|()| CapsError::BadForm)?);
    }
    form_types.sort();
    if form_types.windows(2).any(|w| w[0] == w[1]) {
        return Err(CapsError::BadForm);
    }
    out.extend(sorted_with(forms, 0x1c).map_err(|()| CapsError::BadForm)?);
    Ok(out)
}

/// The XEP-0390 hash (base64) of a disco#info result with `algo` (`sha-256` or
/// `sha3-256`).
pub fn caps2_hash(info: &DiscoInfo, algo: &str) -> Result<String, CapsError> {
    let input = caps2_input(info)?;
    let digest = match algo {
        "sha-256" => sha2::Sha256::digest(&input).to_vec(),
        "sha3-256" => sha3::Sha3_256::digest(&input).to_vec(),
        _ => return Err(CapsError::UnsupportedHash),
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The XEP-0390 `<c/>` of a disco#info result with every hash in [`CAPS2_ALGOS`].
pub fn caps2_of(info: &DiscoInfo) -> Result<Caps2, CapsError> {
    let hashes = CAPS2_ALGOS.iter().map(|a| Ok(((*a).to_owned(), caps2_hash(info, a)?))).collect::<Result<_, CapsError>>()?;
    Ok(Caps2 { hashes })
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

    fn features(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// XEP-0390 §4.4, example 1 (BombusMod): input length and both hashes.
    #[test]
    fn caps2_example_1() {
        let info = DiscoInfo {
            node: None,
            identities: vec![Identity::new("client", "mobile").with_name("BombusMod")],
            features: features(&[
                "http://jabber.org/protocol/si",
                "http://jabber.org/protocol/bytestreams",
                "http://jabber.org/protocol/chatstates",
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "urn:xmpp:ping",
                "jabber:iq:time",
                "jabber:iq:privacy",
                "jabber:iq:version",
                "http://jabber.org/protocol/rosterx",
                "urn:xmpp:time",
                "jabber:x:oob",
                "http://jabber.org/protocol/ibb",
                "http://jabber.org/protocol/si/profile/file-transfer",
                "urn:xmpp:receipts",
                "jabber:iq:roster",
                "jabber:iq:last",
            ]),
            extensions: vec![],
        };
        let input = caps2_input(&info).unwrap();
        assert_eq!(input.len(), 0x1d9);
        assert!(input.ends_with(b"client\x1fmobile\x1f\x1fBombusMod\x1f\x1e\x1c\x1c"));
        assert_eq!(caps2_hash(&info, "sha-256").unwrap(), "kzBZbkqJ3ADrj7v08reD1qcWUwNGHaidNUgD7nHpiw8=");
        assert_eq!(caps2_hash(&info, "sha3-256").unwrap(), "79mdYAfU9rEdTOcWDO7UEAt6E56SUzk/g6TnqUeuD9Q=");
    }

    /// XEP-0390 §4.4, example 2 (Tkabber: two languages and a software-info form).
    #[test]
    fn caps2_example_2() {
        let mut en = Identity::new("client", "pc").with_name("Tkabber");
        en.lang = Some("en".into());
        let mut ru = Identity::new("client", "pc").with_name("Ткаббер");
        ru.lang = Some("ru".into());
        let form = DataForm::new("result", "urn:xmpp:dataforms:softwareinfo")
            .with_field(Field::new("software", None, "Tkabber"))
            .with_field(Field::new("software_version", None, "0.11.1-svn-20111216-mod (Tcl/Tk 8.6b2)"))
            .with_field(Field::new("os", None, "Windows"))
            .with_field(Field::new("os_version", None, "XP"));
        let info = DiscoInfo {
            node: None,
            identities: vec![en, ru],
            features: features(&[
                "games:board",
                "http://jabber.org/protocol/activity",
                "http://jabber.org/protocol/activity+notify",
                "http://jabber.org/protocol/bytestreams",
                "http://jabber.org/protocol/chatstates",
                "http://jabber.org/protocol/commands",
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "http://jabber.org/protocol/evil",
                "http://jabber.org/protocol/feature-neg",
                "http://jabber.org/protocol/geoloc",
                "http://jabber.org/protocol/geoloc+notify",
                "http://jabber.org/protocol/ibb",
                "http://jabber.org/protocol/iqibb",
                "http://jabber.org/protocol/mood",
                "http://jabber.org/protocol/mood+notify",
                "http://jabber.org/protocol/rosterx",
                "http://jabber.org/protocol/si",
                "http://jabber.org/protocol/si/profile/file-transfer",
                "http://jabber.org/protocol/tune",
                "http://www.facebook.com/xmpp/messages",
                "http://www.xmpp.org/extensions/xep-0084.html#ns-metadata+notify",
                "jabber:iq:avatar",
                "jabber:iq:browse",
                "jabber:iq:dtcp",
                "jabber:iq:filexfer",
                "jabber:iq:ibb",
                "jabber:iq:inband",
                "jabber:iq:jidlink",
                "jabber:iq:last",
                "jabber:iq:oob",
                "jabber:iq:privacy",
                "jabber:iq:roster",
                "jabber:iq:time",
                "jabber:iq:version",
                "jabber:x:data",
                "jabber:x:event",
                "jabber:x:oob",
                "urn:xmpp:avatar:metadata+notify",
                "urn:xmpp:ping",
                "urn:xmpp:receipts",
                "urn:xmpp:time",
            ]),
            extensions: vec![form.into()],
        };
        let input = caps2_input(&info).unwrap();
        assert_eq!(input.len(), 0x543);
        assert!(input.ends_with(b"\x1cFORM_TYPE\x1furn:xmpp:dataforms:softwareinfo\x1f\x1eos\x1fWindows\x1f\x1eos_version\x1fXP\x1f\x1esoftware\x1fTkabber\x1f\x1esoftware_version\x1f0.11.1-svn-20111216-mod (Tcl/Tk 8.6b2)\x1f\x1e\x1d\x1c"));
        assert_eq!(caps2_hash(&info, "sha-256").unwrap(), "u79ZroNJbdSWhdSp311mddz44oHHPsEBntQ5b1jqBSY=");
        assert_eq!(caps2_hash(&info, "sha3-256").unwrap(), "XpUJzLAc93258sMECZ3FJpebkzuyNXDzRNwQog8eycg=");
        // The same disco#info gives a different XEP-0115 ver (the algorithms differ).
        assert_ne!(hash(&info, "sha-256").unwrap(), caps2_hash(&info, "sha-256").unwrap());
    }

    #[test]
    fn caps2_refuses_what_must_not_be_cached() {
        let mut info = DiscoInfo { features: vec!["a".into(), "a".into()], ..DiscoInfo::default() };
        assert_eq!(caps2_hash(&info, "sha-256"), Err(CapsError::DuplicateFeature));
        info.features = vec!["a".into()];
        assert_eq!(caps2_hash(&info, "sha-1"), Err(CapsError::UnsupportedHash));
        info.identities = vec![Identity::new("client", "pc"), Identity::new("client", "pc")];
        assert_eq!(caps2_hash(&info, "sha-256"), Err(CapsError::DuplicateIdentity));
        info.identities = vec![];
        info.extensions = vec![DataForm { type_: "result".into(), fields: vec![] }.into()];
        assert_eq!(caps2_hash(&info, "sha-256"), Err(CapsError::BadForm));
    }

    #[test]
    fn caps2_element_round_trip_and_invalid() {
        let info = DiscoInfo { features: vec!["urn:x".into()], ..DiscoInfo::default() };
        let c = caps2_of(&info).unwrap();
        assert_eq!(c.hashes.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["sha-256", "sha3-256"]);
        let e: Element = c.clone().into();
        assert_eq!(Caps2::try_from(&e).unwrap(), c);
        assert_eq!(c.supported().map(|(a, _)| a), Some("sha-256"));
        let only_unknown = Caps2 { hashes: vec![("blake2b-256".into(), "eA==".into())] };
        assert_eq!(only_unknown.supported(), None);
        assert_eq!(caps2_node("sha-256", "abc="), "urn:xmpp:caps#sha-256.abc=");
        assert!(Caps2::try_from(&Element::new("c", NS_CAPS2)).is_err());
        assert!(Caps2::try_from(&Element::new("c", NS_CAPS2).with_child(Element::new("hash", NS_HASHES2).with_attr("algo", "sha-256"))).is_err());
        assert!(Caps2::try_from(&Element::new("c", NS_CAPS2).with_child(Element::new("x", NS_HASHES2))).is_err());
        let many = (0..=MAX_CAPS2_HASHES).fold(Element::new("c", NS_CAPS2), |e, _| {
            e.with_child(Element::new("hash", NS_HASHES2).with_attr("algo", "sha-256").with_text("eA=="))
        });
        assert!(Caps2::try_from(&many).is_err());
    }
}
