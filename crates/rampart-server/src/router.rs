//! The stanza router: the one function every stanza passes through.
//!
//! A client stanza enters at [`Router::handle_client_stanza`], which validates and stamps it
//! (`from` = the session's full JID), then dispatches by kind: presence and subscriptions to
//! [`crate::modules::presence`] and [`crate::modules::roster`], IQs for the server to the
//! registered [`IqHandler`]s, everything else to [`Router::route`], which delivers to local
//! sessions, the offline store, or bounces with a stanza error (RFC 6121 §8.5).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use rampart_proto::error::{DefinedCondition, ErrorType, StanzaError, error_reply};
use rampart_proto::{Element, Jid, StreamError, StreamErrorCondition, ns};
use rampart_archive::Verdict as ArchiveVerdict;
use rampart_store::Stores;

use crate::config::ServerConfig;
use crate::modules::{self, offline, presence, roster};
use crate::pipeline::{Gate, QuarantineCache, Services, is_archivable, message_record};
use crate::sessions::{SessionId, Sessions};

/// The state of one bound client session that stanza handling needs.
#[derive(Debug)]
pub struct SessionCtx {
    pub id: SessionId,
    /// The session's full JID.
    pub jid: Jid,
    /// Entities this session sent directed available presence to (RFC 6121 §4.6), who must
    /// get `unavailable` when the session goes offline.
    pub directed: HashSet<Jid>,
    /// Whether the session has sent initial presence.
    pub available: bool,
    /// `<status/>` of the last unavailable presence (XEP-0012 last activity).
    pub last_status: Option<String>,
    /// This session's ordered delivery queue (messages waiting for their archive record).
    pub deliveries: Option<DeliveryTx>,
}

/// A message whose archive record is queued: delivered by [`delivery_task`] once durable.
pub struct Delivery {
    pending: rampart_archive::Pending,
    el: Element,
    to: Jid,
    from: Option<Jid>,
    targets: Vec<crate::sessions::Resource>,
    offline: bool,
}

/// Items are boxed: the channel allocates room for 32 of them per session up front.
pub type DeliveryTx = tokio::sync::mpsc::UnboundedSender<Box<Delivery>>;

/// One per session: delivers the session's messages in the order they were sent, each once
/// its archive record is durable. Ends when the session's sender is dropped and the queue
/// is empty, so nothing accepted is left undelivered.
pub async fn delivery_task(router: Arc<Router>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Box<Delivery>>) {
    while let Some(d) = rx.recv().await {
        // Boxed: the delivery future is large; idle sessions keep only this loop.
        Box::pin(router.deliver_committed(*d)).await;
    }
}

/// An IQ `get`/`set` handler for one payload namespace, addressed to the server (or, for
/// account-level namespaces such as the roster, to the user's own bare JID).
#[async_trait]
pub trait IqHandler: Send + Sync {
    /// The feature `var`s to advertise in the server's disco#info.
    fn features(&self) -> &'static [&'static str];
    /// Answer the IQ: `Ok(Some(payload))` / `Ok(None)` for a result, `Err` for an error reply.
    async fn handle(
        &self,
        router: &Router,
        ctx: &mut SessionCtx,
        iq: &Element,
        payload: &Element,
    ) -> Result<Option<Element>, StanzaError>;
}

/// A service on its own subdomain of the server (`conference.<domain>`, `upload.<domain>`):
/// an in-process counterpart of an XEP-0114 component. The router hands it every stanza
/// addressed to its domain (any localpart or resource), with `from` already stamped and
/// checked; the component answers through the router ([`Router::route`], [`Router::bounce`]).
#[async_trait]
pub trait Component: Send + Sync {
    /// The name shown in the server's disco#items.
    fn name(&self) -> &str;
    /// Handle one stanza addressed to the component's domain.
    async fn handle(&self, router: &Router, el: Element);
}

/// Shared server state and the routing logic.
pub struct Router {
    pub domain: String,
    pub domain_jid: Jid,
    pub sessions: Sessions,
    pub stores: Stores,
    pub config: ServerConfig,
    /// Serializes roster subscription changes so the two sides of a subscription stay
    /// consistent (subscription changes are rare; messages never take this lock).
    pub subscription_lock: tokio::sync::Mutex<()>,
    /// Serializes offline-queue writes against offline flushes (see [`offline`]).
    pub offline_lock: tokio::sync::Mutex<()>,
    /// Guard, archive and security state (see [`crate::pipeline`]).
    pub services: Services,
    /// Accounts under quarantine (cache of the security store).
    pub quarantine: QuarantineCache,
    iq_handlers: HashMap<&'static str, Arc<dyn IqHandler>>,
    /// Subdomain services by domain (see [`Component`]).
    components: HashMap<String, Arc<dyn Component>>,
    /// Federation, when enabled (set once while wiring the server; see [`crate::s2s`]).
    pub s2s: std::sync::OnceLock<Arc<crate::s2s::S2s>>,
    /// XEP-0163 personal eventing state (entity capabilities cache).
    pub pep: modules::pep::Pep,
    /// XEP-0357 push notification state (devices, notifications awaiting an answer).
    pub push: modules::push::Push,
}

/// Every IQ namespace served, with its handler, in disco order.
fn default_handlers() -> Vec<(&'static str, Arc<dyn IqHandler>)> {
    vec![
        (ns::ROSTER, Arc::new(roster::RosterHandler)),
        (ns::DISCO_INFO, Arc::new(modules::disco::DiscoInfoHandler)),
        (ns::DISCO_ITEMS, Arc::new(modules::disco::DiscoItemsHandler)),
        (ns::PING, Arc::new(modules::ping::PingHandler)),
        (ns::VERSION, Arc::new(modules::version::VersionHandler)),
        (ns::TIME, Arc::new(modules::time::TimeHandler)),
        (ns::SESSION, Arc::new(modules::session::SessionHandler)),
        (ns::PRIVATE, Arc::new(modules::private::PrivateHandler)),
        (ns::VCARD, Arc::new(modules::vcard::VCardHandler)),
        (ns::LAST, Arc::new(modules::last::LastHandler::new())),
        (ns::BLOCKING, Arc::new(modules::blocking::BlockingHandler::default())),
        (modules::mam::NS_MAM, Arc::new(modules::mam::MamHandler)),
        (ns::CARBONS, Arc::new(modules::carbons::CarbonsHandler)),
        (rampart_proto::pubsub::NS, Arc::new(modules::pep::PepHandler)),
        (rampart_proto::pubsub::NS_OWNER, Arc::new(modules::pep::PepHandler)),
        (modules::push::NS_PUSH, Arc::new(modules::push::PushHandler)),
    ]
}

impl Router {
    pub fn new(config: ServerConfig, stores: Stores, services: Services) -> Result<Self, rampart_proto::JidError> {
        let domain_jid = Jid::parse(&config.domain)?;
        let iq_handlers = default_handlers().into_iter().collect();
        Ok(Router {
            domain: domain_jid.as_str().to_owned(),
            domain_jid,
            sessions: Sessions::default(),
            stores,
            config,
            subscription_lock: tokio::sync::Mutex::new(()),
            offline_lock: tokio::sync::Mutex::new(()),
            services,
            quarantine: QuarantineCache::default(),
            iq_handlers,
            components: HashMap::new(),
            s2s: std::sync::OnceLock::new(),
            pep: modules::pep::Pep::default(),
            push: modules::push::Push::default(),
        })
    }

    /// Serve `domain` (a subdomain of ours) with `component`. Called while wiring the
    /// server, before it listens.
    pub fn add_component(&mut self, domain: impl Into<String>, component: Arc<dyn Component>) {
        self.components.insert(domain.into(), component);
    }

    /// The component serving `domain`, if any.
    pub fn component(&self, domain: &str) -> Option<&Arc<dyn Component>> {
        self.components.get(domain)
    }

    /// `(domain, name)` of every component, sorted (the server's disco#items).
    pub fn component_items(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.components.iter().map(|(d, c)| (d.clone(), c.name().to_owned())).collect();
        v.sort();
        v
    }

    /// Features of every registered IQ handler, sorted and de-duplicated.
    pub fn features(&self) -> Vec<&'static str> {
        let mut f: Vec<&'static str> = self.iq_handlers.values().flat_map(|h| h.features().iter().copied()).collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// Is this JID's domain ours?
    pub fn is_local(&self, jid: &Jid) -> bool {
        jid.domain() == self.domain
    }

    /// Is `domain` served here (ours or one of our components')?
    pub fn is_local_domain(&self, domain: &str) -> bool {
        domain == self.domain || self.components.contains_key(domain)
    }

    /// Entry point for a stanza received on a bound client session.
    ///
    /// `Err` means the stream must be closed with that error.
    pub async fn handle_client_stanza(&self, ctx: &mut SessionCtx, mut el: Element) -> Result<(), StreamError> {
        // RFC 6120 §8.1.2.1: the server stamps `from`; a client may only claim itself.
        if let Some(from) = el.attr("from") {
            let ok = Jid::parse(from).is_ok_and(|f| f == ctx.jid || f.as_str() == ctx.jid.bare_str());
            if !ok {
                return Err(StreamError { condition: StreamErrorCondition::InvalidFrom, text: None });
            }
        }
        el.set_attr("from", ctx.jid.as_str());
        let to = match el.attr("to") {
            None => None,
            Some(t) => match Jid::parse(t) {
                Ok(j) => Some(j),
                Err(_) => {
                    self.bounce(&el, StanzaError::new(ErrorType::Modify, DefinedCondition::JidMalformed));
                    return Ok(());
                }
            },
        };
        if let Some(t) = &to
            && t.bare_str() != ctx.jid.bare_str()
            && modules::blocking::is_blocked(self, ctx.jid.bare_str(), t).await
        {
            // XEP-0191 §3.4: the user blocked this entity; nothing goes to it.
            if !matches!(el.attr("type"), Some("error" | "result")) {
                self.send_to_session(ctx, rampart_proto::blocking::blocked_error_reply(&el));
            }
            return Ok(());
        }
        match el.name.as_str() {
            "message" => {
                // RFC 6120 §10.3.1: no `to` means the sender's own bare JID.
                let to = to.unwrap_or_else(|| ctx.jid.bare());
                // XEP-0047 over messages: the data chunk passes the guard's file scan.
                if el.child("data", modules::pep::gate::NS_IBB).is_some()
                    && let Err(e) = modules::pep::gate::gate_ibb(self, &ctx.jid, &to, &el).await
                {
                    self.bounce(&el, e);
                    return Ok(());
                }
                if self.is_local(&to) && to.node().is_some() {
                    // (A message the recipient blocks is refused and answered right there.)
                    if !self.blocked_inbound(&to, &el).await {
                        self.route_message_ordered(&to, el, true, ctx.deliveries.as_ref()).await;
                    }
                } else {
                    self.route(&to, el).await;
                }
            }
            "presence" => presence::outbound(self, ctx, to, el).await,
            "iq" => self.client_iq(ctx, to, el).await,
            _ => {
                return Err(StreamError { condition: StreamErrorCondition::UnsupportedStanzaType, text: None });
            }
        }
        Ok(())
    }

    async fn client_iq(&self, ctx: &mut SessionCtx, to: Option<Jid>, el: Element) {
        let ty = el.attr("type").unwrap_or("");
        let payload_ns = el.elements().next().map(|p| p.ns.as_str());
        // The server answers IQs to itself, to the user's own bare JID, and, for
        // account-level namespaces, to another local account's bare JID on its behalf.
        let for_server = match &to {
            None => true,
            Some(j) => {
                j.as_str() == self.domain
                    || j.as_str() == ctx.jid.bare_str()
                    || (matches!(ty, "get" | "set")
                        && j.is_bare()
                        && j.node().is_some()
                        && self.is_local(j)
                        && matches!(payload_ns, Some(ns::VCARD | ns::LAST | ns::PRIVATE | ns::BLOCKING | ns::PUBSUB | rampart_proto::pubsub::NS_OWNER)))
            }
        };
        if !for_server {
            let to = to.unwrap_or_else(|| ctx.jid.bare());
            // XEP-0047: in-band bytestream data is file content; it passes the guard.
            if ty == "set"
                && let Err(e) = modules::pep::gate::gate_ibb(self, &ctx.jid, &to, &el).await
            {
                self.reply_error(ctx, &el, e);
                return;
            }
            self.route(&to, el).await;
            return;
        }
        match ty {
            "get" | "set" => {}
            "result" | "error" => {
                // Answers to our pushes; or to a capabilities query (XEP-0115).
                modules::pep::on_iq_response(self, ctx, &el).await;
                return;
            }
            _ => {
                self.reply_error(ctx, &el, StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest));
                return;
            }
        }
        let mut children = el.elements();
        let (Some(payload), None) = (children.next(), children.next()) else {
            self.reply_error(ctx, &el, StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest));
            return;
        };
        let to_self = to.as_ref().is_some_and(|j| j.as_str() == ctx.jid.bare_str());
        let to_other = to.as_ref().is_some_and(|j| j.node().is_some()) && !to_self;
        let handler = self.iq_handlers.get(payload.ns.as_str());
        // On an account's bare JID only account-level namespaces are served by the server.
        let handler = handler.filter(|_| match payload.ns.as_str() {
            ns::PRIVATE | ns::VCARD | ns::LAST | ns::BLOCKING | ns::PUBSUB | rampart_proto::pubsub::NS_OWNER => true, // handlers check the addressee
            ns::ROSTER | ns::DISCO_INFO | ns::DISCO_ITEMS | ns::PING | modules::mam::NS_MAM | modules::push::NS_PUSH => !to_other,
            _ => !to_self && !to_other,
        });
        let answer = match handler {
            Some(h) => h.clone().handle(self, ctx, &el, payload).await,
            None => Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable)),
        };
        let reply = match answer {
            Ok(payload) => {
                let mut r = Element::new("iq", ns::CLIENT).with_attr("type", "result");
                if let Some(id) = el.attr("id") {
                    r.set_attr("id", id);
                }
                r.set_attr("to", ctx.jid.as_str());
                if let Some(to) = el.attr("to") {
                    r.set_attr("from", to);
                }
                if let Some(p) = payload {
                    r = r.with_child(p);
                }
                r
            }
            Err(e) => error_reply(&el, &e),
        };
        self.send_to_session(ctx, reply);
    }

    /// Send a stanza straight to one bound session.
    pub fn send_to_session(&self, ctx: &SessionCtx, stanza: Element) {
        if let Some(r) = self.sessions.get(&ctx.jid) {
            r.send(stanza);
        }
    }

    fn reply_error(&self, ctx: &SessionCtx, el: &Element, err: StanzaError) {
        self.send_to_session(ctx, error_reply(el, &err));
    }

    /// Answer `stanza` with an error to its sender, unless it is itself an error.
    pub fn bounce(&self, stanza: &Element, err: StanzaError) {
        if stanza.attr("type") == Some("error") {
            return;
        }
        let reply = error_reply(stanza, &err);
        let Some(to) = reply.attr("to").and_then(|t| Jid::parse(t).ok()) else { return };
        if !self.is_local_domain(to.domain()) {
            // A remote sender: the error goes back over federation.
            if let Some(s2s) = self.s2s.get() {
                s2s.send_volatile(reply);
            }
            return;
        }
        // Errors go to the exact sender; never queue them offline.
        if let Some(r) = self.sessions.get(&to) {
            r.send(reply);
        }
    }

    /// Deliver an addressed stanza (already stamped with `from`) to its destination.
    pub async fn route(&self, to: &Jid, el: Element) {
        if let Some(c) = self.components.get(to.domain()) {
            let c = c.clone();
            return Box::pin(c.handle(self, el)).await;
        }
        if !self.is_local(to)
            && let Some(s2s) = self.s2s.get()
        {
            // Federation: the border policy, guard and archive, then the peer's queue.
            let s2s = s2s.clone();
            return Box::pin(s2s.send(self, to, el)).await;
        }
        if !self.is_local(to) {
            // Federation is switched off: nothing leaves the server. The attempt is
            // on the record all the same.
            if el.name == "message"
                && is_archivable(&el)
                && let Some(from) = el.attr("from").and_then(|f| Jid::parse(f).ok())
            {
                let verdict = ArchiveVerdict::Bounced { condition: "remote-server-not-found".into() };
                self.archive_refusal(&el, &from, to, verdict).await;
            }
            self.bounce(&el, StanzaError::new(ErrorType::Cancel, DefinedCondition::RemoteServerNotFound)
                .with_text("federation with other domains is not enabled on this server"));
            return;
        }
        if to.node().is_some() && self.blocked_inbound(to, &el).await {
            return;
        }
        if to.node().is_none() {
            // Messages and presence to the server itself have no consumer yet.
            if el.name == "iq" && matches!(el.attr("type"), Some("get" | "set")) {
                self.bounce(&el, StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
            }
            return;
        }
        match el.name.as_str() {
            "message" => self.route_message(to, el, true).await,
            "presence" => Box::pin(presence::inbound(self, to, el)).await,
            "iq" => {
                // XEP-0357: an app server's answer to a notification sent from the account.
                if to.is_bare()
                    && matches!(el.attr("type"), Some("result" | "error"))
                    && modules::push::on_answer(self, to, &el).await
                {
                    return;
                }
                self.route_iq(to, el)
            }
            _ => {}
        }
    }

    /// Deliver a message that already passed the pipeline (a session died with it queued).
    pub async fn redeliver_message(&self, to: &Jid, el: Element) {
        if self.is_local(to) && to.node().is_some() {
            self.route_message(to, el, false).await;
        }
    }

    /// RFC 6121 §8.5 message delivery, behind the guard and the archive when `inspect`.
    async fn route_message(&self, to: &Jid, el: Element, inspect: bool) {
        self.route_message_ordered(to, el, inspect, None).await
    }

    /// [`Router::route_message`] with the sending session's ordered delivery queue.
    async fn route_message_ordered(&self, to: &Jid, mut el: Element, inspect: bool, ordered: Option<&DeliveryTx>) {
        // RFC 6121 §5.2.2: an unknown or missing type is handled as `normal`.
        let ty = match el.attr("type") {
            Some(t @ ("chat" | "headline" | "groupchat" | "error")) => t,
            _ => "normal",
        }
        .to_owned();
        let from = el.attr("from").and_then(|f| Jid::parse(f).ok());
        if inspect
            && let Some(from) = &from
            && let Gate::Refused = self.gate_message(from, to, None, &el).await
        {
            return;
        }
        let archivable = inspect && is_archivable(&el);
        let bare = to.bare_str().to_owned();
        let full = if to.is_full() { self.sessions.get(to) } else { None };
        if full.is_none() {
            // RFC 6121 §8.5.3.2.1: no such resource — normal/chat/headline go on as if sent
            // to the bare JID; errors are dropped. Groupchat needs a room (not here yet).
            match ty.as_str() {
                "groupchat" => return self.refuse_message(&el, from.as_ref(), to, archivable).await,
                "error" if to.is_full() => return,
                _ => {}
            }
            if !self.account_exists(&bare).await {
                if matches!(ty.as_str(), "normal" | "chat") {
                    self.refuse_message(&el, from.as_ref(), to, archivable).await;
                }
                return;
            }
        }
        let targets = match full {
            Some(r) => vec![r],
            None if ty == "headline" => {
                self.sessions.available(&bare).into_iter().filter(|r| r.priority.unwrap_or(-1) >= 0).collect()
            }
            None => self.sessions.message_targets(&bare),
        };
        let offline = targets.is_empty() && matches!(ty.as_str(), "normal" | "chat");
        if archivable && (offline || !targets.is_empty()) {
            let verdict = if offline { ArchiveVerdict::Offline } else { ArchiveVerdict::Delivered };
            let from_s = from.as_ref().map(|f| f.as_str().to_owned()).unwrap_or_default();
            let rec = message_record(&el, &from_s, to.as_str(), verdict);
            // From a session: queue the record and hand delivery to the session's ordered
            // delivery task, which delivers once the record is durable. The session reads
            // on meanwhile, so group commits grow with load.
            if let (Some(queue), Some(archive)) = (ordered, &self.services.archive) {
                let mut rec = rec;
                self.classify(&mut rec);
                match archive.enqueue(rec).await {
                    Ok(pending) => {
                        let d = Box::new(Delivery { pending, el, to: to.clone(), from, targets, offline });
                        if let Err(failed) = queue.send(d) {
                            // The delivery task is gone (cannot happen while the session
                            // lives); deliver here instead.
                            let d = *failed.0;
                            self.deliver_committed(d).await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "archive append failed: holding the stanza");
                        self.bounce_unarchived(&el);
                    }
                }
                return;
            }
            match self.archive(rec).await {
                Ok(Some(seq)) => stamp_stanza_id(&mut el, &bare, seq),
                Ok(None) => {}
                Err(()) => {
                    self.bounce_unarchived(&el);
                    return;
                }
            }
        }
        self.finish_delivery(from.as_ref(), to, el, &targets, offline, inspect).await;
    }

    /// The last step of message delivery: carbons, then the target sessions or offline
    /// storage. A target that vanished meanwhile does not lose the message: it is routed
    /// again to the account (another resource or offline storage).
    async fn finish_delivery(&self, from: Option<&Jid>, to: &Jid, el: Element, targets: &[crate::sessions::Resource], offline: bool, inspect: bool) {
        if inspect
            && let Some(from) = from.filter(|f| f.is_full() && self.is_local(f))
        {
            modules::carbons::copy_sent(self, from, None, &el);
        }
        if !offline && !targets.is_empty() {
            modules::carbons::copy_received(self, to.bare_str(), targets, &el);
        }
        if offline {
            // A sender quarantined while this message waited for its record: its copies
            // waiting offline are withdrawn, and this one joins them.
            if let Some(f) = from.filter(|f| self.quarantine.reason(f.bare_str()).is_some()) {
                tracing::warn!(from = %f, to = %to, "offline copy from a quarantined account withdrawn");
                return;
            }
            offline::store(self, to, el).await;
            return;
        }
        // The stanza is needed after the sends only by push (XEP-0357), and only for an
        // account with a registration; otherwise the last target gets it without a copy.
        let keep = modules::push::may_notify(self, to.bare_str()).await;
        let mut el = Some(el);
        let mut lost = None;
        for (i, r) in targets.iter().enumerate() {
            let copy = if i + 1 == targets.len() && !keep { el.take() } else { el.clone() };
            if let Some(Err(back)) = copy.map(|c| r.try_send(c)) {
                lost = Some(back);
            }
        }
        match (lost, el) {
            // XEP-0357: devices of the account that are not connected hear of it.
            (None, Some(el)) => modules::push::on_message(self, to, &el).await,
            (None, None) => {}
            (Some(el), _) => {
                if !matches!(el.attr("type"), Some("error" | "headline" | "groupchat")) {
                    Box::pin(self.redeliver_message(&to.bare(), el)).await;
                }
            }
        }
    }

    /// Fail closed: a message whose record could not be made durable is not delivered.
    pub(crate) fn bounce_unarchived(&self, el: &Element) {
        self.bounce(el, StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
            .with_text("not delivered: the compliance archive is unavailable"));
    }

    /// Deliver a message whose archive record was queued (see [`Delivery`]).
    pub async fn deliver_committed(&self, d: Delivery) {
        let Delivery { pending, mut el, to, from, targets, offline } = d;
        match pending.committed().await {
            Ok(seq) => {
                stamp_stanza_id(&mut el, to.bare_str(), seq);
                self.finish_delivery(from.as_ref(), &to, el, &targets, offline, true).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "archive append failed: holding the stanza");
                self.bounce_unarchived(&el);
            }
        }
    }

    /// XEP-0191 §3.3: is `el` from someone the recipient blocks? Then it is refused here
    /// (messages and IQ requests get service-unavailable; refused messages are archived).
    async fn blocked_inbound(&self, to: &Jid, el: &Element) -> bool {
        let Some(from) = el.attr("from").and_then(|f| Jid::parse(f).ok()) else { return false };
        if !modules::blocking::is_blocked(self, to.bare_str(), &from).await {
            return false;
        }
        if el.name == "message" && is_archivable(el) {
            let verdict = ArchiveVerdict::Bounced { condition: "blocked-by-recipient".into() };
            self.archive_refusal(el, &from, to, verdict).await;
        }
        if (el.name == "message" && el.attr("type") != Some("error"))
            || (el.name == "iq" && matches!(el.attr("type"), Some("get" | "set")))
        {
            self.bounce(el, StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
        }
        true
    }

    /// Bounce an undeliverable message with `service-unavailable`, archiving the bounce.
    async fn refuse_message(&self, el: &Element, from: Option<&Jid>, to: &Jid, archivable: bool) {
        let cond = DefinedCondition::ServiceUnavailable;
        if archivable {
            let from_s = from.map(|f| f.as_str().to_owned()).unwrap_or_default();
            let verdict = ArchiveVerdict::Bounced { condition: cond.as_str().to_owned() };
            let _ = self.archive(message_record(el, &from_s, to.as_str(), verdict)).await;
        }
        self.bounce(el, StanzaError::new(ErrorType::Cancel, cond));
    }

    fn route_iq(&self, to: &Jid, el: Element) {
        if to.is_full()
            && let Some(r) = self.sessions.get(to)
        {
            r.send(el);
            return;
        }
        // IQs to a user's bare JID are answered by the server on the user's behalf; nothing
        // here serves another user's account namespaces, so refuse politely.
        self.bounce(&el, StanzaError::new(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
    }

    /// Does a local account exist? (Bound sessions prove it without a store lookup.)
    pub async fn account_exists(&self, bare: &str) -> bool {
        if self.sessions.is_bound(bare) {
            return true;
        }
        match self.stores.accounts.get(bare).await {
            Ok(a) => a.is_some(),
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                false
            }
        }
    }

    /// A bound session has ended: tell whoever saw it online, and forget it.
    pub async fn session_ended(&self, ctx: &mut SessionCtx) {
        if ctx.available {
            let unavailable = Element::new("presence", ns::CLIENT)
                .with_attr("type", "unavailable")
                .with_attr("from", ctx.jid.as_str());
            presence::outbound(self, ctx, None, unavailable).await;
        }
        self.sessions.unbind(ctx.id, &ctx.jid);
        modules::pep::forget_session(self, &ctx.jid);
        if !self.sessions.is_bound(ctx.jid.bare_str()) {
            modules::last::record_logout(self, ctx.jid.bare_str(), ctx.last_status.as_deref()).await;
        }
        self.archive_session_event(ctx, rampart_archive::RecordKind::Logout, None).await;
    }

    /// Journal a login or logout (with the client's address on login).
    pub async fn archive_session_event(&self, ctx: &SessionCtx, kind: rampart_archive::RecordKind, addr: Option<&str>) {
        let meta = serde_json::json!({ "resource": ctx.jid.resource(), "address": addr });
        let rec = rampart_archive::NewRecord {
            at_ms: crate::pipeline::now_ms(),
            kind,
            direction: rampart_archive::Direction::Local,
            from: ctx.jid.as_str().to_owned(),
            to: self.domain.clone(),
            remote_domain: None,
            stanza_id: None,
            body: None,
            stanza_xml: None,
            verdict: ArchiveVerdict::Delivered,
            meta_json: Some(meta.to_string()),
        };
        let _ = self.archive(rec).await;
    }
}


/// XEP-0359: mark the archive id on the delivered copy (removing any claim a client made in
/// our name), so clients can refer to it in MAM queries.
fn stamp_stanza_id(el: &mut Element, by: &str, seq: u64) {
    el.children.retain(|n| !matches!(n, rampart_xml::Node::Element(c) if c.is("stanza-id", ns::SID) && c.attr("by") == Some(by)));
    el.children.push(rampart_xml::Node::Element(
        Element::new("stanza-id", ns::SID).with_attr("by", by).with_attr("id", seq.to_string()),
    ));
}
