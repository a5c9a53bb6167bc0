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
//! WAL checkpoints ([`Direct::checkpoint`]) copy the bulk of each WAL beside the writers, then
//! the rest with that file's writer held off for a moment: a checkpoint that reaches the end
//! of the WAL lets the next commit start it over from the beginning. Under a steady stream of
//! commits, passive checkpoints alone never get there, and the WAL file grew without bound;
//! every commit's sync then also had to record the file's growth in the file system journal.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::backend::{AppendOutcome, IndexProgress};
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

/// The journal writer's and the indexer's connections, and the feed between them.
#[derive(Debug)]
pub(crate) struct Direct {
    journal: Mutex<Connection>,
    indexer: Mutex<Indexer>,
    feed: Mutex<Feed>,
    /// The journal's checkpoints beside the appends (see [`Direct::checkpoint`]).
    checkpointer: Mutex<Connection>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves at worst an open transaction, which rusqlite
    // rolls back on drop; the connection itself stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection to the (already created and migrated) journal at `path`.
fn connect(path: &Path, durable: bool, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "mmap_size", 1_073_741_824_i64)?;
    // Checkpoints run in `Direct::checkpoint`, never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    Ok(conn)
}

impl Direct {
    /// Open the two connections on `path`, the indexer's with `index` attached as `idx`.
    pub(crate) fn open(path: &Path, index: &Path, durable: bool, busy: Duration) -> Result<Direct> {
        let journal = connect(path, durable, busy)?;
        let indexer = connect(path, durable, busy)?;
        indexer.execute(
            "ATTACH DATABASE ?1 AS idx",
            [index.to_string_lossy().as_ref()],
        )?;
        // Derived data, rebuilt from the journal when behind or missing.
        indexer.pragma_update(
            Some("idx"),
            "synchronous",
            if durable { "NORMAL" } else { "OFF" },
        )?;
        indexer.pragma_update(Some("idx"), "journal_size_limit", WAL_SIZE_LIMIT)?;
        let checkpointer = connect(path, durable, busy)?;
        Ok(Direct {
            journal: Mutex::new(journal),
            indexer: Mutex::new(Indexer {
                conn: indexer,
                ids: HashMap::new(),
            }),
            feed: Mutex::new(Feed::default()),
            checkpointer: Mutex::new(checkpointer),
        })
    }

    /// Copy both WALs back into their databases (blocking), so that each starts over:
    /// the journal's bulk beside the appends, then what they added meanwhile with the appends
    /// held off (a copy of a few hundred milliseconds of commits and one sync); the index's
    /// with the indexer held off, which only delays searches' catching up. A reader that
    /// still reads an older snapshot can keep part of a WAL; the next checkpoint gets it.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        wal_checkpoint(&lock(&self.checkpointer), "main")?;
        wal_checkpoint(&lock(&self.journal), "main")?;
        wal_checkpoint(&lock(&self.indexer).conn, "idx")?;
        Ok(())
    }

    /// Commit `batch` durably after the chain head (blocking). The records then go to the
    /// indexer's feed.
    pub(crate) fn append(&self, batch: Vec<NewRecord>, segment_max: u64) -> Result<AppendOutcome> {
        let mut conn = lock(&self.journal);
        let out = append_tx(&mut conn, &batch, segment_max)?;
        // Still under the journal's lock, so the feed sees commits in order.
        lock(&self.feed).push(seq_i64(out.first_seq), batch);
        Ok(out)
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
        let fed = lock(&self.feed).take(indexed, head, max);
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

/// One journal commit: `BEGIN IMMEDIATE`, the head and its open segment, the records, the
/// segment and head bookkeeping, `COMMIT`. Dropping the transaction on error rolls it back.
fn append_tx(
    conn: &mut Connection,
    batch: &[NewRecord],
    segment_max: u64,
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
    let first_seq = seq + 1;
    {
        let mut insert = tx.prepare_cached(INSERT_RECORD)?;
        for rec in batch {
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
            let h = hash::chain_hash(seq, &prev, &f.digest());
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
            prev = h;
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
