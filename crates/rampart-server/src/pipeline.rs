//! The stages every message passes between arrival and delivery: policy (quarantine), the
//! threat-defense guard, and the compliance archive. Both fail closed: a stanza the guard
//! cannot judge, or the archive cannot record, is not delivered.
//!
//! Order (ARCHITECTURE.md): stamp → policy → guard verdict → archive record → deliver.
//! Blocked stanzas are archived too, with their verdict.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rampart_archive::{Archive, Direction, NewRecord, RecordKind, Verdict as ArchiveVerdict};
use rampart_guard::{Finding, Guard, Verdict};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_store::SecurityStore;
use rampart_store::security::SecurityEvent;

use crate::router::Router;

/// Longest the router waits for a guard verdict before holding the stanza.
const GUARD_DEADLINE: Duration = Duration::from_secs(10);

/// The security services the router runs messages through.
pub struct Services {
    /// `None` when threat defense is switched off in the configuration.
    pub guard: Option<Arc<Guard>>,
    /// `None` when the compliance archive is switched off.
    pub archive: Option<Arc<Archive>>,
    /// Security events and quarantine state.
    pub security: Arc<dyn SecurityStore>,
}

/// Accounts under quarantine, cached in memory (the per-message check is a hash lookup) and
/// refreshed from the store, so a release made with the CLI takes effect within seconds.
#[derive(Default)]
pub struct QuarantineCache {
    accounts: RwLock<HashMap<String, String>>,
}

impl QuarantineCache {
    pub fn reason(&self, account: &str) -> Option<String> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner()).get(account).cloned()
    }

    /// Every quarantined account.
    pub fn accounts(&self) -> Vec<String> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    pub fn insert(&self, account: &str, reason: &str) {
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).insert(account.to_owned(), reason.to_owned());
    }

    /// Replace the cache with the store's view; returns accounts that were released.
    pub async fn refresh(&self, store: &dyn SecurityStore) -> Vec<String> {
        let Ok(list) = store.quarantined().await else { return Vec::new() };
        let fresh: HashMap<String, String> = list.into_iter().map(|(a, _rule, reason, _)| (a, reason)).collect();
        let mut cur = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        let released = cur.keys().filter(|a| !fresh.contains_key(*a)).cloned().collect();
        *cur = fresh;
        released
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Does this message carry anything worth recording? Chat states, receipts, markers and
/// similar signalling are not archived; anything else (bodies, links, files, payloads) is.
pub fn is_archivable(el: &Element) -> bool {
    const SIGNALLING: &[&str] = &[
        "http://jabber.org/protocol/chatstates",
        "urn:xmpp:receipts",
        "urn:xmpp:chat-markers:0",
        "urn:xmpp:hints",
        "urn:xmpp:sid:0",
    ];
    el.attr("type") != Some("error") && el.elements().any(|c| !SIGNALLING.contains(&c.ns.as_str()))
}

fn body_of(el: &Element) -> Option<String> {
    el.child("body", ns::CLIENT).map(Element::text)
}

/// A journal record for a message stanza.
pub fn message_record(el: &Element, from: &str, to: &str, verdict: ArchiveVerdict) -> NewRecord {
    NewRecord {
        at_ms: now_ms(),
        kind: RecordKind::Message,
        direction: Direction::Local,
        from: from.to_owned(),
        to: to.to_owned(),
        remote_domain: None,
        stanza_id: el.attr("id").map(str::to_owned),
        body: body_of(el),
        stanza_xml: Some(el.to_xml_string()),
        verdict,
        meta_json: None,
    }
}

/// What the pre-delivery stages decided.
pub enum Gate {
    /// Deliver (and archive with the delivery verdict).
    Pass,
    /// Refused; the sender has been told and the refusal archived.
    Refused,
}

impl Router {
    /// Append to the archive, if there is one. `Err` means the record could not be made
    /// durable and the stanza must not be delivered.
    pub async fn archive(&self, mut rec: NewRecord) -> Result<Option<u64>, ()> {
        let Some(archive) = &self.services.archive else { return Ok(None) };
        self.classify(&mut rec);
        match archive.append(rec).await {
            Ok(seq) => Ok(Some(seq)),
            Err(e) => {
                tracing::error!(error = %e, "archive append failed: holding the stanza");
                Err(())
            }
        }
    }

    /// Federated traffic on the record: a record made as `Local` whose sender or recipient
    /// is on another domain gets `Inbound`/`Outbound` and the remote domain.
    pub fn classify(&self, rec: &mut NewRecord) {
        if rec.direction != Direction::Local {
            return;
        }
        let domain_of = |j: &str| -> String {
            let j = j.split('/').next().unwrap_or("");
            j.rsplit_once('@').map_or(j, |(_, d)| d).to_owned()
        };
        let (from, to) = (domain_of(&rec.from), domain_of(&rec.to));
        if !from.is_empty() && !self.is_local_domain(&from) {
            rec.direction = Direction::Inbound;
            rec.remote_domain = Some(from);
        } else if !to.is_empty() && !self.is_local_domain(&to) {
            rec.direction = Direction::Outbound;
            rec.remote_domain = Some(to);
        }
    }

    /// Archive a refusal; failures are logged (the stanza is refused either way).
    pub async fn archive_refusal(&self, el: &Element, from: &Jid, to: &Jid, verdict: ArchiveVerdict) {
        if is_archivable(el) {
            let _ = self.archive(message_record(el, from.as_str(), to.as_str(), verdict)).await;
        }
    }

    /// Policy and guard stages for a message from `from` to `to`.
    pub async fn gate_message(&self, from: &Jid, to: &Jid, room: Option<&Jid>, el: &Element) -> Gate {
        self.gate_message_finding(from, to, room, el).await.0
    }

    /// [`Router::gate_message`], also returning the guard's finding when it quarantined the
    /// sender (group chat tells a room's owners whom a room rule quarantined).
    pub async fn gate_message_finding(&self, from: &Jid, to: &Jid, room: Option<&Jid>, el: &Element) -> (Gate, Option<Finding>) {
        let account = from.bare_str();
        if self.is_local(from)
            && let Some(reason) = self.quarantine.reason(account)
        {
            let text = format!("your account is quarantined: {reason}");
            self.bounce(el, StanzaError::new(ErrorType::Cancel, DefinedCondition::PolicyViolation).with_text(text));
            self.archive_refusal(el, from, to, ArchiveVerdict::Quarantined { rule: "quarantine".into(), reason }).await;
            return (Gate::Refused, None);
        }
        let Some(guard) = &self.services.guard else { return (Gate::Pass, None) };
        let verdict = match rampart_guard::deadline::within(GUARD_DEADLINE, guard.inspect(from, to, room, el)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return (self.hold(el, from, to, &e.to_string()).await, None),
            Err(_) => return (self.hold(el, from, to, "scan timed out").await, None),
        };
        match verdict {
            Verdict::Allow => (Gate::Pass, None),
            Verdict::Block(f) => {
                tracing::warn!(from = %from, to = %to, rule = %f.rule, reason = %f.reason, "message blocked");
                self.record_event(account, &f, "block").await;
                self.bounce(el, StanzaError::new(ErrorType::Modify, DefinedCondition::PolicyViolation).with_text(&f.reason));
                self.archive_refusal(el, from, to, ArchiveVerdict::Blocked { rule: f.rule, reason: f.reason }).await;
                (Gate::Refused, None)
            }
            Verdict::Quarantine(f) => {
                tracing::warn!(account, rule = %f.rule, reason = %f.reason, "account quarantined");
                self.quarantine_account(account, &f).await;
                self.bounce(el, StanzaError::new(ErrorType::Cancel, DefinedCondition::PolicyViolation)
                    .with_text(format!("{}; your account is quarantined", f.reason)));
                self.archive_refusal(el, from, to, ArchiveVerdict::Quarantined { rule: f.rule.clone(), reason: f.reason.clone() }).await;
                (Gate::Refused, Some(f))
            }
        }
    }

    /// Fail closed: the guard could not decide, so the stanza is not delivered.
    async fn hold(&self, el: &Element, from: &Jid, to: &Jid, why: &str) -> Gate {
        tracing::error!(from = %from, to = %to, error = why, "threat scan failed: message held (not delivered)");
        self.bounce(el, StanzaError::new(ErrorType::Wait, DefinedCondition::ServiceUnavailable)
            .with_text("not delivered: the message could not be scanned; try again later"));
        self.archive_refusal(el, from, to, ArchiveVerdict::Blocked { rule: "guard.unavailable".into(), reason: why.to_owned() }).await;
        Gate::Refused
    }

    async fn record_event(&self, account: &str, f: &Finding, action: &str) {
        let ev = SecurityEvent {
            id: 0,
            at_ms: now_ms(),
            account: account.to_owned(),
            rule: f.rule.clone(),
            action: action.to_owned(),
            reason: f.reason.clone(),
            evidence_json: serde_json::to_string(&f.evidence).unwrap_or_else(|_| "{}".into()),
        };
        if let Err(e) = self.services.security.record_event(&ev).await {
            tracing::error!(error = %e, "could not record a security event");
        }
    }

    /// Quarantine an account: from now on nothing it sends reaches anyone; copies of what it
    /// sent that still wait in offline queues are withdrawn.
    pub async fn quarantine_account(&self, account: &str, f: &Finding) {
        self.quarantine.insert(account, &f.reason);
        match self.services.security.quarantine(account, &f.rule, &f.reason, now_ms()).await {
            Ok(true) => self.record_event(account, f, "quarantine").await,
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, account, "could not persist a quarantine"),
        }
        match self.stores.offline.withdraw_from(account).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(account, withdrawn = n, "withdrew offline messages from a quarantined account"),
            Err(e) => tracing::error!(error = %e, account, "could not withdraw offline messages"),
        }
    }

    /// Reload quarantine state from the store (the CLI may have released someone).
    pub async fn refresh_quarantine(&self) {
        for account in self.quarantine.refresh(&*self.services.security).await {
            tracing::info!(account, "quarantine released");
            if let Some(g) = &self.services.guard {
                g.unflag(&account);
            }
        }
    }
}
