//! The upload service: hands out slots (size, quota and type policy), receives PUTs (scan
//! before storing: file-type sniffing, then the guard's engines), serves GETs of accepted
//! files only, records every outcome (compliance archive, security events), resolves its
//! own URLs for the guard, and applies retention.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rampart_archive::{Archive, Direction, NewRecord, RecordKind, Verdict as ArchiveVerdict};
use rampart_guard::{Guard, UploadResolver, UploadedFile, Verdict};
use rampart_store::security::SecurityEvent;
use rampart_store::{SecurityStore, StoreError, Upload, UploadState, UploadStore};
use sha2::{Digest, Sha256};

use crate::sign::Signer;
use crate::sniff::{self, Category};

/// Settings of the upload service (the binary fills them from `[upload]`).
#[derive(Clone, Debug)]
pub struct UploadSettings {
    /// The service's JID (`upload.<domain>`), the `to` of archive records.
    pub service_jid: String,
    /// URL prefix of every slot URL, without a trailing slash (`https://upload.example.com:5443`).
    pub public_url: String,
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    /// Bytes each account may hold (stored files plus open slots).
    pub quota_per_user: u64,
    /// Content categories refused (see [`Category::parse`]).
    pub forbidden: Vec<Category>,
    /// How long a PUT URL works.
    pub slot_ttl: Duration,
    /// Delete files older than this; `None` keeps them.
    pub retention: Option<Duration>,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            service_jid: "upload.localhost".into(),
            public_url: "https://upload.localhost:5443".into(),
            max_file_size: 16 << 20,
            quota_per_user: 512 << 20,
            forbidden: vec![Category::Executable, Category::Script],
            slot_ttl: Duration::from_secs(300),
            retention: None,
        }
    }
}

/// A slot request (XEP-0363 §4).
#[derive(Clone, Debug)]
pub struct SlotRequest {
    pub filename: String,
    pub size: u64,
    pub content_type: Option<String>,
}

/// A granted slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub put_url: String,
    pub get_url: String,
}

/// Why no slot was granted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlotError {
    #[error("file too large: the limit is {max} bytes")]
    TooLarge { max: u64 },
    #[error("upload quota exceeded: {used} of {quota} bytes used")]
    Quota { used: u64, quota: u64 },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("upload service unavailable: {0}")]
    Unavailable(String),
}

/// An HTTP refusal: status and the text the client gets as the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub text: String,
}

impl Refusal {
    fn new(status: u16, text: impl Into<String>) -> Refusal {
        Refusal { status, text: text.into() }
    }
}

/// A file ready to serve: its metadata and the open file (streamed, never read whole).
#[derive(Debug)]
pub struct Served {
    pub upload: Upload,
    pub file: tokio::fs::File,
    /// Bytes on disk.
    pub len: u64,
}

/// Longest time a scan (guard engines) may take per file before the PUT is refused.
const SCAN_DEADLINE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Characters escaped in the file-name segment of URLs.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Is this a file name we keep? (Not a path, no control characters, bounded.)
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c.is_control() || c == '/' || c == '\\')
}

/// Is this a plausible MIME type (`type/subtype`, token characters, optional parameters)?
fn valid_mime(m: &str) -> bool {
    let main = m.split(';').next().unwrap_or("").trim();
    let tok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    m.len() <= 255 && m.bytes().all(|b| (0x20..0x7f).contains(&b)) && main.split_once('/').is_some_and(|(a, b)| tok(a) && tok(b))
}

/// The upload service. Share it in an [`Arc`].
pub struct Uploads {
    settings: UploadSettings,
    store: Arc<dyn UploadStore>,
    guard: Option<Arc<Guard>>,
    archive: Option<Arc<Archive>>,
    security: Arc<dyn SecurityStore>,
    dir: PathBuf,
    signer: Signer,
}

impl Uploads {
    /// The service, keeping files in `dir` (created if missing).
    pub fn new(
        settings: UploadSettings,
        store: Arc<dyn UploadStore>,
        guard: Option<Arc<Guard>>,
        archive: Option<Arc<Archive>>,
        security: Arc<dyn SecurityStore>,
        dir: PathBuf,
        server_secret: &[u8],
    ) -> std::io::Result<Uploads> {
        std::fs::create_dir_all(&dir)?;
        let mut settings = settings;
        settings.public_url = settings.public_url.trim_end_matches('/').to_owned();
        Ok(Uploads { settings, store, guard, archive, security, dir, signer: Signer::new(server_secret) })
    }

    /// The settings in force.
    pub fn settings(&self) -> &UploadSettings {
        &self.settings
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn get_prefix(&self) -> String {
        format!("{}/file/", self.settings.public_url)
    }

    /// The GET URL of a slot.
    pub fn get_url(&self, id: &str, name: &str) -> String {
        let tag = self.signer.sign("get", id, 0, name);
        let enc = percent_encoding::utf8_percent_encode(name, SEGMENT);
        format!("{}{id}/{tag}/{enc}", self.get_prefix())
    }

    fn put_url(&self, id: &str, expires: u64, name: &str) -> String {
        let tag = self.signer.sign("put", id, expires, name);
        let enc = percent_encoding::utf8_percent_encode(name, SEGMENT);
        format!("{}/upload/{id}/{expires}/{tag}/{enc}", self.settings.public_url)
    }

    /// Grant a slot to `owner` (a normalized bare JID) or say why not.
    pub async fn request_slot(&self, owner: &str, req: SlotRequest) -> Result<Slot, SlotError> {
        self.request_slot_at(owner, req, now_ms()).await
    }

    /// [`Uploads::request_slot`] at a given time (Unix ms).
    pub async fn request_slot_at(&self, owner: &str, req: SlotRequest, now: i64) -> Result<Slot, SlotError> {
        let s = &self.settings;
        if !valid_name(&req.filename) {
            return Err(SlotError::BadRequest("invalid file name".into()));
        }
        if req.size == 0 {
            return Err(SlotError::BadRequest("empty files cannot be uploaded".into()));
        }
        if req.size > s.max_file_size {
            return Err(SlotError::TooLarge { max: s.max_file_size });
        }
        let content_type = match req.content_type.as_deref().map(str::trim) {
            None | Some("") => "application/octet-stream".to_owned(),
            Some(m) if valid_mime(m) => m.to_owned(),
            Some(_) => return Err(SlotError::BadRequest("invalid content type".into())),
        };
        // What the name or the declared type claims is checked before any byte is sent.
        for (claimed, by) in [(sniff::category_of_name(&req.filename), "name"), (sniff::category_of_mime(&content_type), "type")] {
            if let Some(c) = claimed.filter(|c| s.forbidden.contains(c)) {
                let what = if by == "name" { req.filename.clone() } else { content_type.clone() };
                return Err(SlotError::Forbidden(format!("blocked: {} files are not allowed ({what})", c.as_str())));
            }
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        let ttl = i64::try_from(s.slot_ttl.as_millis()).unwrap_or(i64::MAX);
        let put_expires_ms = now.saturating_add(ttl);
        let upload = Upload {
            id: id.clone(),
            owner: owner.to_owned(),
            name: req.filename.clone(),
            size: req.size,
            content_type,
            created_ms: now,
            put_expires_ms,
            state: UploadState::Pending,
            sha256: None,
            reason: None,
            finished_ms: None,
        };
        match self.store.create_upload(&upload, s.quota_per_user, now).await {
            Ok(()) => {}
            Err(StoreError::QuotaExceeded) => {
                let used = self.store.upload_usage(owner, now).await.unwrap_or(0);
                return Err(SlotError::Quota { used, quota: s.quota_per_user });
            }
            Err(e) => return Err(SlotError::Unavailable(e.to_string())),
        }
        let expires = u64::try_from(put_expires_ms / 1000).unwrap_or(0);
        Ok(Slot { put_url: self.put_url(&id, expires, &req.filename), get_url: self.get_url(&id, &req.filename) })
    }

    /// Handle a PUT of `body` to a slot URL (`/upload/{id}/{expires}/{tag}/{name}`).
    /// `content_length` and `content_type` are the request's headers. `Ok` means stored
    /// and served from now on.
    pub async fn put(
        &self,
        id: &str,
        expires: &str,
        tag: &str,
        name: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let upload = self.check_put(id, expires, tag, name, content_type).await?;
        self.store_put(upload, body).await
    }

    /// Everything about a PUT that can be checked before its body is read: the signature,
    /// the expiry, the slot and its state, the content type. Returns the slot.
    pub async fn check_put(
        &self,
        id: &str,
        expires: &str,
        tag: &str,
        name: &str,
        content_type: Option<&str>,
    ) -> Result<Upload, Refusal> {
        let Ok(expires) = expires.parse::<u64>() else { return Err(Refusal::new(404, "no such upload slot")) };
        if !self.signer.verify("put", id, expires, name, tag) {
            return Err(Refusal::new(403, "invalid upload URL (bad signature)"));
        }
        let now = now_ms();
        if u64::try_from(now / 1000).unwrap_or(u64::MAX) >= expires {
            return Err(Refusal::new(403, "upload URL expired; request a new slot"));
        }
        let upload = match self.store.upload(id).await {
            Ok(Some(u)) if u.name == name => u,
            Ok(_) => return Err(Refusal::new(404, "no such upload slot")),
            Err(e) => return Err(Refusal::new(503, format!("upload service unavailable: {e}"))),
        };
        if upload.state != UploadState::Pending {
            return Err(Refusal::new(409, "this slot was used already"));
        }
        // An account quarantined after it got the slot uploads nothing more.
        match self.security.is_quarantined(&upload.owner).await {
            Ok(false) => {}
            Ok(true) => return Err(Refusal::new(403, "your account is quarantined")),
            Err(e) => return Err(Refusal::new(503, format!("upload service unavailable: {e}"))),
        }
        if let Some(ct) = content_type
            && ct.trim() != upload.content_type
            && !(upload.content_type == "application/octet-stream")
        {
            return Err(Refusal::new(400, format!("Content-Type must be {} as requested for the slot", upload.content_type)));
        }
        Ok(upload)
    }

    /// The body of a checked PUT (see [`Uploads::check_put`]): size, content type by
    /// content, the guard's engines, then durable storage, the archive record and the state
    /// that makes GET work.
    pub async fn store_put(&self, upload: Upload, body: &[u8]) -> Result<(), Refusal> {
        let id = upload.id.as_str();
        if u64::try_from(body.len()).unwrap_or(u64::MAX) != upload.size {
            return Err(Refusal::new(400, format!("the slot is for exactly {} bytes", upload.size)));
        }
        let sha = hex::encode(Sha256::digest(body));
        match self.judge(&upload, body).await {
            Judgement::Clean => {}
            Judgement::Refused { rule, reason, signature } => {
                self.refuse(&upload, &sha, &rule, &reason, signature).await;
                return Err(Refusal::new(403, reason));
            }
            Judgement::Unavailable(why) => {
                tracing::error!(slot = id, error = %why, "upload could not be scanned: refused (fail closed)");
                return Err(Refusal::new(503, "the file could not be scanned; try again later"));
            }
        }
        // Durable bytes first, then the archive record, then the state that makes GET work.
        let path = self.path_of(id);
        if let Err(e) = write_durably(&path, body).await {
            tracing::error!(slot = id, error = %e, "could not store an upload");
            return Err(Refusal::new(503, "the file could not be stored"));
        }
        let rec = self.record(&upload, &sha, ArchiveVerdict::Delivered);
        if let Some(a) = &self.archive
            && let Err(e) = a.append(rec).await
        {
            tracing::error!(slot = id, error = %e, "archive append failed: upload refused");
            let _ = tokio::fs::remove_file(&path).await;
            return Err(Refusal::new(503, "not stored: the compliance archive is unavailable"));
        }
        if let Err(e) = self.store.upload_accepted(id, &sha, now_ms()).await {
            tracing::error!(slot = id, error = %e, "could not mark an upload available");
            let _ = tokio::fs::remove_file(&path).await;
            return Err(Refusal::new(503, "the file could not be stored"));
        }
        tracing::info!(slot = id, owner = %upload.owner, size = upload.size, sha256 = %sha, "upload stored");
        Ok(())
    }

    /// Sniff, then scan with the guard's engines.
    async fn judge(&self, upload: &Upload, body: &[u8]) -> Judgement {
        let found = sniff::sniff(body);
        if self.settings.forbidden.contains(&found.category) {
            return Judgement::Refused {
                rule: "upload.forbidden_type".into(),
                reason: format!("blocked: {}", sniff::refusal_text(&found, &upload.name, &upload.content_type)),
                signature: None,
            };
        }
        let Some(guard) = &self.guard else { return Judgement::Clean };
        match tokio::time::timeout(SCAN_DEADLINE, guard.scan_file(&upload.name, body)).await {
            Err(_) => Judgement::Unavailable("scan timed out".into()),
            Ok(Err(e)) => Judgement::Unavailable(e.to_string()),
            Ok(Ok(Verdict::Allow)) => Judgement::Clean,
            Ok(Ok(Verdict::Block(f) | Verdict::Quarantine(f))) => {
                Judgement::Refused { rule: f.rule, reason: f.reason, signature: f.evidence.signature }
            }
        }
    }

    fn record(&self, u: &Upload, sha: &str, verdict: ArchiveVerdict) -> NewRecord {
        let meta = serde_json::json!({
            "sha256": sha, "size": u.size, "content_type": u.content_type, "name": u.name, "slot": u.id,
        });
        NewRecord {
            at_ms: now_ms(),
            kind: RecordKind::File,
            direction: Direction::Local,
            from: u.owner.clone(),
            to: self.settings.service_jid.clone(),
            remote_domain: None,
            stanza_id: Some(u.id.clone()),
            body: Some(u.name.clone()),
            stanza_xml: None,
            verdict,
            meta_json: Some(meta.to_string()),
        }
    }

    /// A refused upload: nothing is stored, the slot is marked refused (its GET never
    /// works), a security event and an archive record say why.
    async fn refuse(&self, u: &Upload, sha: &str, rule: &str, reason: &str, signature: Option<String>) {
        tracing::warn!(slot = %u.id, owner = %u.owner, rule, reason, sha256 = sha, "upload refused");
        let _ = tokio::fs::remove_file(self.path_of(&u.id)).await;
        if let Err(e) = self.store.upload_refused(&u.id, Some(sha), reason, now_ms()).await {
            tracing::error!(slot = %u.id, error = %e, "could not mark an upload refused");
        }
        let evidence = serde_json::json!({
            "file_hash": format!("sha-256:{sha}"), "signature": signature, "name": u.name,
            "content_type": u.content_type, "size": u.size, "slot": u.id,
        });
        let ev = SecurityEvent {
            id: 0,
            at_ms: now_ms(),
            account: u.owner.clone(),
            rule: rule.to_owned(),
            action: "block".into(),
            reason: reason.to_owned(),
            evidence_json: evidence.to_string(),
        };
        if let Err(e) = self.security.record_event(&ev).await {
            tracing::error!(error = %e, "could not record a security event");
        }
        if let Some(a) = &self.archive {
            let rec = self.record(u, sha, ArchiveVerdict::Blocked { rule: rule.to_owned(), reason: reason.to_owned() });
            if let Err(e) = a.append(rec).await {
                tracing::error!(error = %e, "could not archive a refused upload");
            }
        }
    }

    /// Handle a GET of `/file/{id}/{tag}/{name}`: only accepted files are served.
    pub async fn get(&self, id: &str, tag: &str, name: &str) -> Result<Served, Refusal> {
        if !self.signer.verify("get", id, 0, name, tag) {
            return Err(Refusal::new(403, "invalid download URL (bad signature)"));
        }
        let upload = match self.store.upload(id).await {
            Ok(Some(u)) if u.name == name => u,
            Ok(_) => return Err(Refusal::new(404, "no such file")),
            Err(e) => return Err(Refusal::new(503, format!("upload service unavailable: {e}"))),
        };
        match upload.state {
            UploadState::Available => {}
            UploadState::Pending => return Err(Refusal::new(404, "no such file (not uploaded yet)")),
            UploadState::Refused => {
                return Err(Refusal::new(410, format!("this file was refused: {}", upload.reason.unwrap_or_default())));
            }
        }
        let opened = match tokio::fs::File::open(self.path_of(id)).await {
            Ok(f) => f.metadata().await.map(|m| (f, m.len())),
            Err(e) => Err(e),
        };
        match opened {
            Ok((file, len)) => Ok(Served { upload, file, len }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Refusal::new(404, "no such file")),
            Err(e) => Err(Refusal::new(503, format!("could not read the file: {e}"))),
        }
    }

    /// Delete files older than the retention period (unless an active legal hold of the
    /// archive covers the uploader at that time) and open slots whose PUT URL expired.
    /// Returns how many slots were removed.
    pub async fn apply_retention(&self, now: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for u in self.store.expired_pending_uploads(now, 1000).await? {
            if self.store.delete_upload(&u.id).await? {
                removed += 1;
            }
        }
        let Some(keep) = self.settings.retention else { return Ok(removed) };
        let cutoff = now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let holds = match &self.archive {
            Some(a) => match a.holds().await {
                Ok(h) => h.into_iter().filter(|h| h.released_at_ms.is_none()).map(|h| h.hold).collect(),
                Err(e) => {
                    // Fail safe: without knowing the holds, nothing is deleted.
                    tracing::error!(error = %e, "upload retention skipped: legal holds unavailable");
                    return Ok(removed);
                }
            },
            None => Vec::new(),
        };
        for u in self.store.uploads_created_before(cutoff, 1000).await? {
            let held = holds.iter().any(|h| {
                h.account.as_deref().is_none_or(|a| a == u.owner)
                    && h.since_ms.is_none_or(|s| u.created_ms >= s)
                    && h.until_ms.is_none_or(|t| u.created_ms <= t)
            });
            if held {
                continue;
            }
            match tokio::fs::remove_file(self.path_of(&u.id)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(slot = %u.id, error = %e, "retention: could not delete an upload");
                    continue;
                }
            }
            if self.store.delete_upload(&u.id).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The slot id in one of our GET URLs.
    fn id_in_url<'a>(&self, url: &'a str) -> Option<&'a str> {
        let rest = strip_prefix_ci(url, &self.get_prefix())?;
        let id = rest.split('/').next()?;
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

enum Judgement {
    Clean,
    Refused { rule: String, reason: String, signature: Option<String> },
    Unavailable(String),
}

/// Write a file and fsync it (temporary name, then rename), so a file marked available
/// exists after a crash.
async fn write_durably(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let tmp = path.with_extension("part");
    let mut f = tokio::fs::File::create(&tmp).await?;
    f.write_all(data).await?;
    f.sync_all().await?;
    drop(f);
    tokio::fs::rename(&tmp, path).await?;
    if let Some(dir) = path.parent()
        && let Ok(d) = tokio::fs::File::open(dir).await
    {
        let _ = d.sync_all().await;
    }
    Ok(())
}

#[async_trait]
impl UploadResolver for Uploads {
    fn is_upload_url(&self, url: &str) -> bool {
        strip_prefix_ci(url, &self.get_prefix()).is_some()
    }

    async fn resolve(&self, url: &str) -> Result<Option<UploadedFile>, String> {
        let Some(id) = self.id_in_url(url) else { return Ok(None) };
        let u = self.store.upload(id).await.map_err(|e| e.to_string())?;
        Ok(u.map(|u| match u.state {
            UploadState::Pending => UploadedFile::Pending,
            UploadState::Available => UploadedFile::Available { sha256: u.sha256.unwrap_or_default() },
            UploadState::Refused => UploadedFile::Refused { reason: u.reason.unwrap_or_default() },
        }))
    }
}
