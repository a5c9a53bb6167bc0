//! XEP-0012 Last Activity: the server's uptime, and for an account the time since its last
//! logout with the status text of that unavailable presence.
//!
//! An account's last activity is shown to the account itself and to entities it shares its
//! presence with (subscription `from` or `both`); others get `forbidden`. An account with an
//! available resource is active now (0 seconds). The session code calls [`record_logout`]
//! when a session ends.

use std::time::Instant;

use async_trait::async_trait;
use rampart_proto::last::LastActivity;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_store::Subscription;

use crate::router::{IqHandler, Router, SessionCtx};

/// Longest status text kept, in bytes.
pub const MAX_STATUS_BYTES: usize = 1024;

/// Answers `jabber:iq:last`; created with the router, so its clock is the server's uptime.
pub struct LastHandler {
    started: Instant,
}

impl LastHandler {
    pub fn new() -> Self {
        LastHandler { started: Instant::now() }
    }
}

impl Default for LastHandler {
    fn default() -> Self {
        Self::new()
    }
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "last activity store failed");
    StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Remember that `account` (a bare JID) went offline now, with the status text of its last
/// unavailable presence. Errors are logged, never returned: a logout cannot fail.
pub async fn record_logout(router: &Router, account: &str, status: Option<&str>) {
    let status = status.filter(|s| !s.is_empty()).map(|s| {
        let mut end = s.len().min(MAX_STATUS_BYTES);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    });
    if let Err(e) = router.stores.last_activity.set_last(account, now_ms(), status).await {
        tracing::warn!(error = %e, account, "recording last activity failed");
    }
}

#[async_trait]
impl IqHandler for LastHandler {
    fn features(&self) -> &'static [&'static str] {
        &[ns::LAST]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        if iq.attr("type") != Some("get") {
            return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest));
        }
        let query = LastActivity::try_from(payload)
            .map_err(|e| StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(e.to_string()))?;
        if !query.is_request() {
            return Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest));
        }
        // RFC 6120 §10.3.3: no `to` means the sender's own account.
        let target = match iq.attr("to") {
            None => ctx.jid.bare(),
            Some(t) => Jid::parse(t).map_err(|_| StanzaError::new(ErrorType::Modify, DefinedCondition::JidMalformed))?,
        };
        if target.node().is_none() {
            // §3: to a server, the time since it started.
            return Ok(Some(LastActivity::answer(self.started.elapsed().as_secs(), None).into()));
        }
        if target.is_full() || !router.is_local(&target) {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
        }
        let account = target.bare_str();
        if account != ctx.jid.bare_str() {
            if !router.account_exists(account).await {
                return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
            }
            // §4: only those allowed to see the account's presence.
            let item = router.stores.roster.item(account, ctx.jid.bare_str()).await.map_err(internal)?;
            if !item.is_some_and(|i| matches!(i.subscription, Subscription::From | Subscription::Both)) {
                return Err(StanzaError::new(ErrorType::Auth, DefinedCondition::Forbidden));
            }
        }
        if !router.sessions.available(account).is_empty() {
            return Ok(Some(LastActivity::answer(0, None).into()));
        }
        match router.stores.last_activity.last(account).await.map_err(internal)? {
            Some(l) => {
                let seconds = u64::try_from(now_ms().saturating_sub(l.at_ms) / 1000).unwrap_or(0);
                Ok(Some(LastActivity::answer(seconds, l.status).into()))
            }
            // Never logged out since the server kept track.
            None => Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound)),
        }
    }
}
