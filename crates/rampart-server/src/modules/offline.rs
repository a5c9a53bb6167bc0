//! Offline storage (RFC 6121 §8.5.2.1.1, XEP-0160): messages for an account with no available
//! resource wait in the store and are delivered, in order and with an XEP-0203 delay stamp,
//! when a resource sends initial presence with non-negative priority.
//!
//! A store and a flush for the same account must not interleave, or a message stored just
//! as its owner comes online could wait for the next login: both take
//! [`Router::offline_lock`], and [`store`] re-checks availability under it.

use chrono::Utc;
use rampart_proto::delay::Delay;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError};
use rampart_store::StoreError;

use crate::router::{Router, SessionCtx};
use crate::sessions::Resource;

/// Store a message for `to`'s account (or deliver it, if a resource became available).
pub async fn store(router: &Router, to: &Jid, el: Element) {
    let _guard = router.offline_lock.lock().await;
    let targets = router.sessions.message_targets(to.bare_str());
    if !targets.is_empty() {
        send_all(&targets, el);
        return;
    }
    let xml = el.to_xml_string();
    let now = Utc::now().timestamp_millis();
    let sender = el.attr("from").and_then(|f| Jid::parse(f).ok()).map(|f| f.bare_str().to_owned()).unwrap_or_default();
    match router.stores.offline.push(to.bare_str(), &sender, &xml, now, router.config.limits.offline_limit).await {
        Ok(_) => {
            // XEP-0357: wake the account's devices (outside the offline lock).
            drop(_guard);
            crate::modules::push::on_message(router, to, &el).await;
        }
        Err(StoreError::QuotaExceeded) => {
            if crate::pipeline::is_archivable(&el) {
                let verdict = rampart_archive::Verdict::Bounced { condition: "resource-constraint".into() };
                let _ = router.archive(crate::pipeline::message_record(&el, &sender, to.as_str(), verdict)).await;
            }
            router.bounce(&el, StanzaError::new(ErrorType::Wait, DefinedCondition::ResourceConstraint)
                .with_text("the recipient's offline message queue is full"));
        }
        Err(e) => {
            tracing::error!(error = %e, to = %to, "offline store failed");
            router.bounce(&el, StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError));
        }
    }
}

fn send_all(targets: &[Resource], el: Element) {
    if let Some((last, rest)) = targets.split_last() {
        for r in rest {
            r.send(el.clone());
        }
        last.send(el);
    }
}

/// Deliver everything waiting for `ctx`'s account to that session, then forget it.
pub async fn flush(router: &Router, ctx: &SessionCtx) {
    let _guard = router.offline_lock.lock().await;
    let bare = ctx.jid.bare_str();
    let waiting = match router.stores.offline.peek(bare).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, account = bare, "offline peek failed");
            return;
        }
    };
    let Some(last_seq) = waiting.last().map(|m| m.seq) else { return };
    let Some(session) = router.sessions.get(&ctx.jid) else { return };
    for m in waiting {
        let Some(mut el) = crate::c2s::parse_stored(&m.stanza) else {
            tracing::error!(account = bare, seq = m.seq, "stored offline message does not parse; skipped");
            continue;
        };
        let stamp = chrono::DateTime::from_timestamp_millis(m.stored_at_ms).unwrap_or_else(Utc::now);
        el.children.push(rampart_xml::Node::Element(
            Delay { from: Some(router.domain_jid.clone()), stamp, text: Some("Offline storage".into()) }.into(),
        ));
        if !session.send(el) {
            // The session closed meanwhile: keep everything for the next login.
            return;
        }
    }
    if let Err(e) = router.stores.offline.ack(bare, last_seq).await {
        tracing::error!(error = %e, account = bare, "offline ack failed");
    }
}
