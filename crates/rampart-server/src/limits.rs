//! Per-address bookkeeping: concurrent connections per IP and SASL failure throttling.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts open connections per IP address; a [`ConnSlot`] releases its count on drop.
#[derive(Default)]
pub struct ConnCounter {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place in the [`ConnCounter`].
pub struct ConnSlot {
    counter: Arc<ConnCounter>,
    ip: IpAddr,
}

impl ConnCounter {
    /// Take a slot for `ip`, or `None` if it already has `max` connections.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ConnSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnSlot { counter: self.clone(), ip })
    }

    /// Open connections from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut counts = self.counter.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct FailState {
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
}

/// Tracks failed logins per IP: failures slow down the answer, and past a threshold within a
/// window the address is refused for a while.
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    block: Duration,
    state: Mutex<HashMap<IpAddr, FailState>>,
}

/// What to do with an authentication attempt from an address.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthGate {
    Allow,
    /// Refuse until the block expires.
    Blocked,
}

impl AuthThrottle {
    pub fn new(max_failures: u32, window: Duration, block: Duration) -> Self {
        AuthThrottle { max_failures, window, block, state: Mutex::new(HashMap::new()) }
    }

    /// May `ip` try to authenticate now?
    pub fn check(&self, ip: IpAddr) -> AuthGate {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.get(&ip) {
            Some(FailState { blocked_until: Some(until), .. }) if *until > now => AuthGate::Blocked,
            Some(FailState { blocked_until: Some(_), .. }) => {
                state.remove(&ip);
                AuthGate::Allow
            }
            _ => AuthGate::Allow,
        }
    }

    /// Record a failure; returns how long to delay the failure answer.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Bound the table: forget stale entries when it grows large.
        if state.len() > 100_000 {
            let window = self.window;
            state.retain(|_, s| s.blocked_until.is_some_and(|u| u > now) || now - s.window_start < window);
        }
        let s = state.entry(ip).or_insert(FailState { failures: 0, window_start: now, blocked_until: None });
        if now - s.window_start > self.window {
            *s = FailState { failures: 0, window_start: now, blocked_until: None };
        }
        s.failures += 1;
        if s.failures >= self.max_failures {
            s.blocked_until = Some(now + self.block);
        }
        // 0 ms for the first failure, then 250 ms more for each, at most 2 s.
        Duration::from_millis((250 * u64::from(s.failures - 1)).min(2000))
    }

    /// Forget failures after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = state.get(&ip)
            && s.blocked_until.is_none()
        {
            state.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_counter_limits_and_releases() {
        let c = Arc::new(ConnCounter::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = c.acquire(ip, 2).unwrap();
        let _b = c.acquire(ip, 2).unwrap();
        assert!(c.acquire(ip, 2).is_none());
        drop(a);
        assert_eq!(c.count(ip), 1);
        assert!(c.acquire(ip, 2).is_some());
    }

    #[test]
    fn throttle_blocks_after_threshold() {
        let t = AuthThrottle::new(3, Duration::from_secs(60), Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(t.failed(ip), Duration::ZERO);
        assert_eq!(t.failed(ip), Duration::from_millis(250));
        assert_eq!(t.check(ip), AuthGate::Allow);
        t.failed(ip);
        assert_eq!(t.check(ip), AuthGate::Blocked);
        t.succeeded(ip); // a success does not lift a block
        assert_eq!(t.check(ip), AuthGate::Blocked);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(t.check(other), AuthGate::Allow);
    }

    #[test]
    fn block_expires() {
        let t = AuthThrottle::new(1, Duration::from_secs(60), Duration::from_millis(0));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed(ip);
        assert_eq!(t.check(ip), AuthGate::Allow);
    }
}
