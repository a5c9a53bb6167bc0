//! Finding a peer's servers: static routes first, then DNS SRV (`_xmpps-server._tcp` for
//! direct TLS, `_xmpp-server._tcp` for STARTTLS, RFC 6120 §3.2 and XEP-0368), then the
//! domain itself on port 5269 (A/AAAA through the system resolver when connecting).
//!
//! The DNS lookups go through the [`Resolve`] trait so the binary chooses the resolver.

use async_trait::async_trait;

use super::config::Route;

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Target host name, without the trailing dot (`.` alone means "no service").
    pub target: String,
}

/// DNS SRV lookups. `Ok(vec![])` when the name has no records.
#[async_trait]
pub trait Resolve: Send + Sync {
    async fn srv(&self, name: &str) -> Result<Vec<Srv>, String>;
}

/// No DNS SRV (only static routes and the A/AAAA fallback).
pub struct NoSrv;

#[async_trait]
impl Resolve for NoSrv {
    async fn srv(&self, _name: &str) -> Result<Vec<Srv>, String> {
        Ok(Vec::new())
    }
}

/// Where to try connecting for `domain`, in order.
pub async fn targets(domain: &str, route: Option<&Route>, resolver: &dyn Resolve) -> Vec<Route> {
    if let Some(r) = route {
        return vec![r.clone()];
    }
    let direct = resolver.srv(&format!("_xmpps-server._tcp.{domain}.")).await.unwrap_or_else(|e| {
        tracing::debug!(domain, error = %e, "SRV lookup (_xmpps-server) failed");
        Vec::new()
    });
    let starttls = resolver.srv(&format!("_xmpp-server._tcp.{domain}.")).await.unwrap_or_else(|e| {
        tracing::debug!(domain, error = %e, "SRV lookup (_xmpp-server) failed");
        Vec::new()
    });
    order(domain, direct, starttls)
}

/// Merge the two SRV answers: by priority, then weight (heavier first), direct TLS before
/// STARTTLS at equal rank. A lone `.` target means the service is explicitly absent.
/// Without any record, the domain itself on port 5269.
fn order(domain: &str, direct: Vec<Srv>, starttls: Vec<Srv>) -> Vec<Route> {
    let absent = |v: &[Srv]| v.len() == 1 && (v[0].target.is_empty() || v[0].target == ".");
    let (direct_absent, starttls_absent) = (absent(&direct), absent(&starttls));
    let mut all: Vec<(u16, std::cmp::Reverse<u16>, bool, Srv)> = Vec::new();
    if !direct_absent {
        all.extend(direct.into_iter().map(|s| (s.priority, std::cmp::Reverse(s.weight), false, s)));
    }
    if !starttls_absent {
        all.extend(starttls.into_iter().map(|s| (s.priority, std::cmp::Reverse(s.weight), true, s)));
    }
    if all.is_empty() {
        if direct_absent && starttls_absent {
            return Vec::new();
        }
        return vec![Route { host: domain.to_owned(), port: 5269, direct_tls: false }];
    }
    all.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    all.into_iter()
        .map(|(_, _, starttls, s)| Route { host: s.target.trim_end_matches('.').to_owned(), port: s.port, direct_tls: !starttls })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(p: u16, w: u16, port: u16, t: &str) -> Srv {
        Srv { priority: p, weight: w, port, target: t.into() }
    }

    #[test]
    fn fallback_to_domain() {
        assert_eq!(order("b.example", vec![], vec![]), vec![Route { host: "b.example".into(), port: 5269, direct_tls: false }]);
    }

    #[test]
    fn srv_ordering_prefers_direct_tls_at_equal_priority() {
        let r = order(
            "b.example",
            vec![srv(10, 0, 5270, "xmpp.b.example.")],
            vec![srv(10, 0, 5269, "xmpp.b.example."), srv(5, 0, 5269, "first.b.example.")],
        );
        assert_eq!(r[0], Route { host: "first.b.example".into(), port: 5269, direct_tls: false });
        assert_eq!(r[1], Route { host: "xmpp.b.example".into(), port: 5270, direct_tls: true });
        assert_eq!(r[2], Route { host: "xmpp.b.example".into(), port: 5269, direct_tls: false });
    }

    #[test]
    fn explicit_absence() {
        assert!(order("b.example", vec![srv(0, 0, 0, ".")], vec![srv(0, 0, 0, ".")]).is_empty());
        let r = order("b.example", vec![srv(0, 0, 0, ".")], vec![srv(1, 0, 5269, "x.b.example")]);
        assert_eq!(r.len(), 1);
    }

    #[tokio::test]
    async fn static_route_wins() {
        let route = Route { host: "127.0.0.1".into(), port: 1, direct_tls: true };
        assert_eq!(targets("b.example", Some(&route), &NoSrv).await, vec![route]);
    }
}
