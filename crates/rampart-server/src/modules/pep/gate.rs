//! Threat defense and the compliance archive for what PEP carries: a published item (an
//! avatar, a bookmark, a vCard, a device list, any payload) passes the same policy →
//! guard → archive stages as a message before it is stored or sent to anyone, and fails
//! closed the same way. Also the in-band bytestream (XEP-0047) data chunks, which must not be
//! a side channel around the guard.
//!
//! The guard reads messages: the item's text and attribute values (where links hide) become
//! the body of a synthetic `<message/>` from the publisher to its own account; binary blobs
//! (base64 avatar data, vCard photos, IBB chunks) go through `Guard::scan_file`.

use base64::Engine;
use rampart_archive::{Direction, NewRecord, RecordKind, Verdict as ArchiveVerdict};
use rampart_guard::{Finding, Verdict};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_store::security::SecurityEvent;

use crate::pipeline::now_ms;
use crate::router::Router;

/// Elements whose text is base64 binary data (scanned as files, not as text).
const BINARY: &[(&str, &str)] = &[
    ("data", "urn:xmpp:avatar:data"),
    ("BINVAL", ns::VCARD),
    ("data", "urn:xmpp:bob"),
    ("data", "http://jabber.org/protocol/ibb"),
];

/// Most text gathered from one item for the guard.
/// XEP-0047 in-band bytestreams.
pub const NS_IBB: &str = "http://jabber.org/protocol/ibb";

const MAX_TEXT: usize = 256 * 1024;

fn is_binary(e: &Element) -> bool {
    BINARY.iter().any(|(n, s)| e.name == *n && e.ns == *s)
}

/// Text and attribute values of `e` (skipping binary blobs), and the binary blobs.
fn collect(e: &Element, depth: usize, text: &mut String, blobs: &mut Vec<String>) {
    if depth > 64 {
        return;
    }
    if is_binary(e) {
        blobs.push(e.text());
        return;
    }
    for (_, v) in e.attrs.iter() {
        if text.len() < MAX_TEXT {
            text.push_str(v);
            text.push('\n');
        }
    }
    for n in &e.children {
        match n {
            rampart_xml::Node::Element(c) => collect(c, depth + 1, text, blobs),
            rampart_xml::Node::Text(t) if text.len() < MAX_TEXT => {
                let t = t.trim();
                if !t.is_empty() {
                    text.push_str(t);
                    text.push('\n');
                }
            }
            _ => {}
        }
    }
}

/// What the publish gate found in an item.
pub struct Inspected {
    /// The item's text, for the archive's full-text index.
    pub text: String,
}

fn refused(reason: &str) -> StanzaError {
    StanzaError::new(ErrorType::Modify, DefinedCondition::PolicyViolation).with_text(reason)
}

/// Policy and guard for a publish of `payload` by `publisher` to its own node `node`. `Err`
/// is the error for the publisher (the refusal is archived and, for findings, recorded as a
/// security event).
pub async fn gate_publish(router: &Router, publisher: &Jid, node: &str, item_id: &str, payload: &Element) -> Result<Inspected, StanzaError> {
    gate_publish_to(router, publisher, &publisher.bare(), node, item_id, payload).await
}

/// [`gate_publish`] to `owner`'s node (a XEP-0060 publisher publishing to another account):
/// the publisher's quarantine and the guard's verdict on the publisher count, the record
/// names both.
pub async fn gate_publish_to(router: &Router, publisher: &Jid, owner: &Jid, node: &str, item_id: &str, payload: &Element) -> Result<Inspected, StanzaError> {
    let sender = publisher.bare();
    let mut text = String::new();
    let mut blobs = Vec::new();
    collect(payload, 0, &mut text, &mut blobs);
    let record = |verdict: ArchiveVerdict, text: &str| publish_record_to(publisher, owner, node, item_id, payload, text, verdict);
    if let Some(reason) = router.quarantine.reason(sender.as_str()) {
        let _ = router.archive(record(ArchiveVerdict::Quarantined { rule: "quarantine".into(), reason: reason.clone() }, &text)).await;
        return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::PolicyViolation).with_text(format!("your account is quarantined: {reason}")));
    }
    let Some(guard) = &router.services.guard else { return Ok(Inspected { text }) };
    let mut verdict = Verdict::Allow;
    if !text.trim().is_empty() {
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("from", publisher.as_str())
            .with_attr("to", owner.as_str())
            .with_attr("type", "normal")
            .with_child(Element::new("body", ns::CLIENT).with_text(text.clone()));
        verdict = match tokio::time::timeout(std::time::Duration::from_secs(10), guard.inspect(publisher, owner, None, &msg)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(hold(router, &record, &text, &e.to_string()).await),
            Err(_) => return Err(hold(router, &record, &text, "scan timed out").await),
        };
    }
    if verdict.is_allow() {
        for (i, b) in blobs.iter().enumerate() {
            let clean: String = b.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(clean.as_bytes()) else {
                return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text("binary data is not valid base64"));
            };
            let name = format!("{node}#{item_id}.{i}");
            verdict = match guard.scan_file(&name, &bytes).await {
                Ok(v) => v,
                Err(e) => return Err(hold(router, &record, &text, &e.to_string()).await),
            };
            if !verdict.is_allow() {
                break;
            }
        }
    }
    match verdict {
        Verdict::Allow => Ok(Inspected { text }),
        Verdict::Block(f) => {
            tracing::warn!(%publisher, node, rule = %f.rule, reason = %f.reason, "publish blocked");
            security_event(router, sender.as_str(), &f, "block").await;
            let _ = router.archive(record(ArchiveVerdict::Blocked { rule: f.rule.clone(), reason: f.reason.clone() }, &text)).await;
            Err(refused(&f.reason))
        }
        Verdict::Quarantine(f) => {
            tracing::warn!(%publisher, node, rule = %f.rule, "account quarantined by a publish");
            router.quarantine_account(sender.as_str(), &f).await;
            let _ = router.archive(record(ArchiveVerdict::Quarantined { rule: f.rule.clone(), reason: f.reason.clone() }, &text)).await;
            Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::PolicyViolation).with_text(format!("{}; your account is quarantined", f.reason)))
        }
    }
}

/// Fail closed: the guard could not decide.
async fn hold(router: &Router, record: &impl Fn(ArchiveVerdict, &str) -> NewRecord, text: &str, why: &str) -> StanzaError {
    tracing::error!(error = why, "threat scan failed: publish refused");
    let _ = router.archive(record(ArchiveVerdict::Blocked { rule: "guard.unavailable".into(), reason: why.to_owned() }, text)).await;
    StanzaError::new(ErrorType::Wait, DefinedCondition::ServiceUnavailable).with_text("not published: the item could not be scanned; try again later")
}

async fn security_event(router: &Router, account: &str, f: &Finding, action: &str) {
    let ev = SecurityEvent {
        id: 0,
        at_ms: now_ms(),
        account: account.to_owned(),
        rule: f.rule.clone(),
        action: action.to_owned(),
        reason: f.reason.clone(),
        evidence_json: serde_json::to_string(&f.evidence).unwrap_or_else(|_| "{}".into()),
    };
    if let Err(e) = router.services.security.record_event(&ev).await {
        tracing::error!(error = %e, "could not record a security event");
    }
}

/// The archive record of a publish (accepted or refused) to the publisher's own node.
pub fn publish_record(publisher: &Jid, node: &str, item_id: &str, payload: &Element, text: &str, verdict: ArchiveVerdict) -> NewRecord {
    publish_record_to(publisher, &publisher.bare(), node, item_id, payload, text, verdict)
}

/// The archive record of a publish by `publisher` to `owner`'s node.
pub fn publish_record_to(publisher: &Jid, owner: &Jid, node: &str, item_id: &str, payload: &Element, text: &str, verdict: ArchiveVerdict) -> NewRecord {
    let meta = serde_json::json!({ "node": node, "item": item_id });
    let body: String = text.chars().take(16 * 1024).collect();
    NewRecord {
        at_ms: now_ms(),
        kind: RecordKind::Publish,
        direction: Direction::Local,
        from: publisher.as_str().to_owned(),
        to: owner.as_str().to_owned(),
        remote_domain: None,
        stanza_id: Some(item_id.to_owned()),
        body: Some(body).filter(|b| !b.is_empty()),
        stanza_xml: Some(payload.to_xml_string()),
        verdict,
        meta_json: Some(meta.to_string()),
    }
}

/// XEP-0047 for an IQ `set` (or a message) from `from` to `to`: an `<open/>` is journaled as
/// a `file` record (the transfer's sid and block size; fail closed), each `<data/>` chunk
/// passes the guard's file scan. `Err` is the error for the sender (nothing is forwarded).
pub async fn gate_ibb(router: &Router, from: &Jid, to: &Jid, iq: &Element) -> Result<(), StanzaError> {
    if let Some(data) = iq.child("data", NS_IBB) {
        return gate_ibb_data(router, from, to, data).await;
    }
    let Some(open) = iq.child("open", NS_IBB) else { return Ok(()) };
    let meta = serde_json::json!({ "transport": "ibb", "sid": open.attr("sid"), "block-size": open.attr("block-size"), "stanza": open.attr("stanza") });
    let rec = NewRecord {
        at_ms: now_ms(),
        kind: RecordKind::File,
        direction: Direction::Local,
        from: from.as_str().to_owned(),
        to: to.as_str().to_owned(),
        remote_domain: None,
        stanza_id: iq.attr("id").map(str::to_owned),
        body: None,
        stanza_xml: Some(iq.to_xml_string()),
        verdict: ArchiveVerdict::Delivered,
        meta_json: Some(meta.to_string()),
    };
    router.archive(rec).await.map_err(|()| {
        StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError).with_text("not delivered: the compliance archive is unavailable")
    })?;
    Ok(())
}

/// The guard's verdict on one `<data/>` chunk of an in-band bytestream.
async fn gate_ibb_data(router: &Router, from: &Jid, to: &Jid, data: &Element) -> Result<(), StanzaError> {
    if let Some(reason) = router.quarantine.reason(from.bare_str()) {
        return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::PolicyViolation).with_text(format!("your account is quarantined: {reason}")));
    }
    let Some(guard) = &router.services.guard else { return Ok(()) };
    let clean: String = data.text().chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(clean.as_bytes()) else {
        return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text("IBB data is not valid base64"));
    };
    let sid = data.attr("sid").unwrap_or("");
    let verdict = match guard.scan_file(&format!("ibb-{sid}"), &bytes).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "threat scan failed: IBB chunk refused");
            return Err(StanzaError::new(ErrorType::Wait, DefinedCondition::ServiceUnavailable).with_text("not delivered: the data could not be scanned"));
        }
    };
    let Some(f) = verdict.finding().cloned() else { return Ok(()) };
    tracing::warn!(%from, %to, rule = %f.rule, "in-band bytestream chunk blocked");
    security_event(router, from.bare_str(), &f, "block").await;
    let meta = serde_json::json!({ "transport": "ibb", "sid": sid, "seq": data.attr("seq"), "bytes": bytes.len() });
    let _ = router
        .archive(NewRecord {
            at_ms: now_ms(),
            kind: RecordKind::File,
            direction: Direction::Local,
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
            remote_domain: None,
            stanza_id: None,
            body: None,
            stanza_xml: None,
            verdict: ArchiveVerdict::Blocked { rule: f.rule.clone(), reason: f.reason.clone() },
            meta_json: Some(meta.to_string()),
        })
        .await;
    if matches!(verdict, Verdict::Quarantine(_)) {
        router.quarantine_account(from.bare_str(), &f).await;
    }
    Err(refused(&f.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_reads_text_and_attributes_and_sets_blobs_aside() {
        let item = Element::new("metadata", "urn:xmpp:avatar:metadata")
            .with_child(Element::new("info", "urn:xmpp:avatar:metadata").with_attr("url", "http://203.0.113.9/a.scr").with_attr("id", "x"))
            .with_child(Element::new("title", "u").with_text("  hello  "));
        let (mut text, mut blobs) = (String::new(), Vec::new());
        collect(&item, 0, &mut text, &mut blobs);
        assert!(text.contains("http://203.0.113.9/a.scr") && text.contains("hello"), "{text}");
        assert!(blobs.is_empty());

        let data = Element::new("data", "urn:xmpp:avatar:data").with_text("aGVsbG8=");
        let vcard = Element::new("vCard", ns::VCARD)
            .with_child(Element::new("PHOTO", ns::VCARD).with_child(Element::new("BINVAL", ns::VCARD).with_text("d29ybGQ=")));
        let (mut text, mut blobs) = (String::new(), Vec::new());
        collect(&data, 0, &mut text, &mut blobs);
        collect(&vcard, 0, &mut text, &mut blobs);
        assert_eq!(blobs, ["aGVsbG8=", "d29ybGQ="]);
        assert!(!text.contains("aGVsbG8="));
    }

    #[test]
    fn publish_record_names_node_and_item() {
        let j = Jid::parse("a@x/r").unwrap();
        let r = publish_record(&j, "n", "i", &Element::new("p", "u"), "body", ArchiveVerdict::Delivered);
        assert_eq!((r.kind, r.from.as_str(), r.to.as_str()), (RecordKind::Publish, "a@x/r", "a@x"));
        assert_eq!(r.meta_json.as_deref(), Some(r#"{"node":"n","item":"i"}"#));
        assert_eq!(r.body.as_deref(), Some("body"));
    }
}
