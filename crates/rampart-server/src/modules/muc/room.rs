//! One XEP-0045 room: its configuration, affiliations (persistent), occupants and roles
//! (per visit), subject and history, with the permission rules of XEP-0045 §§5, 8–10 and
//! the builders for the presence and status-code stanzas occupants see.

use std::collections::{BTreeMap, HashMap};

use rampart_proto::{Element, Jid, ns};
use serde_json::{Value, json};

use super::history::History;
use super::{NS_MUC_USER, now_ms};

/// Affiliation of a bare JID with a room (XEP-0045 §5.2), ordered by privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// Role of an occupant during a visit (XEP-0045 §5.1), ordered by privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// Who may send private messages through the room (`muc#roomconfig_allowpm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowPm {
    Anyone,
    Participants,
    Moderators,
    Nobody,
}

impl AllowPm {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::Nobody => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "anyone" => AllowPm::Anyone,
            "participants" => AllowPm::Participants,
            "moderators" => AllowPm::Moderators,
            "none" => AllowPm::Nobody,
            _ => return None,
        })
    }
}

/// The owner-settable configuration of a room (the `muc#roomconfig` form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    /// Survives the last occupant leaving and server restarts.
    pub persistent: bool,
    /// Listed in the service's disco#items.
    pub public: bool,
    pub members_only: bool,
    /// Only occupants with voice (participants and moderators) may speak.
    pub moderated: bool,
    /// Required to enter, if set.
    pub password: Option<String>,
    /// Most occupants (owners and admins may always enter); `None` = the service limit.
    pub max_users: Option<usize>,
    /// Real JIDs visible to everyone (non-anonymous) rather than to moderators only.
    pub whois_anyone: bool,
    /// Participants may change the subject (moderators always may).
    pub change_subject: bool,
    /// Members may invite others into a members-only room (admins and owners always may).
    pub allow_invites: bool,
    pub allow_pm: AllowPm,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            max_users: None,
            whois_anyone: false,
            change_subject: false,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
        }
    }
}

impl RoomConfig {
    /// Serialize for the room store.
    pub fn to_json(&self) -> String {
        json!({
            "name": self.name,
            "description": self.description,
            "persistent": self.persistent,
            "public": self.public,
            "members_only": self.members_only,
            "moderated": self.moderated,
            "password": self.password,
            "max_users": self.max_users,
            "whois_anyone": self.whois_anyone,
            "change_subject": self.change_subject,
            "allow_invites": self.allow_invites,
            "allow_pm": self.allow_pm.as_str(),
        })
        .to_string()
    }

    /// Read what [`RoomConfig::to_json`] wrote; missing or odd keys take their defaults.
    pub fn from_json(s: &str) -> RoomConfig {
        let v: Value = serde_json::from_str(s).unwrap_or(Value::Null);
        let d = RoomConfig::default();
        let b = |k: &str, d: bool| v.get(k).and_then(Value::as_bool).unwrap_or(d);
        let st = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        RoomConfig {
            name: st("name").unwrap_or_default(),
            description: st("description").unwrap_or_default(),
            persistent: b("persistent", true),
            public: b("public", d.public),
            members_only: b("members_only", d.members_only),
            moderated: b("moderated", d.moderated),
            password: st("password").filter(|p| !p.is_empty()),
            max_users: v.get("max_users").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok()),
            whois_anyone: b("whois_anyone", d.whois_anyone),
            change_subject: b("change_subject", d.change_subject),
            allow_invites: b("allow_invites", d.allow_invites),
            allow_pm: st("allow_pm").and_then(|s| AllowPm::parse(&s)).unwrap_or(d.allow_pm),
        }
    }
}

/// Someone in the room.
#[derive(Clone, Debug)]
pub struct Occupant {
    pub nick: String,
    /// The occupant's real full JID.
    pub jid: Jid,
    pub role: Role,
    /// Presence payload last sent into the room (show, status, caps...), without MUC
    /// extensions.
    pub presence: Vec<Element>,
    /// XEP-0421 occupant id (see [`super::occupant_id`]).
    pub occupant_id: String,
}

/// Most affiliations (owners, admins, members, outcasts) one room keeps.
pub const MAX_AFFILIATIONS: usize = 10_000;

/// One room. Lives behind an async mutex in [`super::MucService`].
pub struct Room {
    /// Bare room JID.
    pub jid: Jid,
    pub config: RoomConfig,
    /// Bare JID → (affiliation other than `none`, reason).
    pub affiliations: HashMap<String, (Affiliation, Option<String>)>,
    /// By nick.
    pub occupants: BTreeMap<String, Occupant>,
    /// (subject, nick that set it).
    pub subject: Option<(String, String)>,
    pub history: History,
    /// A new room waiting for its owner's configuration (XEP-0045 §10.1.2): only the owner
    /// may enter.
    pub locked: bool,
    pub created_at_ms: i64,
    /// Set when the room is destroyed (or emptied and temporary) while another task waited
    /// for its lock: that task treats it as gone.
    pub destroyed: bool,
    /// False for a persistent room loaded after a restart until its history has been read
    /// back from the compliance archive (on the first entry).
    pub history_loaded: bool,
}

impl Room {
    /// A new room owned by `owner` (a bare JID).
    pub fn new(jid: Jid, owner: &str, max_history: usize) -> Room {
        let mut affiliations = HashMap::new();
        affiliations.insert(owner.to_owned(), (Affiliation::Owner, None));
        Room {
            jid,
            config: RoomConfig::default(),
            affiliations,
            occupants: BTreeMap::new(),
            subject: None,
            history: History::new(max_history),
            locked: false,
            created_at_ms: now_ms(),
            destroyed: false,
            history_loaded: true,
        }
    }

    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations.get(bare).map_or(Affiliation::None, |(a, _)| *a)
    }

    pub fn set_affiliation(&mut self, bare: &str, a: Affiliation, reason: Option<String>) {
        if a == Affiliation::None {
            self.affiliations.remove(bare);
        } else {
            self.affiliations.insert(bare.to_owned(), (a, reason));
        }
    }

    /// Bare JIDs with affiliation `a`, sorted.
    pub fn with_affiliation(&self, a: Affiliation) -> Vec<String> {
        let mut v: Vec<String> = self.affiliations.iter().filter(|(_, (x, _))| *x == a).map(|(j, _)| j.clone()).collect();
        v.sort();
        v
    }

    /// The role an occupant with affiliation `a` gets on entering (XEP-0045 §5.1.2).
    pub fn default_role(&self, a: Affiliation) -> Role {
        match a {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.config.moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    /// The nick under which the real full JID `jid` is in the room.
    pub fn nick_of(&self, jid: &Jid) -> Option<&str> {
        self.occupants.values().find(|o| &o.jid == jid).map(|o| o.nick.as_str())
    }

    /// Nicks of every occupant whose real bare JID is `bare`.
    pub fn nicks_of_bare(&self, bare: &str) -> Vec<String> {
        self.occupants.values().filter(|o| o.jid.bare_str() == bare).map(|o| o.nick.clone()).collect()
    }

    /// The room JID with `nick` as resource (`room@service/nick`).
    pub fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{}", self.jid.as_str(), nick)
    }

    /// Does `viewer` (an occupant's role) see real JIDs?
    pub fn shows_jids_to(&self, viewer: Role) -> bool {
        self.config.whois_anyone || viewer == Role::Moderator
    }

    /// Most occupants, given the service cap.
    pub fn max_users(&self, service_cap: usize) -> usize {
        self.config.max_users.map_or(service_cap, |m| m.min(service_cap))
    }

    /// The stanza-independent part of what an occupant's presence looks like to `viewer`:
    /// `<presence from=room/nick to=viewer>` with its payload and the muc#user item.
    /// `codes` are status codes; `extra` goes into the `<x/>` (e.g. `<destroy/>`).
    pub fn occupant_presence(&self, o: &Occupant, viewer: &Occupant, unavailable: bool, item: ItemExtras<'_>, codes: &[u16]) -> Element {
        let mut p = Element::new("presence", ns::CLIENT)
            .with_attr("from", self.occupant_jid(&o.nick))
            .with_attr("to", viewer.jid.as_str());
        if unavailable {
            p.set_attr("type", "unavailable");
            // Keep only the status text of a departure.
            for c in o.presence.iter().filter(|c| c.is("status", ns::CLIENT)) {
                p = p.with_child(c.clone());
            }
        } else {
            for c in &o.presence {
                p = p.with_child(c.clone());
            }
        }
        let aff = self.affiliation(o.jid.bare_str());
        let mut it = Element::new("item", NS_MUC_USER)
            .with_attr("affiliation", aff.as_str())
            .with_attr("role", if unavailable { Role::None.as_str() } else { o.role.as_str() });
        if self.shows_jids_to(viewer.role) || viewer.jid == o.jid {
            it.set_attr("jid", o.jid.as_str());
        }
        if let Some(n) = item.new_nick {
            it.set_attr("nick", n);
        }
        if let Some(a) = item.actor {
            it = it.with_child(Element::new("actor", NS_MUC_USER).with_attr("nick", a));
        }
        if let Some(r) = item.reason {
            it = it.with_child(Element::new("reason", NS_MUC_USER).with_text(r));
        }
        let mut x = Element::new("x", NS_MUC_USER).with_child(it);
        if let Some(e) = item.extra {
            x = x.with_child(e.clone());
        }
        if !o.occupant_id.is_empty() {
            p = p.with_child(Element::new("occupant-id", super::NS_OCCUPANT_ID).with_attr("id", o.occupant_id.clone()));
        }
        let is_self = viewer.jid == o.jid;
        let mut all: Vec<u16> = codes.to_vec();
        if is_self {
            all.push(110);
        }
        all.sort_unstable();
        all.dedup();
        for c in all {
            // Codes only the occupant itself should see.
            if !is_self && matches!(c, 100 | 170 | 201 | 210) {
                continue;
            }
            x = x.with_child(Element::new("status", NS_MUC_USER).with_attr("code", c.to_string()));
        }
        p.with_child(x)
    }

    /// One presence of `nick` per occupant (each viewer sees what its role allows).
    pub fn presence_to_all(&self, nick: &str, unavailable: bool, item: ItemExtras<'_>, codes: &[u16]) -> Vec<Element> {
        let Some(o) = self.occupants.get(nick) else { return Vec::new() };
        self.occupants.values().map(|v| self.occupant_presence(o, v, unavailable, item, codes)).collect()
    }

    /// A groupchat message from the room itself with status codes (e.g. 104 config change).
    pub fn status_message_to_all(&self, codes: &[u16]) -> Vec<Element> {
        self.occupants
            .values()
            .map(|o| {
                let mut x = Element::new("x", NS_MUC_USER);
                for c in codes {
                    x = x.with_child(Element::new("status", NS_MUC_USER).with_attr("code", c.to_string()));
                }
                Element::new("message", ns::CLIENT)
                    .with_attr("type", "groupchat")
                    .with_attr("from", self.jid.as_str())
                    .with_attr("to", o.jid.as_str())
                    .with_attr("id", super::new_id())
                    .with_child(x)
            })
            .collect()
    }

    /// The subject message sent on entering (always sent, empty if there is none).
    pub fn subject_message(&self, to: &Jid) -> Element {
        let (text, from) = match &self.subject {
            Some((s, nick)) if !nick.is_empty() => (s.as_str(), self.occupant_jid(nick)),
            Some((s, _)) => (s.as_str(), self.jid.as_str().to_owned()),
            None => ("", self.jid.as_str().to_owned()),
        };
        Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_attr("from", from)
            .with_attr("to", to.as_str())
            .with_attr("id", super::new_id())
            .with_child(Element::new("subject", ns::CLIENT).with_text(text))
    }

    /// Features advertised in the room's disco#info (XEP-0045 §6.4).
    pub fn features(&self, archive: bool) -> Vec<String> {
        let c = &self.config;
        let mut f = vec![
            ns::DISCO_INFO,
            ns::MUC,
            if c.persistent { "muc_persistent" } else { "muc_temporary" },
            if c.public { "muc_public" } else { "muc_hidden" },
            if c.members_only { "muc_membersonly" } else { "muc_open" },
            if c.moderated { "muc_moderated" } else { "muc_unmoderated" },
            if c.whois_anyone { "muc_nonanonymous" } else { "muc_semianonymous" },
            if c.password.is_some() { "muc_passwordprotected" } else { "muc_unsecured" },
            super::NS_SELF_PING,
            super::NS_OCCUPANT_ID,
        ];
        if archive {
            f.push(ns::MAM);
            f.push(ns::SID);
            // Retraction needs the room's stanza-ids, which are archive ids.
            f.push(super::moderation::NS_MODERATE);
            f.push(super::moderation::NS_MODERATE_0);
            f.push(super::moderation::NS_RETRACT);
            f.push(super::moderation::NS_RETRACT_TOMBSTONE);
        }
        let mut f: Vec<String> = f.into_iter().map(str::to_owned).collect();
        f.sort();
        f
    }
}

/// Optional parts of an occupant's `<item/>` and `<x/>`.
#[derive(Clone, Copy, Default)]
pub struct ItemExtras<'a> {
    /// New nick (status 303).
    pub new_nick: Option<&'a str>,
    /// Nick of the moderator who acted (kick, ban).
    pub actor: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// Extra child of `<x/>`, e.g. `<destroy/>`.
    pub extra: Option<&'a Element>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn occ(nick: &str, j: &str, role: Role) -> Occupant {
        Occupant { nick: nick.into(), jid: jid(j), role, presence: vec![], occupant_id: String::new() }
    }

    #[test]
    fn config_roundtrip_and_defaults() {
        let mut c = RoomConfig { name: "Ops".into(), members_only: true, password: Some("s".into()), max_users: Some(3), allow_pm: AllowPm::Moderators, ..RoomConfig::default() };
        c.persistent = true;
        assert_eq!(RoomConfig::from_json(&c.to_json()), c);
        // Garbage gives a usable (persistent: it came from the store) default.
        let d = RoomConfig::from_json("not json");
        assert!(d.persistent && d.public && !d.members_only);
    }

    #[test]
    fn occupant_ids_are_stable_and_per_room() {
        use super::super::occupant_id;
        let a = occupant_id(b"k", "r@c.x", "a@x");
        assert_eq!(a, occupant_id(b"k", "r@c.x", "a@x"));
        assert_ne!(a, occupant_id(b"k", "s@c.x", "a@x"));
        assert_ne!(a, occupant_id(b"other", "r@c.x", "a@x"));
        assert!(!a.contains("a@x") && a.len() >= 20);
    }

    #[test]
    fn roles_follow_affiliations() {
        let mut r = Room::new(jid("r@conference.x"), "o@x", 10);
        assert_eq!(r.affiliation("o@x"), Affiliation::Owner);
        assert_eq!(r.default_role(Affiliation::Owner), Role::Moderator);
        assert_eq!(r.default_role(Affiliation::None), Role::Participant);
        r.config.moderated = true;
        assert_eq!(r.default_role(Affiliation::None), Role::Visitor);
        assert_eq!(r.default_role(Affiliation::Member), Role::Participant);
        r.set_affiliation("m@x", Affiliation::Member, None);
        r.set_affiliation("m@x", Affiliation::None, None);
        assert_eq!(r.affiliation("m@x"), Affiliation::None);
        assert!(Affiliation::Outcast < Affiliation::None && Affiliation::Admin < Affiliation::Owner);
    }

    #[test]
    fn presence_hides_jids_in_semi_anonymous_rooms() {
        let mut r = Room::new(jid("r@conference.x"), "o@x", 10);
        let a = occ("al", "a@x/1", Role::Participant);
        let m = occ("mo", "o@x/1", Role::Moderator);
        r.occupants.insert("al".into(), a.clone());
        r.occupants.insert("mo".into(), m.clone());
        let seen_by_mod = r.occupant_presence(&a, &m, false, ItemExtras::default(), &[100]).to_xml_string();
        assert!(seen_by_mod.contains("jid=\"a@x/1\""));
        assert!(!seen_by_mod.contains("code=\"100\""), "{seen_by_mod}");
        let seen_by_peer = r.occupant_presence(&m, &a, false, ItemExtras::default(), &[]).to_xml_string();
        assert!(!seen_by_peer.contains("o@x/1"), "{seen_by_peer}");
        let mut a2 = a.clone();
        a2.occupant_id = super::super::occupant_id(b"secret", "r@conference.x", "a@x");
        assert!(r.occupant_presence(&a2, &m, false, ItemExtras::default(), &[]).to_xml_string().contains(&a2.occupant_id));
        let own = r.occupant_presence(&a, &a, false, ItemExtras::default(), &[201]).to_xml_string();
        assert!(own.contains("code=\"110\"") && own.contains("code=\"201\""));
        r.config.whois_anyone = true;
        assert!(r.occupant_presence(&m, &a, false, ItemExtras::default(), &[]).to_xml_string().contains("o@x/1"));
    }
}
