//! The archive's error type.

/// Errors from the archive. Integrity failures found by [`crate::Archive::verify`] are not
/// errors: they are reported in [`crate::VerifyReport`].
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The storage backend failed (I/O, SQL, corruption, connection).
    #[error("archive backend: {0}")]
    Backend(String),
    /// Reading or writing a file outside the database (key, export) failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The signing key file is unusable or does not match the database.
    #[error("signing key: {0}")]
    Key(String),
    /// A query argument is invalid (e.g. an empty full-text query, a bad RSM id).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// XEP-0313 / XEP-0059: the RSM `before`/`after` id is not in the user's archive.
    #[error("item not found: {0}")]
    ItemNotFound(String),
    /// The hold to release does not exist or was released already.
    #[error("no such active legal hold: {0}")]
    NoSuchHold(i64),
    /// Retention found a segment whose records do not match their hashes; it refuses to
    /// delete (and sign a tombstone for) tampered data.
    #[error("segment {first_seq}..={last_seq} fails verification: {reason}")]
    SegmentTampered {
        first_seq: u64,
        last_seq: u64,
        reason: String,
    },
    /// An export directory or file failed verification ([`crate::verify_export`]).
    #[error("export verification failed: {0}")]
    ExportInvalid(String),
    /// The archive's commit thread is gone (the archive was closed).
    #[error("archive is closed")]
    Closed,
}

impl ArchiveError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<rusqlite::Error> for ArchiveError {
    fn from(e: rusqlite::Error) -> ArchiveError {
        ArchiveError::Backend(e.to_string())
    }
}

impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> ArchiveError {
        ArchiveError::Backend(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ArchiveError>;
