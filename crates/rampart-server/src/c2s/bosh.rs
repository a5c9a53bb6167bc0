//! Client sessions over BOSH (XEP-0124, XMPP over BOSH XEP-0206): HTTP long-polling bodies
//! bridged to the byte stream the c2s state machine reads and writes, as Prosody's
//! mod_bosh does it.
//!
//! A session is created by a `<body/>` without `sid` (`to` our domain, `rid`, `wait`,
//! `hold`); the answer carries the `sid`, our `wait`, `hold='1'`, `requests='2'`,
//! `inactivity`, `polling`, the stream id as `authid` and the SASL stream features. Behind
//! it runs the ordinary c2s state machine from the SASL phase on (the transport is already
//! TLS; no -PLUS mechanisms, as for WebSocket) over an in-memory pipe: the children of each
//! request's `<body/>` (in `rid` order; a `rid` ahead by one waits for the gap) are written
//! to it, `xmpp:restart='true'` writes a new stream header, `type='terminate'` the stream
//! end. Our output is framed again (a trusted [`Framer`]) and queued as whole elements;
//! a request is held for up to `wait` seconds and answered as soon as something is queued,
//! or at once when a newer request arrives (`hold` is 1).
//!
//! Every c2s limit applies (stanza size and depth, rates, the handshake deadline, the guard,
//! the archive, connections per address: one BOSH session counts as one connection). Besides:
//! - a repeated `rid` gets the same answer again (the last `requests` answers are kept); a
//!   `rid` outside the window, or one repeated after its answer was forgotten, ends the
//!   session with `item-not-found`;
//! - a session without a request waiting for `inactivity` seconds ends (the c2s session
//!   sees a broken connection: with XEP-0198 it hibernates for resumption); messages queued
//!   for it that no request collects go back to the router (offline storage), so accepted
//!   data is not lost;
//! - bytes on their way into the c2s session and output waiting for a request are bounded;
//!   a client that does not poll stops being read from, like a slow TCP reader;
//! - bad bodies end with the terminal conditions of XEP-0124 §17: `bad-request`,
//!   `host-unknown`, `improper-addressing`, `item-not-found`, `policy-violation`, and
//!   `remote-stream-error` (with the `<stream:error/>`) when the c2s stream failed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rampart_proto::{Element, Jid, ns};
use rampart_xml::{Event, Framer, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::C2sShared;
use crate::limits::{ConnCounter, ConnSlot};

/// XEP-0124's namespace.
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// XEP-0206's namespace for `xmpp:version` and `xmpp:restart`.
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// Requests a client may have open at once (XEP-0124 `requests`); also the `rid` window
/// and the number of answers kept for retransmission.
pub const REQUESTS: u64 = 2;
/// Requests we keep waiting at most (XEP-0124 `hold`).
const HOLD: usize = 1;
/// Shortest interval between empty polls we ask of clients, in seconds (`polling`).
const POLLING_SECS: u64 = 2;
/// Bytes buffered between the bridge and the c2s state machine, each way.
const PIPE_BYTES: usize = 64 * 1024;
/// Largest `rid` (XEP-0124 §7.1: at most 2^53 - 1, so JavaScript clients can count).
const MAX_RID: u64 = (1 << 53) - 1;

/// BOSH settings (the binary's `[http]` table).
#[derive(Clone, Debug)]
pub struct BoshSettings {
    /// Longest a request is held (a client asking for more gets this).
    pub max_wait: Duration,
    /// A session without a request for this long ends.
    pub max_inactivity: Duration,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for BoshSettings {
    fn default() -> Self {
        BoshSettings { max_wait: Duration::from_secs(60), max_inactivity: Duration::from_secs(60), max_body_bytes: 260 * 1024 }
    }
}

/// Entry point for BOSH requests: what the HTTPS listener's handler calls. Cheap to clone;
/// all clones share the session table.
#[derive(Clone)]
pub struct BoshEntry {
    shared: Arc<C2sShared>,
    counter: Arc<ConnCounter>,
    settings: Arc<BoshSettings>,
    sessions: Arc<Registry>,
}

/// The live sessions by `sid`.
#[derive(Default)]
struct Registry(Mutex<HashMap<String, Arc<Session>>>);

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl BoshEntry {
    pub(crate) fn new(shared: Arc<C2sShared>, counter: Arc<ConnCounter>, settings: BoshSettings) -> Self {
        BoshEntry { shared, counter, settings: Arc::new(settings), sessions: Arc::default() }
    }

    /// Largest request body accepted, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.settings.max_body_bytes
    }

    /// Sessions alive now (for tests and logs).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Answer one HTTP request body: always a `<body/>` to send with status 200 (errors are
    /// `type='terminate'` bodies with their condition, as XEP-0124 §17 asks).
    pub async fn handle(&self, peer: SocketAddr, body: &[u8]) -> String {
        let req = match parse_body(body, self.settings.max_body_bytes) {
            Ok(r) => r,
            Err(why) => {
                tracing::info!(%peer, error = why, "bad BOSH request");
                return terminate_body("bad-request");
            }
        };
        match req.attr("sid") {
            None => self.create(peer, req).await,
            Some(sid) => {
                let session = self.sessions.lock().get(sid).cloned();
                match session {
                    Some(s) => s.request(req).await,
                    None => {
                        tracing::debug!(%peer, "BOSH request for an unknown session");
                        terminate_body("item-not-found")
                    }
                }
            }
        }
    }

    /// The session creation request (XEP-0124 §7.1, XEP-0206 §3).
    async fn create(&self, peer: SocketAddr, req: Element) -> String {
        let Some(rid) = parse_rid(req.attr("rid")) else { return terminate_body("bad-request") };
        let domain = &self.shared.router.domain;
        match req.attr("to").filter(|t| !t.is_empty()) {
            None => return terminate_body("improper-addressing"),
            Some(to) if Jid::parse(to).map(|j| j.as_str() != domain.as_str()).unwrap_or(true) => {
                return terminate_body("host-unknown");
            }
            Some(_) => {}
        }
        let wait = match req.attr("wait").map(str::parse::<u64>) {
            None => self.settings.max_wait,
            // At least a second: the creation answer waits for the stream features.
            Some(Ok(w)) => Duration::from_secs(w.max(1)).min(self.settings.max_wait),
            Some(Err(_)) => return terminate_body("bad-request"),
        };
        let hold = match req.attr("hold").map(str::parse::<usize>) {
            None => HOLD,
            Some(Ok(h)) => h.min(HOLD),
            Some(Err(_)) => return terminate_body("bad-request"),
        };
        let max = self.shared.router.config.limits.max_connections_per_ip;
        let Some(slot) = self.counter.acquire(peer.ip(), max) else {
            tracing::warn!(%peer, "too many connections from this address (BOSH)");
            return terminate_body("policy-violation");
        };
        let sid = format!("{:032x}", rand::random::<u128>());
        let (feed, feed_rx) = mpsc::unbounded_channel();
        // Bytes on their way into the c2s session: a few bodies' worth.
        let credit = self.settings.max_body_bytes.saturating_mul(4).min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        let session = Arc::new(Session {
            sid: sid.clone(),
            domain: domain.clone(),
            wait,
            hold,
            inactivity: self.settings.max_inactivity,
            max_queued: self.shared.router.config.limits.max_stanza_bytes.saturating_mul(4).max(1 << 20),
            state: Mutex::new(State::new(rid)),
            feed,
            credit: Arc::new(Semaphore::new(credit)),
            drained: Notify::new(),
            collected: Notify::new(),
        });
        self.sessions.lock().insert(sid.clone(), session.clone());
        tracing::debug!(%peer, "BOSH session created");
        tokio::spawn(run(self.shared.clone(), session.clone(), feed_rx, self.sessions.clone(), peer, slot));
        // The stream header that starts the c2s state machine.
        let _ = session.feed.send(Feed::Header);
        let (tx, rx) = oneshot::channel();
        let token = {
            let mut st = session.lock();
            let token = st.hold_request(rid, true, tx);
            session.dispatch(&mut st);
            token
        };
        session.await_response(rid, token, rx).await
    }
}

/// What the bridge writes into the c2s session, in order.
enum Feed {
    /// Stanzas from a request body.
    Bytes(Vec<u8>, Option<OwnedSemaphorePermit>),
    /// A (new) stream header: session start and `xmpp:restart`.
    Header,
    /// The client terminated the session: the stream ends cleanly.
    End,
    /// The session ended otherwise: the pipe closes (a broken connection for c2s).
    Drop,
}

/// One request body's effect, applied when its `rid` is next.
struct Payload {
    bytes: Vec<u8>,
    permit: Option<OwnedSemaphorePermit>,
    restart: bool,
    terminate: bool,
}

/// A request waiting for its answer.
struct Held {
    rid: u64,
    /// Which wait this is (a retransmitted `rid` takes over the wait of the first).
    token: u64,
    /// The session creation request: its answer carries the session attributes.
    first: bool,
    tx: oneshot::Sender<String>,
}

struct State {
    /// The `rid` whose payload is applied next.
    next_rid: u64,
    /// Payloads that arrived ahead of `next_rid`.
    early: BTreeMap<u64, Payload>,
    /// Requests waiting, by `rid`.
    held: Vec<Held>,
    /// Our output waiting for a request: serialized top-level elements.
    out: Vec<String>,
    out_bytes: usize,
    /// The last answers, for retransmission.
    sent: VecDeque<(u64, String)>,
    /// The c2s stream id (`authid`).
    authid: Option<String>,
    /// The session is over, with the terminal condition (`None`: plain terminate).
    ended: Option<Option<&'static str>>,
    /// A terminate answer was given.
    terminate_sent: bool,
    /// SASL succeeded and the stream has not been restarted yet (`xmpp:restart` is allowed).
    restart_ok: bool,
    /// The client enabled XEP-0198: the c2s session accounts for unacknowledged stanzas.
    sm_enabled: bool,
    /// Since when no request is waiting.
    idle_since: Option<Instant>,
    next_token: u64,
}

impl State {
    fn new(rid: u64) -> Self {
        State {
            next_rid: rid.saturating_add(1),
            early: BTreeMap::new(),
            held: Vec::new(),
            out: Vec::new(),
            out_bytes: 0,
            sent: VecDeque::new(),
            authid: None,
            ended: None,
            terminate_sent: false,
            restart_ok: false,
            sm_enabled: false,
            idle_since: None,
            next_token: 0,
        }
    }

    /// Hold a request (in `rid` order); its token.
    fn hold_request(&mut self, rid: u64, first: bool, tx: oneshot::Sender<String>) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        let pos = self.held.iter().position(|h| h.rid > rid).unwrap_or(self.held.len());
        self.held.insert(pos, Held { rid, token, first, tx });
        self.idle_since = None;
        token
    }

    fn remember(&mut self, rid: u64, body: &str) {
        self.sent.push_back((rid, body.to_owned()));
        while self.sent.len() > REQUESTS as usize {
            self.sent.pop_front();
        }
    }
}

struct Session {
    sid: String,
    domain: String,
    wait: Duration,
    hold: usize,
    inactivity: Duration,
    /// Output bytes queued before we stop reading the c2s session's output.
    max_queued: usize,
    state: Mutex<State>,
    feed: mpsc::UnboundedSender<Feed>,
    /// Bytes allowed on their way into the c2s session.
    credit: Arc<Semaphore>,
    /// The output queue was emptied.
    drained: Notify,
    /// A terminate answer was given.
    collected: Notify,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request to this session.
    async fn request(self: &Arc<Self>, req: Element) -> String {
        let Some(rid) = parse_rid(req.attr("rid")) else {
            self.end(Some("bad-request"));
            return terminate_body("bad-request");
        };
        let restart = xbosh_attr(&req, "restart") == Some("true");
        let terminate = req.attr("type") == Some("terminate");
        let mut bytes = Vec::new();
        for child in req.elements() {
            child.write_to(&mut bytes, ns::CLIENT);
        }
        if restart && !bytes.is_empty() {
            self.end(Some("bad-request"));
            return terminate_body("bad-request");
        }
        // Backpressure: wait while too much is on its way into the c2s session.
        let permit = if bytes.is_empty() {
            None
        } else {
            let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            match tokio::time::timeout(self.wait, self.credit.clone().acquire_many_owned(n)).await {
                Ok(Ok(p)) => Some(p),
                _ => {
                    tracing::info!(sid = %self.sid, "BOSH session not reading its input");
                    self.end(Some("policy-violation"));
                    return terminate_body("policy-violation");
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        let token = {
            let mut st = self.lock();
            if let Some(condition) = st.ended {
                if st.terminate_sent {
                    return terminate_body("item-not-found");
                }
                st.terminate_sent = true;
                self.collected.notify_waiters();
                return self.response(&mut st, false, condition);
            }
            let next = st.next_rid;
            if rid < next || st.early.contains_key(&rid) {
                // A retransmission (XEP-0124 §14.3): the same answer again.
                if let Some((_, body)) = st.sent.iter().find(|(r, _)| *r == rid) {
                    return body.clone();
                }
                st.next_token += 1;
                let token = st.next_token;
                match st.held.iter_mut().find(|h| h.rid == rid) {
                    Some(h) => {
                        // The first copy's connection is probably gone: this one waits instead.
                        h.token = token;
                        h.tx = tx;
                        token
                    }
                    None => {
                        drop(st);
                        self.end(Some("item-not-found"));
                        return terminate_body("item-not-found");
                    }
                }
            } else if rid > next.saturating_add(REQUESTS - 1) || rid > MAX_RID {
                drop(st);
                tracing::info!(sid = %self.sid, rid, expected = next, "BOSH rid out of the window");
                self.end(Some("item-not-found"));
                return terminate_body("item-not-found");
            } else if restart && !st.restart_ok {
                // XEP-0206 §5: a restart only right after SASL success.
                drop(st);
                tracing::info!(sid = %self.sid, "BOSH restart without a SASL success");
                self.end(Some("bad-request"));
                return terminate_body("bad-request");
            } else {
                let payload = Payload { bytes, permit, restart, terminate };
                if rid == next {
                    self.apply(&mut st, payload);
                    st.next_rid += 1;
                    while let Some(p) = {
                        let n = st.next_rid;
                        st.early.remove(&n)
                    } {
                        self.apply(&mut st, p);
                        st.next_rid += 1;
                    }
                } else {
                    st.early.insert(rid, payload);
                }
                st.hold_request(rid, false, tx)
            }
        };
        {
            let mut st = self.lock();
            self.dispatch(&mut st);
        }
        self.await_response(rid, token, rx).await
    }

    /// Feed one payload to the c2s session (under the state lock: payloads go in `rid` order).
    fn apply(&self, st: &mut State, p: Payload) {
        if !p.bytes.is_empty() {
            let _ = self.feed.send(Feed::Bytes(p.bytes, p.permit));
        }
        if p.restart {
            st.restart_ok = false;
            let _ = self.feed.send(Feed::Header);
        }
        if p.terminate && st.ended.is_none() {
            tracing::debug!(sid = %self.sid, "BOSH session terminated by the client");
            let _ = self.feed.send(Feed::End);
            st.ended = Some(None);
        }
    }

    /// Answer waiting requests that are due: output is queued, the session ended, or more
    /// requests wait than `hold` allows (the oldest is answered).
    fn dispatch(&self, st: &mut State) {
        // Requests whose client went away wait for nothing.
        st.held.retain(|h| !h.tx.is_closed());
        while !st.held.is_empty() {
            let due = st.ended.is_some() || !st.out.is_empty() || st.held.len() > self.hold;
            if !due {
                break;
            }
            let h = st.held.remove(0);
            let ended = st.ended;
            let body = self.response(st, h.first, ended.flatten());
            st.remember(h.rid, &body);
            let _ = h.tx.send(body);
        }
        if st.held.is_empty() {
            st.idle_since.get_or_insert_with(Instant::now);
        }
        if st.terminate_sent {
            self.collected.notify_waiters();
        }
    }

    /// Wait for a held request's answer, up to `wait`; then an empty body.
    async fn await_response(&self, rid: u64, token: u64, mut rx: oneshot::Receiver<String>) -> String {
        match tokio::time::timeout(self.wait, &mut rx).await {
            Ok(Ok(body)) => body,
            // Taken over by a retransmission of the same rid.
            Ok(Err(_)) => empty_body(),
            Err(_) => {
                let mut st = self.lock();
                match st.held.iter().position(|h| h.token == token) {
                    Some(pos) => {
                        let h = st.held.remove(pos);
                        let ended = st.ended;
                        let body = self.response(&mut st, h.first, ended.flatten());
                        st.remember(rid, &body);
                        self.dispatch(&mut st);
                        body
                    }
                    None => {
                        drop(st);
                        rx.try_recv().unwrap_or_else(|_| empty_body())
                    }
                }
            }
        }
    }

    /// An answer with everything queued (and the session attributes for the creation
    /// request, and `type='terminate'` once the session ended).
    fn response(&self, st: &mut State, first: bool, condition: Option<&'static str>) -> String {
        let mut out = Vec::with_capacity(512 + st.out_bytes);
        out.extend_from_slice(b"<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams'");
        let mut attr = |k: &str, v: &str| {
            out.push(b' ');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"='");
            rampart_xml::escape_attr(v, &mut out);
            out.push(b'\'');
        };
        if first {
            attr("sid", &self.sid);
            attr("wait", &self.wait.as_secs().to_string());
            attr("requests", &REQUESTS.to_string());
            attr("hold", &self.hold.to_string());
            attr("inactivity", &self.inactivity.as_secs().to_string());
            attr("polling", &POLLING_SECS.to_string());
            attr("ver", "1.11");
            attr("from", &self.domain);
            attr("secure", "true");
            if let Some(id) = &st.authid {
                attr("authid", id);
            }
            attr("xmlns:xmpp", NS_XBOSH);
            attr("xmpp:version", "1.0");
            attr("xmpp:restartlogic", "true");
        }
        if st.ended.is_some() {
            attr("type", "terminate");
            if let Some(c) = condition {
                attr("condition", c);
            }
            st.terminate_sent = true;
        }
        if st.out.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            for el in st.out.drain(..) {
                out.extend_from_slice(el.as_bytes());
            }
            st.out_bytes = 0;
            self.drained.notify_waiters();
            out.extend_from_slice(b"</body>");
        }
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// End the session (if not over yet) with a terminal condition: waiting requests get
    /// the terminate answer, the c2s session sees its connection drop.
    fn end(&self, condition: Option<&'static str>) {
        let mut st = self.lock();
        if st.ended.is_none() {
            tracing::info!(sid = %self.sid, condition = condition.unwrap_or("none"), "BOSH session ended");
            st.ended = Some(condition);
            let _ = self.feed.send(Feed::Drop);
        }
        self.dispatch(&mut st);
        // The bridge may be waiting for room in the output queue.
        self.drained.notify_waiters();
    }

    /// Output from the c2s session, as one serialized top-level element. Kept after the
    /// session ended too: a request may still collect it with the terminate answer, and
    /// what nobody collects goes back to the router.
    fn push_output(&self, el: String, stream_error: bool) {
        let mut st = self.lock();
        st.out_bytes += el.len();
        st.out.push(el);
        if stream_error && st.ended.is_none() {
            // The stream ends after its error: the terminate answer carries it (XEP-0206 §4).
            tracing::info!(sid = %self.sid, "BOSH session ended by a stream error");
            st.ended = Some(Some("remote-stream-error"));
            let _ = self.feed.send(Feed::Drop);
        }
        self.dispatch(&mut st);
    }

    /// Wait until the output queue has room (or the session ended).
    async fn output_room(&self) {
        loop {
            let drained = self.drained.notified();
            {
                let st = self.lock();
                if st.out_bytes <= self.max_queued || st.ended.is_some() {
                    return;
                }
            }
            // The inactivity watcher ends a session nobody polls; that notifies too.
            drained.await;
        }
    }
}

/// A session's tasks: the c2s state machine, the bridge both ways, the inactivity watcher;
/// then the session leaves the table (after a request collected the terminate answer, or
/// `inactivity` later).
async fn run(
    shared: Arc<C2sShared>,
    session: Arc<Session>,
    feed: mpsc::UnboundedReceiver<Feed>,
    registry: Arc<Registry>,
    peer: SocketAddr,
    slot: ConnSlot,
) {
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let router = shared.router.clone();
    let c2s = Box::pin(super::websocket::session(shared, ours, peer, "bosh"));
    let bridge = bridge(theirs, feed, &session);
    tokio::pin!(bridge);
    // The watcher stops with the bridge (the session ended); the bridge outlives the
    // watcher (the c2s session's last output is read to its end).
    let pumps = async {
        tokio::select! {
            _ = &mut bridge => {}
            _ = watch_inactivity(&session) => bridge.await,
        }
    };
    tokio::join!(c2s, pumps);
    drop(slot);
    let collected = session.collected.notified();
    if !session.lock().terminate_sent {
        let _ = tokio::time::timeout(session.inactivity, collected).await;
    }
    registry.lock().remove(&session.sid);
    // Output no request collected: messages go back to the router (another resource or
    // offline storage), as for a TCP session's unwritten queue. With XEP-0198 the c2s
    // session already handed back (or keeps, hibernating) what was not acknowledged.
    let left = {
        let mut st = session.lock();
        if st.sm_enabled { Vec::new() } else { std::mem::take(&mut st.out) }
    };
    for xml in left {
        let Some(el) = super::parse_stored(&xml) else { continue };
        if el.name != "message" || matches!(el.attr("type"), Some("error" | "groupchat" | "headline")) {
            continue;
        }
        if let Some(to) = el.attr("to").and_then(|t| Jid::parse(t).ok()) {
            tracing::debug!(sid = %session.sid, "uncollected BOSH output goes back to the router");
            router.redeliver_message(&to.bare(), el).await;
        }
    }
}

/// End the session once no request has been waiting for `inactivity`.
async fn watch_inactivity(session: &Session) {
    loop {
        let deadline = {
            let mut st = session.lock();
            if st.ended.is_some() {
                return;
            }
            st.held.retain(|h| !h.tx.is_closed());
            match st.idle_since {
                Some(t) if st.held.is_empty() => {
                    if t.elapsed() >= session.inactivity {
                        drop(st);
                        tracing::info!(sid = %session.sid, "BOSH session inactive");
                        session.end(None);
                        return;
                    }
                    t + session.inactivity
                }
                _ => {
                    if st.held.is_empty() {
                        st.idle_since = Some(Instant::now());
                    }
                    Instant::now() + session.wait.max(Duration::from_secs(1))
                }
            }
        };
        tokio::time::sleep_until(deadline).await;
    }
}

/// Move bytes between the session and the c2s state machine until the stream ends.
async fn bridge(io: DuplexStream, mut feed: mpsc::UnboundedReceiver<Feed>, session: &Session) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let header = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
        String::from_utf8_lossy(&{
            let mut v = Vec::new();
            rampart_xml::escape_attr(&session.domain, &mut v);
            v
        })
    );
    let inbound = async {
        while let Some(f) = feed.recv().await {
            let ok = match f {
                Feed::Bytes(b, permit) => {
                    let r = wr.write_all(&b).await;
                    drop(permit);
                    r.is_ok()
                }
                Feed::Header => wr.write_all(header.as_bytes()).await.is_ok(),
                Feed::End => {
                    let _ = wr.write_all(b"</stream:stream>").await;
                    false
                }
                Feed::Drop => false,
            };
            if !ok {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let outbound = async {
        let mut framer = Framer::new(Limits { max_stanza_bytes: usize::MAX / 2, ..Limits::default() });
        let mut buf = vec![0u8; 16 * 1024];
        let mut stream_error = false;
        'read: loop {
            session.output_room().await;
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            framer.feed(&buf[..n]);
            loop {
                match framer.next_event() {
                    Ok(Some(Event::StreamStart(h))) => {
                        let mut st = session.lock();
                        if st.authid.is_none() {
                            st.authid = h.id;
                        }
                    }
                    Ok(Some(Event::Stanza(el))) => {
                        let is_error = el.is("error", ns::STREAM);
                        stream_error |= is_error;
                        if el.is("enabled", ns::SM) {
                            session.lock().sm_enabled = true;
                        }
                        let success = el.is("success", ns::SASL);
                        if success {
                            session.lock().restart_ok = true;
                        }
                        session.push_output(element_string(&el), is_error);
                        if success {
                            // The client restarts the stream (xmpp:restart); a new header follows.
                            framer.reset();
                            break;
                        }
                    }
                    Ok(Some(Event::StreamEnd)) => break 'read,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "BOSH bridge could not frame our own output");
                        break 'read;
                    }
                }
            }
        }
        session.end(stream_error.then_some("remote-stream-error"));
        // Stop the inbound half too (it may be waiting for a request).
        let _ = session.feed.send(Feed::Drop);
    };
    tokio::join!(inbound, outbound);
}

/// One of our top-level elements inside a `<body/>`: with its namespace; `stream:`
/// elements use the prefix the body declares.
fn element_string(el: &Element) -> String {
    let bytes = if el.ns == ns::STREAM { el.to_bytes(ns::CLIENT) } else { el.to_bytes("") };
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A `type='terminate'` body with a terminal condition (XEP-0124 §17).
fn terminate_body(condition: &str) -> String {
    format!("<body xmlns='{NS_HTTPBIND}' type='terminate' condition='{condition}'/>")
}

fn empty_body() -> String {
    format!("<body xmlns='{NS_HTTPBIND}'/>")
}

fn parse_rid(v: Option<&str>) -> Option<u64> {
    let v = v?;
    if v.is_empty() || v.len() > 16 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|r| *r <= MAX_RID)
}

/// An XEP-0206 attribute (`xmpp:restart`, `xmpp:version`) whatever the prefix: the tree
/// keeps qualified attribute names, and only `urn:xmpp:xbosh` defines these on `<body/>`.
fn xbosh_attr<'a>(el: &'a Element, local: &str) -> Option<&'a str> {
    el.attrs.iter().find_map(|(k, v)| {
        let (prefix, name) = k.split_once(':')?;
        (prefix != "xml" && prefix != "xmlns" && name == local).then_some(v.as_str())
    })
}

/// Parse a request body: exactly one `<body/>` in XEP-0124's namespace, nothing after it.
/// Children in the BOSH namespace (no `xmlns` of their own) are `jabber:client` stanzas.
fn parse_body(bytes: &[u8], max: usize) -> Result<Element, &'static str> {
    let mut text = bytes.trim_ascii();
    if text.starts_with(b"<?xml") {
        let end = text.windows(2).position(|w| w == b"?>").ok_or("broken XML declaration")?;
        text = text[end + 2..].trim_ascii_start();
    }
    if text.is_empty() {
        return Err("empty body");
    }
    let limits = Limits { max_stanza_bytes: max.max(1024), max_depth: Limits::default().max_depth + 1, ..Limits::default() };
    let mut f = Framer::new(limits);
    f.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    f.feed(text);
    f.feed(b"</stream:stream>");
    let mut el = match (f.next_event(), f.next_event()) {
        (Ok(Some(Event::StreamStart(_))), Ok(Some(Event::Stanza(el)))) => el,
        _ => return Err("not a well-formed XML element"),
    };
    if !matches!(f.next_event(), Ok(Some(Event::StreamEnd))) {
        return Err("more than one element");
    }
    if !el.is("body", NS_HTTPBIND) {
        return Err("not a <body/> in the httpbind namespace");
    }
    for child in el.elements_mut() {
        to_client(child);
    }
    Ok(el)
}

/// Elements that inherited the BOSH namespace are in `jabber:client` (XEP-0206 §3).
fn to_client(el: &mut Element) {
    if el.ns == NS_HTTPBIND {
        el.ns = ns::CLIENT.to_owned();
    }
    for c in el.elements_mut() {
        to_client(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_parsed_strictly() {
        let b = parse_body(b"<body xmlns='http://jabber.org/protocol/httpbind' rid='7' sid='s'><message to='a@b'><body>hi</body></message></body>", 4096).unwrap();
        assert_eq!(b.attr("rid"), Some("7"));
        let msg = b.elements().next().unwrap();
        assert!(msg.is("message", ns::CLIENT), "{msg}");
        assert!(msg.child("body", ns::CLIENT).is_some(), "descendants too");
        let mut out = Vec::new();
        msg.write_to(&mut out, ns::CLIENT);
        assert_eq!(String::from_utf8(out).unwrap(), "<message to=\"a@b\"><body>hi</body></message>");
        // A declaration is allowed; XEP-0206 prefixes are found.
        let b = parse_body(b"<?xml version='1.0'?>\n<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true' rid='8'/>", 4096).unwrap();
        assert_eq!(xbosh_attr(&b, "restart"), Some("true"));
        assert_eq!(xbosh_attr(&b, "version"), None);
        // Refused: not XML, wrong element, trailing data, too large, too deep.
        assert!(parse_body(b"hello", 4096).is_err());
        assert!(parse_body(b"", 4096).is_err());
        assert!(parse_body(b"<body xmlns='jabber:client' rid='1'/>", 4096).is_err());
        assert!(parse_body(b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'/><x/>", 4096).is_err());
        assert!(parse_body(b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'>", 4096).is_err());
        let big = format!("<body xmlns='http://jabber.org/protocol/httpbind'>{}</body>", "x".repeat(5000));
        assert!(parse_body(big.as_bytes(), 4096).is_err());
        let deep = format!("<body xmlns='http://jabber.org/protocol/httpbind'>{}{}</body>", "<a>".repeat(40), "</a>".repeat(40));
        assert!(parse_body(deep.as_bytes(), 1 << 20).is_err());
        assert!(parse_body(b"<!DOCTYPE x [<!ENTITY a 'b'>]><body xmlns='http://jabber.org/protocol/httpbind'/>", 4096).is_err());
    }

    #[test]
    fn rids_are_bounded() {
        assert_eq!(parse_rid(Some("12345")), Some(12345));
        assert_eq!(parse_rid(Some("9007199254740991")), Some(MAX_RID));
        assert_eq!(parse_rid(Some("9007199254740992")), None);
        assert_eq!(parse_rid(Some("-1")), None);
        assert_eq!(parse_rid(Some("")), None);
        assert_eq!(parse_rid(Some("1e5")), None);
        assert_eq!(parse_rid(None), None);
    }

    #[test]
    fn output_elements_carry_their_namespace() {
        let msg = Element::new("message", ns::CLIENT).with_attr("to", "a@b");
        assert_eq!(element_string(&msg), "<message xmlns=\"jabber:client\" to=\"a@b\"/>");
        let feats = Element::new("features", ns::STREAM).with_child(Element::new("bind", ns::BIND));
        let s = element_string(&feats);
        assert!(s.starts_with("<stream:features><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/>"), "{s}");
        assert_eq!(terminate_body("item-not-found"), "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>");
    }

    fn session(wait: Duration) -> (Arc<Session>, mpsc::UnboundedReceiver<Feed>) {
        let (feed, rx) = mpsc::unbounded_channel();
        let s = Arc::new(Session {
            sid: "abc".into(),
            domain: "corp.example".into(),
            wait,
            hold: HOLD,
            inactivity: Duration::from_secs(30),
            max_queued: 1 << 20,
            state: Mutex::new(State::new(100)),
            feed,
            credit: Arc::new(Semaphore::new(1 << 20)),
            drained: Notify::new(),
            collected: Notify::new(),
        });
        (s, rx)
    }

    fn body(rid: u64, inner: &str) -> Element {
        let xml = format!("<body xmlns='http://jabber.org/protocol/httpbind' sid='abc' rid='{rid}'>{inner}</body>");
        parse_body(xml.as_bytes(), 1 << 16).unwrap()
    }

    /// The rid rules of XEP-0124 §14: in order, one ahead waits for the gap, a repeat gets
    /// the same answer, out of the window ends the session with item-not-found.
    #[tokio::test]
    async fn rid_sequence_and_retransmission() {
        let (s, mut feed) = session(Duration::from_millis(200));
        // rid 102 arrives before 101: held, its payload waits.
        let s2 = s.clone();
        let early = tokio::spawn(async move { s2.request(body(102, "<presence/>")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(feed.try_recv().is_err(), "nothing applied before the gap is filled");
        let s1 = s.clone();
        let first = tokio::spawn(async move { s1.request(body(101, "<message to='a@corp.example'/>")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Ok(Feed::Bytes(b, _)) = feed.try_recv() else { panic!("101 applied") };
        assert!(String::from_utf8(b).unwrap().starts_with("<message"));
        let Ok(Feed::Bytes(b, _)) = feed.try_recv() else { panic!("102 applied after it") };
        assert_eq!(b, b"<presence/>");
        // Two requests wait but hold is 1: the older is answered at once (empty); output
        // goes to the one still waiting.
        let a101 = first.await.unwrap();
        assert_eq!(a101, "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams'/>");
        s.push_output("<message xmlns=\"jabber:client\"/>".into(), false);
        let a102 = early.await.unwrap();
        assert!(a102.contains("<message xmlns=\"jabber:client\"/></body>"), "{a102}");
        // A repeated rid gets the same answer, without applying anything again.
        assert_eq!(s.request(body(101, "<message/>")).await, a101);
        assert!(feed.try_recv().is_err());
        // Out of the window: the session ends.
        assert!(s.request(body(105, "")).await.contains("condition='item-not-found'"));
        assert!(matches!(feed.try_recv(), Ok(Feed::Drop)));
        assert!(s.lock().ended.is_some());
    }

    /// With hold=1 a newer request releases the one waiting; a terminate is answered with
    /// type='terminate' and ends the stream cleanly.
    #[tokio::test]
    async fn hold_and_terminate() {
        let (s, mut feed) = session(Duration::from_secs(30));
        let s1 = s.clone();
        let waiting = tokio::spawn(async move { s1.request(body(101, "")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "held while nothing is queued");
        let s2 = s.clone();
        let term = tokio::spawn(async move {
            let xml = "<body xmlns='http://jabber.org/protocol/httpbind' sid='abc' rid='102' type='terminate'><presence type='unavailable'/></body>";
            s2.request(parse_body(xml.as_bytes(), 4096).unwrap()).await
        });
        let first = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(first.starts_with("<body"), "the held request is released: {first}");
        let last = tokio::time::timeout(Duration::from_secs(5), term).await.unwrap().unwrap();
        assert!(last.contains("type='terminate'") && !last.contains("condition"), "{last}");
        assert!(matches!(feed.try_recv(), Ok(Feed::Bytes(..))));
        assert!(matches!(feed.try_recv(), Ok(Feed::End)));
        // Later requests: the session is gone.
        assert!(s.request(body(103, "")).await.contains("item-not-found"));
    }
}
