//! XEP-0198 Stream Management: stanza acknowledgements and session resumption.
//!
//! With SM enabled, every stanza written to the client is kept until the client
//! acknowledges it (`<a h='N'/>`). If the connection breaks, a resumable session hibernates
//! (still bound and available, its queue filling) for `resume_timeout`; a new connection
//! that authenticates as the same account and sends `<resume previd h/>` takes it over and
//! gets every unacknowledged stanza again. A session that is not resumed in time, or that
//! ends without acknowledging, hands its unacknowledged messages back to the router (another
//! resource or offline storage): an accepted message is never lost, though it may arrive
//! twice if the client had received it without acknowledging.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use rampart_proto::{Element, ns};

use crate::router::SessionCtx;
use crate::sessions::{OutboundRx, SessionId};

/// Counters and the unacknowledged queue of one SM-enabled session.
#[derive(Debug)]
pub struct SmState {
    /// Stream id for resumption (`None` if the client did not ask for resumption).
    pub resume_id: Option<String>,
    /// Stanzas received from the client and handled (the `h` we report).
    pub inbound: u32,
    /// Stanzas sent to the client (the sequence number of the last one).
    pub outbound: u32,
    /// Sent but not yet acknowledged, with their sequence numbers.
    pub unacked: VecDeque<(u32, Element)>,
}

/// Most unacknowledged stanzas kept per session; beyond it the session is closed (and the
/// queue handed back to the router), so a client that never acks cannot grow memory.
pub const MAX_UNACKED: usize = 10_000;

impl SmState {
    pub fn new(resume_id: Option<String>) -> Self {
        SmState { resume_id, inbound: 0, outbound: 0, unacked: VecDeque::new() }
    }

    /// Record a stanza written to the client.
    pub fn sent(&mut self, el: &Element) {
        self.outbound = self.outbound.wrapping_add(1);
        self.unacked.push_back((self.outbound, el.clone()));
    }

    /// Apply the client's `h`. Errors if it acknowledges more than was sent.
    pub fn ack(&mut self, h: u32) -> Result<(), String> {
        let acked_from_start = h.wrapping_sub(self.outbound.wrapping_sub(self.unacked.len() as u32));
        if acked_from_start as usize > self.unacked.len() {
            return Err(format!("h={h} acknowledges more than the {} stanzas sent", self.outbound));
        }
        for _ in 0..acked_from_start {
            self.unacked.pop_front();
        }
        Ok(())
    }

    /// `<a h='N'/>` for the client.
    pub fn answer(&self) -> Element {
        Element::new("a", ns::SM).with_attr("h", self.inbound.to_string())
    }
}

/// Whether an element counts as a stanza for `h` (XEP-0198 §4).
pub fn is_stanza(el: &Element) -> bool {
    el.ns == ns::CLIENT && matches!(el.name.as_str(), "message" | "presence" | "iq")
}

/// A session waiting to be resumed.
pub struct Hibernated {
    pub ctx: SessionCtx,
    pub rx: OutboundRx,
    pub sm: SmState,
}

/// Hibernating sessions by resumption id.
#[derive(Default)]
pub struct Hibernation {
    slots: Mutex<HashMap<String, Hibernated>>,
}

impl Hibernation {
    pub fn put(&self, id: String, h: Hibernated) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).insert(id, h);
    }

    /// Take a hibernating session, if `account` owns it.
    pub fn take(&self, id: &str, account: &str) -> Option<Hibernated> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.get(id)?.ctx.jid.bare_str() != account {
            return None;
        }
        slots.remove(id)
    }

    /// Take whatever hibernates under `id` (expiry).
    pub fn expire(&self, id: &str) -> Option<Hibernated> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).remove(id)
    }

    /// Take the hibernating session with this session id (its resource was taken over).
    pub fn expire_session(&self, session: SessionId) -> Option<Hibernated> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let id = slots.iter().find(|(_, h)| h.ctx.id == session).map(|(k, _)| k.clone())?;
        slots.remove(&id)
    }

    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> Element {
        Element::new("message", ns::CLIENT).with_attr("id", n.to_string())
    }

    #[test]
    fn ack_drops_acknowledged_prefix() {
        let mut s = SmState::new(None);
        for i in 1..=5 {
            s.sent(&msg(i));
        }
        s.ack(2).unwrap();
        assert_eq!(s.unacked.front().map(|(n, _)| *n), Some(3));
        s.ack(2).unwrap(); // repeated ack: nothing changes
        assert_eq!(s.unacked.len(), 3);
        s.ack(5).unwrap();
        assert!(s.unacked.is_empty());
        assert!(s.ack(6).is_err());
    }

    #[test]
    fn counters_wrap() {
        let mut s = SmState::new(None);
        s.outbound = u32::MAX - 1;
        s.sent(&msg(1));
        s.sent(&msg(2));
        s.sent(&msg(3));
        assert_eq!(s.outbound, 1);
        s.ack(u32::MAX).unwrap();
        assert_eq!(s.unacked.len(), 2);
        s.ack(1).unwrap();
        assert!(s.unacked.is_empty());
    }

    #[test]
    fn ack_below_window_is_error() {
        let mut s = SmState::new(None);
        for i in 1..=3 {
            s.sent(&msg(i));
        }
        s.ack(3).unwrap();
        // h going backwards looks like a huge acknowledgement after wrapping: refused.
        assert!(s.ack(1).is_err());
    }
}
