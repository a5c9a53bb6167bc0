//! PEP node configuration (XEP-0060 §16.4 `pubsub#node_config`): the fields Rampart
//! implements, their defaults (per XEP-0163 and per well-known node), the form clients see,
//! and the checks for configuration changes and publish-options preconditions (§7.1.5).
//!
//! Stored as `key=value` lines (the store keeps it opaque).

use rampart_proto::dataforms::{DataForm, Field};
use rampart_proto::pubsub::NODE_CONFIG;

/// Most items a node keeps (`pubsub#max_items` = `max` means this).
pub const MAX_ITEMS_PER_NODE: usize = 256;

/// Who may see a node's items (XEP-0060 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessModel {
    /// Anyone.
    Open,
    /// Contacts subscribed to the owner's presence (the PEP default).
    Presence,
    /// Contacts in the allowed roster groups.
    Roster,
    /// The owner and the entities it made `member` or `publisher` (see `super::subs`).
    Whitelist,
}

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }

    pub fn parse(s: &str) -> Option<AccessModel> {
        Some(match s {
            "open" => AccessModel::Open,
            "presence" => AccessModel::Presence,
            "roster" => AccessModel::Roster,
            "whitelist" => AccessModel::Whitelist,
            _ => return None,
        })
    }
}

/// When the last published item goes to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

impl SendLast {
    pub fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }

    pub fn parse(s: &str) -> Option<SendLast> {
        Some(match s {
            "never" => SendLast::Never,
            "on_sub" => SendLast::OnSub,
            "on_sub_and_presence" => SendLast::OnSubAndPresence,
            _ => return None,
        })
    }
}

/// A node's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub access_model: AccessModel,
    /// Items kept (1..=[`MAX_ITEMS_PER_NODE`]).
    pub max_items: usize,
    /// `false`: only the last item is kept (for last-item delivery), not a history.
    pub persist_items: bool,
    pub notify_retract: bool,
    pub notify_delete: bool,
    pub deliver_notifications: bool,
    pub send_last: SendLast,
    /// For the `roster` access model.
    pub roster_groups: Vec<String>,
    pub title: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            access_model: AccessModel::Presence,
            max_items: 1,
            persist_items: true,
            notify_retract: true,
            notify_delete: true,
            deliver_notifications: true,
            send_last: SendLast::OnSubAndPresence,
            roster_groups: Vec::new(),
            title: None,
        }
    }
}

/// Why a configuration or a publish-options form is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A field value is invalid or a field is not supported.
    NotAcceptable(String),
    /// Publish-options do not match the existing node (§7.1.5).
    PreconditionNotMet(String),
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn max_items_str(n: usize) -> String {
    if n >= MAX_ITEMS_PER_NODE { "max".to_owned() } else { n.to_string() }
}

impl NodeConfig {
    /// The default configuration for a newly created node: XEP-0163 defaults, with the
    /// private nodes of bookmarks (XEP-0402, XEP-0048) closed to everyone but the owner.
    pub fn default_for(node: &str) -> NodeConfig {
        let mut c = NodeConfig::default();
        if matches!(node, "urn:xmpp:bookmarks:1" | "storage:bookmarks") {
            c.access_model = AccessModel::Whitelist;
            c.send_last = SendLast::Never;
        }
        if node == "urn:xmpp:bookmarks:1" {
            c.max_items = MAX_ITEMS_PER_NODE;
        }
        c
    }

    /// Items the store keeps for this node.
    pub fn kept_items(&self) -> usize {
        if self.persist_items { self.max_items } else { 1 }
    }

    /// Serialize for the store.
    pub fn to_stored(&self) -> String {
        let mut s = format!(
            "access_model={}\nmax_items={}\npersist_items={}\nnotify_retract={}\nnotify_delete={}\ndeliver_notifications={}\nsend_last_published_item={}\n",
            self.access_model.as_str(),
            self.max_items,
            self.persist_items,
            self.notify_retract,
            self.notify_delete,
            self.deliver_notifications,
            self.send_last.as_str()
        );
        for g in &self.roster_groups {
            s.push_str(&format!("roster_group={}\n", g.replace('\n', " ")));
        }
        if let Some(t) = &self.title {
            s.push_str(&format!("title={}\n", t.replace('\n', " ")));
        }
        s
    }

    /// Parse what [`NodeConfig::to_stored`] wrote (unknown or bad lines keep defaults).
    pub fn from_stored(s: &str) -> NodeConfig {
        let mut c = NodeConfig::default();
        for line in s.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k {
                "access_model" => c.access_model = AccessModel::parse(v).unwrap_or(c.access_model),
                "max_items" => c.max_items = v.parse().unwrap_or(c.max_items).clamp(1, MAX_ITEMS_PER_NODE),
                "persist_items" => c.persist_items = parse_bool(v).unwrap_or(c.persist_items),
                "notify_retract" => c.notify_retract = parse_bool(v).unwrap_or(c.notify_retract),
                "notify_delete" => c.notify_delete = parse_bool(v).unwrap_or(c.notify_delete),
                "deliver_notifications" => c.deliver_notifications = parse_bool(v).unwrap_or(c.deliver_notifications),
                "send_last_published_item" => c.send_last = SendLast::parse(v).unwrap_or(c.send_last),
                "roster_group" => c.roster_groups.push(v.to_owned()),
                "title" => c.title = Some(v.to_owned()),
                _ => {}
            }
        }
        c
    }

    /// The configuration form (§8.2.1), also the default-configuration form (§8.3).
    pub fn to_form(&self) -> DataForm {
        let b = |v: bool| if v { "1" } else { "0" };
        DataForm::new("form", NODE_CONFIG)
            .with_field(Field::new("pubsub#access_model", Some("list-single"), self.access_model.as_str()))
            .with_field(Field::new("pubsub#max_items", Some("text-single"), max_items_str(self.max_items)))
            .with_field(Field::new("pubsub#persist_items", Some("boolean"), b(self.persist_items)))
            .with_field(Field::new("pubsub#notify_retract", Some("boolean"), b(self.notify_retract)))
            .with_field(Field::new("pubsub#notify_delete", Some("boolean"), b(self.notify_delete)))
            .with_field(Field::new("pubsub#deliver_notifications", Some("boolean"), b(self.deliver_notifications)))
            .with_field(Field::new("pubsub#send_last_published_item", Some("list-single"), self.send_last.as_str()))
            .with_field(Field::new("pubsub#publish_model", Some("list-single"), "publishers"))
            .with_field(Field {
                var: Some("pubsub#roster_groups_allowed".into()),
                type_: Some("list-multi".into()),
                label: None,
                values: self.roster_groups.clone(),
            })
            .with_field(Field::new("pubsub#title", Some("text-single"), self.title.clone().unwrap_or_default()))
    }

    /// Apply a submitted configuration (§8.2.4) or the options of a node created by a
    /// publish; fields not in the form keep their values.
    pub fn apply(&mut self, form: &DataForm) -> Result<(), ConfigError> {
        let bad = |var: &str, v: &str| ConfigError::NotAcceptable(format!("invalid value {v:?} for {var}"));
        for f in &form.fields {
            let Some(var) = f.var.as_deref() else { continue };
            let v = f.value().unwrap_or("");
            match var {
                "FORM_TYPE" => {}
                "pubsub#access_model" => self.access_model = AccessModel::parse(v).ok_or_else(|| bad(var, v))?,
                "pubsub#max_items" => {
                    self.max_items = if v == "max" {
                        MAX_ITEMS_PER_NODE
                    } else {
                        match v.parse::<usize>() {
                            Ok(n) if (1..=MAX_ITEMS_PER_NODE).contains(&n) => n,
                            _ => return Err(bad(var, v)),
                        }
                    }
                }
                "pubsub#persist_items" => self.persist_items = parse_bool(v).ok_or_else(|| bad(var, v))?,
                "pubsub#notify_retract" => self.notify_retract = parse_bool(v).ok_or_else(|| bad(var, v))?,
                "pubsub#notify_delete" => self.notify_delete = parse_bool(v).ok_or_else(|| bad(var, v))?,
                "pubsub#deliver_notifications" => self.deliver_notifications = parse_bool(v).ok_or_else(|| bad(var, v))?,
                "pubsub#send_last_published_item" => self.send_last = SendLast::parse(v).ok_or_else(|| bad(var, v))?,
                "pubsub#publish_model" if v == "publishers" => {}
                "pubsub#roster_groups_allowed" => {
                    if f.values.len() > 64 {
                        return Err(bad(var, "(too many groups)"));
                    }
                    self.roster_groups = f.values.clone();
                }
                "pubsub#title" => self.title = Some(v.chars().take(256).collect()).filter(|t: &String| !t.is_empty()),
                other => return Err(ConfigError::NotAcceptable(format!("unsupported configuration field {other}"))),
            }
        }
        Ok(())
    }

    /// §7.1.5: do the publish-options match this (existing) node's configuration?
    pub fn check_preconditions(&self, form: &DataForm) -> Result<(), ConfigError> {
        let mut wanted = self.clone();
        wanted.apply(form).map_err(|e| match e {
            ConfigError::NotAcceptable(t) | ConfigError::PreconditionNotMet(t) => ConfigError::PreconditionNotMet(t),
        })?;
        if wanted == *self {
            Ok(())
        } else {
            let field = form
                .fields
                .iter()
                .filter_map(|f| f.var.as_deref())
                .find(|v| {
                    let mut one = self.clone();
                    let single = DataForm { type_: "submit".into(), fields: form.fields.iter().filter(|f| f.var.as_deref() == Some(v)).cloned().collect() };
                    one.apply(&single).is_ok() && one != *self
                })
                .unwrap_or("configuration");
            Err(ConfigError::PreconditionNotMet(format!("the node's {field} differs from the publish-options")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(fields: &[(&str, &str)]) -> DataForm {
        fields.iter().fold(DataForm::new("submit", rampart_proto::pubsub::PUBLISH_OPTIONS), |f, (k, v)| f.with_field(Field::new(*k, None, *v)))
    }

    #[test]
    fn stored_round_trip() {
        let mut c = NodeConfig::default_for("urn:xmpp:bookmarks:1");
        assert_eq!(c.access_model, AccessModel::Whitelist);
        c.roster_groups = vec!["Friends".into(), "Work".into()];
        c.title = Some("t".into());
        assert_eq!(NodeConfig::from_stored(&c.to_stored()), c);
        assert_eq!(NodeConfig::from_stored("garbage\nmax_items=99999\n").max_items, MAX_ITEMS_PER_NODE);
    }

    #[test]
    fn apply_and_form() {
        let mut c = NodeConfig::default();
        c.apply(&opts(&[("pubsub#access_model", "open"), ("pubsub#max_items", "max"), ("pubsub#persist_items", "true")])).unwrap();
        assert_eq!((c.access_model, c.max_items), (AccessModel::Open, MAX_ITEMS_PER_NODE));
        let form = c.to_form();
        assert_eq!(form.field("pubsub#max_items").and_then(Field::value), Some("max"));
        let mut back = NodeConfig::default();
        back.apply(&DataForm { type_: "submit".into(), fields: form.fields }).unwrap();
        assert_eq!(back, c);
        assert!(matches!(c.apply(&opts(&[("pubsub#access_model", "authorize")])), Err(ConfigError::NotAcceptable(_))));
        assert!(matches!(c.apply(&opts(&[("pubsub#max_items", "0")])), Err(ConfigError::NotAcceptable(_))));
        assert!(matches!(c.apply(&opts(&[("pubsub#frobnicate", "1")])), Err(ConfigError::NotAcceptable(_))));
    }

    #[test]
    fn preconditions() {
        let c = NodeConfig::default();
        c.check_preconditions(&opts(&[("pubsub#access_model", "presence"), ("pubsub#persist_items", "1")])).unwrap();
        let e = c.check_preconditions(&opts(&[("pubsub#access_model", "open")])).unwrap_err();
        assert_eq!(e, ConfigError::PreconditionNotMet("the node's pubsub#access_model differs from the publish-options".into()));
        assert!(matches!(c.check_preconditions(&opts(&[("pubsub#nope", "1")])), Err(ConfigError::PreconditionNotMet(_))));
    }
}
