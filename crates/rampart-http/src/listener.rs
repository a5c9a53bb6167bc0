//! The HTTPS listener: our own accept loop (per-IP connection limit, TLS handshake deadline,
//! connection lifetime cap) serving the axum app over HTTP/1.1 with hyper. There is no
//! plaintext path.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Bounds on HTTP clients. Defaults are documented in docs/config.md.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Open connections per client address.
    pub max_connections_per_ip: usize,
    /// From TCP accept until TLS is established.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// Longest a connection may live (keep-alive included).
    pub connection_lifetime: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections_per_ip: 16,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(900),
        }
    }
}

/// Open connections per address.
#[derive(Default)]
struct Counter(Mutex<HashMap<IpAddr, usize>>);

struct Slot(Arc<Counter>, IpAddr);

impl Counter {
    fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.0.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// The TLS settings for HTTP: the c2s certificate with ALPN `http/1.1` instead of XMPP's.
pub fn http_tls(c2s: &rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    let mut c = c2s.clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Serve `app` over TLS on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router, limits: HttpLimits) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, kind = "https (uploads)", "listening");
    }
    let acceptor = TlsAcceptor::from(tls);
    let counter = Arc::new(Counter::default());
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = counter.acquire(peer.ip(), limits.max_connections_per_ip) else {
            tracing::warn!(%peer, "too many HTTP connections from this address");
            drop(tcp);
            continue;
        };
        tokio::spawn(connection(tcp, peer, acceptor.clone(), app.clone(), limits.clone(), slot));
    }
}

async fn connection(tcp: tokio::net::TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, app: Router, limits: HttpLimits, _slot: Slot) {
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTPS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTPS handshake timed out");
            return;
        }
    };
    // Handlers that need the client's address (the WebSocket endpoint) find it here.
    let app = tower::ServiceExt::map_request(app, move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        req
    });
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(tls), service)
        // RFC 7395: the WebSocket endpoint upgrades the connection; the upgraded stream
        // leaves this lifetime bound (the XMPP session has its own limits).
        .with_upgrades();
    match tokio::time::timeout(limits.connection_lifetime, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTP connection ended with an error"),
        Err(_) => tracing::debug!(%peer, "HTTP connection reached its lifetime"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_slots_are_counted_and_released() {
        let c = Arc::new(Counter::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = c.acquire(a, 2).unwrap();
        let _s2 = c.acquire(a, 2).unwrap();
        assert!(c.acquire(a, 2).is_none());
        assert!(c.acquire(b, 2).is_some(), "other addresses are not affected");
        drop(s1);
        assert!(c.acquire(a, 2).is_some());
    }

    #[test]
    fn http_tls_speaks_http_alpn() {
        let certified = rcgen_like_config();
        assert_eq!(http_tls(&certified).alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    /// A server config with a throwaway self-signed key (ring provider, as the server).
    fn rcgen_like_config() -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert))
    }

    #[derive(Debug)]
    struct NoCert;

    impl rustls::server::ResolvesServerCert for NoCert {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }
}
