//! Federation (RFC 6120 server-to-server): the border between this server and other XMPP
//! domains.
//!
//! - [`inbound`]: the `s2s` listener's streams — STARTTLS (or direct TLS, XEP-0368) with a
//!   client certificate, SASL EXTERNAL for the domain the certificate is valid for, then
//!   stanzas whose `from` must lie in that domain.
//! - [`outbound`]: one worker per remote domain — resolve ([`resolve`]), connect, TLS with
//!   the peer's certificate verified for its domain, SASL EXTERNAL, then deliver the
//!   durable per-domain queue (`S2sStore`), retrying with backoff and bouncing with
//!   `remote-server-timeout` what waited too long.
//! - This file: the border policy both ways (allow-list, barred and exempt accounts, the
//!   per-domain kind rules decided by [`S2sConfig::check`] on what [`policy::classify`]
//!   says a stanza is, end-to-end encryption, the guard and the archive through the
//!   router), the answers to a peer's server-level IQs, and the link table for
//!   `rampart s2s status`.
//!
//! Plaintext federation does not exist: every link is TLS before anything else is said.

pub mod config;
pub mod dialback;
mod inbound;
mod outbound;
pub mod policy;
pub mod resolve;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rampart_archive::Verdict as ArchiveVerdict;
use rampart_proto::{DefinedCondition, Element, ErrorType, Jid, StanzaError};
use rampart_store::s2s::{LinkRow, S2sStore};
use rampart_store::security::SecurityEvent;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use config::{Direction, DomainRules, Kind, LocalParty, Refusal, Route, S2sConfig};
pub use resolve::{NoSrv, Resolve, Srv};
pub use tls::S2sTls;

use crate::limits::ConnCounter;
use crate::pipeline::{Gate, is_archivable, message_record, now_ms};
use crate::router::Router;

/// What federation is built from (the binary assembles it).
pub struct S2sSetup {
    pub config: S2sConfig,
    pub store: Arc<dyn S2sStore>,
    pub tls: S2sTls,
    pub resolver: Arc<dyn Resolve>,
}

/// A message for a peer worker: a stanza that is not queued durably, or a wake-up (`None`)
/// because the durable queue grew.
type PeerMsg = Option<Element>;

/// The federation service, shared by the router and every link task.
pub struct S2s {
    pub config: S2sConfig,
    store: Arc<dyn S2sStore>,
    tls: S2sTls,
    resolver: Arc<dyn Resolve>,
    /// Outbound workers by remote domain.
    peers: Mutex<HashMap<String, mpsc::UnboundedSender<PeerMsg>>>,
    /// Links by id (the in-memory side of the link table).
    links: Mutex<HashMap<i64, LinkRow>>,
    next_link: AtomicI64,
    router: std::sync::OnceLock<Weak<Router>>,
}

/// Is this presence a subscription stanza (kept durably like messages)?
fn is_subscription(el: &Element) -> bool {
    el.name == "presence" && matches!(el.attr("type"), Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"))
}

impl S2s {
    pub fn new(setup: S2sSetup) -> Arc<S2s> {
        Arc::new(S2s {
            config: setup.config,
            store: setup.store,
            tls: setup.tls,
            resolver: setup.resolver,
            peers: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            next_link: AtomicI64::new(1),
            router: std::sync::OnceLock::new(),
        })
    }

    /// Attach the router (once, while wiring the server).
    pub fn attach(&self, router: &Arc<Router>) {
        let _ = self.router.set(Arc::downgrade(router));
    }

    fn router(&self) -> Option<Arc<Router>> {
        self.router.get().and_then(Weak::upgrade)
    }

    /// Start: forget stale links, and start a worker for every domain that still has
    /// queued stanzas (from before a restart).
    pub async fn start(self: &Arc<Self>) {
        if let Err(e) = self.store.clear_links().await {
            tracing::error!(error = %e, "could not reset the s2s link table");
        }
        match self.store.queue_depths().await {
            Ok(depths) => {
                for (domain, n) in depths {
                    if !self.config.may_link(&domain) {
                        // The allow-list changed while they waited: nothing crosses to a
                        // domain that is no longer allowed (they stay queued, visible in
                        // `rampart s2s status`, until the domain is allowed again).
                        tracing::warn!(%domain, queued = n, "queued stanzas held: the domain is not on the allow-list");
                        continue;
                    }
                    tracing::info!(%domain, queued = n, "resuming delivery of queued stanzas");
                    self.wake(&domain, None);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not read the s2s queue"),
        }
    }

    /// The server stops: its links go with it (the link table is emptied for the CLI; the
    /// queue stays and is delivered after the next start).
    pub async fn stop(&self) {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if let Err(e) = self.store.clear_links().await {
            tracing::debug!(error = %e, "could not clear the s2s link table");
        }
    }

    /// Accept inbound server-to-server connections until the task is aborted.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener, counter: Arc<ConnCounter>, max_per_ip: usize) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "s2s accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(slot) = counter.acquire(peer.ip(), max_per_ip) else {
                tracing::warn!(%peer, "s2s: too many connections from this address");
                continue;
            };
            let Some(router) = self.router() else { return };
            tokio::spawn(inbound::serve(self.clone(), router, tcp, peer, slot));
        }
    }

    /// Hand a stanza to the peer worker of `domain` (starting it if needed).
    fn wake(self: &Arc<Self>, domain: &str, msg: PeerMsg) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = peers.get(domain)
            && tx.send(msg.clone()).is_ok()
        {
            return;
        }
        let Some(router) = self.router() else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(msg);
        peers.insert(domain.to_owned(), tx);
        tokio::spawn(outbound::run(self.clone(), router, domain.to_owned(), rx));
    }

    /// Send a stanza that needs no durability (errors, presence broadcasts) to a remote
    /// domain; dropped if no link with the domain may exist.
    pub fn send_volatile(self: &Arc<Self>, el: Element) {
        let Some(domain) = el.attr("to").and_then(|t| Jid::parse(t).ok()).map(|j| j.domain().to_owned()) else { return };
        if self.config.may_link(&domain) {
            self.wake(&domain, Some(el));
        }
    }

    /// The outbound border: a stanza from a local entity to `to` on another domain.
    /// Barred accounts, allow-list (and exempt accounts), the kind rules, end-to-end
    /// encryption policy, the guard and the archive, then the durable queue (messages,
    /// IQs and subscriptions) or the live link (other presence).
    pub async fn send(self: &Arc<Self>, router: &Router, to: &Jid, el: Element) {
        let domain = to.domain().to_owned();
        let from = el.attr("from").and_then(|f| Jid::parse(f).ok());
        if let Err(r) = self.outbound_verdict(router, to, &el) {
            tracing::warn!(from = ?el.attr("from"), to = %to, rule = r.rule, "federation refused: {}", r.reason);
            if let Some(f) = &from {
                self.refuse(router, &el, f, to, r.rule, &r.reason).await;
            }
            return;
        }
        if el.name == "message"
            && let Some(from) = &from
        {
            if !self.config.allow_e2ee
                && let Some(kind) = policy::e2ee_payload(&el)
            {
                let reason = policy::e2ee_refusal(kind);
                tracing::warn!(from = %from, to = %to, kind, "encrypted message refused at the border");
                self.refuse(router, &el, from, to, "s2s.e2ee", &reason).await;
                return;
            }
            // Messages of our own subdomain services (group chat) were judged when they
            // entered the service; the accounts of this domain are judged here.
            if router.is_local(from)
                && let Gate::Refused = router.gate_message(from, to, None, &el).await
            {
                return;
            }
            if is_archivable(&el) {
                let rec = message_record(&el, from.as_str(), to.as_str(), ArchiveVerdict::Delivered);
                if router.archive(rec).await.is_err() {
                    router.bounce(&el, StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
                        .with_text("not delivered: the compliance archive is unavailable"));
                    return;
                }
            }
            // XEP-0280: the sender's other resources see what it sent, wherever it goes.
            if from.is_full() && router.is_local(from) {
                crate::modules::carbons::copy_sent(router, from, None, &el);
            }
        }
        if el.name == "presence" && !is_subscription(&el) {
            self.wake(&domain, Some(el));
            return;
        }
        match self.store.enqueue(&domain, &el.to_xml_string(), now_ms()).await {
            Ok(_) => self.wake(&domain, None),
            Err(e) => {
                tracing::error!(error = %e, %domain, "could not queue a stanza for a remote domain");
                router.bounce(&el, StanzaError::new(ErrorType::Wait, DefinedCondition::InternalServerError)
                    .with_text("not sent: the federation queue is unavailable"));
            }
        }
    }

    /// The border decision for a stanza from here to `to` (on another domain).
    pub(crate) fn outbound_verdict(&self, router: &Router, to: &Jid, el: &Element) -> Result<(), Refusal> {
        match el.attr("from").and_then(|f| Jid::parse(f).ok()) {
            Some(f) => {
                let is_account = f.domain() == router.domain && f.node().is_some();
                let kind = policy::classify(el, Direction::Outbound, to, f.domain() != router.domain);
                self.config.check(Direction::Outbound, LocalParty { bare: f.bare_str(), is_account }, to.domain(), kind)
            }
            None if self.config.allows(to.domain()) => Ok(()),
            None => Err(Refusal { rule: "s2s.allow-list", reason: format!("federation with {} is not allowed by this server's policy", to.domain()) }),
        }
    }

    /// Refuse a stanza at the border: a security event, a record in the archive, and
    /// `policy-violation` with the reason to the sender.
    async fn refuse(&self, router: &Router, el: &Element, from: &Jid, to: &Jid, rule: &str, reason: &str) {
        let ev = SecurityEvent {
            id: 0,
            at_ms: now_ms(),
            account: from.bare_str().to_owned(),
            rule: rule.to_owned(),
            action: "block".to_owned(),
            reason: reason.to_owned(),
            evidence_json: serde_json::json!({ "from": from.as_str(), "to": to.as_str(), "stanza": el.name }).to_string(),
        };
        if let Err(e) = router.services.security.record_event(&ev).await {
            tracing::error!(error = %e, "could not record a security event");
        }
        if el.name == "message" {
            router.archive_refusal(el, from, to, ArchiveVerdict::Blocked { rule: rule.to_owned(), reason: reason.to_owned() }).await;
        }
        let kind_ok = match el.name.as_str() {
            "message" => true,
            "iq" => matches!(el.attr("type"), Some("get" | "set")),
            // Subscriptions, and joining a room (XEP-0045 answers a refused join with an
            // error presence); refused availability broadcasts are dropped silently.
            "presence" => is_subscription(el) || el.elements().any(|c| c.ns == "http://jabber.org/protocol/muc"),
            _ => false,
        };
        if kind_ok {
            router.bounce(el, StanzaError::new(ErrorType::Cancel, DefinedCondition::PolicyViolation).with_text(reason));
        }
    }

    /// The inbound border, after the stream checks (authenticated peer, `from` in its
    /// domain, `to` served here): the end-to-end encryption policy, then the router, whose
    /// message path runs the guard and the archive.
    async fn deliver_inbound(self: &Arc<Self>, router: &Router, from: &Jid, to: &Jid, el: Element) {
        let to_server = to.node().is_none() && to.domain() == router.domain;
        let is_account = to.node().is_some() && to.domain() == router.domain;
        // The server's own harmless IQs (ping, disco#info, version) are not judged by kind.
        let kind = if to_server { None } else { policy::classify(&el, Direction::Inbound, from, to.domain() != router.domain) };
        if let Err(r) = self.config.check(Direction::Inbound, LocalParty { bare: to.bare_str(), is_account }, from.domain(), kind) {
            tracing::warn!(from = %from, to = %to, rule = r.rule, "inbound stanza refused at the border: {}", r.reason);
            self.refuse(router, &el, from, to, r.rule, &r.reason).await;
            return;
        }
        if to_server && let Some(reply) = server_iq_reply(router, &el) {
            self.send_volatile(reply);
            return;
        }
        if el.name == "message"
            && !self.config.allow_e2ee
            && let Some(kind) = policy::e2ee_payload(&el)
        {
            let reason = policy::e2ee_refusal(kind);
            tracing::warn!(from = %from, to = %to, kind, "encrypted message refused at the border (inbound)");
            self.refuse(router, &el, from, to, "s2s.e2ee", &reason).await;
            return;
        }
        router.route(to, el).await;
    }

    // -- the link table ------------------------------------------------------------------

    fn new_link(&self, domain: &str, direction: &str, remote_addr: Option<String>) -> i64 {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let row = LinkRow {
            id,
            domain: domain.to_owned(),
            direction: direction.to_owned(),
            state: "connecting".into(),
            remote_addr,
            since_ms: now,
            updated_ms: now,
            ..LinkRow::default()
        };
        self.links.lock().unwrap_or_else(|e| e.into_inner()).insert(id, row);
        id
    }

    /// Change a link's row and persist it for the CLI.
    async fn update_link(&self, id: i64, f: impl FnOnce(&mut LinkRow)) {
        let row = {
            let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            let Some(row) = links.get_mut(&id) else { return };
            let before = row.state.clone();
            f(row);
            let now = now_ms();
            if row.state != before {
                row.since_ms = now;
            }
            row.updated_ms = now;
            row.clone()
        };
        if let Err(e) = self.store.put_link(&row).await {
            tracing::debug!(error = %e, "could not persist the s2s link table");
        }
    }

    /// Count traffic on a link (kept in memory; persisted with the next state change or
    /// every `every` stanzas).
    async fn count(&self, id: i64, inbound: i64, outbound: i64) {
        let persist = {
            let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            let Some(row) = links.get_mut(&id) else { return };
            let before = (row.stanzas_in + row.stanzas_out) / 50;
            row.stanzas_in += inbound;
            row.stanzas_out += outbound;
            ((row.stanzas_in + row.stanzas_out) / 50 != before || row.stanzas_in + row.stanzas_out <= 5).then(|| row.clone())
        };
        if let Some(row) = persist {
            let _ = self.store.put_link(&row).await;
        }
    }

    async fn drop_link(&self, id: i64) {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        let _ = self.store.remove_link(id).await;
    }

    /// Number of authenticated inbound links from `domain`.
    fn inbound_links(&self, domain: &str) -> usize {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|l| l.direction == "in" && l.state == "up" && l.domain == domain)
            .count()
    }

    /// The current link table (for embedding and tests).
    pub fn links(&self) -> Vec<LinkRow> {
        let mut v: Vec<LinkRow> = self.links.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| (&a.domain, &a.direction, a.id).cmp(&(&b.domain, &b.direction, b.id)));
        v
    }

    /// Record a refused peer in the security log (rule `s2s.*`, account = the domain).
    async fn security_event(&self, router: &Router, domain: &str, rule: &str, reason: &str, evidence: serde_json::Value) {
        let ev = SecurityEvent {
            id: 0,
            at_ms: now_ms(),
            account: domain.to_owned(),
            rule: rule.to_owned(),
            action: "block".to_owned(),
            reason: reason.to_owned(),
            evidence_json: evidence.to_string(),
        };
        if let Err(e) = router.services.security.record_event(&ev).await {
            tracing::error!(error = %e, "could not record a security event");
        }
    }
}

/// The answer to a remote entity's IQ to this server itself, for the harmless server-level
/// namespaces ([`policy::SERVER_IQS`]: XEP-0199 ping, XEP-0030 disco#info, XEP-0092
/// version); `None` for anything else (the router refuses it with `service-unavailable`).
fn server_iq_reply(router: &Router, el: &Element) -> Option<Element> {
    if el.name != "iq" || !matches!(el.attr("type"), Some("get" | "set")) {
        return None;
    }
    let mut children = el.elements();
    let (Some(payload), None) = (children.next(), children.next()) else { return None };
    if !policy::SERVER_IQS.contains(&payload.ns.as_str()) {
        return None;
    }
    let answer: Result<Option<Element>, StanzaError> = if el.attr("type") != Some("get") {
        Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAllowed))
    } else if payload.ns == rampart_proto::ns::PING && payload.name == "ping" {
        Ok(None)
    } else if payload.ns == rampart_proto::ns::DISCO_INFO && payload.name == "query" {
        match payload.attr("node") {
            None => Ok(Some(crate::modules::disco::server_info(router).into())),
            Some(_) => Err(StanzaError::new(ErrorType::Cancel, DefinedCondition::ItemNotFound)),
        }
    } else if payload.ns == rampart_proto::ns::VERSION && payload.name == "query" {
        Ok(Some(
            rampart_proto::version::SoftwareVersion { name: "Rampart".into(), version: env!("CARGO_PKG_VERSION").into(), os: None }.into(),
        ))
    } else {
        Err(StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest))
    };
    Some(match answer {
        Ok(payload) => {
            let mut r = Element::new("iq", rampart_proto::ns::CLIENT).with_attr("type", "result");
            if let Some(id) = el.attr("id") {
                r.set_attr("id", id);
            }
            if let Some(f) = el.attr("from") {
                r.set_attr("to", f);
            }
            r.set_attr("from", router.domain.as_str());
            if let Some(p) = payload {
                r = r.with_child(p);
            }
            r
        }
        Err(e) => rampart_proto::error::error_reply(el, &e),
    })
}
