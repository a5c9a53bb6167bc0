//! The storage backend trait. The chain logic (group commit, checkpoints, verify,
//! retention's tombstones, export) lives above it, so a PostgreSQL backend only has to store
//! and query.

use async_trait::async_trait;

use crate::error::Result;
use crate::hash::{self, Fields};
use crate::types::{
    Checkpoint, Direction, HoldInfo, LegalHold, MamPage, MamQuery, NewRecord, Record, RecordKind,
    SearchQuery, Tombstone, Verdict,
};

/// A record row as stored, before validation (so that a tampered row can be reported).
#[derive(Clone, Debug, Default)]
pub struct StoredRow {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: String,
    pub direction: String,
    pub from: String,
    pub to: String,
    pub remote_domain: Option<String>,
    pub stanza_id: Option<String>,
    pub body: Option<String>,
    pub stanza_xml: Option<String>,
    pub verdict: String,
    pub verdict_rule: Option<String>,
    pub verdict_reason: Option<String>,
    pub meta_json: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl StoredRow {
    pub(crate) fn fields(&self) -> Fields<'_> {
        Fields {
            at_ms: self.at_ms,
            kind: &self.kind,
            direction: &self.direction,
            from: &self.from,
            to: &self.to,
            remote_domain: self.remote_domain.as_deref(),
            stanza_id: self.stanza_id.as_deref(),
            body: self.body.as_deref(),
            stanza_xml: self.stanza_xml.as_deref(),
            verdict: &self.verdict,
            verdict_rule: self.verdict_rule.as_deref(),
            verdict_reason: self.verdict_reason.as_deref(),
            meta_json: self.meta_json.as_deref(),
        }
    }

    /// Validate into a [`Record`]; the error says which column is malformed.
    pub fn into_record(self) -> std::result::Result<Record, String> {
        let seq = u64::try_from(self.seq).map_err(|_| format!("negative seq {}", self.seq))?;
        let kind =
            RecordKind::parse(&self.kind).ok_or_else(|| format!("bad kind {:?}", self.kind))?;
        let direction = Direction::parse(&self.direction)
            .ok_or_else(|| format!("bad direction {:?}", self.direction))?;
        let verdict = Verdict::from_columns(&self.verdict, self.verdict_rule, self.verdict_reason)
            .ok_or_else(|| format!("bad verdict {:?}", self.verdict))?;
        let hash = hash::array(&self.hash).ok_or("hash is not 32 bytes")?;
        let prev_hash = hash::array(&self.prev_hash).ok_or("prev_hash is not 32 bytes")?;
        Ok(Record {
            seq,
            hash,
            prev_hash,
            record: NewRecord {
                at_ms: self.at_ms,
                kind,
                direction,
                from: self.from,
                to: self.to,
                remote_domain: self.remote_domain,
                stanza_id: self.stanza_id,
                body: self.body,
                stanza_xml: self.stanza_xml,
                verdict,
                meta_json: self.meta_json,
            },
        })
    }
}

/// A retention unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub id: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub min_at_ms: i64,
    pub max_at_ms: i64,
}

/// Result of one group-committed batch.
#[derive(Clone, Copy, Debug)]
pub struct AppendOutcome {
    /// Seq of the batch's first record; the others follow densely.
    pub first_seq: u64,
    /// The chain head after the batch.
    pub head_seq: u64,
    pub head_hash: [u8; 32],
}

/// How far the search indexes have got (see [`ArchiveBackend::index_pending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexProgress {
    /// Every record up to this seq is in the search indexes.
    pub indexed_seq: u64,
    /// The chain head when the pass ran.
    pub head_seq: u64,
}

/// Where the archive is stored. Implementations must make `append_batch` durable before
/// returning and serialize writers (also across processes sharing the store).
#[async_trait]
pub trait ArchiveBackend: Send + Sync + 'static {
    /// Append `batch` in one transaction, chaining from the stored head, assigning segments
    /// (new one at a later UTC day than the open segment's, or after `segment_max_records`).
    ///
    /// Blocking: the archive calls it on its own commit thread, never on an async runtime's
    /// worker, so that a commit costs no hand-off to a blocking pool and back.
    fn append_batch(&self, batch: Vec<NewRecord>, segment_max_records: u64) -> Result<AppendOutcome>;
    /// Add up to `max_records` of the records after the index head to the search indexes
    /// (MAM's and search's account index, the full-text index), in one transaction that also
    /// advances the index head. `append_batch` does not index: keeping the durable commit to
    /// the journal alone is what makes it cheap.
    async fn index_pending(&self, max_records: u32) -> Result<IndexProgress>;
    /// Housekeeping that must not run inside an append (e.g. copying SQLite's WAL back into
    /// the database). Called every few hundred milliseconds.
    async fn wal_checkpoint(&self) -> Result<()> {
        Ok(())
    }
    /// The chain head (0 and the genesis hash if empty).
    async fn head(&self) -> Result<(u64, [u8; 32])>;
    /// Store a checkpoint.
    async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()>;
    /// All checkpoints, by seq then time. Malformed blobs come back zeroed (their signature
    /// then fails).
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
    /// The oldest checkpoint with `seq >= min_seq`.
    async fn checkpoint_covering(&self, min_seq: u64) -> Result<Option<Checkpoint>>;
    /// All tombstones by first seq (malformed blobs zeroed).
    async fn tombstones(&self) -> Result<Vec<Tombstone>>;
    /// Stored rows with `from_seq <= seq <= to_seq`, ascending, at most `limit`.
    async fn rows(&self, from_seq: u64, to_seq: u64, limit: u32) -> Result<Vec<StoredRow>>;
    /// Search (see [`SearchQuery`]), optionally restricted to a seq range.
    async fn search(
        &self,
        q: &SearchQuery,
        seq_range: Option<(u64, u64)>,
    ) -> Result<Vec<StoredRow>>;
    /// XEP-0313 query over `owner`'s messages.
    async fn mam(&self, owner: &str, q: &MamQuery) -> Result<(Vec<StoredRow>, MamPage)>;
    /// Live segments other than the open one whose newest record is older than `cutoff_ms`.
    async fn retention_candidates(&self, cutoff_ms: i64) -> Result<Vec<Segment>>;
    /// Delete a segment's records and indexes and store its tombstone, atomically; fails if
    /// the segment changed (its hashes no longer match the tombstone).
    async fn delete_segment(&self, seg: &Segment, tombstone: &Tombstone) -> Result<()>;
    async fn add_hold(&self, hold: &LegalHold, now_ms: i64) -> Result<i64>;
    async fn release_hold(&self, id: i64, now_ms: i64) -> Result<()>;
    async fn holds(&self) -> Result<Vec<HoldInfo>>;
    /// Read a metadata value.
    async fn meta(&self, key: &str) -> Result<Option<String>>;
    /// Set a metadata value if it is not set; returns the stored value.
    async fn meta_init(&self, key: &str, value: &str) -> Result<String>;
    /// No more appends will come (the archive's last handle is gone): whatever an append
    /// returned but the store still holds aside (a log ahead of its database) goes where
    /// readers of the store alone find it, before this returns. Blocking; called once, on
    /// the commit thread.
    fn close_appends(&self) {}
    /// Why this handle refuses every append, if it does (e.g. its commit log does not
    /// continue the database); reads still work.
    fn appends_refused(&self) -> Option<String> {
        None
    }
}
