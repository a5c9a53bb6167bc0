//! XEP-0004 data forms of a room: the owner's configuration form (`muc#roomconfig`,
//! XEP-0045 §10.2) — built from a [`RoomConfig`] and applied back from a submission — and
//! the room information form (`muc#roominfo`, XEP-0045 §6.4) in disco#info.

use rampart_proto::{DefinedCondition, Element, ErrorType, StanzaError, ns};

use super::room::{AllowPm, Room, RoomConfig};

pub const NS_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const NS_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";

/// Longest room name, description or password accepted.
const MAX_TEXT: usize = 1024;

fn field(var: &str, ty: &str, label: &str) -> Element {
    Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_attr("type", ty).with_attr("label", label)
}

fn value(v: impl Into<String>) -> Element {
    Element::new("value", ns::DATA_FORMS).with_text(v)
}

fn option(label: &str, v: &str) -> Element {
    Element::new("option", ns::DATA_FORMS).with_attr("label", label).with_child(value(v))
}

fn bool_field(var: &str, label: &str, on: bool) -> Element {
    field(var, "boolean", label).with_child(value(if on { "1" } else { "0" }))
}

/// The configuration form for `room`, filled with its current values.
pub fn config_form(room: &Room, service_cap: usize) -> Element {
    let c = &room.config;
    let mut maxusers = field("muc#roomconfig_maxusers", "list-single", "Maximum number of occupants")
        .with_child(value(c.max_users.map_or_else(|| "none".to_owned(), |m| m.to_string())));
    for n in [5usize, 10, 20, 30, 50, 100, 200, 500, 1000] {
        if n < service_cap {
            maxusers = maxusers.with_child(option(&n.to_string(), &n.to_string()));
        }
    }
    maxusers = maxusers.with_child(option(&format!("{service_cap} (the most this service allows)"), "none"));
    Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(Element::new("title", ns::DATA_FORMS).with_text(format!("Configuration of {}", room.jid.as_str())))
        .with_child(field("FORM_TYPE", "hidden", "").with_child(value(NS_ROOMCONFIG)))
        .with_child(field("muc#roomconfig_roomname", "text-single", "Room name").with_child(value(c.name.clone())))
        .with_child(field("muc#roomconfig_roomdesc", "text-single", "Description").with_child(value(c.description.clone())))
        .with_child(bool_field("muc#roomconfig_persistentroom", "Keep the room when the last occupant leaves", c.persistent))
        .with_child(bool_field("muc#roomconfig_publicroom", "List the room in the directory", c.public))
        .with_child(bool_field("muc#roomconfig_membersonly", "Only members may enter", c.members_only))
        .with_child(bool_field("muc#roomconfig_moderatedroom", "Only occupants with voice may speak", c.moderated))
        .with_child(bool_field("muc#roomconfig_passwordprotectedroom", "A password is required to enter", c.password.is_some()))
        .with_child(field("muc#roomconfig_roomsecret", "text-private", "Password").with_child(value(c.password.clone().unwrap_or_default())))
        .with_child(maxusers)
        .with_child(
            field("muc#roomconfig_whois", "list-single", "Who may see occupants' real addresses")
                .with_child(value(if c.whois_anyone { "anyone" } else { "moderators" }))
                .with_child(option("Moderators only", "moderators"))
                .with_child(option("Anyone", "anyone")),
        )
        .with_child(bool_field("muc#roomconfig_changesubject", "Participants may change the subject", c.change_subject))
        .with_child(bool_field("muc#roomconfig_allowinvites", "Members may invite others", c.allow_invites))
        .with_child(
            field("muc#roomconfig_allowpm", "list-single", "Who may send private messages")
                .with_child(value(c.allow_pm.as_str()))
                .with_child(option("Anyone", "anyone"))
                .with_child(option("Participants", "participants"))
                .with_child(option("Moderators", "moderators"))
                .with_child(option("Nobody", "none")),
        )
        .with_child(
            field("muc#roomconfig_enablelogging", "boolean", "Messages are recorded in the compliance archive (always on)")
                .with_child(value("1")),
        )
}

fn bad(text: impl Into<String>) -> StanzaError {
    StanzaError::new(ErrorType::Modify, DefinedCondition::NotAcceptable).with_text(text)
}

fn parse_bool(var: &str, v: &str) -> Result<bool, StanzaError> {
    match v.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        _ => Err(bad(format!("{var}: expected a boolean"))),
    }
}

fn text(var: &str, v: String) -> Result<String, StanzaError> {
    if v.len() > MAX_TEXT {
        return Err(bad(format!("{var}: longer than {MAX_TEXT} bytes")));
    }
    Ok(v)
}

/// Apply a submitted configuration form to `current`. Fields not given keep their value;
/// unknown fields are ignored (XEP-0045 lets services do so).
pub fn apply_config(current: &RoomConfig, form: &Element, service_cap: usize) -> Result<RoomConfig, StanzaError> {
    let mut c = current.clone();
    let mut password_protected = None;
    let mut secret = None;
    for f in form.elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let Some(var) = f.attr("var") else { continue };
        let values: Vec<String> = f.elements().filter(|v| v.is("value", ns::DATA_FORMS)).map(Element::text).collect();
        let v = values.first().cloned().unwrap_or_default();
        match var {
            "FORM_TYPE" => {
                if v != NS_ROOMCONFIG {
                    return Err(bad("FORM_TYPE must be http://jabber.org/protocol/muc#roomconfig"));
                }
            }
            "muc#roomconfig_roomname" => c.name = text(var, v)?,
            "muc#roomconfig_roomdesc" => c.description = text(var, v)?,
            "muc#roomconfig_persistentroom" => c.persistent = parse_bool(var, &v)?,
            "muc#roomconfig_publicroom" => c.public = parse_bool(var, &v)?,
            "muc#roomconfig_membersonly" => c.members_only = parse_bool(var, &v)?,
            "muc#roomconfig_moderatedroom" => c.moderated = parse_bool(var, &v)?,
            "muc#roomconfig_passwordprotectedroom" => password_protected = Some(parse_bool(var, &v)?),
            "muc#roomconfig_roomsecret" => secret = Some(text(var, v)?),
            "muc#roomconfig_maxusers" => {
                c.max_users = match v.trim() {
                    "" | "none" | "0" => None,
                    n => match n.parse::<usize>() {
                        Ok(n) if n <= service_cap => Some(n),
                        Ok(_) => return Err(bad(format!("{var}: this service allows at most {service_cap} occupants"))),
                        Err(_) => return Err(bad(format!("{var}: expected a number or 'none'"))),
                    },
                }
            }
            "muc#roomconfig_whois" => {
                c.whois_anyone = match v.trim() {
                    "anyone" => true,
                    "moderators" | "" => false,
                    _ => return Err(bad(format!("{var}: expected 'moderators' or 'anyone'"))),
                }
            }
            "muc#roomconfig_changesubject" => c.change_subject = parse_bool(var, &v)?,
            "muc#roomconfig_allowinvites" => c.allow_invites = parse_bool(var, &v)?,
            "muc#roomconfig_allowpm" => {
                c.allow_pm = AllowPm::parse(v.trim()).ok_or_else(|| bad(format!("{var}: expected anyone, participants, moderators or none")))?
            }
            "muc#roomconfig_enablelogging" => {
                if !parse_bool(var, &v)? {
                    return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAllowed)
                        .with_text("room messages are always recorded in the compliance archive"));
                }
            }
            _ => {}
        }
    }
    match (password_protected, secret) {
        (Some(false), _) => c.password = None,
        (_, Some(s)) if !s.is_empty() => c.password = Some(s),
        (Some(true), _) if c.password.is_none() => return Err(bad("a password-protected room needs muc#roomconfig_roomsecret")),
        (None, Some(_)) => c.password = None,
        _ => {}
    }
    Ok(c)
}

/// The `muc#roominfo` form of disco#info.
pub fn room_info(room: &Room) -> Element {
    let f = |var: &str, label: &str, v: String| field(var, "text-single", label).with_child(value(v));
    Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "result")
        .with_child(field("FORM_TYPE", "hidden", "").with_child(value(NS_ROOMINFO)))
        .with_child(f("muc#roomconfig_roomname", "Room name", room.config.name.clone()))
        .with_child(f("muc#roominfo_description", "Description", room.config.description.clone()))
        .with_child(f("muc#roominfo_subject", "Subject", room.subject.as_ref().map(|s| s.0.clone()).unwrap_or_default()))
        .with_child(f("muc#roominfo_occupants", "Number of occupants", room.occupants.len().to_string()))
        .with_child(f("muc#roomconfig_changesubject", "Participants may change the subject", if room.config.change_subject { "1" } else { "0" }.into()))
        .with_child(f("muc#roominfo_logs", "Messages are archived", "urn:xmpp:mam:2".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_proto::Jid;

    fn submit(fields: &[(&str, &str)]) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
        for (k, v) in fields {
            x = x.with_child(Element::new("field", ns::DATA_FORMS).with_attr("var", *k).with_child(value(*v)));
        }
        x
    }

    #[test]
    fn form_roundtrip() {
        let room = Room::new(Jid::parse("r@c.x").unwrap(), "o@x", 10);
        let form = config_form(&room, 100);
        // Submitting the form as given changes nothing.
        let mut as_submit = form.clone();
        as_submit.set_attr("type", "submit");
        assert_eq!(apply_config(&room.config, &as_submit, 100).unwrap(), room.config);
    }

    #[test]
    fn applies_and_validates() {
        let base = RoomConfig::default();
        let c = apply_config(&base, &submit(&[
            ("FORM_TYPE", NS_ROOMCONFIG),
            ("muc#roomconfig_roomname", "Ops"),
            ("muc#roomconfig_membersonly", "1"),
            ("muc#roomconfig_moderatedroom", "true"),
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("muc#roomconfig_roomsecret", "s3cret"),
            ("muc#roomconfig_maxusers", "10"),
            ("muc#roomconfig_whois", "anyone"),
            ("muc#roomconfig_allowpm", "none"),
        ]), 100).unwrap();
        assert_eq!(c.name, "Ops");
        assert!(c.members_only && c.moderated && c.whois_anyone);
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.max_users, Some(10));
        assert_eq!(c.allow_pm, AllowPm::Nobody);
        // Turning the password off.
        let c2 = apply_config(&c, &submit(&[("muc#roomconfig_passwordprotectedroom", "0")]), 100).unwrap();
        assert_eq!(c2.password, None);
        for bad in [
            ("FORM_TYPE", "urn:other"),
            ("muc#roomconfig_maxusers", "1000"),
            ("muc#roomconfig_maxusers", "lots"),
            ("muc#roomconfig_membersonly", "maybe"),
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("muc#roomconfig_enablelogging", "0"),
        ] {
            assert!(apply_config(&base, &submit(&[bad]), 100).is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_TEXT + 1);
        assert!(apply_config(&base, &submit(&[("muc#roomconfig_roomname", &long)]), 100).is_err());
    }
}
