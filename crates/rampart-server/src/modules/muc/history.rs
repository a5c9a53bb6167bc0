//! Room history for new occupants (XEP-0045 §7.2.15): the last messages of a room in
//! memory, bounded by count and bytes, and the selection a joining client asks for with
//! `<history maxstanzas maxchars seconds since/>`.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use rampart_proto::{Element, datetime};

/// Most bytes of history a room keeps, whatever the count.
const MAX_BYTES: usize = 1 << 20;

/// History sent when the client does not ask (and the most ever sent).
pub const DEFAULT_STANZAS: usize = 20;

/// One remembered message, as occupants saw it (without `to`).
#[derive(Clone, Debug)]
struct Entry {
    at_ms: i64,
    /// Bare JID of the real sender (to withdraw a quarantined account's messages).
    sender: String,
    el: Element,
    /// Serialized length, for `maxchars` and the byte bound.
    chars: usize,
}

/// The last messages of a room.
#[derive(Debug)]
pub struct History {
    entries: VecDeque<Entry>,
    max: usize,
    bytes: usize,
}

/// What a joining client asked for. All limits apply together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    pub max_stanzas: Option<usize>,
    pub max_chars: Option<usize>,
    /// Only messages newer than this (from `seconds` or `since`), ms since the epoch.
    pub since_ms: Option<i64>,
}

impl HistoryRequest {
    /// Read `<history/>` (absent: the default). Bad values are ignored, as XEP-0045 lets a
    /// service do.
    pub fn parse(h: Option<&Element>, now_ms: i64) -> HistoryRequest {
        let Some(h) = h else {
            return HistoryRequest { max_stanzas: Some(DEFAULT_STANZAS), ..Default::default() };
        };
        let num = |k: &str| h.attr(k).and_then(|v| v.trim().parse::<u64>().ok());
        let mut since_ms = num("seconds").map(|s| now_ms.saturating_sub(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)));
        if let Some(s) = h.attr("since").and_then(|s| datetime::parse(s.trim()).ok()) {
            let s = s.timestamp_millis();
            since_ms = Some(since_ms.map_or(s, |x| x.max(s)));
        }
        HistoryRequest {
            max_stanzas: num("maxstanzas").map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_chars: num("maxchars").map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            since_ms,
        }
    }
}

impl History {
    pub fn new(max: usize) -> History {
        History { entries: VecDeque::new(), max, bytes: 0 }
    }

    /// Remember a message (as broadcast, without `to`) from `sender` (a bare JID).
    pub fn push(&mut self, at_ms: i64, sender: &str, el: Element) {
        if self.max == 0 {
            return;
        }
        let chars = el.to_xml_string().len();
        self.bytes += chars;
        self.entries.push_back(Entry { at_ms, sender: sender.to_owned(), el, chars });
        while self.entries.len() > self.max || (self.bytes > MAX_BYTES && self.entries.len() > 1) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.chars;
            }
        }
    }

    /// Forget every message from these senders (bare JIDs); returns how many.
    pub fn withdraw_from(&mut self, senders: &[String]) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !senders.contains(&e.sender));
        self.bytes = self.entries.iter().map(|e| e.chars).sum();
        before - self.entries.len()
    }

    /// Replace the message with the room's (`by`) stanza-id `id` by `f` of it (a tombstone);
    /// false if no remembered message has that id.
    pub fn replace(&mut self, by: &str, id: &str, f: impl FnOnce(&Element) -> Element) -> bool {
        let Some(e) = self.entries.iter_mut().find(|e| super::moderation::stanza_id_by(&e.el, by) == Some(id)) else {
            return false;
        };
        e.el = f(&e.el);
        let chars = e.el.to_xml_string().len();
        self.bytes = self.bytes - e.chars + chars;
        e.chars = chars;
        true
    }

    /// The room's (`by`) stanza-id of the newest remembered message from `sender` (a bare JID)
    /// whose `id` or XEP-0359 origin-id is `id`.
    pub fn find_own(&self, sender: &str, by: &str, id: &str) -> Option<String> {
        self.entries
            .iter()
            .rev()
            .filter(|e| e.sender == sender)
            .find(|e| e.el.attr("id") == Some(id) || e.el.elements().any(|c| c.is("origin-id", rampart_proto::ns::SID) && c.attr("id") == Some(id)))
            .and_then(|e| super::moderation::stanza_id_by(&e.el, by).map(str::to_owned))
    }

    /// Most messages kept.
    pub fn capacity(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The messages to send, oldest first, each with its timestamp.
    pub fn select(&self, req: &HistoryRequest) -> Vec<(DateTime<Utc>, Element)> {
        let mut out = Vec::new();
        let mut chars = 0usize;
        let max_stanzas = req.max_stanzas.unwrap_or(usize::MAX);
        for e in self.entries.iter().rev() {
            if out.len() >= max_stanzas {
                break;
            }
            if req.since_ms.is_some_and(|s| e.at_ms < s) {
                break;
            }
            if let Some(m) = req.max_chars {
                chars = chars.saturating_add(e.chars);
                if chars > m {
                    break;
                }
            }
            if let Some(t) = DateTime::from_timestamp_millis(e.at_ms) {
                out.push((t, e.el.clone()));
            }
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_proto::ns;

    fn msg(i: usize) -> Element {
        Element::new("message", ns::CLIENT).with_child(Element::new("body", ns::CLIENT).with_text(format!("m{i}")))
    }

    fn bodies(v: &[(DateTime<Utc>, Element)]) -> Vec<String> {
        v.iter().map(|(_, e)| e.child("body", ns::CLIENT).unwrap().text()).collect()
    }

    #[test]
    fn bounded_and_selected() {
        let mut h = History::new(5);
        for i in 0..8 {
            h.push(1_000 * i as i64, if i % 2 == 0 { "even@x" } else { "odd@x" }, msg(i));
        }
        assert_eq!(h.len(), 5);
        let all = HistoryRequest { max_stanzas: None, max_chars: None, since_ms: None };
        assert_eq!(bodies(&h.select(&all)), ["m3", "m4", "m5", "m6", "m7"]);
        let two = HistoryRequest { max_stanzas: Some(2), ..Default::default() };
        assert_eq!(bodies(&h.select(&two)), ["m6", "m7"]);
        let since = HistoryRequest { since_ms: Some(5_000), ..Default::default() };
        assert_eq!(bodies(&h.select(&since)), ["m5", "m6", "m7"]);
        let none = HistoryRequest { max_chars: Some(0), ..Default::default() };
        assert!(h.select(&none).is_empty());
        let one_size = msg(7).to_xml_string().len();
        let chars = HistoryRequest { max_chars: Some(one_size), ..Default::default() };
        assert_eq!(bodies(&h.select(&chars)), ["m7"]);
        assert_eq!(h.withdraw_from(&["odd@x".to_owned()]), 3);
        assert_eq!(bodies(&h.select(&all)), ["m4", "m6"]);
    }

    #[test]
    fn parse_request() {
        let h = Element::new("history", "http://jabber.org/protocol/muc").with_attr("maxstanzas", "3").with_attr("seconds", "10");
        let r = HistoryRequest::parse(Some(&h), 100_000);
        assert_eq!(r, HistoryRequest { max_stanzas: Some(3), max_chars: None, since_ms: Some(90_000) });
        let bad = Element::new("history", "x").with_attr("maxstanzas", "-1").with_attr("since", "yesterday");
        assert_eq!(HistoryRequest::parse(Some(&bad), 0), HistoryRequest::default());
        assert_eq!(HistoryRequest::parse(None, 0).max_stanzas, Some(DEFAULT_STANZAS));
    }

    #[test]
    fn replace_and_find_own() {
        let mut h = History::new(5);
        for i in 0..3 {
            let m = msg(i)
                .with_attr("id", format!("c{i}"))
                .with_child(Element::new("origin-id", ns::SID).with_attr("id", format!("o{i}")))
                .with_child(Element::new("stanza-id", ns::SID).with_attr("by", "r@c.x").with_attr("id", format!("{}", 10 + i)));
            h.push(i as i64, if i == 1 { "b@x" } else { "a@x" }, m);
        }
        assert_eq!(h.find_own("a@x", "r@c.x", "c0").as_deref(), Some("10"));
        assert_eq!(h.find_own("a@x", "r@c.x", "o2").as_deref(), Some("12"));
        assert_eq!(h.find_own("a@x", "r@c.x", "o1"), None, "b@x's message is not a@x's");
        assert_eq!(h.find_own("a@x", "other@c.x", "c0"), None, "only the room's own stanza-ids");
        let before = h.bytes;
        assert!(h.replace("r@c.x", "11", |_| Element::new("message", ns::CLIENT)));
        assert!(!h.replace("r@c.x", "99", |_| unreachable!()));
        assert!(h.bytes < before);
        assert_eq!(h.bytes, h.entries.iter().map(|e| e.chars).sum::<usize>());
        let all = HistoryRequest::default();
        assert_eq!(h.select(&all)[1].1.child("body", ns::CLIENT), None);
    }

    #[test]
    fn zero_keeps_nothing() {
        let mut h = History::new(0);
        h.push(0, "a@x", msg(0));
        assert!(h.is_empty());
    }
}
