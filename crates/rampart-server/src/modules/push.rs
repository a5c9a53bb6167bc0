//! XEP-0357 Push Notifications: wake a phone that is not connected.
//!
//! A mobile client registers its app server (a pubsub service JID and a node standing for
//! the device, often on another domain such as `p2.siacs.eu`) with `<enable/>` and then may
//! disconnect. When something important arrives for the account — a message with a body, an
//! encrypted (OMEMO, OpenPGP) message, a group chat invitation, a call proposal — and the
//! device is not connected (logged out, its TCP connection lost while its XEP-0198 session
//! hibernates, or a new server start since it registered), the server publishes a
//! notification to that node, from the account's bare JID:
//! `<iq type='set'><pubsub><publish node><item><notification xmlns='urn:xmpp:push:0'>
//! <x type='submit'>urn:xmpp:push:summary …</x></notification></item></publish>
//! <publish-options>…</publish-options></pubsub></iq>`.
//!
//! Which messages count is decided in [`is_important`]; pushes happen only for messages
//! that passed the guard and were recorded in the archive (the hooks sit after delivery and
//! after the offline write), so a blocked message never wakes anybody. The summary says
//! how many messages wait and, only if the administrator allows it (`[push]
//! include_sender`, `include_body`; both off by default), who sent the last one and what
//! it said.
//!
//! Registrations persist in [`rampart_store::PushStore`] (several per account, one per
//! device; the least recently enabled is dropped beyond [`PushSettings::max_per_account`]).
//! A registration belongs to the session that enabled it until that session ends: while
//! that session is connected (not hibernating), its device gets no pushes. Each device gets
//! at most one push per [`PushSettings::min_interval`] until it connects again. An app server
//! that answers with an error of type `cancel`, `item-not-found` or `not-authorized` has
//! forgotten the device: the registration is removed (and logged). Notifications to other
//! domains leave through the normal routing (federation border policy, see docs/config.md).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rampart_proto::dataforms::DataForm;
use rampart_proto::push::{self as proto, Command, Summary};
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError, ns};
use rampart_store::{PushRegistration, StoreError};

use crate::router::{IqHandler, Router, SessionCtx};
use crate::sessions::SessionId;

/// The XEP-0357 namespace (advertised on the account's disco#info).
pub const NS_PUSH: &str = proto::NS;

/// Longest body sent to an app server when `include_body` is on (characters).
pub const MAX_BODY_CHARS: usize = 256;
/// Notifications waiting for the app server's answer, at most (oldest forgotten first).
const MAX_PENDING: usize = 4096;
/// How long the answer to a notification is waited for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// `[push]` settings (documented in docs/config.md).
#[derive(Clone, Debug)]
pub struct PushSettings {
    /// Serve `<enable/>`/`<disable/>` and send notifications.
    pub enabled: bool,
    /// Put the last message's sender (bare JID) in the summary.
    pub include_sender: bool,
    /// Put the last message's body (at most [`MAX_BODY_CHARS`]) in the summary.
    pub include_body: bool,
    /// At most one notification per device per this interval while it stays disconnected.
    pub min_interval: Duration,
    /// Registrations kept per account (devices).
    pub max_per_account: usize,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            enabled: true,
            include_sender: false,
            include_body: false,
            min_interval: Duration::from_secs(30),
            max_per_account: 8,
        }
    }
}

/// One registration: `(account, service, node)`.
type Key = (String, String, String);

/// What the server remembers about a registered device while it runs.
#[derive(Debug, Default)]
struct Device {
    /// The session that enabled the registration (it gets no pushes while connected).
    owner: Option<(SessionId, Jid)>,
    /// When the last notification went out.
    last_push: Option<Instant>,
    /// Important messages since the device was last connected.
    waiting: u32,
}

impl Device {
    /// `n` more important messages wait for the device: the count to notify now, or `None`
    /// while the last notification is younger than `min_interval`.
    fn waiting(&mut self, n: u32, now: Instant, min_interval: Duration) -> Option<u32> {
        self.waiting = self.waiting.saturating_add(n);
        if self.last_push.is_some_and(|t| now.saturating_duration_since(t) < min_interval) {
            return None;
        }
        self.last_push = Some(now);
        Some(self.waiting)
    }

    /// The device is connected again: nothing waits, the next notification may go at once.
    fn connected(&mut self) {
        self.waiting = 0;
        self.last_push = None;
    }
}

/// Does an app server's error say it no longer knows the device (XEP-0357 remote
/// disabling: the registration should be removed), rather than a passing failure?
fn forgets_device(error_type: &str, condition: &str) -> bool {
    error_type == "cancel" || matches!(condition, "item-not-found" | "not-authorized")
}

/// A notification waiting for the app server's answer.
#[derive(Debug)]
struct Pending {
    key: Key,
    sent: Instant,
}

/// XEP-0357 state of a running server.
#[derive(Default)]
pub struct Push {
    /// Accounts with at least one registration (from the store on first use), so messages
    /// for everybody else cost one hash lookup.
    accounts: tokio::sync::OnceCell<RwLock<HashSet<String>>>,
    devices: Mutex<HashMap<Key, Device>>,
    /// Notifications sent, by IQ id.
    pending: Mutex<HashMap<String, Pending>>,
    /// The latest `enabled_at_ms` given out: registration times are strictly increasing, so
    /// "least recently enabled" is well defined even within one millisecond.
    last_enabled_ms: std::sync::atomic::AtomicI64,
}

impl Push {
    async fn accounts(&self, router: &Router) -> &RwLock<HashSet<String>> {
        self.accounts
            .get_or_init(|| async {
                let list = router.stores.push.push_accounts().await.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "loading push registrations failed");
                    Vec::new()
                });
                RwLock::new(list.into_iter().collect())
            })
            .await
    }

    async fn has_registrations(&self, router: &Router, account: &str) -> bool {
        self.accounts(router).await.read().unwrap_or_else(|e| e.into_inner()).contains(account)
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Device>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now in Unix milliseconds, but later than any time given out before.
    fn enable_time(&self) -> i64 {
        use std::sync::atomic::Ordering;
        let now = crate::pipeline::now_ms();
        let prev = self.last_enabled_ms.fetch_max(now, Ordering::Relaxed);
        if prev < now {
            return now;
        }
        self.last_enabled_ms.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget registrations that are gone from the store (and the account, if it has none).
    async fn forget(&self, router: &Router, account: &str, gone: impl Fn(&Key) -> bool) {
        self.devices().retain(|k, _| k.0 != account || !gone(k));
        self.pending().retain(|_, p| p.key.0 != account || !gone(&p.key));
        let left = router.stores.push.push_registrations(account).await.map(|r| r.len()).unwrap_or(1);
        if left == 0 {
            self.accounts(router).await.write().unwrap_or_else(|e| e.into_inner()).remove(account);
        }
    }
}

/// Must this message wake the recipient's phone? (What Prosody's mod_cloud_notify calls
/// important.) Chat states, receipts, markers, errors, headlines and group chat traffic do not.
pub fn is_important(el: &Element) -> bool {
    if el.name != "message" || matches!(el.attr("type"), Some("error" | "headline" | "groupchat")) {
        return false;
    }
    el.elements().any(|c| match (c.name.as_str(), c.ns.as_str()) {
        ("body", ns::CLIENT) => !c.text().trim().is_empty(),
        // OMEMO (legacy and current) and OpenPGP for XMPP: no body, but a message.
        ("encrypted", "eu.siacs.conversations.axolotl" | "urn:xmpp:omemo:2") => true,
        ("openpgp", "urn:xmpp:openpgp:0") => true,
        // Group chat invitations, mediated (XEP-0045) and direct (XEP-0249).
        ("x", "http://jabber.org/protocol/muc#user") => c.child("invite", "http://jabber.org/protocol/muc#user").is_some(),
        ("x", "jabber:x:conference") => true,
        // A call (XEP-0353 Jingle Message Initiation).
        ("propose", "urn:xmpp:jingle-message:0") => true,
        _ => false,
    })
}

fn is_live(router: &Router, owner: &Option<(SessionId, Jid)>) -> bool {
    owner.as_ref().is_some_and(|(id, jid)| router.sessions.get(jid).is_some_and(|r| r.id == *id && !r.hibernating))
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %e, "push registration store failed");
    StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
}

/// Serves `<enable/>` and `<disable/>` (IQ set to the server or the account's bare JID).
pub struct PushHandler;

#[async_trait]
impl IqHandler for PushHandler {
    fn features(&self) -> &'static [&'static str] {
        // Advertised on the account (disco.rs), as XEP-0357 and Prosody do.
        &[]
    }

    async fn handle(&self, router: &Router, ctx: &mut SessionCtx, iq: &Element, payload: &Element) -> Result<Option<Element>, StanzaError> {
        let settings = &router.config.push;
        if !settings.enabled {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
        }
        if !crate::modules::private::to_own_account(iq, ctx) && iq.attr("to") != Some(router.domain.as_str()) {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::Forbidden));
        }
        if iq.attr("type") != Some("set") {
            return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::BadRequest).with_text("enable and disable are IQ sets"));
        }
        let cmd = Command::try_from(payload)
            .map_err(|e| StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest).with_text(e.to_string()))?;
        let account = ctx.jid.bare_str().to_owned();
        match cmd {
            Command::Enable(en) => {
                // Without federation a notification can only reach a service on this server.
                if !router.is_local_domain(en.jid.domain()) && router.s2s.get().is_none() {
                    return Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAllowed)
                        .with_text("federation is off on this server: only a push service on this server can be used"));
                }
                let reg = PushRegistration {
                    service: en.jid.as_str().to_owned(),
                    node: en.node.clone(),
                    publish_options: en.publish_options.map(|f| Element::from(f).to_xml_string()),
                    enabled_at_ms: router.push.enable_time(),
                };
                let dropped = router.stores.push.push_enable(&account, &reg, settings.max_per_account).await.map_err(|e| match e {
                    StoreError::NotFound => StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound),
                    e => internal(e),
                })?;
                let push = &router.push;
                push.accounts(router).await.write().unwrap_or_else(|e| e.into_inner()).insert(account.clone());
                {
                    let mut devices = push.devices();
                    for d in &dropped {
                        devices.remove(&(account.clone(), d.service.clone(), d.node.clone()));
                    }
                    devices.insert((account.clone(), reg.service.clone(), reg.node.clone()), Device {
                        owner: Some((ctx.id, ctx.jid.clone())),
                        last_push: None,
                        waiting: 0,
                    });
                }
                for d in dropped {
                    tracing::info!(account = %account, service = %d.service, "push registration dropped: too many devices");
                }
                tracing::info!(jid = %ctx.jid, service = %reg.service, "push notifications enabled");
                Ok(None)
            }
            Command::Disable(d) => {
                let service = d.jid.as_str().to_owned();
                router.stores.push.push_disable(&account, &service, d.node.as_deref()).await.map_err(internal)?;
                let node = d.node;
                router.push.forget(router, &account, |k| k.1 == service && node.as_ref().is_none_or(|n| *n == k.2)).await;
                tracing::info!(jid = %ctx.jid, service = %service, "push notifications disabled");
                Ok(None)
            }
        }
    }
}

/// Whether push is on and `account` has a registration: only then can a message delivered
/// to it wake a device, and only then does [`on_message`] look at the message.
pub async fn may_notify(router: &Router, account: &str) -> bool {
    router.config.push.enabled && router.push.has_registrations(router, account).await
}

/// A message for `to`'s account was delivered, queued for a session or stored offline
/// (after the guard and the archive): notify each registered device that is not connected.
pub async fn on_message(router: &Router, to: &Jid, el: &Element) {
    let account = to.bare_str();
    // Every delivered message passes here: accounts without a registration (nearly all) are
    // turned away by one set lookup, before the stanza is looked at.
    if !may_notify(router, account).await || !is_important(el) {
        return;
    }
    let sender = el.attr("from").and_then(|f| Jid::parse(f).ok());
    // One's own messages (to oneself, or copies of what another resource sent) wake nobody.
    if sender.as_ref().is_some_and(|s| s.bare_str() == account) {
        return;
    }
    let regs = match router.stores.push.push_registrations(account).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, account, "reading push registrations failed");
            return;
        }
    };
    let settings = &router.config.push;
    let mut due = Vec::new();
    {
        let now = Instant::now();
        let mut devices = router.push.devices();
        for reg in regs {
            let d = devices.entry((account.to_owned(), reg.service.clone(), reg.node.clone())).or_default();
            if is_live(router, &d.owner) {
                continue;
            }
            if let Some(count) = d.waiting(1, now, settings.min_interval) {
                due.push((reg, count));
            }
        }
    }
    for (reg, count) in due {
        let summary = Summary {
            message_count: Some(count),
            last_message_sender: sender.as_ref().filter(|_| settings.include_sender).map(|s| s.bare_str().to_owned()),
            last_message_body: el
                .child("body", ns::CLIENT)
                .filter(|_| settings.include_body)
                .map(|b| b.text().chars().take(MAX_BODY_CHARS).collect()),
        };
        send(router, account, reg, summary).await;
    }
}

/// A session's connection broke and it hibernates (XEP-0198): from now on its devices are
/// notified, starting with the important stanzas it had not acknowledged.
pub async fn hibernated<'a>(router: &Router, ctx: &SessionCtx, unacked: impl Iterator<Item = &'a Element>) {
    router.sessions.set_hibernating(ctx.id, &ctx.jid, true);
    if !router.config.push.enabled {
        return;
    }
    let count = unacked.filter(|el| is_important(el)).count();
    if count == 0 || !router.push.has_registrations(router, ctx.jid.bare_str()).await {
        return;
    }
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let now = Instant::now();
    let due: HashMap<Key, u32> = router
        .push
        .devices()
        .iter_mut()
        .filter(|(_, d)| d.owner.as_ref().is_some_and(|(id, _)| *id == ctx.id))
        .filter_map(|(k, d)| Some((k.clone(), d.waiting(count, now, router.config.push.min_interval)?)))
        .collect();
    if due.is_empty() {
        return;
    }
    let Ok(regs) = router.stores.push.push_registrations(ctx.jid.bare_str()).await else { return };
    for reg in regs {
        let key = (ctx.jid.bare_str().to_owned(), reg.service.clone(), reg.node.clone());
        if let Some(&waiting) = due.get(&key) {
            send(router, ctx.jid.bare_str(), reg, Summary { message_count: Some(waiting), ..Summary::default() }).await;
        }
    }
}

/// A hibernating session was resumed: its devices are connected again.
pub fn resumed(router: &Router, ctx: &SessionCtx) {
    router.sessions.set_hibernating(ctx.id, &ctx.jid, false);
    for d in router.push.devices().values_mut() {
        if d.owner.as_ref().is_some_and(|(id, _)| *id == ctx.id) {
            d.connected();
        }
    }
}

/// Publish one notification to a registration's app server.
async fn send(router: &Router, account: &str, reg: PushRegistration, summary: Summary) {
    let Ok(service) = Jid::parse(&reg.service) else {
        tracing::error!(account, service = %reg.service, "stored push service JID does not parse");
        return;
    };
    let options = reg.publish_options.as_deref().and_then(crate::c2s::parse_stored).and_then(|x| DataForm::try_from(&x).ok());
    let id = format!("push-{:016x}", rand::random::<u64>());
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id.as_str())
        .with_attr("from", account)
        .with_attr("to", service.as_str())
        .with_child(proto::publish(&reg.node, summary, options.as_ref()));
    {
        let now = Instant::now();
        let mut pending = router.push.pending();
        pending.retain(|_, p| now.duration_since(p.sent) < ANSWER_TIMEOUT);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending.iter().min_by_key(|(_, p)| p.sent).map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(id, Pending { key: (account.to_owned(), reg.service.clone(), reg.node), sent: now });
    }
    tracing::info!(account, service = %service, "push notification sent");
    // Boxed: routing may come back here (a delivery that notifies).
    Box::pin(router.route(&service, iq)).await;
}

/// An IQ answer addressed to an account's bare JID: if it answers one of our notifications,
/// take it (true). An error that says the app server no longer knows the device removes
/// the registration.
pub async fn on_answer(router: &Router, to: &Jid, el: &Element) -> bool {
    let Some(id) = el.attr("id").filter(|i| i.starts_with("push-")) else { return false };
    let from = el.attr("from").and_then(|f| Jid::parse(f).ok());
    let key = {
        let mut pending = router.push.pending();
        let Some(p) = pending.get(id) else { return false };
        // Only the service we wrote to, about the account we wrote for, may answer.
        if p.key.0 != to.bare_str() || from.as_ref().map(Jid::as_str) != Some(p.key.1.as_str()) {
            return false;
        }
        pending.remove(id).map(|p| p.key)
    };
    let Some((account, service, node)) = key else { return true };
    if el.attr("type") != Some("error") {
        return true;
    }
    let err = el.child("error", ns::CLIENT);
    let ty = err.and_then(|e| e.attr("type")).unwrap_or("");
    let condition = err.and_then(|e| e.elements().find(|c| c.ns == ns::STANZAS)).map(|c| c.name.clone()).unwrap_or_default();
    if forgets_device(ty, &condition) {
        tracing::warn!(account = %account, service = %service, condition = %condition, "push service refused a notification: registration disabled");
        if let Err(e) = router.stores.push.push_disable(&account, &service, Some(&node)).await {
            tracing::error!(error = %e, account = %account, "removing a push registration failed");
            return true;
        }
        router.push.forget(router, &account, |k| k.1 == service && k.2 == node).await;
    } else {
        tracing::info!(account = %account, service = %service, condition = %condition, "push service answered with a temporary error");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(child: Element) -> Element {
        Element::new("message", ns::CLIENT).with_attr("type", "chat").with_child(child)
    }

    #[test]
    fn important_messages() {
        assert!(is_important(&msg(Element::new("body", ns::CLIENT).with_text("hi"))));
        assert!(is_important(&msg(Element::new("encrypted", "eu.siacs.conversations.axolotl"))));
        assert!(is_important(&msg(Element::new("encrypted", "urn:xmpp:omemo:2"))));
        assert!(is_important(&msg(Element::new("x", "jabber:x:conference").with_attr("jid", "room@conference.example"))));
        let invite = Element::new("x", "http://jabber.org/protocol/muc#user").with_child(Element::new("invite", "http://jabber.org/protocol/muc#user"));
        assert!(is_important(&msg(invite)));
        assert!(is_important(&msg(Element::new("propose", "urn:xmpp:jingle-message:0"))));
    }

    #[test]
    fn unimportant_messages() {
        assert!(!is_important(&msg(Element::new("composing", ns::CHATSTATES))));
        assert!(!is_important(&msg(Element::new("received", ns::RECEIPTS))));
        assert!(!is_important(&msg(Element::new("body", ns::CLIENT).with_text("  "))));
        assert!(!is_important(&msg(Element::new("x", "http://jabber.org/protocol/muc#user"))));
        let mut e = msg(Element::new("body", ns::CLIENT).with_text("hi"));
        for ty in ["error", "headline", "groupchat"] {
            e.set_attr("type", ty);
            assert!(!is_important(&e), "{ty}");
        }
        let presence = Element::new("presence", ns::CLIENT).with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        assert!(!is_important(&presence));
    }

    #[test]
    fn one_notification_per_interval_counting_what_waits() {
        let min = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut d = Device::default();
        assert_eq!(d.waiting(1, t0, min), Some(1));
        assert_eq!(d.waiting(1, t0 + Duration::from_secs(5), min), None);
        assert_eq!(d.waiting(2, t0 + Duration::from_secs(29), min), None);
        assert_eq!(d.waiting(1, t0 + Duration::from_secs(31), min), Some(5));
        // Connected again: the count and the window start over.
        d.connected();
        assert_eq!(d.waiting(1, t0 + Duration::from_secs(32), min), Some(1));
        // A clock reading before the last push (monotonic, but be safe) is inside the window.
        assert_eq!(d.waiting(1, t0, min), None);
        d.waiting = u32::MAX;
        assert_eq!(d.waiting(3, t0 + Duration::from_secs(100), min), Some(u32::MAX));
    }

    #[test]
    fn enable_times_increase_strictly() {
        let p = Push::default();
        let times: Vec<i64> = (0..1000).map(|_| p.enable_time()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert!(times[0] >= crate::pipeline::now_ms() - 60_000);
    }

    #[test]
    fn which_errors_forget_the_device() {
        assert!(forgets_device("cancel", "service-unavailable"));
        assert!(forgets_device("auth", "not-authorized"));
        assert!(forgets_device("modify", "item-not-found"));
        assert!(!forgets_device("wait", "resource-constraint"));
        assert!(!forgets_device("wait", "internal-server-error"));
        assert!(!forgets_device("", ""));
    }

    #[test]
    fn default_settings_are_private() {
        let s = PushSettings::default();
        assert!(s.enabled && !s.include_body && !s.include_sender);
        assert!(s.min_interval >= Duration::from_secs(1) && s.max_per_account >= 1);
    }
}
