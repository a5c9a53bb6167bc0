//! Wiring: the data directory (database, server secret, self-signed certificate), the
//! account commands, and starting the server with its concrete backends.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rampart_proto::Jid;
use rampart_server::{Server, ServerConfig};
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

async fn open_store(cfg: &Config) -> Result<Stores> {
    ensure_dir(&cfg.data_dir)?;
    let path = cfg.data_dir.join(DB_FILE);
    let store = SqliteStore::open(&path).await.with_context(|| format!("opening the database {}", path.display()))?;
    Ok(store.into_stores())
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
    let stores = open_store(&cfg).await?;
    let (cert, key) = tls_material(&cfg)?;
    let tls = rampart_server::tls::server_config(&cert, &key).map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    let server_config = ServerConfig {
        domain: cfg.domain.clone(),
        c2s: cfg.c2s,
        c2s_tls: cfg.c2s_tls,
        limits: cfg.limits.clone(),
        server_secret: server_secret(&cfg.data_dir)?,
    };
    let bound = Server::new(server_config, stores, tls)?.bind().await?;
    tracing::info!(domain = %cfg.domain, data_dir = %cfg.data_dir.display(), config = %cfg.source, "Rampart started");
    bound.run(shutdown_signal()).await;
    Ok(())
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

/// Account administration on the store (the server may be running).
pub struct Users {
    stores: Stores,
    domain: String,
}

impl Users {
    pub async fn open(cfg: &Config) -> Result<Users> {
        Ok(Users { stores: open_store(cfg).await?, domain: cfg.domain.clone() })
    }

    /// Normalize `alice` or `alice@domain` to the account's bare JID on this server.
    fn account(&self, input: &str) -> Result<Jid> {
        let with_domain = if input.contains('@') { input.to_owned() } else { format!("{input}@{}", self.domain) };
        let jid = Jid::parse(&with_domain).map_err(|e| anyhow::anyhow!("{input:?} is not a valid JID: {e}"))?;
        if jid.node().is_none() || jid.resource().is_some() {
            bail!("{input:?} is not an account JID (expected user@{})", self.domain);
        }
        if jid.domain() != self.domain {
            bail!("{input:?} is not on this server's domain ({})", self.domain);
        }
        Ok(jid)
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

