//! Rampart's compliance archive: a hash-chained, signed, searchable journal of every
//! message, presence-subscription change, login and logout that crosses the server.
//!
//! # What it records and how
//! The router calls [`Archive::append`] for every stanza it handles (inbound, outbound or
//! local; delivered, stored offline, bounced or blocked with the guard's verdict) before it
//! delivers. `append` returns only once the record is on disk: its group commit's frame is
//! written to the commit log and synced (`fdatasync`; see [`commitlog`]), so a delivered
//! stanza is in the archive after a crash or power loss, and the next open puts whatever the
//! database lacks into it. Concurrent appends are group-committed: one commit thread takes
//! every append queued while its previous commit ran into one frame, and each caller awaits
//! that commit (the thread wakes the callers' tasks itself: no hand-off through the async
//! runtime's workers or its blocking pool on the way). The database (`archive.db`) receives
//! the logged batches up to about 25 ms later, from an applier thread, and every read waits
//! for it first; dropping the last handle waits until it has them all. One
//! process at a time appends (the one holding the log's lock); others read. Client hints
//! (XEP-0334 `no-store`) are not consulted here.
//!
//! # The search indexes
//! A commit writes the journal only. The account index and the full-text index live in a
//! separate database (`archive-index.db` beside `archive.db`), written by an indexer task
//! that gathers [`INDEX_DELAY`] of appends per transaction and runs beside the writer. They
//! are derived data: the indexer catches up from the journal on open (after a crash, or when
//! the file is lost), and [`Archive::search`], [`Archive::mam_query`], export and retention
//! first wait until the indexes cover everything committed ([`Archive::sync_index`]).
//!
//! # The chain
//! Every record gets a dense sequence number from 1 and a chain hash
//! `hash(n) = SHA-256(domain || seq || hash(n-1) || digest(record n))`, where the digest is
//! SHA-256 over a length-prefixed encoding of every field; the exact encoding is in [`hash`].
//! The archive holds an Ed25519 key (`archive-signing.key`, mode 0600, public half in
//! `archive-signing.pub`) and signs:
//! - **checkpoints** (seq, hash, time): every [`ArchiveOptions::checkpoint_every_records`]
//!   records, every [`ArchiveOptions::checkpoint_interval`] if anything was appended, and on
//!   [`Archive::checkpoint`];
//! - **tombstones**: when retention deletes a segment it stores (first seq, last seq, hash
//!   entering the segment, last hash, time span, deletion time), signed, and the chain
//!   continues across it.
//!
//! # What `verify` detects, and what it cannot
//! [`Archive::verify`] walks the chain from genesis and reports the first bad seq:
//! - a changed byte in any field of any record, or in its stored hash (hash mismatch);
//! - a deleted record in the middle (gap) or at the start;
//! - reordered or swapped records (the seq is hashed, and prev links break);
//! - a tombstone or checkpoint that is forged or altered (bad signature), that does not
//!   link to the chain, or records reappearing inside a tombstoned range;
//! - truncation of the tail **up to the last stored checkpoint** (a signed checkpoint names a
//!   seq beyond the chain end), and any truncation that did not also rewrite the stored chain
//!   head.
//!
//! It cannot detect, from the database alone:
//! - truncation of records appended after the last checkpoint when the attacker also deletes
//!   the newer checkpoints and rewrites the head row: keep the last checkpoint somewhere else
//!   (export it, ship it to a log server) and pass it to [`Archive::verify_against`];
//! - a rewrite by someone holding the signing key: whoever can read `archive-signing.key` can
//!   recompute the chain and re-sign. Protect the key (it is refused if group/world readable),
//!   publish the public key, and anchor checkpoints outside the host;
//! - changes to the search indexes (`parties`, `records_fts` in `archive-index.db`) or the
//!   `segments` bookkeeping: they can hide records from search or MAM but not alter the
//!   record of what was said.
//!
//! # Retention and legal holds
//! Records are grouped in segments: a segment ends at a UTC day boundary or after
//! [`ArchiveOptions::segment_max_records`]. [`Archive::apply_retention`] deletes whole
//! segments whose newest record is older than the cutoff, never the open (newest) segment,
//! and never a segment in which any record matches an active [`LegalHold`]. It re-verifies a
//! segment's hashes before deleting it, so it never signs a tombstone over tampered data.
//!
//! # Export and independent verification
//! [`Archive::export`] writes `records.jsonl` (one [`Record`] per line, all fields plus
//! `seq`, `hash`, `prev_hash`), `manifest.json` ([`ExportManifest`]) and, for
//! [`ExportFormat::Eml`], one RFC 5322 message per record under `eml/` (a readable rendering;
//! the evidence is `records.jsonl`). The manifest carries the archive's public key, a signed
//! checkpoint at or after the newest exported record, the **spine** (the content digest of
//! every record from the oldest exported one to the checkpoint, which reveals no content),
//! the tombstones in that range, and SHA-256 of every written file.
//!
//! An outside party verifies an export, with [`verify_export`] or by hand, like this:
//! 1. Obtain the archive's public key out of band and compare it with `public_key`.
//! 2. Check the checkpoint's Ed25519 signature over [`hash::checkpoint_message`].
//! 3. Start with `running = prev_hash` of the oldest exported record. For every spine entry
//!    `(seq, digest)` in order, `running = SHA-256("rampart-archive/chain/v1" || u64be seq ||
//!    running || digest)`; where a tombstone starts, check its signature and that its
//!    `prev_hash` equals `running`, then continue from its `last_hash`.
//! 4. For every exported record, recompute its digest from its fields ([`hash`] module) and
//!    check it equals the spine digest at its seq, and that `prev_hash`/`hash` equal the
//!    running values before/after that seq.
//! 5. The final `running` must equal the checkpoint's hash, at the checkpoint's seq.
//! 6. Check the SHA-256 of each file listed in `files`.
//!
//! # Performance (measured, `examples/archive_bench.rs`, 2 shared cores under load)
//! Measured in session 1, when the indexes were written inside each commit with a 1 ms
//! window (the server-level figures since are in `docs/benchmarks.md`):
//! 1M synthetic records (≈ 810 MiB): ingest ≈ 2 800 records/s from 256 concurrent writers
//! (≈ 255 records per durable transaction; ≈ 5–11 k/s on smaller runs with less contention);
//! a lone durable append ≈ 4 ms (1 ms window + fsync). Searches (limit 100): p50 1.6 ms,
//! p99 25 ms over all query shapes, worst single query 92 ms; MAM page ≈ 1 ms; verify
//! ≈ 46 k records/s.
//!
//! # MAM
//! [`Archive::mam_query`] serves XEP-0313 for a user's own view: messages with a body, sent
//! or received by the owner, that were delivered or stored offline (messages the guard
//! blocked, quarantined or that bounced are kept for compliance but not shown). Archive ids
//! are sequence numbers as strings. With [`MamQuery::with_moderation`] (MAM on a group chat
//! room) the owner's `moderation` records are included, so the announcements replay.

pub mod backend;
pub mod commitlog;
mod direct;
mod error;
mod export;
pub mod hash;
mod keys;
pub mod sqlite;
mod types;
mod verify;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};

pub use crate::backend::{ArchiveBackend, IndexProgress, Segment, StoredRow};
pub use crate::error::{ArchiveError, Result};
pub use crate::export::verify_export;
pub use crate::keys::{KEY_FILE, PUBLIC_KEY_FILE};
pub use crate::sqlite::{DB_FILE, INDEX_FILE, SqliteBackend};
pub use crate::types::*;

use crate::keys::Signer;

/// Queue depth in front of the commit thread.
const QUEUE: usize = 16_384;
/// The indexer gathers appends this long before indexing them, unless a query waits
/// (queries always wait for the indexes to catch up, so they never see less).
pub const INDEX_DELAY: Duration = Duration::from_millis(250);
/// Records per indexing transaction.
const INDEX_CHUNK: u32 = 4096;
/// A query waits at most this long for the indexes before failing.
const INDEX_WAIT: Duration = Duration::from_secs(30);
/// How often the WALs are copied back into the databases (see [`wal_checkpointer`]).
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// Metadata key holding the public key (hex) the archive was created with.
const META_PUBLIC_KEY: &str = "signing_public_key";

enum Cmd {
    Append(Box<NewRecord>, oneshot::Sender<Result<u64>>),
    Checkpoint(oneshot::Sender<Result<Checkpoint>>),
    /// [`ArchiveOptions::checkpoint_interval`] passed (from [`checkpoint_ticker`]).
    Tick,
}

struct Inner {
    backend: Box<dyn ArchiveBackend>,
    signer: Signer,
    opts: ArchiveOptions,
    /// Committed append transactions (batches) since open.
    commits: AtomicU64,
    /// The newest seq committed, as far as this handle knows.
    committed_seq: AtomicU64,
    /// The indexer made its first pass (which catches up with earlier runs): until then
    /// queries wait.
    index_ready: AtomicBool,
    /// Every record up to this seq is in the search indexes (published by the indexer).
    indexed_seq: watch::Sender<u64>,
    /// There are records to index.
    index_work: Notify,
    /// A query waits for the indexes: index now.
    index_now: Notify,
    /// The writer stopped: the indexer finishes and stops.
    closing: AtomicBool,
}

/// The compliance archive. `Send + Sync`; share it in an [`Arc`].
///
/// Dropping the last handle stops the commit thread after it drains the queue.
pub struct Archive {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Cmd>,
    commit_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Archive {
    /// Close the queue and wait for the commit thread: it commits what is queued, then has
    /// the backend put everything logged into the database
    /// ([`ArchiveBackend::close_appends`]). A clean shutdown thus leaves the database complete
    /// on its own (the process may exit right after, which would stop the thread mid-way).
    /// Blocks for up to about one applier gathering (25 ms) plus the last commits.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.tx, mpsc::channel(1).0));
        if let Some(t) = self.commit_thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Archive {
    /// Open the archive in `dir` (created if missing): `archive.db` and the signing key
    /// `archive-signing.key` (generated, mode 0600, if missing). Fails if the key does not
    /// match the one the database was created with.
    pub async fn open(dir: &Path, opts: ArchiveOptions) -> Result<Archive> {
        std::fs::create_dir_all(dir).map_err(|e| ArchiveError::io(dir, e))?;
        let signer = Signer::load_or_create(dir)?;
        let backend = SqliteBackend::open(&dir.join(DB_FILE)).await?;
        Archive::with_backend(Box::new(backend), signer, opts).await
    }

    /// A fresh throw-away archive (in a temporary directory, removed with the archive) with a
    /// random key (tests).
    pub async fn open_in_memory_for_tests(opts: ArchiveOptions) -> Result<Archive> {
        let backend = SqliteBackend::open_in_memory().await?;
        Archive::with_backend(Box::new(backend), Signer::generate(), opts).await
    }

    async fn with_backend(
        backend: Box<dyn ArchiveBackend>,
        signer: Signer,
        opts: ArchiveOptions,
    ) -> Result<Archive> {
        let pk = hex::encode(signer.public_key());
        let stored = backend.meta_init(META_PUBLIC_KEY, &pk).await?;
        if stored != pk {
            return Err(ArchiveError::Key(format!(
                "the archive was created with public key {stored}, the key file holds {pk}"
            )));
        }
        let inner = Arc::new(Inner {
            backend,
            signer,
            opts,
            commits: AtomicU64::new(0),
            committed_seq: AtomicU64::new(0),
            index_ready: AtomicBool::new(false),
            indexed_seq: watch::channel(0).0,
            index_work: Notify::new(),
            index_now: Notify::new(),
            closing: AtomicBool::new(false),
        });
        // Records appended since the last checkpoint (approximate across processes).
        let since_cp = match (inner.backend.head().await, inner.backend.checkpoints().await) {
            (Ok((head, _)), Ok(cps)) => head.saturating_sub(cps.last().map_or(0, |c| c.seq)),
            _ => 0,
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let (w, rt) = (inner.clone(), tokio::runtime::Handle::current());
        let commit_thread = std::thread::Builder::new()
            .name("rampart-archive-commit".into())
            .spawn(move || writer(&w, rx, since_cp, &rt))
            .map_err(|e| ArchiveError::Backend(format!("starting the archive commit thread: {e}")))?;
        tokio::spawn(checkpoint_ticker(tx.downgrade(), inner.opts.checkpoint_interval));
        tokio::spawn(indexer(inner.clone()));
        tokio::spawn(wal_checkpointer(Arc::downgrade(&inner)));
        Ok(Archive {
            inner,
            tx,
            commit_thread: Some(commit_thread),
        })
    }

    /// The Ed25519 public key that signs checkpoints and tombstones.
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.signer.public_key()
    }

    /// Append transactions committed by this handle's writer since open (each holds one or
    /// more records: group commit).
    pub fn commit_count(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Why every append is refused until the archive is reopened, if it is: its commit log
    /// does not continue the database, or could not be synced. Reads (and `verify`) still
    /// work; a server should not start on such an archive.
    pub fn appends_refused(&self) -> Option<String> {
        self.inner.backend.appends_refused()
    }

    /// The storage backend (read access for tools and tests).
    pub fn backend(&self) -> &dyn ArchiveBackend {
        &*self.inner.backend
    }

    /// Append one record durably; returns its sequence number once the group commit holding
    /// it is on disk. An error means the record was **not** stored (its whole batch rolled
    /// back, no seq consumed): the router should fail closed and not deliver.
    pub async fn append(&self, rec: NewRecord) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Append(Box::new(rec), tx))
            .await
            .map_err(|_| ArchiveError::Closed)?;
        rx.await.map_err(|_| ArchiveError::Closed)?
    }

    /// Queue one record for the writer and return at once with a [`Pending`] that resolves
    /// to its sequence number when the group commit holding it is durable. Records queued
    /// one after another by one caller are committed in that order. Lets a caller keep
    /// several appends in flight (larger group commits) while still acting on each one
    /// only once it is durable.
    pub async fn enqueue(&self, rec: NewRecord) -> Result<Pending> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Append(Box::new(rec), tx)).await.map_err(|_| ArchiveError::Closed)?;
        Ok(Pending(rx))
    }

    /// Make and store a signed checkpoint of the current head.
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Checkpoint(tx))
            .await
            .map_err(|_| ArchiveError::Closed)?;
        rx.await.map_err(|_| ArchiveError::Closed)?
    }

    /// Walk the whole chain (see the crate docs for what is detected).
    pub async fn verify(&self) -> Result<VerifyReport> {
        self.verify_against(&[]).await
    }

    /// [`Archive::verify`], also checking checkpoints kept outside the database (e.g. the
    /// last exported one): a chain shorter than a trusted checkpoint fails.
    pub async fn verify_against(&self, trusted: &[Checkpoint]) -> Result<VerifyReport> {
        verify::verify(&*self.inner.backend, &self.public_key(), trusted).await
    }

    /// Wait until every record committed so far is in the search indexes (a no-op when it
    /// already is). Search, MAM, export and retention call it first.
    pub async fn sync_index(&self) -> Result<()> {
        let inner = &self.inner;
        let mut indexed = inner.indexed_seq.subscribe();
        let give_up = tokio::time::Instant::now() + INDEX_WAIT;
        loop {
            let ready = inner.index_ready.load(Ordering::Acquire);
            let target = inner.committed_seq.load(Ordering::Acquire);
            if ready && *indexed.borrow_and_update() >= target {
                return Ok(());
            }
            inner.index_now.notify_one();
            inner.index_work.notify_one();
            match tokio::time::timeout_at(give_up, indexed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ArchiveError::Closed),
                Err(_) => {
                    return Err(ArchiveError::Backend(
                        "the search index is behind the journal (see the indexing errors in the log)"
                            .into(),
                    ));
                }
            }
        }
    }

    /// Search records (newest first). See [`SearchQuery`].
    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<Record>> {
        self.sync_index().await?;
        let rows = self.inner.backend.search(q, None).await?;
        rows_to_records(rows)
    }

    /// XEP-0313 query over `owner`'s (bare JID) own messages; see the crate docs.
    pub async fn mam_query(&self, owner: &str, q: &MamQuery) -> Result<MamPage> {
        self.sync_index().await?;
        let (rows, mut page) = self.inner.backend.mam(owner, q).await?;
        page.records = rows_to_records(rows)?;
        Ok(page)
    }

    /// Export the records matching `q` (all of them if `q.limit` is `None`) to `out_dir`,
    /// which must not already hold a manifest. See the crate docs.
    pub async fn export(
        &self,
        q: &SearchQuery,
        format: ExportFormat,
        out_dir: &Path,
    ) -> Result<ExportManifest> {
        export::export(self, q, format, out_dir).await
    }

    /// Delete the segments whose records are all older than `now_ms - max_age`, except the
    /// open segment and segments covered by an active legal hold, leaving signed tombstones.
    pub async fn apply_retention(&self, now_ms: i64, max_age: Duration) -> Result<RetentionReport> {
        let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(max_age_ms);
        // Holds are matched through the search indexes.
        self.sync_index().await?;
        let backend = &*self.inner.backend;
        let holds: Vec<HoldInfo> = backend
            .holds()
            .await?
            .into_iter()
            .filter(|h| h.released_at_ms.is_none())
            .collect();
        let mut report = RetentionReport::default();
        'segments: for seg in backend.retention_candidates(cutoff).await? {
            for h in &holds {
                let q = SearchQuery {
                    text: h.hold.text.clone(),
                    account: h.hold.account.clone(),
                    with: h.hold.with.clone(),
                    since_ms: h.hold.since_ms,
                    until_ms: h.hold.until_ms,
                    limit: Some(1),
                    ..SearchQuery::default()
                };
                if !backend
                    .search(&q, Some((seg.first_seq, seg.last_seq)))
                    .await?
                    .is_empty()
                {
                    report
                        .held_segments
                        .push((seg.first_seq, seg.last_seq, h.id));
                    continue 'segments;
                }
            }
            let mut t = self.check_segment(&seg).await?;
            t.deleted_at_ms = now_ms;
            self.inner.signer.sign_tombstone(&mut t);
            backend.delete_segment(&seg, &t).await?;
            tracing::info!(
                first_seq = seg.first_seq,
                last_seq = seg.last_seq,
                "archive retention deleted a segment"
            );
            report.deleted_records += seg.last_seq - seg.first_seq + 1;
            report.deleted_segments.push(t);
        }
        Ok(report)
    }

    /// Recompute a segment's chain; the unsigned tombstone for it if intact.
    async fn check_segment(&self, seg: &Segment) -> Result<Tombstone> {
        let tampered = |reason: String| ArchiveError::SegmentTampered {
            first_seq: seg.first_seq,
            last_seq: seg.last_seq,
            reason,
        };
        let mut next = seg.first_seq;
        let mut first_prev = None;
        let mut running = [0u8; 32];
        let (mut min_at, mut max_at) = (i64::MAX, i64::MIN);
        while next <= seg.last_seq {
            let rows = self.inner.backend.rows(next, seg.last_seq, 4096).await?;
            if rows.is_empty() {
                return Err(tampered(format!("record {next} is missing")));
            }
            for row in rows {
                if u64::try_from(row.seq).ok() != Some(next) {
                    return Err(tampered(format!("record {next} is missing")));
                }
                let prev: [u8; 32] = hash::array(&row.prev_hash)
                    .ok_or_else(|| tampered(format!("record {next}: bad prev_hash")))?;
                if first_prev.is_none() {
                    first_prev = Some(prev);
                } else if prev != running {
                    return Err(tampered(format!("record {next}: prev_hash does not link")));
                }
                let h = hash::chain_hash(next, &prev, &row.fields().digest());
                if row.hash.as_slice() != h.as_slice() {
                    return Err(tampered(format!(
                        "record {next}: content does not match its hash"
                    )));
                }
                min_at = min_at.min(row.at_ms);
                max_at = max_at.max(row.at_ms);
                running = h;
                next += 1;
            }
        }
        Ok(Tombstone {
            first_seq: seg.first_seq,
            last_seq: seg.last_seq,
            prev_hash: first_prev.unwrap_or(hash::GENESIS),
            last_hash: running,
            min_at_ms: min_at,
            max_at_ms: max_at,
            deleted_at_ms: 0,
            signature: [0; 64],
        })
    }

    /// Place a legal hold; returns its id.
    pub async fn add_hold(&self, hold: LegalHold) -> Result<i64> {
        let id = self.inner.backend.add_hold(&hold, now_ms()).await?;
        tracing::info!(id, reason = %hold.reason, "legal hold placed");
        Ok(id)
    }

    /// Release an active legal hold.
    pub async fn release_hold(&self, id: i64) -> Result<()> {
        self.inner.backend.release_hold(id, now_ms()).await?;
        tracing::info!(id, "legal hold released");
        Ok(())
    }

    /// All holds, active and released, oldest first.
    pub async fn holds(&self) -> Result<Vec<HoldInfo>> {
        self.inner.backend.holds().await
    }
}

fn rows_to_records(rows: Vec<StoredRow>) -> Result<Vec<Record>> {
    rows.into_iter()
        .map(|r| {
            let seq = r.seq;
            r.into_record()
                .map_err(|why| ArchiveError::Backend(format!("record {seq} is malformed: {why}")))
        })
        .collect()
}

/// An append queued with [`Archive::enqueue`]: await it for the record's sequence number
/// once it is durable (an error means it was not stored).
pub struct Pending(oneshot::Receiver<Result<u64>>);

impl Pending {
    pub async fn committed(self) -> Result<u64> {
        self.0.await.map_err(|_| ArchiveError::Closed)?
    }
}

/// The commit thread: group commit, and checkpoints between commits. Runs until every
/// [`Archive`] handle is gone and the queue is drained.
///
/// A thread rather than a task: a commit blocks (the commit log's sync), and on a task it
/// went to the blocking pool and back, two more thread hand-offs per commit on top of the
/// task's own waits for a free runtime worker. Here a caller's queued append wakes this
/// thread, which commits and wakes the caller. Checkpoints (rare, and async in the backend)
/// run on the runtime through `rt`.
fn writer(inner: &Inner, mut rx: mpsc::Receiver<Cmd>, mut since_cp: u64, rt: &tokio::runtime::Handle) {
    let opts = &inner.opts;
    let max_batch = opts.max_batch.max(1);
    // The chain head after this thread's last commit (checkpoints sign it without waiting
    // for the database to catch up with the commit log).
    let mut head: Option<(u64, [u8; 32])> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut cmds = vec![first];
        while cmds.len() < max_batch {
            match rx.try_recv() {
                Ok(c) => cmds.push(c),
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(cmds.len());
        let mut waiters = Vec::with_capacity(cmds.len());
        let mut cp_waiters = Vec::new();
        let mut tick = false;
        for c in cmds {
            match c {
                Cmd::Append(r, w) => {
                    records.push(*r);
                    waiters.push(w);
                }
                Cmd::Checkpoint(w) => cp_waiters.push(w),
                Cmd::Tick => tick = true,
            }
        }
        let n = records.len() as u64;
        if n > 0 {
            let seg_max = opts.segment_max_records.max(1);
            match unpanicked("append", || inner.backend.append_batch(records, seg_max)) {
                Ok(out) => {
                    head = Some((out.head_seq, out.head_hash));
                    inner.commits.fetch_add(1, Ordering::Relaxed);
                    inner.committed_seq.fetch_max(out.head_seq, Ordering::AcqRel);
                    for (i, w) in waiters.into_iter().enumerate() {
                        let _ = w.send(Ok(out.first_seq + i as u64));
                    }
                    since_cp += n;
                    inner.index_work.notify_one();
                }
                Err(e) => {
                    tracing::error!(error = %e, n, "archive append failed");
                    let msg = e.to_string();
                    for w in waiters {
                        let _ = w.send(Err(ArchiveError::Backend(msg.clone())));
                    }
                }
            }
        }
        let due = !cp_waiters.is_empty()
            || since_cp >= opts.checkpoint_every_records.max(1)
            || (tick && since_cp > 0);
        if !due {
            continue;
        }
        match unpanicked("checkpoint", || rt.block_on(make_checkpoint(inner, head))) {
            Ok(cp) => {
                since_cp = 0;
                for w in cp_waiters {
                    let _ = w.send(Ok(cp.clone()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "archive checkpoint failed");
                let msg = e.to_string();
                for w in cp_waiters {
                    let _ = w.send(Err(ArchiveError::Backend(msg.clone())));
                }
            }
        }
    }
    // The last handle is gone: put what is logged into the database before it returns.
    if let Err(e) = unpanicked("close", || {
        inner.backend.close_appends();
        Ok(())
    }) {
        tracing::error!(error = %e, "closing the archive's appends failed");
    }
    inner.closing.store(true, Ordering::Release);
    inner.index_work.notify_one();
}

/// Run one of the commit thread's steps; a panic in the backend fails that step (an error,
/// like any other) instead of ending the thread, and with it the archive.
fn unpanicked<T>(step: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(ArchiveError::Backend(format!("the archive {step} panicked"))))
}

/// Queue a [`Cmd::Tick`] every `period` (at least 10 ms) for as long as the archive is open.
/// It holds no sender of its own, and never one across an await, so the queue closes with the
/// last handle. A full queue skips the tick: the thread is busy, and checks the record count
/// after every commit anyway.
async fn checkpoint_ticker(tx: mpsc::WeakSender<Cmd>, period: Duration) {
    let period = period.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(tx) = tx.upgrade() else { return };
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Cmd::Tick) {
            return;
        }
    }
}

/// The indexer task: brings the search indexes up to the journal, [`INDEX_DELAY`] after
/// appends (so one transaction indexes many records) or at once when a query waits. It runs
/// beside the writer (the indexes are in their own database), and stops after the writer,
/// leaving the indexes complete.
async fn indexer(inner: Arc<Inner>) {
    loop {
        let committed = inner.committed_seq.load(Ordering::Acquire);
        let caught_up = inner.index_ready.load(Ordering::Acquire)
            && *inner.indexed_seq.borrow() >= committed;
        if caught_up {
            if inner.closing.load(Ordering::Acquire) {
                return;
            }
            inner.index_work.notified().await;
            // Let a batch gather, unless a query is waiting.
            tokio::select! {
                _ = tokio::time::sleep(INDEX_DELAY) => {}
                _ = inner.index_now.notified() => {}
            }
            continue;
        }
        match inner.backend.index_pending(INDEX_CHUNK).await {
            Ok(p) => {
                // The first pass (and another process's appends) tell where the journal is.
                inner.committed_seq.fetch_max(p.head_seq, Ordering::AcqRel);
                inner.index_ready.store(true, Ordering::Release);
                inner.indexed_seq.send_replace(p.indexed_seq);
            }
            Err(e) => {
                tracing::error!(error = %e, "archive indexing failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = inner.index_now.notified() => {}
                }
            }
        }
    }
}

/// Copy the WALs back into the databases every [`WAL_CHECKPOINT_EVERY`], for as long as the
/// archive is open: mostly beside the applier, the last few commits' pages with the applier
/// held off (never the appends: they only write the commit log), so that the WAL starts over
/// instead of growing (see the SQLite backend). Often, so that each checkpoint's sync is
/// small: a device flush of a megabyte of checkpointed pages held up every commit-log sync
/// issued meanwhile for 5–12 ms (measured with a checkpoint every 500 ms).
async fn wal_checkpointer(inner: std::sync::Weak<Inner>) {
    let mut every = tokio::time::interval(WAL_CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.backend.wal_checkpoint().await {
            tracing::warn!(error = %e, "archive WAL checkpoint failed");
        }
    }
}

/// Sign and store a checkpoint of `head` (this writer's last commit), or of the stored head
/// if it has not committed.
async fn make_checkpoint(inner: &Inner, head: Option<(u64, [u8; 32])>) -> Result<Checkpoint> {
    let (seq, hash) = match head {
        Some(h) => h,
        None => inner.backend.head().await?,
    };
    let cp = inner.signer.checkpoint(seq, hash, now_ms());
    inner.backend.insert_checkpoint(&cp).await?;
    Ok(cp)
}

#[cfg(test)]
mod tests;
