//! The archive's two hot write paths, the journal commit and the indexer, each on an SQLite
//! connection of its own driven through rusqlite on tokio's blocking threads.
//!
//! Why not sqlx here: sqlx runs every connection on a worker thread and each statement is a
//! round trip to it, with its arguments copied into an owned buffer first. A commit here is
//! one hand-off to a blocking thread, cached prepared statements bound straight from the
//! records, and one `fsync`. The rows a commit wrote go to the indexer through [`Feed`] (the
//! strings are moved, not copied), so the indexer does not read them back from the journal;
//! it does read back when the feed has a gap (after a restart, or another process's
//! appends). The indexer keys the account index by the bare JIDs' integer ids in `idx.jids`,
//! kept in a bounded cache that holds only ids of committed passes. Everything else in the
//! backend (queries, retention, holds, migrations) stays on sqlx.
//!
//! An append is durable once its frame is in the commit log ([`crate::commitlog`]): the
//! journal connection here is the *applier*'s, a thread that copies the logged batches into
//! the database up to [`APPLY_GATHER`] later, several per transaction, with `synchronous =
//! NORMAL` (so not synced one by one). It syncs a commit when the log wants to reuse a file
//! and at least every [`SYNC_EVERY`]; everything up to that commit is then durable in the
//! database and may leave the log. Readers wait for the applier first
//! ([`Direct::logged`], [`Direct::applied`]; in another process, until the database reaches
//! the log's newest record, [`Direct::log_newest_seq`]), so they see every append
//! acknowledged before they asked.
//!
//! WAL checkpoints ([`Direct::checkpoint`]) copy the bulk of each WAL beside the writers, then
//! the rest with that file's writer held off for a moment: a checkpoint that reaches the end
//! of the WAL lets the next commit start it over from the beginning. Under a steady stream of
//! commits, passive checkpoints alone never get there, and the WAL file grew without bound;
//! every commit's sync then also had to record the file's growth in the file system journal.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::watch;

use crate::backend::{AppendOutcome, IndexProgress};
use crate::commitlog::{self, Log, LogError};
use crate::error::{ArchiveError, Result};
use crate::hash::{self, Fields, GENESIS};
use crate::sqlite::{bare, seq_i64, seq_u64};
use crate::types::NewRecord;

const DAY_MS: i64 = 86_400_000;
/// Rows the feed keeps for the indexer at most; beyond that the indexer reads back.
const FEED_MAX: usize = 65_536;
/// Size a WAL file is cut back to when it starts over (it keeps its blocks up to this, so
/// commits overwrite them instead of growing the file).
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// Bare JIDs whose account-index id the indexer keeps at most; past that it starts afresh.
const JID_CACHE_MAX: usize = 100_000;
/// The applier gathers logged batches this long after the first before a transaction.
const APPLY_GATHER: Duration = Duration::from_millis(25);
/// Records per applier transaction at most.
const APPLY_MAX: usize = 8192;
/// An append on standby waits this long for the commit log's holder to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);
/// The applier syncs a commit at least this often while appends arrive.
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(1);

const HEAD_SQL: &str = "SELECT h.seq, h.hash, h.segment_id, s.first_seq, s.last_seq, s.day,
        s.min_at_ms, s.max_at_ms
    FROM chain_head h LEFT JOIN segments s ON s.id = h.segment_id AND s.deleted = 0
    WHERE h.id = 1";
const INSERT_RECORD: &str = "INSERT INTO records (seq, at_ms, kind, direction, from_jid, to_jid,
        remote_domain, stanza_id, body, stanza_xml, verdict, verdict_rule, verdict_reason,
        meta_json, prev_hash, hash)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
const INSERT_SEGMENT: &str = "INSERT INTO segments (first_seq, last_seq, day, min_at_ms,
        max_at_ms) VALUES (?1, ?1, ?2, ?3, ?3) RETURNING id";
const UPDATE_SEGMENT: &str =
    "UPDATE segments SET last_seq = ?1, min_at_ms = ?2, max_at_ms = ?3 WHERE id = ?4";
const UPSERT_HEAD: &str =
    "INSERT INTO chain_head (id, seq, hash, segment_id) VALUES (1, ?1, ?2, ?3)
    ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
        segment_id = excluded.segment_id";

/// What the indexer needs of a record.
#[derive(Debug)]
struct IndexRow {
    seq: i64,
    from: String,
    to: String,
    body: Option<String>,
}

/// Committed rows waiting for the indexer, contiguous in `seq`.
#[derive(Debug, Default)]
struct Feed {
    rows: VecDeque<IndexRow>,
}

impl Feed {
    /// Add the records of a commit that starts at `first_seq`. A gap (another process
    /// appended in between) or an overflow starts the feed afresh: the indexer reads what is
    /// missing back from the journal.
    fn push(&mut self, first_seq: i64, batch: Vec<NewRecord>) {
        let contiguous = self.rows.back().is_none_or(|r| r.seq + 1 == first_seq);
        if !contiguous || self.rows.len() + batch.len() > FEED_MAX {
            self.rows.clear();
        }
        self.rows
            .extend(batch.into_iter().zip(first_seq..).map(|(r, seq)| IndexRow {
                seq,
                from: r.from,
                to: r.to,
                body: r.body,
            }));
    }

    /// The rows right after `indexed`, at most `max` and none past `head`; `None` when the
    /// feed does not start right after `indexed`.
    fn take(&mut self, indexed: i64, head: i64, max: usize) -> Option<Vec<IndexRow>> {
        while self.rows.front().is_some_and(|r| r.seq <= indexed) {
            self.rows.pop_front();
        }
        if self.rows.front().is_none_or(|r| r.seq != indexed + 1) {
            return None;
        }
        let n = self
            .rows
            .iter()
            .take(max)
            .take_while(|r| r.seq <= head)
            .count();
        Some(self.rows.drain(..n).collect())
    }
}

/// The indexer's connection and what it knows of the account index.
#[derive(Debug)]
struct Indexer {
    conn: Connection,
    /// Bare JID → `idx.jids.id`, for ids committed to the index file (`jids` rows are never
    /// deleted, so an id stays valid). At most [`JID_CACHE_MAX`] entries.
    ids: HashMap<Box<str>, i64>,
}

/// What the applier thread shares with the rest: the journal connection, the feed it fills
/// for the indexer, and how far it got.
#[derive(Debug)]
struct Journal {
    conn: Mutex<Connection>,
    feed: Mutex<Feed>,
    /// The newest seq in the database (published after each applier commit).
    applied: watch::Sender<u64>,
    /// Every record up to this seq is durable in the database.
    durable: AtomicU64,
    /// The log's writer wants a synced commit soon (see [`Log::wants_durable`]).
    want_sync: AtomicBool,
}

/// A logged batch on its way to the database, with its chain hashes.
#[derive(Debug)]
struct Logged {
    segment_max: u64,
    first_seq: u64,
    prev: [u8; 32],
    records: Vec<NewRecord>,
    hashes: Vec<[u8; 32]>,
}

/// The appending side.
#[derive(Debug)]
enum Writer {
    /// Another process holds the commit log; this one may take over at its next append.
    Standby,
    Active(Active),
    /// Nothing is appended until the archive is reopened: a sync of the commit log failed,
    /// the log does not continue the database, or the archive was closed. Says why.
    Failed(String),
}

/// This process writes the commit log.
#[derive(Debug)]
struct Active {
    log: Log,
    head_seq: u64,
    head_hash: [u8; 32],
    to_applier: Option<mpsc::Sender<Logged>>,
    applier: Option<JoinHandle<()>>,
}

impl Drop for Active {
    /// The applier drains what was logged, then the log (and its lock) closes.
    fn drop(&mut self) {
        self.to_applier.take();
        if let Some(t) = self.applier.take() {
            let _ = t.join();
        }
    }
}

/// The commit log's writer, the applier's and the indexer's connections, and the feed.
#[derive(Debug)]
pub(crate) struct Direct {
    journal: Arc<Journal>,
    indexer: Mutex<Indexer>,
    /// The journal's checkpoints beside the appends (see [`Direct::checkpoint`]).
    checkpointer: Mutex<Connection>,
    writer: Mutex<Writer>,
    /// This process holds the commit log (it never lets go while open).
    active: AtomicBool,
    /// The newest seq this process logged.
    logged: AtomicU64,
    dir: PathBuf,
    durable: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves at worst an open transaction, which rusqlite
    // rolls back on drop; the connection itself stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to the (already created and migrated) journal at `path`.
fn connect(path: &Path, synchronous: &str, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "mmap_size", 1_073_741_824_i64)?;
    // Checkpoints run in `Direct::checkpoint`, never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(conn)
}

impl Direct {
    /// Open the connections on `path`, the indexer's with `index` attached as `idx`, and
    /// take over the commit log beside it unless another process holds it (replaying what
    /// the database lacks; see [`crate::commitlog`]).
    pub(crate) fn open(path: &Path, index: &Path, durable: bool, busy: Duration) -> Result<Direct> {
        let (full, normal) = if durable { ("FULL", "NORMAL") } else { ("OFF", "OFF") };
        let journal = connect(path, normal, busy)?;
        let indexer = connect(path, full, busy)?;
        indexer.execute(
            "ATTACH DATABASE ?1 AS idx",
            [index.to_string_lossy().as_ref()],
        )?;
        // Derived data, rebuilt from the journal when behind or missing.
        indexer.pragma_update(Some("idx"), "synchronous", normal)?;
        indexer.pragma_update(Some("idx"), "journal_size_limit", WAL_SIZE_LIMIT)?;
        let checkpointer = connect(path, full, busy)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        let direct = Direct {
            journal: Arc::new(Journal {
                conn: Mutex::new(journal),
                feed: Mutex::new(Feed::default()),
                applied: watch::channel(0).0,
                durable: AtomicU64::new(0),
                want_sync: AtomicBool::new(false),
            }),
            indexer: Mutex::new(Indexer {
                conn: indexer,
                ids: HashMap::new(),
            }),
            checkpointer: Mutex::new(checkpointer),
            writer: Mutex::new(Writer::Standby),
            active: AtomicBool::new(false),
            logged: AtomicU64::new(0),
            dir,
            durable,
        };
        direct.activate(&mut lock(&direct.writer))?;
        Ok(direct)
    }

    /// Take the commit log if no other process holds it: replay it into the database, start
    /// the applier. Leaves `w` on standby if the log is held elsewhere.
    fn activate(&self, w: &mut Writer) -> Result<()> {
        let log_err = |e: std::io::Error| ArchiveError::io(&self.dir.join(commitlog::LOG_FILES[0]), e);
        let Some((log, batches)) = Log::open(&self.dir, self.durable).map_err(log_err)? else {
            return Ok(());
        };
        let (head_seq, head_hash) = match replay(&mut lock(&self.journal.conn), batches, self.durable)? {
            Ok(head) => head,
            Err(why) => {
                // Fail closed for appends; reads (and `verify`, to find out why) still work.
                tracing::error!("{why}");
                *w = Writer::Failed(why);
                return Ok(());
            }
        };
        self.journal.applied.send_replace(head_seq);
        self.journal.durable.store(head_seq, Ordering::Release);
        self.logged.store(head_seq, Ordering::Release);
        let (to_applier, from_writer) = mpsc::channel();
        let journal = self.journal.clone();
        let durable = self.durable;
        let applier = std::thread::Builder::new()
            .name("rampart-archive-apply".into())
            .spawn(move || apply_loop(&journal, &from_writer, durable))
            .map_err(|e| ArchiveError::Backend(format!("starting the archive applier: {e}")))?;
        self.active.store(true, Ordering::Release);
        *w = Writer::Active(Active {
            log,
            head_seq,
            head_hash,
            to_applier: Some(to_applier),
            applier: Some(applier),
        });
        Ok(())
    }

    /// Copy both WALs back into their databases (blocking), so that each starts over:
    /// the journal's bulk beside the applier, then what it added meanwhile with the applier
    /// held off (a copy of a few hundred milliseconds of commits and one sync); the index's
    /// with the indexer held off, which only delays searches' catching up. A reader that
    /// still reads an older snapshot can keep part of a WAL; the next checkpoint gets it.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        wal_checkpoint(&lock(&self.checkpointer), "main")?;
        wal_checkpoint(&lock(&self.journal.conn), "main")?;
        wal_checkpoint(&lock(&self.indexer).conn, "idx")?;
        Ok(())
    }

    /// Append `batch` durably after the chain head (blocking): chain it, log it, sync the
    /// log, hand it to the applier.
    pub(crate) fn append(&self, batch: Vec<NewRecord>, segment_max: u64) -> Result<AppendOutcome> {
        let mut w = lock(&self.writer);
        // The holder may be closing (a handle dropped a moment ago): give it a moment.
        let give_up = Instant::now() + TAKEOVER_WAIT;
        while matches!(*w, Writer::Standby) {
            self.activate(&mut w)?;
            if Instant::now() >= give_up {
                break;
            }
            if matches!(*w, Writer::Standby) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let a = match &mut *w {
            Writer::Active(a) => a,
            Writer::Standby => {
                return Err(ArchiveError::Backend(format!(
                    "another process is appending to this archive (it holds the lock on {}); \
                     appends go through it",
                    commitlog::LOG_FILES[0]
                )));
            }
            Writer::Failed(why) => {
                return Err(ArchiveError::Backend(why.clone()));
            }
        };
        if batch.is_empty() {
            return Ok(AppendOutcome {
                first_seq: a.head_seq + 1,
                head_seq: a.head_seq,
                head_hash: a.head_hash,
            });
        }
        let (first_seq, prev) = (a.head_seq + 1, a.head_hash);
        let hashes = chain(first_seq, &prev, &batch);
        let durable = self.journal.durable.load(Ordering::Acquire);
        match a.log.append(segment_max, first_seq, &prev, &batch, durable) {
            Ok(()) => {}
            Err(LogError::Write(e)) => {
                return Err(ArchiveError::io(&self.dir.join(commitlog::LOG_FILES[0]), e));
            }
            Err(LogError::Sync(e)) => {
                tracing::error!(error = %e, "archive commit log sync failed: appends stop");
                *w = Writer::Failed(format!(
                    "the archive's commit log could not be synced ({e}); appends are refused \
                     until the archive is reopened"
                ));
                return Err(ArchiveError::io(&self.dir.join(commitlog::LOG_FILES[0]), e));
            }
        }
        if a.log.wants_durable(durable) {
            self.journal.want_sync.store(true, Ordering::Release);
        }
        let head_seq = first_seq + batch.len() as u64 - 1;
        let head_hash = hashes.last().copied().unwrap_or(prev);
        a.head_seq = head_seq;
        a.head_hash = head_hash;
        self.logged.store(head_seq, Ordering::Release);
        let logged = Logged {
            segment_max,
            first_seq,
            prev,
            records: batch,
            hashes,
        };
        if a.to_applier.as_ref().is_none_or(|tx| tx.send(logged).is_err()) {
            // Durable in the log all the same; the next open applies it.
            tracing::error!(first_seq, "archive applier is gone: the database falls behind the log");
        }
        Ok(AppendOutcome {
            first_seq,
            head_seq,
            head_hash,
        })
    }

    /// Stop appending for good (blocking): the applier puts everything logged into the
    /// database, then the log and its lock close. Reads go on.
    pub(crate) fn close_appends(&self) {
        let mut w = lock(&self.writer);
        if matches!(*w, Writer::Active(_)) {
            // Dropping the `Active` drains and joins the applier.
            *w = Writer::Failed("the archive is closed".into());
        }
    }

    /// Whether this process appends (holds the commit log); a process on standby takes the
    /// log over (applying what the database lacks) if its holder has gone.
    pub(crate) fn try_activate(&self) -> Result<bool> {
        if self.active.load(Ordering::Acquire) {
            return Ok(true);
        }
        let mut w = lock(&self.writer);
        if matches!(*w, Writer::Standby) {
            self.activate(&mut w)?;
        }
        Ok(!matches!(*w, Writer::Standby))
    }

    /// Why appends are refused until the archive is reopened, if they are.
    pub(crate) fn appends_refused(&self) -> Option<String> {
        match &*lock(&self.writer) {
            Writer::Failed(why) => Some(why.clone()),
            Writer::Standby | Writer::Active(_) => None,
        }
    }

    /// Whether this process holds the commit log.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The newest seq in the commit log, read from its files (for a reader on standby).
    pub(crate) fn log_newest_seq(&self) -> Result<u64> {
        commitlog::newest_seq(&self.dir)
            .map_err(|e| ArchiveError::io(&self.dir.join(commitlog::LOG_FILES[0]), e))
    }

    /// The newest seq this process logged (0 when it does not append).
    pub(crate) fn logged(&self) -> u64 {
        self.logged.load(Ordering::Acquire)
    }

    /// The newest seq the applier put into the database, as it changes.
    pub(crate) fn applied(&self) -> watch::Receiver<u64> {
        self.journal.applied.subscribe()
    }

    /// Index up to `max` committed records after the index head (blocking).
    pub(crate) fn index_pending(&self, max: u32) -> Result<IndexProgress> {
        let max = max.max(1) as usize;
        let mut guard = lock(&self.indexer);
        let Indexer { conn, ids } = &mut *guard;
        // A deferred transaction that takes the write lock of `idx` only, with its first
        // statement (waiting for another process's indexer if need be: a lock taken after
        // a read could fail at once with a stale snapshot), then reads the journal as a
        // snapshot beside the journal writer.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        tx.execute("UPDATE idx.index_head SET seq = seq WHERE id = 1", [])?;
        let indexed: i64 = tx.query_row(
            "SELECT coalesce((SELECT seq FROM idx.index_head WHERE id = 1), 0)",
            [],
            |r| r.get(0),
        )?;
        let head: i64 = tx.query_row(
            "SELECT coalesce((SELECT seq FROM chain_head WHERE id = 1), 0)",
            [],
            |r| r.get(0),
        )?;
        if indexed == 0 {
            // A new or rebuilt index file: ids cached for an earlier one mean nothing here.
            ids.clear();
        }
        if indexed >= head {
            return Ok(progress(indexed, head));
        }
        let fed = lock(&self.journal.feed).take(indexed, head, max);
        let (rows, through) = match fed {
            // The feed is contiguous: the rows cover everything up to the last one.
            Some(rows) if !rows.is_empty() => {
                let through = rows.last().map_or(head, |r| r.seq);
                (rows, through)
            }
            _ => {
                // Records deleted by retention before they were indexed are simply not found.
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, from_jid, to_jid, body FROM records WHERE seq > ?1 AND seq <= ?2
                     ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(params![indexed, head, max as i64], |r| {
                        Ok(IndexRow {
                            seq: r.get(0)?,
                            from: r.get(1)?,
                            to: r.get(2)?,
                            body: r.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let through = if rows.len() < max {
                    head
                } else {
                    rows.last().map_or(head, |r| r.seq)
                };
                (rows, through)
            }
        };
        // Ids this pass looked up or added: cached only once the pass has committed.
        let mut fresh: HashMap<&str, i64> = HashMap::new();
        {
            let mut fts =
                tx.prepare_cached("INSERT INTO idx.records_fts (rowid, body) VALUES (?1, ?2)")?;
            let mut party = tx.prepare_cached(
                "INSERT OR IGNORE INTO idx.parties (account, seq, peer) VALUES (?1, ?2, ?3)",
            )?;
            let mut jids = JidIds {
                find: tx.prepare_cached("SELECT id FROM idx.jids WHERE jid = ?1")?,
                add: tx.prepare_cached("INSERT INTO idx.jids (jid) VALUES (?1)")?,
                tx: &tx,
                cached: ids,
                fresh: &mut fresh,
            };
            let mut parties = Vec::with_capacity(rows.len() * 2);
            for r in &rows {
                if let Some(body) = &r.body {
                    fts.execute(params![r.seq, body])?;
                }
                let (a, b) = (bare(&r.from), bare(&r.to));
                if a.is_empty() && b.is_empty() {
                    continue;
                }
                let (ia, ib) = (jids.id(a)?, jids.id(b)?);
                if !a.is_empty() {
                    parties.push((ia, r.seq, ib));
                }
                if !b.is_empty() && b != a {
                    parties.push((ib, r.seq, ia));
                }
            }
            // In key order, so that consecutive inserts land on the same B-tree pages.
            parties.sort_unstable();
            for (account, seq, peer) in parties {
                party.execute(params![account, seq, peer])?;
            }
            tx.prepare_cached(
                "INSERT INTO idx.index_head (id, seq) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
            )?
            .execute([through])?;
        }
        tx.commit()?;
        if ids.len() + fresh.len() > JID_CACHE_MAX {
            ids.clear();
        }
        ids.extend(fresh.into_iter().map(|(jid, id)| (Box::from(jid), id)));
        Ok(progress(through, head))
    }
}

/// Resolves bare JIDs to their `idx.jids` ids inside an indexing pass, adding the missing.
struct JidIds<'t, 'c, 'r> {
    find: rusqlite::CachedStatement<'t>,
    add: rusqlite::CachedStatement<'t>,
    tx: &'t rusqlite::Transaction<'c>,
    /// Committed ids (read only here).
    cached: &'t HashMap<Box<str>, i64>,
    /// Ids looked up or added by this pass's transaction.
    fresh: &'t mut HashMap<&'r str, i64>,
}

impl<'r> JidIds<'_, '_, 'r> {
    fn id(&mut self, jid: &'r str) -> rusqlite::Result<i64> {
        if let Some(&id) = self.cached.get(jid).or_else(|| self.fresh.get(jid)) {
            return Ok(id);
        }
        let id = match self.find.query_row([jid], |r| r.get(0)).optional()? {
            Some(id) => id,
            None => {
                self.add.execute([jid])?;
                self.tx.last_insert_rowid()
            }
        };
        self.fresh.insert(jid, id);
        Ok(id)
    }
}

/// `PRAGMA schema.wal_checkpoint(PASSIVE)` on `conn`: copies what no reader still needs,
/// waiting for nobody.
fn wal_checkpoint(conn: &Connection, schema: &str) -> rusqlite::Result<()> {
    // One row: (busy, frames in the WAL, frames copied).
    conn.query_row(
        &format!("PRAGMA {schema}.wal_checkpoint(PASSIVE)"),
        [],
        |_| Ok(()),
    )
}

fn progress(indexed: i64, head: i64) -> IndexProgress {
    IndexProgress {
        indexed_seq: seq_u64(indexed),
        head_seq: seq_u64(head),
    }
}

/// The chain hashes of `records` appended after `prev` with the first at `first_seq`.
fn chain(first_seq: u64, prev: &[u8; 32], records: &[NewRecord]) -> Vec<[u8; 32]> {
    let mut h = *prev;
    (first_seq..)
        .zip(records)
        .map(|(seq, r)| {
            h = hash::chain_hash(seq, &h, &Fields::of(r).digest());
            h
        })
        .collect()
}

/// The database's chain head.
fn db_head(conn: &Connection) -> Result<(u64, [u8; 32])> {
    let head: Option<(i64, Vec<u8>)> = conn
        .query_row("SELECT seq, hash FROM chain_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match head {
        None => Ok((0, GENESIS)),
        Some((seq, h)) => Ok((
            seq_u64(seq),
            hash::array(&h)
                .ok_or_else(|| ArchiveError::Backend("chain head hash is not 32 bytes".into()))?,
        )),
    }
}

/// Put the logged batches the database lacks into it (the last commit synced), and return
/// the chain head. Batches it already holds are skipped; a log that does not continue its
/// chain (a truncated or replaced database) is refused: the inner error says why, and
/// nothing was applied.
fn replay(
    conn: &mut Connection,
    batches: Vec<commitlog::Batch>,
    durable: bool,
) -> Result<std::result::Result<(u64, [u8; 32]), String>> {
    let (mut seq, mut head) = db_head(conn)?;
    let mut todo = Vec::new();
    for b in batches {
        if b.last_seq() <= seq {
            continue;
        }
        if b.first_seq != seq + 1 || b.prev != head {
            return Ok(Err(format!(
                "the commit log ({}) does not continue the archive database: it holds records \
                 from seq {} on, the database ends at seq {seq}{}; appends are refused. Run \
                 `rampart archive verify`, then restore the matching archive.db, or move the \
                 log files away to go on from the database as it is",
                commitlog::LOG_FILES.join(", "),
                b.first_seq,
                if b.first_seq == seq + 1 { " with another hash" } else { "" },
            )));
        }
        let hashes = chain(b.first_seq, &b.prev, &b.records);
        seq = b.last_seq();
        head = hashes.last().copied().unwrap_or(head);
        todo.push(Logged {
            segment_max: b.segment_max,
            first_seq: b.first_seq,
            prev: b.prev,
            records: b.records,
            hashes,
        });
    }
    if let Some(last) = todo.len().checked_sub(1) {
        let n: usize = todo.iter().map(|b| b.records.len()).sum();
        tracing::warn!(
            records = n,
            through_seq = seq,
            "archive: applying records from the commit log that the database lacked \
             (the last run ended before its applier caught up)"
        );
        for (i, b) in todo.iter().enumerate() {
            commit_logged(conn, std::slice::from_ref(b), durable && i == last)?;
        }
    }
    Ok(Ok((seq, head)))
}

/// One applier transaction over consecutive logged batches with the same segment size
/// limit, synced if `sync`.
fn commit_logged(conn: &mut Connection, batches: &[Logged], sync: bool) -> Result<AppendOutcome> {
    let Some(first) = batches.first() else {
        return Err(ArchiveError::Backend("nothing to apply".into()));
    };
    let records: Vec<&NewRecord> = batches.iter().flat_map(|b| &b.records).collect();
    let hashes: Vec<[u8; 32]> = batches.iter().flat_map(|b| b.hashes.iter().copied()).collect();
    if sync {
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    let out = append_tx(
        conn,
        &records,
        &hashes,
        first.segment_max,
        (first.first_seq, first.prev),
    );
    if sync {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    out
}

/// The applier thread: gathers logged batches for [`APPLY_GATHER`], commits them to the
/// database in one transaction (synced when the log asks or [`SYNC_EVERY`] passed), feeds
/// the indexer, and publishes how far it got. A failed commit is retried every second: the
/// records are safe in the log meanwhile, and readers wait (then fail) rather than miss
/// them. Stops when the writer hangs up, after applying everything it sent.
fn apply_loop(journal: &Journal, rx: &mpsc::Receiver<Logged>, durable: bool) {
    let mut last_sync = Instant::now();
    while let Ok(first) = rx.recv() {
        let mut n = first.records.len();
        let mut batches = vec![first];
        // Sleep through the gathering instead of waiting on the channel: a wait would be
        // woken by every commit (a context switch per commit under light load).
        std::thread::sleep(APPLY_GATHER);
        let mut closing = false;
        while n < APPLY_MAX {
            match rx.try_recv() {
                Ok(b) => {
                    n += b.records.len();
                    batches.push(b);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closing = true;
                    break;
                }
            }
        }
        let sync = durable
            && (closing
                || journal.want_sync.swap(false, Ordering::AcqRel)
                || last_sync.elapsed() >= SYNC_EVERY);
        let mut failures = 0u32;
        while let Err(e) = apply(journal, &mut batches, sync) {
            failures += 1;
            tracing::error!(error = %e, records = n, failures, "archive applier: commit failed; retrying");
            if closing && failures >= 3 {
                // They stay in the commit log; the next open applies them.
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        if sync {
            last_sync = Instant::now();
        }
    }
}

/// Commit `batches` (runs of one segment size limit each, in practice one run), feed the
/// indexer and publish, run by run: after a failure, `batches` holds what is left.
fn apply(journal: &Journal, batches: &mut Vec<Logged>, sync: bool) -> Result<()> {
    while let Some(first) = batches.first() {
        let seg_max = first.segment_max;
        let n = batches.iter().take_while(|b| b.segment_max == seg_max).count();
        let sync = sync && n == batches.len();
        let mut conn = lock(&journal.conn);
        let head = commit_logged(&mut conn, &batches[..n], sync)?.head_seq;
        // Still under the journal's lock, so the feed sees commits in order.
        let mut feed = lock(&journal.feed);
        for b in batches.drain(..n) {
            feed.push(seq_i64(b.first_seq), b.records);
        }
        drop(feed);
        drop(conn);
        if sync {
            journal.durable.fetch_max(head, Ordering::AcqRel);
        }
        journal.applied.send_replace(head);
    }
    Ok(())
}

/// The open segment while appending.
struct OpenSegment {
    id: i64,
    first_seq: u64,
    last_seq: u64,
    day: i64,
    min_at_ms: i64,
    max_at_ms: i64,
    dirty: bool,
}

fn flush_segment(tx: &rusqlite::Transaction<'_>, s: &OpenSegment) -> Result<()> {
    if s.dirty {
        tx.prepare_cached(UPDATE_SEGMENT)?.execute(params![
            seq_i64(s.last_seq),
            s.min_at_ms,
            s.max_at_ms,
            s.id
        ])?;
    }
    Ok(())
}

type HeadRow = (
    i64,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// One journal commit: `BEGIN IMMEDIATE`, the head and its open segment, the records (with
/// their chain hashes, computed by the log's writer), the segment and head bookkeeping,
/// `COMMIT`. The batch must continue the stored chain: `after` is its first seq and the hash
/// before it. Dropping the transaction on error rolls it back.
fn append_tx(
    conn: &mut Connection,
    batch: &[&NewRecord],
    hashes: &[[u8; 32]],
    segment_max: u64,
    after: (u64, [u8; 32]),
) -> Result<AppendOutcome> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head: Option<HeadRow> = tx
        .prepare_cached(HEAD_SQL)?
        .query_row([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .optional()?;
    let (mut seq, mut prev, mut seg) = match head {
        None => (0u64, GENESIS, None),
        Some((seq, hash, seg_id, first, last, day, min, max)) => {
            let hash = hash::array(&hash)
                .ok_or_else(|| ArchiveError::Backend("chain head hash is not 32 bytes".into()))?;
            let seg = match (first, last, day, min, max) {
                (Some(first), Some(last), Some(day), Some(min), Some(max)) => Some(OpenSegment {
                    id: seg_id,
                    first_seq: seq_u64(first),
                    last_seq: seq_u64(last),
                    day,
                    min_at_ms: min,
                    max_at_ms: max,
                    dirty: false,
                }),
                _ => None,
            };
            (seq_u64(seq), hash, seg)
        }
    };
    if (seq + 1, prev) != after || hashes.len() != batch.len() {
        return Err(ArchiveError::Backend(format!(
            "the archive database's chain head (seq {seq}) does not precede the logged batch \
             (from seq {})",
            after.0
        )));
    }
    let first_seq = seq + 1;
    {
        let mut insert = tx.prepare_cached(INSERT_RECORD)?;
        for (rec, h) in batch.iter().zip(hashes) {
            seq += 1;
            let day = rec.at_ms.div_euclid(DAY_MS);
            let start_new = match &seg {
                None => true,
                Some(s) => day > s.day || s.last_seq - s.first_seq + 1 >= segment_max,
            };
            if start_new {
                if let Some(s) = seg.take() {
                    flush_segment(&tx, &s)?;
                }
                let id: i64 = tx
                    .prepare_cached(INSERT_SEGMENT)?
                    .query_row(params![seq_i64(seq), day, rec.at_ms], |r| r.get(0))?;
                seg = Some(OpenSegment {
                    id,
                    first_seq: seq,
                    last_seq: seq,
                    day,
                    min_at_ms: rec.at_ms,
                    max_at_ms: rec.at_ms,
                    dirty: false,
                });
            } else if let Some(s) = seg.as_mut() {
                s.last_seq = seq;
                s.min_at_ms = s.min_at_ms.min(rec.at_ms);
                s.max_at_ms = s.max_at_ms.max(rec.at_ms);
                s.dirty = true;
            }
            let f = Fields::of(rec);
            insert.execute(params![
                seq_i64(seq),
                f.at_ms,
                f.kind,
                f.direction,
                f.from,
                f.to,
                f.remote_domain,
                f.stanza_id,
                f.body,
                f.stanza_xml,
                f.verdict,
                f.verdict_rule,
                f.verdict_reason,
                f.meta_json,
                &prev[..],
                &h[..],
            ])?;
            prev = *h;
        }
    }
    let seg_id = match &seg {
        Some(s) => {
            flush_segment(&tx, s)?;
            s.id
        }
        None => 0,
    };
    tx.prepare_cached(UPSERT_HEAD)?
        .execute(params![seq_i64(seq), &prev[..], seg_id])?;
    tx.commit()?;
    Ok(AppendOutcome {
        first_seq,
        head_seq: seq,
        head_hash: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(body: &str) -> NewRecord {
        NewRecord {
            body: Some(body.into()),
            ..crate::hash::tests::rec()
        }
    }

    #[test]
    fn feed_hands_over_contiguous_rows_and_resets_on_gaps() {
        let mut f = Feed::default();
        f.push(1, vec![rec("1"), rec("2"), rec("3")]);
        // Up to the head, at most `max`.
        let got = f.take(0, 2, 10).expect("starts after 0");
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        let got = f.take(2, 9, 10).expect("starts after 2");
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(got[0].body.as_deref(), Some("3"));
        // A gap (records 4..=5 appended by another process) restarts the feed at 6, and the
        // indexer must read 4..=5 back: `take` after 3 gives nothing.
        f.push(6, vec![rec("6")]);
        assert!(f.take(3, 9, 10).is_none());
        // Once indexed through 5 (read back), the feed serves 6; rows already indexed are
        // dropped.
        f.push(7, vec![rec("7")]);
        let got = f.take(6, 9, 10).expect("starts after 6");
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [7]);
        assert!(f.take(7, 9, 10).is_none());
    }
}
