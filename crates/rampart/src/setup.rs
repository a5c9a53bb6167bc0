//! Wiring: the data directory (database, server secret, self-signed certificate), the
//! account commands, and starting the server with its concrete backends.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::time::Duration;

use rampart_archive::{Archive, ArchiveOptions};
use rampart_guard::{BlocklistSet, ClamdScanner, Guard, Scanner, YaraScanner};
use rampart_proto::Jid;
use rampart_server::{Server, ServerConfig, Services};
use rampart_store::sqlite::SqliteStore;
use rampart_store::{StoreError, Stores};

use crate::config::Config;

const DB_FILE: &str = "rampart.db";
const SECRET_FILE: &str = "server-secret";

/// `rampart config check`: everything `serve` would need, short of binding ports.
pub fn check(cfg: &Config) -> Result<()> {
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        let c = std::fs::read(cert).with_context(|| format!("tls.cert: reading {}", cert.display()))?;
        let k = std::fs::read(key).with_context(|| format!("tls.key: reading {}", key.display()))?;
        rampart_server::tls::server_config(&c, &k).map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    }
    if let Some(ca) = cfg.s2s.as_ref().and_then(|s| s.ca_file.as_ref()) {
        let pem = std::fs::read(ca).with_context(|| format!("s2s.ca_file: reading {}", ca.display()))?;
        rampart_server::s2s::tls::parse_ca_bundle(&pem).map_err(|e| anyhow::anyhow!("s2s.ca_file: {e}"))?;
    }
    Ok(())
}

fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("data_dir: cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Write a private file (mode 0600) atomically.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The embedded database, opened (and migrated) in `data_dir`.
pub async fn open_db(cfg: &Config) -> Result<Arc<SqliteStore>> {
    ensure_dir(&cfg.data_dir)?;
    let path = cfg.data_dir.join(DB_FILE);
    let store = SqliteStore::open(&path).await.with_context(|| format!("opening the database {}", path.display()))?;
    Ok(Arc::new(store))
}

async fn open_store(cfg: &Config) -> Result<Stores> {
    Ok(open_db(cfg).await?.stores())
}

/// The starter YARA rules shipped in `rules/`, compiled into the binary.
const STARTER_RULES: &[(&str, &str)] = &[
    ("rules/eicar.yar", include_str!("../../../rules/eicar.yar")),
    ("rules/lures.yar", include_str!("../../../rules/lures.yar")),
];

/// Read the configured blocklist files (URLhaus CSV by `.csv` extension, plain otherwise).
pub fn load_blocklists(paths: &[PathBuf]) -> Result<BlocklistSet> {
    let mut set = BlocklistSet::new();
    for p in paths {
        let text = std::fs::read_to_string(p).with_context(|| format!("guard.blocklists: reading {}", p.display()))?;
        let n = if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            set.add_urlhaus_csv(&text)
        } else {
            set.add_plain(&text)
        };
        tracing::info!(file = %p.display(), entries = n, "blocklist loaded");
    }
    Ok(set)
}

/// Build the guard from the configuration (`None` when `[guard] enabled = false`).
pub fn build_guard(cfg: &Config) -> Result<Option<Arc<Guard>>> {
    let setup = &cfg.guard;
    if !setup.config.enabled {
        tracing::warn!("threat defense is switched off ([guard] enabled = false)");
        return Ok(None);
    }
    let mut gc = setup.config.clone();
    if !gc.trusted_domains.iter().any(|d| d.eq_ignore_ascii_case(&cfg.domain)) {
        gc.trusted_domains.push(cfg.domain.clone());
    }
    // A custom DLP pattern that does not compile is a configuration error, named here.
    rampart_guard::dlp::Dlp::new(&gc.dlp).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sources: Vec<(String, String)> = STARTER_RULES.iter().map(|(n, s)| ((*n).to_owned(), (*s).to_owned())).collect();
    if let Some(dir) = &setup.rules_dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("guard.rules_dir: reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yar" || e == "yara"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).with_context(|| format!("guard.rules_dir: reading {}", f.display()))?;
            sources.push((f.display().to_string(), text));
        }
    }
    let timeout = Duration::from_millis(gc.scan_timeout_ms);
    let yara = YaraScanner::new(sources).map_err(|e| anyhow::anyhow!("guard rules: {e}"))?.with_timeout(timeout);
    tracing::info!(rules = yara.rule_count(), "YARA rules compiled");
    let mut engines: Vec<Arc<dyn Scanner>> = vec![Arc::new(yara)];
    if let Some(addr) = &setup.clamav {
        let clamd = ClamdScanner::new(addr).map_err(|e| anyhow::anyhow!("guard.clamav.address: {e}"))?.with_io_timeout(timeout);
        engines.push(Arc::new(clamd));
        tracing::info!(address = %addr, "ClamAV engine enabled");
    }
    let blocklists = load_blocklists(&setup.blocklists)?;
    Ok(Some(Arc::new(Guard::new(gc, engines, blocklists))))
}

/// The archive's tunables from `[archive]`.
pub fn archive_options(cfg: &Config) -> ArchiveOptions {
    ArchiveOptions {
        checkpoint_every_records: cfg.archive.checkpoint_every_records,
        checkpoint_interval: Duration::from_secs(cfg.archive.checkpoint_interval_secs),
        segment_max_records: cfg.archive.segment_max_records,
        ..ArchiveOptions::default()
    }
}

/// Open the compliance archive (`None` when `[archive] enabled = false`).
pub async fn open_archive(cfg: &Config) -> Result<Option<Arc<Archive>>> {
    if !cfg.archive.enabled {
        tracing::warn!("the compliance archive is switched off ([archive] enabled = false)");
        return Ok(None);
    }
    ensure_dir(&cfg.data_dir)?;
    let archive = Archive::open(&cfg.data_dir, archive_options(cfg)).await.context("opening the compliance archive")?;
    // It would bounce every message: refuse to start instead (`rampart archive verify` still
    // opens it, to find out why).
    if let Some(why) = archive.appends_refused() {
        anyhow::bail!("the compliance archive cannot take records: {why}");
    }
    Ok(Some(Arc::new(archive)))
}

/// The secret that derives fake SCRAM salts for unknown users: stable across restarts.
fn server_secret(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(s) if s.len() >= 32 => Ok(s),
        _ => {
            let secret: [u8; 32] = rand::random();
            write_private(&path, &secret)?;
            Ok(secret.to_vec())
        }
    }
}

/// Paths of the generated certificate and key.
pub fn generated_cert_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The configured certificate, or a self-signed one for the domain generated on first start
/// and kept in `data_dir/tls/`.
fn tls_material(cfg: &Config) -> Result<(Vec<u8>, Vec<u8>)> {
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        let c = std::fs::read(cert).with_context(|| format!("tls.cert: reading {}", cert.display()))?;
        let k = std::fs::read(key).with_context(|| format!("tls.key: reading {}", key.display()))?;
        return Ok((c, k));
    }
    let (cert_path, key_path) = generated_cert_paths(&cfg.data_dir);
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        return Ok((c, k));
    }
    ensure_dir(cert_path.parent().unwrap_or(&cfg.data_dir))?;
    let mut names = vec![cfg.domain.clone()];
    if cfg.domain != "localhost" {
        names.push(format!("*.{}", cfg.domain));
    }
    let certified = rcgen::generate_simple_self_signed(names).context("generating a self-signed certificate")?;
    let cert = certified.cert.pem();
    let key = certified.signing_key.serialize_pem();
    write_private(&key_path, key.as_bytes())?;
    write_private(&cert_path, cert.as_bytes())?;
    tracing::warn!(cert = %cert_path.display(), "no [tls] certificate configured: generated a self-signed one; clients must trust it explicitly");
    Ok((cert.into_bytes(), key.into_bytes()))
}

/// `rampart serve`.
pub async fn serve(cfg: Config) -> Result<()> {
    check(&cfg)?;
    raise_fd_limit();
    let db = open_db(&cfg).await?;
    let guard = build_guard(&cfg)?;
    let archive = open_archive(&cfg).await?;
    let services = Services { guard: guard.clone(), archive: archive.clone(), security: db.security_stores().security };
    let stores = db.stores();
    let (cert, key) = tls_material(&cfg)?;
    let tls = rampart_server::tls::server_config(&cert, &key).map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    let c2s_tls = tls.clone();
    let server_config = ServerConfig {
        domain: cfg.domain.clone(),
        c2s: cfg.c2s,
        c2s_tls: cfg.c2s_tls,
        limits: cfg.limits.clone(),
        server_secret: server_secret(&cfg.data_dir)?,
        push: cfg.push.clone(),
    };
    let mut server = Server::new(server_config, stores, services, tls)?;
    if let Some(muc) = &cfg.muc {
        let rooms: Arc<dyn rampart_store::RoomStore> = db.clone();
        let service = rampart_server::modules::muc::MucService::new(muc.clone(), rooms);
        server = server.with_component(muc.domain.clone(), Arc::new(service));
    }
    // File sharing: the upload.<domain> component; its HTTPS listener starts below.
    let uploads = match &cfg.upload {
        Some(u) => {
            let up = crate::upload::build(u, &cfg.data_dir, &db, guard.clone(), archive.clone(), &server_secret(&cfg.data_dir)?)?;
            let slots = Arc::new(crate::upload::SlotAdapter(up.clone()));
            let component = rampart_server::modules::upload::UploadComponent::new(slots);
            server = server.with_component(u.settings.service_jid.clone(), Arc::new(component));
            Some((u, up))
        }
        None => {
            if cfg.http.is_some() && cfg.websocket.is_none() && cfg.bosh.is_none() {
                tracing::warn!("listen.http is set but [upload], [websocket] and BOSH are off: nothing is served over HTTPS");
            }
            None
        }
    };
    if let Some(s) = &cfg.s2s {
        let store: Arc<dyn rampart_store::s2s::S2sStore> = db.clone();
        server = server.with_s2s(crate::federation::build(s, store, &cert, &key)?);
    }
    let bound = server.bind().await?;
    // XMPP over WebSocket (RFC 7395) and BOSH (XEP-0206) share the HTTPS listener with uploads.
    let ws = cfg.websocket.as_ref().map(|w| (w, bound.websocket()));
    let bosh = cfg.bosh.as_ref().map(|b| (b, bound.bosh(b.settings.clone())));
    match (uploads, crate::bosh::web_routes(ws, bosh), cfg.http) {
        (Some((u, up)), extra, _) => crate::upload::start(u, up, extra, &c2s_tls).await?,
        (None, Some(routes), Some(http)) => crate::websocket::start_alone(http, routes, &c2s_tls).await?,
        _ => {}
    }
    if let Some(guard) = guard {
        tokio::spawn(reload_blocklists_on_sighup(guard, cfg.guard.blocklists.clone()));
    }
    if let Some(archive) = archive
        && cfg.archive.retention_days > 0
    {
        tokio::spawn(retention_task(archive, cfg.archive.retention_days));
    }
    tracing::info!(domain = %cfg.domain, data_dir = %cfg.data_dir.display(), config = %cfg.source, "Rampart started");
    bound.run(shutdown_signal()).await;
    Ok(())
}

/// `kill -HUP` reloads the blocklists without a restart (a failed reload keeps the old ones).
async fn reload_blocklists_on_sighup(guard: Arc<Guard>, paths: Vec<PathBuf>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match load_blocklists(&paths) {
                Ok(b) => {
                    tracing::info!(entries = b.len(), "blocklists reloaded");
                    guard.set_blocklists(b);
                }
                Err(e) => tracing::error!(error = %e, "blocklist reload failed; keeping the previous lists"),
            }
        }
    }
}

/// Apply archive retention hourly.
async fn retention_task(archive: Arc<Archive>, days: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let now = chrono::Utc::now().timestamp_millis();
        match archive.apply_retention(now, Duration::from_secs(days * 86_400)).await {
            Ok(r) if r.deleted_records > 0 => {
                tracing::info!(records = r.deleted_records, segments = r.deleted_segments.len(), "archive retention applied")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "archive retention failed"),
        }
    }
}

fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Normalize `alice` or `alice@domain` to the account's bare JID on this server.
pub fn account_jid(cfg: &Config, input: &str) -> Result<Jid> {
    account_in(&cfg.domain, input)
}

fn account_in(domain: &str, input: &str) -> Result<Jid> {
    let with_domain = if input.contains('@') { input.to_owned() } else { format!("{input}@{domain}") };
    let jid = Jid::parse(&with_domain).map_err(|e| anyhow::anyhow!("{input:?} is not a valid JID: {e}"))?;
    if jid.node().is_none() || jid.resource().is_some() {
        bail!("{input:?} is not an account JID (expected user@{domain})");
    }
    if jid.domain() != domain {
        bail!("{input:?} is not on this server's domain ({domain})");
    }
    Ok(jid)
}

/// Account administration on the store (the server may be running).
pub struct Users {
    stores: Stores,
    domain: String,
}

impl Users {
    pub async fn open(cfg: &Config) -> Result<Users> {
        Ok(Users { stores: open_store(cfg).await?, domain: cfg.domain.clone() })
    }

    fn account(&self, input: &str) -> Result<Jid> {
        account_in(&self.domain, input)
    }

    pub async fn add(&self, jid: &str, password: &str) -> Result<()> {
        let jid = self.account(jid)?;
        let creds = rampart_sasl::new_credentials(password).map_err(|e| anyhow::anyhow!("password: {e}"))?;
        match self.stores.accounts.create(jid.as_str(), creds).await {
            Ok(()) => {
                println!("created {jid}");
                Ok(())
            }
            Err(StoreError::AlreadyExists) => bail!("{jid} already exists"),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list(&self) -> Result<Vec<String>> {
        Ok(self.stores.accounts.list().await?)
    }

    pub async fn remove(&self, jid: &str) -> Result<()> {
        let jid = self.account(jid)?;
        match self.stores.accounts.remove(jid.as_str()).await {
            Ok(()) => {
                println!("removed {jid}");
                Ok(())
            }
            Err(StoreError::NotFound) => bail!("{jid}: no such account"),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn passwd(&self, jid: &str, password: &str) -> Result<()> {
        let jid = self.account(jid)?;
        let creds = rampart_sasl::new_credentials(password).map_err(|e| anyhow::anyhow!("password: {e}"))?;
        match self.stores.accounts.set_credentials(jid.as_str(), creds).await {
            Ok(()) => {
                println!("password changed for {jid}");
                Ok(())
            }
            Err(StoreError::NotFound) => bail!("{jid}: no such account"),
            Err(e) => Err(e.into()),
        }
    }
}

