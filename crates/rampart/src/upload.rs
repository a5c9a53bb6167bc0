//! File sharing wiring: the `[upload]` table (validated into `rampart-http`'s settings), the
//! adapter that lets the XMPP `upload.<domain>` component ask `rampart-http` for slots, and
//! starting the HTTPS listener and the upload retention task.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rampart_http::{Category, HttpLimits, SlotError, UploadSettings, Uploads};
use rampart_server::modules::upload::{Slot, SlotRefusal, SlotRequest, SlotService};
use serde::Deserialize;

/// `[upload]` as written in the file. Defaults are documented in docs/config.md.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Offer XEP-0363 uploads (needs `listen.http`).
    pub enabled: bool,
    /// Largest file, in bytes.
    pub max_file_size: u64,
    /// Bytes each account may hold (stored files plus open slots).
    pub quota_per_user: u64,
    /// Delete files this many days old (0 keeps them).
    pub retention_days: u64,
    /// Content categories refused: executable, script, archive, image, audio, video, document.
    pub forbidden_types: Vec<String>,
    /// Base of the URLs handed out (`https://host[:port]`); derived from the domain and
    /// `listen.http` when absent.
    pub public_url: Option<String>,
    /// How long a PUT URL works.
    pub slot_ttl_secs: u64,
    /// Most time one HTTP request (upload included) may take.
    pub request_timeout_secs: u64,
    /// Open HTTPS connections per client address.
    pub max_connections_per_ip: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enabled: true,
            max_file_size: 16 << 20,
            quota_per_user: 512 << 20,
            retention_days: 0,
            forbidden_types: vec!["executable".into(), "script".into()],
            public_url: None,
            slot_ttl_secs: 300,
            request_timeout_secs: 300,
            max_connections_per_ip: 16,
        }
    }
}

/// A validated upload service setup.
#[derive(Debug, Clone)]
pub struct UploadSetup {
    pub settings: UploadSettings,
    pub http: SocketAddr,
    pub request_timeout: Duration,
    pub limits: HttpLimits,
}

/// Validate `[upload]` (`None` when switched off or without an HTTP listener).
pub fn settings(
    u: &UploadConfig,
    domain: &str,
    http: Option<SocketAddr>,
    guard: &rampart_guard::GuardConfig,
    source: &str,
) -> Result<Option<UploadSetup>> {
    let Some(http) = http.filter(|_| u.enabled) else { return Ok(None) };
    if u.max_file_size == 0 || u.quota_per_user == 0 || u.slot_ttl_secs == 0 || u.request_timeout_secs == 0 || u.max_connections_per_ip == 0 {
        bail!("{source}: upload.max_file_size, quota_per_user, slot_ttl_secs, request_timeout_secs and max_connections_per_ip must be at least 1");
    }
    if guard.enabled && u.max_file_size > guard.max_scan_bytes as u64 {
        bail!(
            "{source}: upload.max_file_size: {} is more than guard.max_scan_bytes ({}); files that cannot be scanned would all be refused",
            u.max_file_size,
            guard.max_scan_bytes
        );
    }
    let mut forbidden = Vec::new();
    for t in &u.forbidden_types {
        let c = Category::parse(t).with_context(|| {
            format!("{source}: upload.forbidden_types: {t:?} is not one of executable, script, archive, image, audio, video, document")
        })?;
        forbidden.push(c);
    }
    let public_url = match &u.public_url {
        Some(p) => {
            let p = p.trim_end_matches('/');
            let host = p.strip_prefix("https://").with_context(|| format!("{source}: upload.public_url: must start with https:// (there is no plaintext path)"))?;
            if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
                bail!("{source}: upload.public_url: expected https://HOST[:PORT] without a path");
            }
            p.to_owned()
        }
        None if http.port() == 443 => format!("https://upload.{domain}"),
        None => format!("https://upload.{domain}:{}", http.port()),
    };
    Ok(Some(UploadSetup {
        settings: UploadSettings {
            service_jid: format!("upload.{domain}"),
            public_url,
            max_file_size: u.max_file_size,
            quota_per_user: u.quota_per_user,
            forbidden,
            slot_ttl: Duration::from_secs(u.slot_ttl_secs),
            retention: (u.retention_days > 0).then(|| Duration::from_secs(u.retention_days.saturating_mul(86_400))),
        },
        http,
        request_timeout: Duration::from_secs(u.request_timeout_secs),
        limits: HttpLimits { max_connections_per_ip: u.max_connections_per_ip, ..HttpLimits::default() },
    }))
}

/// The XMPP component's view of the upload service.
pub struct SlotAdapter(pub Arc<Uploads>);

#[async_trait]
impl SlotService for SlotAdapter {
    fn max_file_size(&self) -> u64 {
        self.0.settings().max_file_size
    }

    async fn request_slot(&self, owner: &str, req: SlotRequest) -> Result<Slot, SlotRefusal> {
        let req = rampart_http::SlotRequest { filename: req.filename, size: req.size, content_type: req.content_type };
        match self.0.request_slot(owner, req).await {
            Ok(s) => Ok(Slot { put_url: s.put_url, get_url: s.get_url }),
            Err(e @ SlotError::Quota { .. }) => Err(SlotRefusal::Quota(e.to_string())),
            Err(SlotError::TooLarge { max }) => Err(SlotRefusal::TooLarge { max }),
            Err(SlotError::Forbidden(t)) => Err(SlotRefusal::Forbidden(t)),
            Err(SlotError::BadRequest(t)) => Err(SlotRefusal::BadRequest(t)),
            Err(SlotError::Unavailable(t)) => Err(SlotRefusal::Unavailable(t)),
        }
    }
}

/// The upload service over the database, guard and archive, keeping files in
/// `<data_dir>/uploads/`.
pub fn build(
    setup: &UploadSetup,
    data_dir: &Path,
    db: &Arc<rampart_store::sqlite::SqliteStore>,
    guard: Option<Arc<rampart_guard::Guard>>,
    archive: Option<Arc<rampart_archive::Archive>>,
    secret: &[u8],
) -> Result<Arc<Uploads>> {
    let dir = data_dir.join("uploads");
    let up = Uploads::new(setup.settings.clone(), db.clone(), guard.clone(), archive, db.clone(), dir.clone(), secret)
        .with_context(|| format!("upload: creating {}", dir.display()))?;
    let up = Arc::new(up);
    if let Some(g) = guard {
        g.set_upload_resolver(up.clone());
    }
    Ok(up)
}

/// Bind the HTTPS listener and start serving uploads (plus `extra` routes: the WebSocket
/// endpoint), and the retention task.
pub async fn start(setup: &UploadSetup, up: Arc<Uploads>, extra: Option<rampart_http::HttpRouter>, c2s_tls: &rustls::ServerConfig) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(setup.http)
        .await
        .with_context(|| format!("cannot listen on {} (listen.http)", setup.http))?;
    let mut app = rampart_http::app(up.clone(), setup.request_timeout);
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    tokio::spawn(rampart_http::serve(listener, rampart_http::http_tls(c2s_tls), app, setup.limits.clone()));
    tokio::spawn(retention_task(up));
    Ok(())
}

/// Every ten minutes: forget expired open slots, delete files past retention.
async fn retention_task(up: Arc<Uploads>) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        match up.apply_retention(chrono::Utc::now().timestamp_millis()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "upload retention applied"),
            Err(e) => tracing::error!(error = %e, "upload retention failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Option<SocketAddr> {
        Some("127.0.0.1:5443".parse().unwrap())
    }

    #[test]
    fn defaults_and_validation() {
        let g = rampart_guard::GuardConfig::default();
        let s = settings(&UploadConfig::default(), "corp.example", addr(), &g, "t").unwrap().unwrap();
        assert_eq!(s.settings.public_url, "https://upload.corp.example:5443");
        assert_eq!(s.settings.forbidden, vec![Category::Executable, Category::Script]);
        assert!(settings(&UploadConfig::default(), "x", None, &g, "t").unwrap().is_none());
        let bad = |u: UploadConfig, key: &str| {
            let e = settings(&u, "x", addr(), &g, "t").unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        bad(UploadConfig { forbidden_types: vec!["exe".into()], ..Default::default() }, "upload.forbidden_types");
        bad(UploadConfig { public_url: Some("http://x".into()), ..Default::default() }, "upload.public_url");
        bad(UploadConfig { max_file_size: 1 << 40, ..Default::default() }, "upload.max_file_size");
        bad(UploadConfig { quota_per_user: 0, ..Default::default() }, "quota_per_user");
    }
}
