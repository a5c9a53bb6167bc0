//! Listeners and the accept loops: per-IP connection limits, then one task per connection.

use std::net::SocketAddr;
use std::sync::Arc;

use rampart_store::Stores;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::c2s::{self, C2sShared};
use crate::config::ServerConfig;
use crate::limits::{AuthThrottle, ConnCounter};
use crate::pipeline::Services;
use crate::router::Router;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid domain {0:?}: {1}")]
    Domain(String, rampart_proto::JidError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// How often the quarantine cache is reloaded from the security store.
const QUARANTINE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// A configured server, not yet listening.
pub struct Server {
    router: Arc<Router>,
    tls: Arc<rustls::ServerConfig>,
    /// Federation, if enabled ([`Server::with_s2s`]).
    s2s: Option<Arc<crate::s2s::S2s>>,
}

/// A server whose listeners are bound; [`BoundServer::run`] serves until shutdown.
pub struct BoundServer {
    shared: Arc<C2sShared>,
    listeners: Vec<(TcpListener, bool)>,
    counter: Arc<ConnCounter>,
    /// Federation and its listener, if enabled.
    s2s: Option<(Arc<crate::s2s::S2s>, Option<TcpListener>)>,
}

impl Server {
    pub fn new(config: ServerConfig, stores: Stores, services: Services, tls: Arc<rustls::ServerConfig>) -> Result<Self, ServerError> {
        let domain = config.domain.clone();
        let router = Router::new(config, stores, services).map_err(|e| ServerError::Domain(domain, e))?;
        Ok(Server { router: Arc::new(router), tls, s2s: None })
    }

    /// Enable federation (see [`crate::s2s`]).
    pub fn with_s2s(mut self, setup: crate::s2s::S2sSetup) -> Self {
        self.s2s = Some(crate::s2s::S2s::new(setup));
        self
    }

    /// Serve a subdomain with an in-process component (see [`crate::router::Component`]).
    pub fn with_component(mut self, domain: impl Into<String>, component: Arc<dyn crate::router::Component>) -> Self {
        Arc::get_mut(&mut self.router)
            .expect("components are added before the router is shared")
            .add_component(domain, component);
        self
    }

    /// The router (for tests and embedding).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Bind every configured listener.
    pub async fn bind(self) -> Result<BoundServer, ServerError> {
        let cfg = &self.router.config;
        let mut listeners = Vec::new();
        for (addr, direct_tls) in [(cfg.c2s, false), (cfg.c2s_tls, true)] {
            if let Some(addr) = addr {
                let l = TcpListener::bind(addr).await.map_err(|e| ServerError::Bind(addr, e))?;
                listeners.push((l, direct_tls));
            }
        }
        let s2s = match &self.s2s {
            Some(s2s) => {
                let listener = match s2s.config.listen {
                    Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| ServerError::Bind(addr, e))?),
                    None => None,
                };
                let _ = self.router.s2s.set(s2s.clone());
                s2s.attach(&self.router);
                Some((s2s.clone(), listener))
            }
            None => None,
        };
        self.router.refresh_quarantine().await;
        let limits = &cfg.limits;
        let throttle = AuthThrottle::new(limits.auth_failures, limits.auth_window, limits.auth_block);
        let shared = Arc::new(C2sShared {
            router: self.router.clone(),
            tls: TlsAcceptor::from(self.tls),
            throttle,
            hibernation: Default::default(),
        });
        Ok(BoundServer { shared, listeners, counter: Arc::new(ConnCounter::default()), s2s })
    }
}

impl BoundServer {
    /// Addresses actually bound, as `(addr, direct_tls)` (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(SocketAddr, bool)> {
        self.listeners.iter().filter_map(|(l, t)| l.local_addr().ok().map(|a| (a, *t))).collect()
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.shared.router
    }

    /// Where XMPP-over-WebSocket sessions (RFC 7395) enter; they share the c2s
    /// per-address connection count.
    pub fn websocket(&self) -> c2s::websocket::WebSocketEntry {
        c2s::websocket::WebSocketEntry { shared: self.shared.clone(), counter: self.counter.clone() }
    }

    /// Where BOSH requests (XEP-0124/XEP-0206) enter; a BOSH session counts as one c2s
    /// connection of its address. Call once: the entry holds the session table.
    pub fn bosh(&self, settings: c2s::bosh::BoshSettings) -> c2s::bosh::BoshEntry {
        c2s::bosh::BoshEntry::new(self.shared.clone(), self.counter.clone(), settings)
    }

    /// Accept connections until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tasks = tokio::task::JoinSet::new();
        for (listener, direct_tls) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, kind = if direct_tls { "c2s direct TLS" } else { "c2s STARTTLS" }, "listening");
            }
            tasks.spawn(accept_loop(listener, direct_tls, self.shared.clone(), self.counter.clone()));
        }
        let mut s2s_stop = None;
        if let Some((s2s, listener)) = self.s2s {
            s2s.start().await;
            s2s_stop = Some(s2s.clone());
            if let Some(listener) = listener {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(%addr, kind = "s2s", "listening");
                }
                let max = self.shared.router.config.limits.max_connections_per_ip;
                tasks.spawn(s2s.accept_loop(listener, self.counter.clone(), max));
            }
        }
        // Quarantine releases made with the CLI reach the running server within seconds.
        let router = self.shared.router.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(QUARANTINE_REFRESH);
            loop {
                tick.tick().await;
                router.refresh_quarantine().await;
            }
        });
        shutdown.await;
        tracing::info!("shutting down");
        tasks.abort_all();
        if let Some(s2s) = s2s_stop {
            s2s.stop().await;
        }
    }
}

async fn accept_loop(listener: TcpListener, direct_tls: bool, shared: Arc<C2sShared>, counter: Arc<ConnCounter>) {
    let max = shared.router.config.limits.max_connections_per_ip;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = counter.acquire(peer.ip(), max) else {
            tracing::warn!(%peer, "too many connections from this address");
            tokio::spawn(refuse(tcp, direct_tls, shared.router.domain.clone()));
            continue;
        };
        tokio::spawn(c2s::serve(shared.clone(), tcp, peer, direct_tls, slot));
    }
}

/// Turn away a connection over the per-address limit: on the STARTTLS port with a stream
/// error the client can read, on the direct-TLS port by closing.
async fn refuse(mut tcp: TcpStream, direct_tls: bool, domain: String) {
    if !direct_tls {
        let err: rampart_proto::Element = rampart_proto::StreamError {
            condition: rampart_proto::StreamErrorCondition::PolicyViolation,
            text: Some("too many connections from your address".into()),
        }
        .into();
        let mut out = rampart_proto::stream::stream_header(rampart_proto::ns::CLIENT, &domain, None, "refused", "en").into_bytes();
        err.write_to(&mut out, rampart_proto::ns::CLIENT);
        out.extend_from_slice(rampart_proto::stream::STREAM_CLOSE.as_bytes());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tcp.write_all(&out)).await;
    }
    let _ = tcp.shutdown().await;
}
