//! Metadata of XEP-0363 HTTP uploads: one [`Upload`] per slot handed out, with its state
//! (waiting for the PUT, available, refused by the scanner), the file's SHA-256 and why a
//! refused file was refused. The bytes themselves are kept by the upload service, not here.

use async_trait::async_trait;

use crate::Result;

/// Where an upload slot stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UploadState {
    /// Slot handed out; the PUT has not (successfully) happened yet.
    Pending,
    /// Uploaded, scanned clean and stored: its GET URL works.
    Available,
    /// Uploaded and refused (infected or a forbidden type): the bytes are gone.
    Refused,
}

impl UploadState {
    /// The stored tag.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Pending => "pending",
            UploadState::Available => "available",
            UploadState::Refused => "refused",
        }
    }

    /// Parse a stored tag.
    pub fn parse(s: &str) -> Option<UploadState> {
        Some(match s {
            "pending" => UploadState::Pending,
            "available" => UploadState::Available,
            "refused" => UploadState::Refused,
            _ => return None,
        })
    }
}

/// One upload slot and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// Random, URL-safe slot id (the key of the URLs).
    pub id: String,
    /// The uploader's normalized bare JID.
    pub owner: String,
    /// File name as requested (kept for the GET's `Content-Disposition`).
    pub name: String,
    /// Size announced in the slot request; the PUT must send exactly this many bytes.
    pub size: u64,
    /// Content type announced in the slot request (served back on GET).
    pub content_type: String,
    /// Unix ms when the slot was handed out.
    pub created_ms: i64,
    /// Unix ms after which the PUT URL no longer works.
    pub put_expires_ms: i64,
    pub state: UploadState,
    /// Lowercase hex SHA-256 of the uploaded bytes, once uploaded.
    pub sha256: Option<String>,
    /// Why a refused upload was refused (the text the uploader got).
    pub reason: Option<String>,
    /// Unix ms when the upload was accepted or refused.
    pub finished_ms: Option<i64>,
}

/// Upload metadata. Quota checks and state changes are atomic.
#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Record a new pending slot. `QuotaExceeded` (and nothing is stored) if the owner's
    /// available files plus their still-open slots at `now_ms`, plus this one, exceed
    /// `quota` bytes. `AlreadyExists` if the id is taken.
    async fn create_upload(&self, upload: &Upload, quota: u64, now_ms: i64) -> Result<()>;
    /// One slot by id.
    async fn upload(&self, id: &str) -> Result<Option<Upload>>;
    /// Pending → available with the file's hash. `NotFound` unless the slot is pending.
    async fn upload_accepted(&self, id: &str, sha256: &str, at_ms: i64) -> Result<()>;
    /// Pending → refused, with the hash (if the bytes arrived) and the reason. `NotFound`
    /// unless the slot is pending.
    async fn upload_refused(&self, id: &str, sha256: Option<&str>, reason: &str, at_ms: i64) -> Result<()>;
    /// Bytes the owner holds: available files plus slots still open at `now_ms`.
    async fn upload_usage(&self, owner: &str, now_ms: i64) -> Result<u64>;
    /// Slots created before `cutoff_ms` (any state), oldest first, at most `limit`
    /// (retention).
    async fn uploads_created_before(&self, cutoff_ms: i64, limit: usize) -> Result<Vec<Upload>>;
    /// Pending slots whose PUT expired before `now_ms`, at most `limit`.
    async fn expired_pending_uploads(&self, now_ms: i64, limit: usize) -> Result<Vec<Upload>>;
    /// Forget a slot; true if there was one.
    async fn delete_upload(&self, id: &str) -> Result<bool>;
}
