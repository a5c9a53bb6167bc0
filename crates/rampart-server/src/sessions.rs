//! The registry of bound client sessions: who is connected with which resource, their
//! availability and priority, and the channel that reaches each session's writer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll, Waker};

use rampart_proto::{Element, Jid, StreamError, StreamErrorCondition};

/// Identifies one session for its whole life (resources can be reused, ids are not).
pub type SessionId = u64;

/// What the router asks a session's writer to do.
#[derive(Debug)]
///
/// Boxed payloads keep the item small (16 bytes) in the session's queue.
pub enum Outbound {
    /// Write this stanza to the client.
    Stanza(Box<Element>),
    /// Close the stream with this error (e.g. `conflict` when the resource is taken over).
    Close(Box<StreamError>),
}

/// Create a session's outbound queue: the sender goes into the registry, the receiver to the
/// session's writer.
///
/// Not a tokio mpsc channel: that allocates its 512-byte channel state and a first block of
/// 32 slots (416 bytes) at creation, for every session, idle or not. This queue is one small
/// allocation; its buffer grows with a burst and is given back when the writer waits again.
///
/// Every session's queue is bounded. A hibernating one's by `limits.resume_queue_limit`
/// ([`OutboundRx::set_limit`]; XEP-0198: no writer drains it until the client resumes). A
/// live one's by `limits.session_queue_limit` ([`OutboundRx::set_live_limit`]), counted only
/// while its writer is blocked writing to a client that does not read
/// ([`OutboundRx::writing`]): a burst into a session that reads (another resource's
/// stanzas handed back to this one, say) is not a reason to end it. When the queue is full
/// the session ends with `resource-constraint` (queued behind what it already holds; a live
/// session's writer also learns of it at once through [`OutboundRx::overflowed`]), and this
/// and later stanzas are refused, so the router delivers messages to another resource or
/// offline storage.
pub fn outbound_queue() -> (OutboundTx, OutboundRx) {
    let queue = Arc::new(Queue { state: Mutex::new(QueueState { senders: 1, ..QueueState::default() }) });
    (OutboundTx(queue.clone()), OutboundRx(queue))
}

/// The sending half of a session's queue (cloned by whoever looks the session up).
#[derive(Debug)]
pub struct OutboundTx(Arc<Queue>);

/// The receiving half of a session's queue, owned by the session's writer.
#[derive(Debug)]
pub struct OutboundRx(Arc<Queue>);

#[derive(Debug)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Outbound>,
    /// The writer waiting for an item.
    waker: Option<Waker>,
    /// Live senders: with none left and nothing queued, `recv` gives `None`.
    senders: usize,
    /// The receiver was closed or dropped, or the queue overflowed its limit: sends fail.
    closed: bool,
    /// Most items queued at once, while set (see [`OutboundRx::set_limit`]).
    limit: Option<usize>,
    /// The limit counts only while `writing` (see [`OutboundRx::set_live_limit`]).
    live: bool,
    /// The writer is blocked writing to its client (see [`OutboundRx::writing`]).
    writing: bool,
    /// A send found the queue full (see [`OutboundRx::overflowed`]).
    overflowed: bool,
}

impl QueueState {
    /// Remember the writer's waker (one slot, shared by `recv` and `overflowed`).
    fn park(&mut self, cx: &Context<'_>) {
        match &mut self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
    }
}

/// Slots the queue keeps while its writer waits; a longer buffer (after a burst) is freed.
const QUEUE_IDLE_SLOTS: usize = 8;

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OutboundTx {
    /// Queue an item for the session's writer; gives it back if the session is gone.
    pub fn send(&self, item: Outbound) -> Result<(), Outbound> {
        self.push(item, |o| o)
    }

    /// Queue a stanza; gives it back, as it was, if the session is gone or full (so that
    /// the caller can send it elsewhere without having kept a copy).
    pub fn send_stanza(&self, stanza: Element) -> Result<(), Element> {
        self.push(stanza, |s| Outbound::Stanza(Box::new(s)))
    }

    /// Queue `item`, made an [`Outbound`] by `wrap` only once it is accepted.
    fn push<T>(&self, item: T, wrap: impl FnOnce(T) -> Outbound) -> Result<(), T> {
        let (waker, result, overflowed) = {
            let mut st = self.0.lock();
            if st.closed {
                return Err(item);
            }
            let (result, overflowed) = match st.limit {
                Some(limit) if st.items.len() >= limit && (!st.live || st.writing) => {
                    // Full: the session ends after what it holds, and refuses the rest.
                    st.closed = true;
                    st.overflowed = true;
                    st.items.push_back(Outbound::Close(Box::new(StreamError {
                        condition: StreamErrorCondition::ResourceConstraint,
                        text: Some(format!("more than {limit} stanzas waiting for this session")),
                    })));
                    (Err(item), Some(limit))
                }
                _ => {
                    st.items.push_back(wrap(item));
                    (Ok(()), None)
                }
            };
            (st.waker.take(), result, overflowed)
        };
        if let Some(limit) = overflowed {
            // Logged outside the lock: the writer and other senders need not wait on it.
            tracing::warn!(queued = limit, "a session's outbound queue is full: the session ends");
        }
        if let Some(w) = waker {
            w.wake();
        }
        result
    }

    /// True once the receiving session closed its queue or ended.
    pub fn is_closed(&self) -> bool {
        self.0.lock().closed
    }
}

impl Clone for OutboundTx {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        OutboundTx(self.0.clone())
    }
}

impl Drop for OutboundTx {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.0.lock();
            st.senders -= 1;
            if st.senders == 0 { st.waker.take() } else { None }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl OutboundRx {
    /// The next item; `None` once the queue is empty and closed or has no sender left.
    /// Cancel-safe (keeps no state between polls).
    pub async fn recv(&mut self) -> Option<Outbound> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outbound>> {
        let mut st = self.0.lock();
        if let Some(item) = st.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if st.closed || st.senders == 0 {
            return Poll::Ready(None);
        }
        if st.items.capacity() > QUEUE_IDLE_SLOTS {
            st.items = VecDeque::new();
        }
        st.park(cx);
        Poll::Pending
    }

    /// Resolves once a send has found the queue full: the writer is stuck (its client does
    /// not read) and should give up instead of waiting on the socket. Uses the same waker
    /// slot as [`OutboundRx::recv`], so poll it from the task that receives.
    pub async fn overflowed(&self) {
        std::future::poll_fn(|cx| {
            let mut st = self.0.lock();
            if st.overflowed {
                return Poll::Ready(());
            }
            st.park(cx);
            Poll::Pending
        })
        .await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        self.0.lock().items.pop_front()
    }

    /// Bound the queue (`Some`, at least one item) at all times, as for a session with no
    /// writer, or lift the bound (`None`). A queue that already overflowed stays closed.
    pub fn set_limit(&mut self, limit: Option<usize>) {
        let mut st = self.0.lock();
        st.limit = limit.map(|n| n.max(1));
        st.live = false;
    }

    /// Bound the queue (at least one item) while its writer is blocked writing to the client
    /// (between `writing(true)` and `writing(false)`); other times it takes what comes, since
    /// its writer is about to drain it. A queue that already overflowed stays closed.
    pub fn set_live_limit(&mut self, limit: usize) {
        let mut st = self.0.lock();
        st.limit = Some(limit.max(1));
        st.live = true;
        st.writing = false;
    }

    /// The writer starts (`true`) or ends (`false`) a write to its client that may block.
    pub fn writing(&self, on: bool) {
        self.0.lock().writing = on;
    }

    /// Refuse further sends; what is queued can still be received.
    pub fn close(&mut self) {
        self.0.lock().closed = true;
    }
}

impl Drop for OutboundRx {
    fn drop(&mut self) {
        let items = {
            let mut st = self.0.lock();
            st.closed = true;
            st.waker = None;
            std::mem::take(&mut st.items)
        };
        // Dropped outside the lock: what the session never wrote goes with it.
        drop(items);
    }
}

/// A bound resource as the router sees it.
#[derive(Clone, Debug)]
pub struct Resource {
    pub id: SessionId,
    pub jid: Jid,
    pub tx: OutboundTx,
    /// `Some(priority)` once the resource sent available presence.
    pub priority: Option<i8>,
    /// Last broadcast available presence (for probes).
    pub presence: Option<Element>,
    /// Requested the roster (RFC 6121 §2.1.6 "interested resource").
    pub interested: bool,
    /// Enabled XEP-0280 message carbons.
    pub carbons: bool,
    /// The connection broke and the XEP-0198 session waits to be resumed (its queue fills).
    pub hibernating: bool,
}

impl Resource {
    pub fn send(&self, stanza: Element) -> bool {
        self.tx.send_stanza(stanza).is_ok()
    }

    /// Like [`Resource::send`], but a refused stanza comes back instead of being dropped.
    pub fn try_send(&self, stanza: Element) -> Result<(), Element> {
        self.tx.send_stanza(stanza)
    }
}

/// All bound sessions, by bare JID.
#[derive(Default)]
pub struct Sessions {
    by_bare: RwLock<HashMap<String, Vec<Resource>>>,
    next_id: AtomicU64,
}

impl Sessions {
    /// A fresh session id.
    pub fn new_id(&self) -> SessionId {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Register a bound resource. If the full JID was taken, the old session is removed and
    /// returned so the caller can close it with `conflict`.
    pub fn bind(&self, id: SessionId, jid: Jid, tx: OutboundTx) -> Option<Resource> {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(jid.bare_str().to_owned()).or_default();
        let old = list.iter().position(|r| r.jid == jid).map(|i| list.remove(i));
        list.push(Resource { id, jid, tx, priority: None, presence: None, interested: false, carbons: false, hibernating: false });
        old
    }

    /// Remove a session (if it is still registered under this id); returns its last state.
    pub fn unbind(&self, id: SessionId, jid: &Jid) -> Option<Resource> {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        let list = map.get_mut(jid.bare_str())?;
        let pos = list.iter().position(|r| r.id == id)?;
        let r = list.remove(pos);
        if list.is_empty() {
            map.remove(jid.bare_str());
        }
        Some(r)
    }

    /// The session bound to exactly this full JID.
    pub fn get(&self, full: &Jid) -> Option<Resource> {
        let map = self.by_bare.read().unwrap_or_else(|e| e.into_inner());
        map.get(full.bare_str())?.iter().find(|r| r.jid == *full).cloned()
    }

    /// Every bound resource of an account.
    pub fn resources(&self, bare: &str) -> Vec<Resource> {
        let map = self.by_bare.read().unwrap_or_else(|e| e.into_inner());
        map.get(bare).cloned().unwrap_or_default()
    }

    /// True if the account has at least one bound session.
    pub fn is_bound(&self, bare: &str) -> bool {
        self.by_bare.read().unwrap_or_else(|e| e.into_inner()).contains_key(bare)
    }

    /// Resources that sent available presence.
    pub fn available(&self, bare: &str) -> Vec<Resource> {
        let map = self.by_bare.read().unwrap_or_else(|e| e.into_inner());
        map.get(bare)
            .map(|l| l.iter().filter(|r| r.priority.is_some() && !r.tx.is_closed()).cloned().collect())
            .unwrap_or_default()
    }

    /// Where a message to the bare JID goes (RFC 6121 §8.5.2.1.1): the available resources
    /// with the highest non-negative priority (all of them on a tie).
    pub fn message_targets(&self, bare: &str) -> Vec<Resource> {
        let map = self.by_bare.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get(bare) else { return Vec::new() };
        // A session whose queue refuses stanzas (ending, or full) is no target: a message it
        // refused is routed again to the account, and must not come back to it.
        let open = || list.iter().filter(|r| !r.tx.is_closed());
        let best = open().filter_map(|r| r.priority).filter(|p| *p >= 0).max();
        match best {
            Some(best) => open().filter(|r| r.priority == Some(best)).cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Record a session's presence. `priority == None` means unavailable. Returns the
    /// previous priority.
    pub fn set_presence(&self, id: SessionId, jid: &Jid, priority: Option<i8>, presence: Option<Element>) -> Option<i8> {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        let Some(r) = map.get_mut(jid.bare_str()).and_then(|l| l.iter_mut().find(|r| r.id == id)) else {
            return None;
        };
        let prev = r.priority;
        r.priority = priority;
        r.presence = presence;
        prev
    }

    /// Mark a session as having requested the roster.
    pub fn set_interested(&self, id: SessionId, jid: &Jid) {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get_mut(jid.bare_str()).and_then(|l| l.iter_mut().find(|r| r.id == id)) {
            r.interested = true;
        }
    }

    /// Switch XEP-0280 carbons on or off for a session.
    pub fn set_carbons(&self, id: SessionId, jid: &Jid, on: bool) {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get_mut(jid.bare_str()).and_then(|l| l.iter_mut().find(|r| r.id == id)) {
            r.carbons = on;
        }
    }

    /// Mark a session as hibernating (XEP-0198, connection lost) or connected again.
    pub fn set_hibernating(&self, id: SessionId, jid: &Jid, on: bool) {
        let mut map = self.by_bare.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get_mut(jid.bare_str()).and_then(|l| l.iter_mut().find(|r| r.id == id)) {
            r.hibernating = on;
        }
    }

    /// Number of bound sessions (for metrics and tests).
    pub fn len(&self) -> usize {
        self.by_bare.read().unwrap_or_else(|e| e.into_inner()).values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMIT: usize = 10_000;

    fn stanza(n: usize) -> Outbound {
        Outbound::Stanza(Box::new(Element::new("message", "jabber:client").with_attr("id", n.to_string())))
    }

    fn id(item: Outbound) -> String {
        match item {
            Outbound::Stanza(el) => el.attr("id").unwrap_or_default().to_owned(),
            Outbound::Close(_) => "close".to_owned(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_keeps_order_and_wakes_its_writer() {
        let (tx, mut rx) = outbound_queue();
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = rx.recv().await {
                got.push(id(item));
            }
            got
        });
        for i in 0..200 {
            assert!(tx.clone().send(stanza(i)).is_ok());
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(10), writer).await.expect("writer ends").expect("no panic");
        assert_eq!(got, (0..200).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn closed_queue_refuses_sends_but_keeps_what_was_queued() {
        let (tx, mut rx) = outbound_queue();
        assert!(tx.send(stanza(1)).is_ok());
        rx.close();
        assert!(tx.is_closed());
        assert!(tx.send(stanza(2)).is_err());
        assert_eq!(rx.try_recv().map(id).as_deref(), Some("1"));
        assert!(rx.try_recv().is_none());
    }

    /// A refused stanza comes back whole (the router sends it elsewhere without a copy).
    #[test]
    fn refused_stanza_comes_back_unchanged() {
        let (tx, mut rx) = outbound_queue();
        let el = Element::new("message", "jabber:client").with_attr("id", "a");
        assert!(tx.send_stanza(el.clone()).is_ok());
        rx.set_limit(Some(1));
        assert_eq!(tx.send_stanza(el.clone().with_attr("id", "b")).map_err(|e| e.attr("id").map(str::to_owned)), Err(Some("b".into())));
        assert_eq!(tx.send_stanza(el.clone()), Err(el));
        assert_eq!(rx.try_recv().map(id).as_deref(), Some("a"));
    }

    #[test]
    fn full_queue_ends_the_session_and_refuses_more() {
        let (tx, mut rx) = outbound_queue();
        for i in 0..2 * LIMIT {
            assert!(tx.send(stanza(i)).is_ok(), "no limit while none is set");
        }
        for i in 0..2 * LIMIT {
            assert_eq!(rx.try_recv().map(id), Some(i.to_string()));
        }
        rx.set_limit(Some(LIMIT));
        for i in 0..LIMIT {
            assert!(tx.send(stanza(i)).is_ok());
        }
        assert!(!tx.is_closed());
        assert!(matches!(tx.send(stanza(LIMIT)), Err(Outbound::Stanza(_))));
        assert!(tx.is_closed(), "senders see the session as gone");
        assert!(tx.send(stanza(LIMIT + 1)).is_err());
        // The writer gets everything queued, then the stream error, then the end.
        for i in 0..LIMIT {
            assert_eq!(rx.try_recv().map(id), Some(i.to_string()));
        }
        match rx.try_recv() {
            Some(Outbound::Close(e)) => assert_eq!(e.condition, StreamErrorCondition::ResourceConstraint),
            other => panic!("expected the close, got {:?}", other.map(id)),
        }
        assert!(rx.try_recv().is_none());
    }

    /// A live limit counts only while the writer is blocked writing: a burst while it is free
    /// is taken whole.
    #[test]
    fn live_limit_counts_only_while_the_writer_is_writing() {
        let (tx, mut rx) = outbound_queue();
        rx.set_live_limit(LIMIT);
        for i in 0..2 * LIMIT {
            assert!(tx.send(stanza(i)).is_ok(), "the writer is not stuck");
        }
        rx.writing(true);
        assert!(tx.send(stanza(2 * LIMIT)).is_err(), "stuck with a full queue");
        assert!(tx.is_closed());
        for i in 0..2 * LIMIT {
            assert_eq!(rx.try_recv().map(id), Some(i.to_string()));
        }
        assert!(matches!(rx.try_recv(), Some(Outbound::Close(_))));
    }

    /// A writer stuck elsewhere (a client that does not read) hears of the overflow at once.
    #[tokio::test]
    async fn overflow_wakes_a_writer_waiting_on_it() {
        let (tx, mut rx) = outbound_queue();
        rx.set_live_limit(LIMIT);
        rx.writing(true);
        let writer = tokio::spawn(async move {
            rx.overflowed().await;
            rx
        });
        tokio::task::yield_now().await;
        for i in 0..LIMIT {
            assert!(tx.send(stanza(i)).is_ok());
        }
        assert!(!writer.is_finished(), "no overflow yet");
        assert!(tx.send(stanza(LIMIT)).is_err());
        let mut rx = tokio::time::timeout(Duration::from_secs(10), writer).await.expect("woken").expect("no panic");
        assert_eq!(rx.try_recv().map(id).as_deref(), Some("0"), "what was queued stays");
    }

    #[test]
    fn sessions_with_a_refusing_queue_are_no_message_targets() {
        let sessions = Sessions::default();
        let jid = |r: &str| Jid::parse(&format!("a@x/{r}")).expect("jid");
        let (tx1, mut rx1) = outbound_queue();
        let (tx2, _rx2) = outbound_queue();
        sessions.bind(1, jid("one"), tx1);
        sessions.bind(2, jid("two"), tx2);
        sessions.set_presence(1, &jid("one"), Some(5), None);
        sessions.set_presence(2, &jid("two"), Some(0), None);
        assert_eq!(sessions.message_targets("a@x").iter().map(|r| r.id).collect::<Vec<_>>(), vec![1]);
        rx1.close();
        assert_eq!(sessions.message_targets("a@x").iter().map(|r| r.id).collect::<Vec<_>>(), vec![2]);
        assert_eq!(sessions.available("a@x").iter().map(|r| r.id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn dropped_receiver_refuses_sends() {
        let (tx, rx) = outbound_queue();
        drop(rx);
        assert!(matches!(tx.send(stanza(1)), Err(Outbound::Stanza(_))));
    }

    #[tokio::test]
    async fn waiting_writer_gives_back_a_burst_buffer_and_ends_without_senders() {
        let (tx, mut rx) = outbound_queue();
        for i in 0..100 {
            assert!(tx.send(stanza(i)).is_ok());
        }
        for i in 0..100 {
            assert_eq!(rx.recv().await.map(id), Some(i.to_string()));
        }
        assert!(tokio::time::timeout(Duration::from_millis(20), rx.recv()).await.is_err(), "nothing queued");
        assert!(rx.0.lock().items.capacity() <= QUEUE_IDLE_SLOTS);
        drop(tx);
        assert!(rx.recv().await.is_none());
    }
}
