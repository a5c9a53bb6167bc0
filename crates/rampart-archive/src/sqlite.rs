//! The embedded SQLite backend: `archive.db` in WAL mode, written through a commit log
//! ([`crate::commitlog`]) whose synced frame is what makes a batch survive a crash or power
//! loss. Every writing transaction starts with `BEGIN IMMEDIATE`, so several processes may
//! share the file (e.g. the server appending while the CLI applies retention); one process
//! at a time appends records (the one holding the commit log).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
// Dynamic SQL (`AssertSqlSafe`) is only ever assembled from constant fragments; every
// value from a query or record is a bound parameter.
use sqlx::{Arguments, AssertSqlSafe, Row, Sqlite, SqliteConnection, Transaction};

use crate::backend::{AppendOutcome, ArchiveBackend, IndexProgress, Segment, StoredRow};
use crate::direct::Direct;
use crate::error::{ArchiveError, Result};
use crate::hash::{self, GENESIS};
use crate::types::{
    Checkpoint, HoldInfo, LegalHold, MAM_DEFAULT_PAGE, MAM_MAX_PAGE, MamPage, MamQuery, NewRecord,
    RecordKind, SearchQuery, Tombstone, VerdictKind,
};

/// The database file name inside the archive directory.
pub const DB_FILE: &str = "archive.db";

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// A read waits at most this long for the applier to catch up with the commit log.
const SETTLE_WAIT: Duration = Duration::from_secs(30);
const MAX_CONNECTIONS: u32 = 4;
/// Default number of search results.
const DEFAULT_LIMIT: u32 = 100;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "deferred_index",
        include_str!("../migrations/sqlite/0002_deferred_index.sql"),
    ),
    (
        3,
        "partial_indexes",
        include_str!("../migrations/sqlite/0003_partial_indexes.sql"),
    ),
];

const COLUMNS: &str = "r.seq, r.at_ms, r.kind, r.direction, r.from_jid, r.to_jid, \
    r.remote_domain, r.stanza_id, r.body, r.stanza_xml, r.verdict, r.verdict_rule, \
    r.verdict_reason, r.meta_json, r.prev_hash, r.hash";

/// The index file's name inside the archive directory.
pub const INDEX_FILE: &str = "archive-index.db";

/// The layout of the index file that [`INDEX_SCHEMA`] creates, in its `user_version`. 0 is
/// a new file or the first layout (accounts and peers as text in `parties`), which
/// [`index_schema`] drops and rebuilds.
pub const INDEX_VERSION: i64 = 2;

/// The search indexes, in the database attached as `idx` (see migration 0002): derived data
/// that `index_pending` rebuilds from the journal, so it is written with `synchronous =
/// NORMAL`. The account index keys bare JIDs by their id in `jids` (a few bytes instead of
/// the text, so more keys per page and integer comparisons); `jids` rows are never deleted.
const INDEX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS idx.jids (
    id  INTEGER PRIMARY KEY,
    jid TEXT    NOT NULL UNIQUE     -- a bare JID
) STRICT;
CREATE TABLE IF NOT EXISTS idx.parties (
    account INTEGER NOT NULL,   -- jids.id of the sender or recipient
    seq     INTEGER NOT NULL,
    peer    INTEGER NOT NULL,   -- jids.id of the other side
    PRIMARY KEY (account, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx.parties_peer ON parties (account, peer, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS idx.records_fts USING fts5 (
    body,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS idx.index_head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL          -- every record with seq <= this is in the indexes
) STRICT;
";

/// Everything of an older index layout, dropped before [`INDEX_SCHEMA`] recreates it.
const DROP_INDEX: &str = "
DROP INDEX IF EXISTS idx.parties_peer;
DROP TABLE IF EXISTS idx.parties;
DROP TABLE IF EXISTS idx.records_fts;
DROP TABLE IF EXISTS idx.index_head;
DROP TABLE IF EXISTS idx.jids;
";

/// The id of a bare JID in the account index (NULL when no record names it), as an SQL
/// expression with one parameter. Uncorrelated, so SQLite evaluates it once and probes
/// `parties`'s keys with the result.
const JID_ID: &str = "(SELECT id FROM idx.jids WHERE jid = ?)";

/// The archive on an SQLite database: the journal in `archive.db`, the search indexes in
/// `archive-index.db` (attached as `idx`).
#[derive(Clone, Debug)]
pub struct SqliteBackend {
    /// Readers (with the index attached).
    pool: SqlitePool,
    /// One connection for the journal's rare writes (migrations, checkpoints, retention,
    /// holds).
    writer: SqlitePool,
    /// One connection for the indexes' rare writes (their schema, retention's deletions).
    indexer: SqlitePool,
    /// The hot paths: every append and every indexing pass (see [`crate::direct`]).
    direct: Arc<Direct>,
    /// The directory of a throw-away archive, removed with the last handle.
    _temp: Option<Arc<tempfile::TempDir>>,
}

/// A pool of one connection kept for the backend's life.
fn one_connection(opts: SqlitePoolOptions) -> SqlitePoolOptions {
    opts.max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(60))
}

/// Pool options whose connections attach the index database `index` as `idx`.
fn attaching(opts: SqlitePoolOptions, index: String) -> SqlitePoolOptions {
    opts.after_connect(move |conn, _meta| {
        let index = index.clone();
        Box::pin(async move {
            sqlx::query("ATTACH DATABASE ? AS idx")
                .bind(index)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    })
}

impl SqliteBackend {
    /// Open (creating if missing) `path` and its index file beside it, and apply migrations.
    pub async fn open(path: &Path) -> Result<SqliteBackend> {
        SqliteBackend::open_with(path, true, None).await
    }

    /// A throw-away archive in a temporary directory, removed with the last handle, written
    /// without `fsync` (for tests).
    pub async fn open_in_memory() -> Result<SqliteBackend> {
        let dir = tempfile::tempdir()
            .map_err(|e| ArchiveError::Backend(format!("temporary archive directory: {e}")))?;
        let path = dir.path().join(DB_FILE);
        SqliteBackend::open_with(&path, false, Some(Arc::new(dir))).await
    }

    async fn open_with(
        path: &Path,
        durable: bool,
        temp: Option<Arc<tempfile::TempDir>>,
    ) -> Result<SqliteBackend> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if durable {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Off
            })
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "1073741824");
        let opening =
            |e: sqlx::Error| ArchiveError::Backend(format!("opening {}: {e}", path.display()));
        // No connection checkpoints the WAL inside a commit (that would stall the appends
        // waiting behind it); `wal_checkpoint` does it (see `Direct::checkpoint`).
        let writer = one_connection(SqlitePoolOptions::new())
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .map_err(opening)?;
        let index_path = path.with_file_name(INDEX_FILE);
        let index = index_path.to_string_lossy().into_owned();
        let indexer = one_connection(attaching(SqlitePoolOptions::new(), index.clone()))
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .map_err(opening)?;
        let pool = attaching(SqlitePoolOptions::new(), index)
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await
            .map_err(opening)?;
        migrate(&writer).await?;
        sqlx::raw_sql("PRAGMA idx.journal_mode = WAL; PRAGMA idx.synchronous = NORMAL;")
            .execute(&indexer)
            .await?;
        index_schema(&indexer).await?;
        let (journal, idx) = (path.to_owned(), index_path.clone());
        let direct = tokio::task::spawn_blocking(move || {
            Direct::open(&journal, &idx, durable, BUSY_TIMEOUT)
        })
        .await
        .map_err(|e| ArchiveError::Backend(format!("opening {}: {e}", path.display())))??;
        Ok(SqliteBackend {
            pool,
            writer,
            indexer,
            direct: Arc::new(direct),
            _temp: temp,
        })
    }

    /// Run `f` on the hot-path connections ([`Direct`]) on a blocking thread; `thread`
    /// names it in the error if that thread panics.
    async fn on_direct<T: Send + 'static>(
        &self,
        thread: &str,
        f: impl FnOnce(&Direct) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let direct = self.direct.clone();
        tokio::task::spawn_blocking(move || f(&direct))
            .await
            .map_err(|e| ArchiveError::Backend(format!("{thread}: {e}")))?
    }

    /// Wait until the database holds every record this process has logged (the applier
    /// runs up to about 25 ms behind the commit log): reads see every append acknowledged
    /// before they started.
    async fn settle(&self) -> Result<()> {
        if !self.direct.is_active() && !self.on_direct("archive reader", |d| d.try_activate()).await? {
            return self.settle_beside_writer().await;
        }
        let target = self.direct.logged();
        let mut applied = self.direct.applied();
        match tokio::time::timeout(SETTLE_WAIT, applied.wait_for(|a| *a >= target)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ArchiveError::Backend(
                "the archive database is behind its commit log (see the applier's errors in \
                 the log)"
                    .into(),
            )),
        }
    }

    /// [`SqliteBackend::settle`] in a process that does not append (the CLI beside the
    /// server): wait until the database holds what the commit log held when asked, taking
    /// the log over if its writer goes away meanwhile.
    async fn settle_beside_writer(&self) -> Result<()> {
        let target = self.on_direct("archive reader", |d| d.log_newest_seq()).await?;
        let give_up = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            let (seq,): (i64,) =
                sqlx::query_as("SELECT coalesce((SELECT seq FROM chain_head WHERE id = 1), 0)")
                    .fetch_one(&self.pool)
                    .await?;
            if seq_u64(seq) >= target
                || self.on_direct("archive reader", |d| d.try_activate()).await?
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(ArchiveError::Backend(
                    "the archive database is behind its commit log, and the process writing it \
                     does not catch up"
                        .into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The connection pool (for tests and tools that inspect the file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Apply the journal's migrations on `writer`.
async fn migrate(writer: &SqlitePool) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS archive_migrations (
            version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL
        ) STRICT",
    )
    .execute(writer)
    .await?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    for &(version, description, sql) in MIGRATIONS {
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let (newest,): (Option<i64>,) =
            sqlx::query_as("SELECT max(version) FROM archive_migrations")
                .fetch_one(&mut *tx)
                .await?;
        if newest.unwrap_or(0) > known {
            return Err(ArchiveError::Backend(format!(
                "archive schema version {} is newer than this Rampart's ({known})",
                newest.unwrap_or(0)
            )));
        }
        let (applied,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM archive_migrations WHERE version = ?)")
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
        if applied {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(|e| {
            ArchiveError::Backend(format!("migration {version} ({description}): {e}"))
        })?;
        sqlx::query(
            "INSERT INTO archive_migrations (version, description, applied_at) VALUES (?, ?, ?)",
        )
        .bind(version)
        .bind(description)
        .bind(chrono::Utc::now().timestamp())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, description, "applied archive migration");
    }
    Ok(())
}

/// Bring the index file to [`INDEX_VERSION`] on `indexer`, in one transaction: a file of an
/// older layout loses its indexes (they are rebuilt from the journal by the indexer, as
/// `index_head` is gone), then the schema is created where missing. A newer layout is
/// refused, so two versions of Rampart never write one index file with different keys.
async fn index_schema(indexer: &SqlitePool) -> Result<()> {
    // IMMEDIATE: another process opening the archive at the same time waits, then finds the
    // new version.
    let mut tx = indexer.begin_with("BEGIN IMMEDIATE").await?;
    let version: i64 = sqlx::query_scalar("PRAGMA idx.user_version")
        .fetch_one(&mut *tx)
        .await?;
    if version > INDEX_VERSION {
        return Err(ArchiveError::Backend(format!(
            "archive index schema version {version} is newer than this Rampart's \
             ({INDEX_VERSION}); delete {INDEX_FILE} to rebuild it from the journal"
        )));
    }
    if version < INDEX_VERSION {
        let old: i64 =
            sqlx::query_scalar("SELECT count(*) FROM idx.sqlite_schema WHERE type = 'table'")
                .fetch_one(&mut *tx)
                .await?;
        if old > 0 {
            tracing::info!(
                version,
                "archive index has an older layout; rebuilding it from the journal"
            );
            sqlx::raw_sql(DROP_INDEX).execute(&mut *tx).await?;
        }
    }
    sqlx::raw_sql(INDEX_SCHEMA).execute(&mut *tx).await?;
    if version != INDEX_VERSION {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "PRAGMA idx.user_version = {INDEX_VERSION}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The bare part of a JID (everything before the first `/`).
pub(crate) fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

pub(crate) fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub(crate) fn seq_u64(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn arr32(v: &[u8]) -> [u8; 32] {
    hash::array(v).unwrap_or([0; 32])
}

fn arr64(v: &[u8]) -> [u8; 64] {
    hash::array(v).unwrap_or([0; 64])
}

fn row_to_stored(row: &SqliteRow) -> std::result::Result<StoredRow, sqlx::Error> {
    Ok(StoredRow {
        seq: row.try_get(0)?,
        at_ms: row.try_get(1)?,
        kind: row.try_get(2)?,
        direction: row.try_get(3)?,
        from: row.try_get(4)?,
        to: row.try_get(5)?,
        remote_domain: row.try_get(6)?,
        stanza_id: row.try_get(7)?,
        body: row.try_get(8)?,
        stanza_xml: row.try_get(9)?,
        verdict: row.try_get(10)?,
        verdict_rule: row.try_get(11)?,
        verdict_reason: row.try_get(12)?,
        meta_json: row.try_get(13)?,
        prev_hash: row.try_get(14)?,
        hash: row.try_get(15)?,
    })
}

/// Turn user text into an FTS5 query: every whitespace-separated word must occur (as a
/// phrase, so FTS5 operators in user input are inert); a trailing `*` makes a prefix.
pub(crate) fn fts_query(text: &str) -> Result<String> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        let (word, prefix) = match word.strip_suffix('*') {
            Some(w) if !w.is_empty() => (w, true),
            _ => (word, false),
        };
        if !word.chars().any(char::is_alphanumeric) {
            continue;
        }
        let quoted = format!("\"{}\"", word.replace('"', "\"\""));
        out.push(if prefix { quoted + "*" } else { quoted });
    }
    if out.is_empty() {
        return Err(ArchiveError::InvalidQuery(
            "full-text query has no words".into(),
        ));
    }
    Ok(out.join(" "))
}

/// A SQL statement under construction with its arguments.
struct Sql {
    text: String,
    args: SqliteArguments,
}

impl Sql {
    fn new(text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            args: SqliteArguments::default(),
        }
    }

    fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }

    fn bind_str(&mut self, s: &str) -> &mut Sql {
        // Adding an argument to SqliteArguments cannot fail for String.
        let _ = self.args.add(s.to_owned());
        self
    }

    fn bind_i64(&mut self, v: i64) -> &mut Sql {
        let _ = self.args.add(v);
        self
    }
}

/// The seq range of live segments whose time span meets `[since, until)`; `None` if no
/// segment does (the result is then empty).
async fn time_to_seq_range(
    conn: &mut SqliteConnection,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Option<(u64, u64)>> {
    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT min(first_seq), max(last_seq) FROM segments
         WHERE deleted = 0 AND max_at_ms >= ? AND min_at_ms < ?",
    )
    .bind(since.unwrap_or(i64::MIN))
    .bind(until.unwrap_or(i64::MAX))
    .fetch_one(&mut *conn)
    .await?;
    Ok(match (lo, hi) {
        (Some(lo), Some(hi)) => Some((seq_u64(lo), seq_u64(hi))),
        _ => None,
    })
}

/// Build the search statement. `seq_col` is the column the plan orders by.
fn build_search(q: &SearchQuery, range: Option<(u64, u64)>, limit: u32) -> Result<Sql> {
    let account = q.account.as_deref().filter(|s| !s.is_empty());
    let with = q.with.as_deref().filter(|s| !s.is_empty());
    let text = match q.text.as_deref() {
        Some(t) => Some(fts_query(t)?),
        None => None,
    };
    let (party, peer) = match (account, with) {
        (Some(a), w) => (Some(a), w),
        (None, Some(w)) => (Some(w), None),
        (None, None) => (None, None),
    };

    // Verdicts and kinds other than the usual delivered/offline messages are rare: their
    // index is a better driver than a full-text match list.
    let rare_index = q
        .verdict
        .is_some_and(|v| !matches!(v, VerdictKind::Delivered | VerdictKind::Offline))
        || q.kind.is_some_and(|k| k != RecordKind::Message);
    let mut sql;
    let seq_col;
    if let Some(party) = party {
        // Plan A: walk the account index newest first.
        sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM parties p CROSS JOIN records r ON r.seq = p.seq \
             WHERE p.account = {JID_ID}"
        ));
        sql.bind_str(bare(party));
        if let Some(peer) = peer {
            sql.push(&format!(" AND p.peer = {JID_ID}"))
                .bind_str(bare(peer));
        }
        seq_col = "p.seq";
        if let Some(text) = &text {
            sql.push(
                " AND EXISTS (SELECT 1 FROM records_fts WHERE records_fts MATCH ? AND rowid = r.seq)",
            )
            .bind_str(text);
        }
    } else if let Some(text) = text.as_ref().filter(|_| !rare_index) {
        // Plan B: walk the full-text matches newest first.
        sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM records_fts f CROSS JOIN records r ON r.seq = f.rowid \
             WHERE records_fts MATCH ?"
        ));
        sql.bind_str(text);
        seq_col = "f.rowid";
    } else {
        // Plan C: walk the records newest first (or an index on kind/verdict).
        sql = Sql::new(&format!("SELECT {COLUMNS} FROM records r WHERE 1"));
        seq_col = "r.seq";
        if let Some(text) = &text {
            // A rare kind or verdict drives; the full-text matches are materialized once
            // (probing FTS5 per row re-reads a common word's whole doclist each time).
            sql.push(" AND r.seq IN (SELECT rowid FROM records_fts WHERE records_fts MATCH ?)")
                .bind_str(text);
        }
    }
    // Full JIDs also match the resource.
    for jid in [account, with].into_iter().flatten() {
        if jid.contains('/') {
            sql.push(" AND (r.from_jid = ? OR r.to_jid = ?)")
                .bind_str(jid)
                .bind_str(jid);
        }
    }
    if let Some(d) = q.direction {
        sql.push(" AND r.direction = ?").bind_str(d.as_str());
    }
    if let Some(k) = q.kind {
        sql.push(" AND r.kind = ?").bind_str(k.as_str());
        if k != RecordKind::Message {
            // The partial index's own condition, so that the planner may use it.
            sql.push(" AND r.kind <> 'message'");
        }
    }
    if let Some(v) = q.verdict {
        sql.push(" AND r.verdict = ?").bind_str(v.as_str());
        if !matches!(v, VerdictKind::Delivered | VerdictKind::Offline) {
            sql.push(" AND r.verdict NOT IN ('delivered', 'offline')");
        }
    }
    // `+` keeps the planner off the at_ms index: the seq range from the segments already
    // narrows the walk, and the at_ms index would lose the newest-first order.
    if let Some(s) = q.since_ms {
        sql.push(" AND +r.at_ms >= ?").bind_i64(s);
    }
    if let Some(u) = q.until_ms {
        sql.push(" AND +r.at_ms < ?").bind_i64(u);
    }
    let (mut lo, mut hi) = range.unwrap_or((0, u64::MAX));
    if let Some(b) = q.before_seq {
        hi = hi.min(b.saturating_sub(1));
    }
    lo = lo.max(1);
    if lo > 1 {
        sql.push(&format!(" AND {seq_col} >= ?"))
            .bind_i64(seq_i64(lo));
    }
    if hi < u64::MAX {
        sql.push(&format!(" AND {seq_col} <= ?"))
            .bind_i64(seq_i64(hi));
    }
    sql.push(&format!(" ORDER BY {seq_col} DESC LIMIT ?"))
        .bind_i64(i64::from(limit));
    Ok(sql)
}

/// Condition and arguments selecting `owner`'s MAM-visible messages (on `parties p` joined
/// with `records r`).
fn mam_filter(owner: &str, q: &MamQuery) -> Sql {
    let visible = if q.with_moderation {
        "((+r.kind = 'message' AND +r.verdict IN ('delivered', 'offline') \
         AND r.body IS NOT NULL) OR (+r.kind = 'moderation' AND +r.verdict = 'delivered'))"
    } else {
        "+r.kind = 'message' AND +r.verdict IN ('delivered', 'offline') AND r.body IS NOT NULL"
    };
    let mut sql = Sql::new(&format!(
        " FROM parties p CROSS JOIN records r ON r.seq = p.seq WHERE p.account = {JID_ID} \
         AND {visible}"
    ));
    sql.bind_str(bare(owner));
    if let Some(with) = q.with.as_deref().filter(|w| !w.is_empty()) {
        sql.push(&format!(" AND p.peer = {JID_ID}"))
            .bind_str(bare(with));
        if with.contains('/') {
            sql.push(" AND (r.from_jid = ? OR r.to_jid = ?)")
                .bind_str(with)
                .bind_str(with);
        }
    }
    for peer in &q.exclude_peers {
        // `IS NOT`: a JID no record names has no id, and excludes nothing.
        sql.push(&format!(" AND p.peer IS NOT {JID_ID}"))
            .bind_str(bare(peer));
    }
    if let Some(s) = q.start_ms {
        sql.push(" AND +r.at_ms >= ?").bind_i64(s);
    }
    if let Some(e) = q.end_ms {
        sql.push(" AND +r.at_ms <= ?").bind_i64(e);
    }
    sql
}

fn parse_rsm_id(id: &str) -> Result<u64> {
    id.parse::<u64>()
        .map_err(|_| ArchiveError::ItemNotFound(id.to_owned()))
}

#[async_trait]
impl ArchiveBackend for SqliteBackend {
    fn append_batch(&self, batch: Vec<NewRecord>, segment_max_records: u64) -> Result<AppendOutcome> {
        self.direct.append(batch, segment_max_records)
    }

    fn close_appends(&self) {
        self.direct.close_appends();
    }

    async fn index_pending(&self, max_records: u32) -> Result<IndexProgress> {
        self.settle().await?;
        self.on_direct("archive indexer thread", move |d| d.index_pending(max_records)).await
    }

    fn appends_refused(&self) -> Option<String> {
        self.direct.appends_refused()
    }

    async fn wal_checkpoint(&self) -> Result<()> {
        self.on_direct("archive checkpoint thread", move |d| d.checkpoint()).await
    }

    async fn head(&self) -> Result<(u64, [u8; 32])> {
        self.settle().await?;
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM chain_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(match head {
            None => (0, GENESIS),
            Some((seq, hash)) => (seq_u64(seq), arr32(&hash)),
        })
    }

    async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        sqlx::query("INSERT INTO checkpoints (seq, hash, at_ms, signature) VALUES (?, ?, ?, ?)")
            .bind(seq_i64(cp.seq))
            .bind(&cp.hash[..])
            .bind(cp.at_ms)
            .bind(&cp.signature[..])
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let rows: Vec<(i64, Vec<u8>, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, hash, at_ms, signature FROM checkpoints ORDER BY seq, at_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, hash, at_ms, sig)| Checkpoint {
                seq: seq_u64(seq),
                hash: arr32(&hash),
                at_ms,
                signature: arr64(&sig),
            })
            .collect())
    }

    async fn checkpoint_covering(&self, min_seq: u64) -> Result<Option<Checkpoint>> {
        let row: Option<(i64, Vec<u8>, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, hash, at_ms, signature FROM checkpoints WHERE seq >= ?
             ORDER BY seq, id LIMIT 1",
        )
        .bind(seq_i64(min_seq))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(seq, hash, at_ms, sig)| Checkpoint {
            seq: seq_u64(seq),
            hash: arr32(&hash),
            at_ms,
            signature: arr64(&sig),
        }))
    }

    async fn tombstones(&self) -> Result<Vec<Tombstone>> {
        let rows = sqlx::query(
            "SELECT first_seq, last_seq, prev_hash, last_hash, min_at_ms, max_at_ms,
                    deleted_at_ms, signature
             FROM tombstones ORDER BY first_seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Tombstone {
                    first_seq: seq_u64(r.try_get(0)?),
                    last_seq: seq_u64(r.try_get(1)?),
                    prev_hash: arr32(r.try_get::<&[u8], _>(2)?),
                    last_hash: arr32(r.try_get::<&[u8], _>(3)?),
                    min_at_ms: r.try_get(4)?,
                    max_at_ms: r.try_get(5)?,
                    deleted_at_ms: r.try_get(6)?,
                    signature: arr64(r.try_get::<&[u8], _>(7)?),
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn rows(&self, from_seq: u64, to_seq: u64, limit: u32) -> Result<Vec<StoredRow>> {
        self.settle().await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM records r WHERE r.seq >= ? AND r.seq <= ? ORDER BY r.seq LIMIT ?"
        )))
        .bind(seq_i64(from_seq))
        .bind(seq_i64(to_seq))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(row_to_stored)
            .collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    }

    async fn search(
        &self,
        q: &SearchQuery,
        seq_range: Option<(u64, u64)>,
    ) -> Result<Vec<StoredRow>> {
        self.settle().await?;
        let mut conn = self.pool.acquire().await?;
        let mut range = seq_range;
        if q.since_ms.is_some() || q.until_ms.is_some() {
            match time_to_seq_range(&mut conn, q.since_ms, q.until_ms).await? {
                None => return Ok(Vec::new()),
                Some((lo, hi)) => {
                    let (a, b) = range.unwrap_or((0, u64::MAX));
                    if lo.max(a) > hi.min(b) {
                        return Ok(Vec::new());
                    }
                    range = Some((lo.max(a), hi.min(b)));
                }
            }
        }
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = build_search(q, range, limit)?;
        let rows = sqlx::query_with(AssertSqlSafe(sql.text), sql.args)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(row_to_stored)
            .collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    }

    async fn mam(&self, owner: &str, q: &MamQuery) -> Result<(Vec<StoredRow>, MamPage)> {
        self.settle().await?;
        let max = q.max.unwrap_or(MAM_DEFAULT_PAGE).min(MAM_MAX_PAGE);
        let mut tx = self.pool.begin().await?;
        let filter = mam_filter(owner, q);
        let count: i64 = sqlx::query_scalar_with(
            AssertSqlSafe(format!("SELECT count(*){}", filter.text)),
            filter.args,
        )
        .fetch_one(&mut *tx)
        .await?;
        let count = seq_u64(count);

        // Resolve RSM ids: they must name a record in the owner's archive.
        let mut resolve = async |id: &str| -> Result<u64> {
            let seq = parse_rsm_id(id)?;
            let exists: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM parties WHERE account = {JID_ID} AND seq = ?)"
            )))
            .bind(bare(owner))
            .bind(seq_i64(seq))
            .fetch_one(&mut *tx)
            .await?;
            if exists {
                Ok(seq)
            } else {
                Err(ArchiveError::ItemNotFound(id.to_owned()))
            }
        };
        let after = match q.after.as_deref() {
            Some(id) => Some(resolve(id).await?),
            None => None,
        };
        let before = match q.before.as_deref() {
            Some("") => Some(None),
            Some(id) => Some(Some(resolve(id).await?)),
            None => None,
        };

        let mut page = MamPage {
            count,
            ..MamPage::default()
        };
        if max == 0 {
            page.complete = count == 0;
            return Ok((Vec::new(), page));
        }
        let backward = before.is_some();
        let mut sql = mam_filter(owner, q);
        sql.text = format!("SELECT {COLUMNS}{}", sql.text);
        if let Some(a) = after {
            sql.push(" AND p.seq > ?").bind_i64(seq_i64(a));
        }
        if let Some(Some(b)) = before {
            sql.push(" AND p.seq < ?").bind_i64(seq_i64(b));
        }
        sql.push(if backward {
            " ORDER BY p.seq DESC LIMIT ?"
        } else {
            " ORDER BY p.seq ASC LIMIT ?"
        })
        .bind_i64(i64::from(max) + 1);
        let rows = sqlx::query_with(AssertSqlSafe(sql.text), sql.args)
            .fetch_all(&mut *tx)
            .await?;
        let mut rows = rows
            .iter()
            .map(row_to_stored)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        page.complete = rows.len() <= max as usize;
        rows.truncate(max as usize);
        if backward {
            rows.reverse();
        }
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            page.first = Some(first.seq.to_string());
            page.last = Some(last.seq.to_string());
            let mut before_first = mam_filter(owner, q);
            before_first.push(" AND p.seq < ?").bind_i64(first.seq);
            let index: i64 = sqlx::query_scalar_with(
                AssertSqlSafe(format!("SELECT count(*){}", before_first.text)),
                before_first.args,
            )
            .fetch_one(&mut *tx)
            .await?;
            page.first_index = Some(seq_u64(index));
        }
        tx.commit().await?;
        Ok((rows, page))
    }

    async fn retention_candidates(&self, cutoff_ms: i64) -> Result<Vec<Segment>> {
        self.settle().await?;
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, first_seq, last_seq, min_at_ms, max_at_ms FROM segments
             WHERE deleted = 0 AND max_at_ms < ?
               AND id <> coalesce((SELECT segment_id FROM chain_head WHERE id = 1), -1)
             ORDER BY first_seq",
        )
        .bind(cutoff_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, first, last, min, max)| Segment {
                id,
                first_seq: seq_u64(first),
                last_seq: seq_u64(last),
                min_at_ms: min,
                max_at_ms: max,
            })
            .collect())
    }

    async fn delete_segment(&self, seg: &Segment, t: &Tombstone) -> Result<()> {
        self.settle().await?;
        let mut tx = self.begin_write().await?;
        let (first, last) = (seq_i64(seg.first_seq), seq_i64(seg.last_seq));
        let still: Option<(i64, i64)> =
            sqlx::query_as("SELECT first_seq, last_seq FROM segments WHERE id = ? AND deleted = 0")
                .bind(seg.id)
                .fetch_optional(&mut *tx)
                .await?;
        if still != Some((first, last)) {
            return Err(ArchiveError::Backend(format!(
                "segment {}..={} changed during retention",
                seg.first_seq, seg.last_seq
            )));
        }
        let ends: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, prev_hash, hash FROM records WHERE seq IN (?, ?) ORDER BY seq",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&mut *tx)
        .await?;
        let ok = match ends.as_slice() {
            [one] => first == last && one.1 == t.prev_hash && one.2 == t.last_hash,
            [a, b] => a.1 == t.prev_hash && b.2 == t.last_hash,
            _ => false,
        };
        if !ok {
            return Err(ArchiveError::SegmentTampered {
                first_seq: seg.first_seq,
                last_seq: seg.last_seq,
                reason: "records changed during retention".into(),
            });
        }
        let rows: Vec<(i64, String, String, bool)> = sqlx::query_as(
            "SELECT seq, from_jid, to_jid, body IS NOT NULL FROM records
             WHERE seq >= ? AND seq <= ?",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM records WHERE seq >= ? AND seq <= ?")
            .bind(first)
            .bind(last)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO tombstones (first_seq, last_seq, prev_hash, last_hash, min_at_ms,
                max_at_ms, deleted_at_ms, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(first)
        .bind(last)
        .bind(&t.prev_hash[..])
        .bind(&t.last_hash[..])
        .bind(t.min_at_ms)
        .bind(t.max_at_ms)
        .bind(t.deleted_at_ms)
        .bind(&t.signature[..])
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE segments SET deleted = 1 WHERE id = ?")
            .bind(seg.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Then drop the deleted records from the indexes (until then they only pointed at
        // records that queries no longer find).
        let mut tx = self.indexer.begin().await?;
        for (seq, from, to, has_body) in &rows {
            if *has_body {
                sqlx::query("DELETE FROM idx.records_fts WHERE rowid = ?")
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            for account in [bare(from), bare(to)] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM idx.parties WHERE account = {JID_ID} AND seq = ?"
                )))
                .bind(account)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_hold(&self, hold: &LegalHold, now_ms: i64) -> Result<i64> {
        if let Some(text) = &hold.text {
            fts_query(text)?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO legal_holds (created_at_ms, reason, account, with_jid, text, since_ms,
                until_ms) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(now_ms)
        .bind(&hold.reason)
        .bind(&hold.account)
        .bind(&hold.with)
        .bind(&hold.text)
        .bind(hold.since_ms)
        .bind(hold.until_ms)
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    async fn release_hold(&self, id: i64, now_ms: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE legal_holds SET released_at_ms = ? WHERE id = ? AND released_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ArchiveError::NoSuchHold(id));
        }
        Ok(())
    }

    async fn holds(&self) -> Result<Vec<HoldInfo>> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            i64,
            Option<i64>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
        )> = sqlx::query_as(
            "SELECT id, created_at_ms, released_at_ms, reason, account, with_jid, text, since_ms,
                    until_ms FROM legal_holds ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    created_at_ms,
                    released_at_ms,
                    reason,
                    account,
                    with,
                    text,
                    since_ms,
                    until_ms,
                )| {
                    HoldInfo {
                        id,
                        created_at_ms,
                        released_at_ms,
                        hold: LegalHold {
                            reason,
                            account,
                            with,
                            text,
                            since_ms,
                            until_ms,
                        },
                    }
                },
            )
            .collect())
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM archive_meta WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT OR IGNORE INTO archive_meta (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let v: String = sqlx::query_scalar("SELECT value FROM archive_meta WHERE key = ?")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite picks for `sql`, its steps joined with "; ".
    async fn explain(b: &SqliteBackend, sql: Sql) -> String {
        let text = format!("EXPLAIN QUERY PLAN {}", sql.text);
        let rows = sqlx::query_with(AssertSqlSafe(text), sql.args)
            .fetch_all(b.pool())
            .await
            .expect("plan");
        rows.iter()
            .map(|r| r.get::<String, _>(3))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The plan SQLite picks for a search.
    async fn plan(b: &SqliteBackend, q: &SearchQuery) -> String {
        explain(b, build_search(q, None, 10).expect("query builds")).await
    }

    /// The plan SQLite picks for a MAM page of `owner`'s (newest first, after seq 1).
    async fn mam_plan(b: &SqliteBackend, owner: &str, q: &MamQuery) -> String {
        let mut sql = mam_filter(owner, q);
        sql.text = format!("SELECT {COLUMNS}{} AND p.seq > ? ORDER BY p.seq DESC LIMIT ?", sql.text);
        sql.bind_i64(1).bind_i64(10);
        explain(b, sql).await
    }

    #[tokio::test]
    async fn account_queries_probe_the_account_index_with_the_jid_id() {
        let b = SqliteBackend::open_in_memory().await.expect("open");
        let account = SearchQuery {
            account: Some("a@x".into()),
            ..SearchQuery::default()
        };
        let p = plan(&b, &account).await;
        assert!(p.contains("SEARCH p USING PRIMARY KEY (account=?)"), "{p}");
        let with = SearchQuery {
            with: Some("b@x".into()),
            ..account
        };
        let p = plan(&b, &with).await;
        assert!(p.contains("parties_peer (account=? AND peer=?)"), "{p}");
        // MAM pages walk the keys in order (no sort), with or without a peer.
        let p = mam_plan(&b, "a@x", &MamQuery::default()).await;
        assert!(p.contains("PRIMARY KEY (account=? AND seq>?)"), "{p}");
        let q = MamQuery {
            with: Some("b@x/r".into()),
            exclude_peers: vec!["q@x".into()],
            ..MamQuery::default()
        };
        let p = mam_plan(&b, "a@x", &q).await;
        assert!(
            p.contains("parties_peer (account=? AND peer=? AND seq>?)"),
            "{p}"
        );
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }

    fn rec(from: &str, to: &str) -> NewRecord {
        NewRecord {
            from: from.into(),
            to: to.into(),
            ..crate::hash::tests::rec()
        }
    }

    async fn by_account(b: &SqliteBackend, account: &str) -> Vec<u64> {
        let q = SearchQuery {
            account: Some(account.into()),
            ..SearchQuery::default()
        };
        let rows = b.search(&q, None).await.expect("search");
        rows.iter().map(|r| seq_u64(r.seq)).collect()
    }

    #[tokio::test]
    async fn a_failed_indexing_pass_leaves_no_jid_ids_behind() {
        let b = SqliteBackend::open_in_memory().await.expect("open");
        b.append_batch(vec![rec("a@x/r", "b@x")], 1000).expect("append");
        b.index_pending(100).await.expect("index");
        sqlx::raw_sql(
            "CREATE TRIGGER idx.refuse BEFORE INSERT ON parties
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .execute(b.pool())
        .await
        .expect("trigger");
        b.append_batch(vec![rec("carol@x/r", "dave@x")], 1000).expect("append");
        assert!(b.index_pending(100).await.is_err());
        // The ids that pass gave carol and dave were rolled back; others take them now.
        sqlx::raw_sql(
            "DROP TRIGGER idx.refuse;
             INSERT INTO idx.jids (jid) VALUES ('zed@x'), ('yan@x');",
        )
        .execute(b.pool())
        .await
        .expect("other ids");
        let p = b.index_pending(100).await.expect("index");
        assert_eq!((p.indexed_seq, p.head_seq), (2, 2));
        assert_eq!(by_account(&b, "carol@x").await, [2]);
        assert_eq!(by_account(&b, "dave@x").await, [2]);
        assert!(by_account(&b, "zed@x").await.is_empty());
        // Cached ids of the first pass still serve the next.
        b.append_batch(vec![rec("b@x/r", "a@x")], 1000).expect("append");
        b.index_pending(100).await.expect("index");
        assert_eq!(by_account(&b, "a@x").await, [3, 1]);
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM idx.jids")
            .fetch_one(b.pool())
            .await
            .expect("count");
        assert_eq!(n, 6);
    }

    /// Appends that never pause, with a checkpoint every few batches: each checkpoint must
    /// reach the end of the WAL so that the next commit starts it over. Passive checkpoints
    /// from another connection alone never caught up with a writer that kept committing,
    /// and the WAL file grew with every record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_beside_steady_appends_keep_the_wal_bounded() {
        let b = SqliteBackend::open_in_memory().await.expect("open");
        let wal = b
            ._temp
            .as_ref()
            .expect("temporary")
            .path()
            .join("archive.db-wal");
        let writer = {
            let b = b.clone();
            tokio::task::spawn_blocking(move || {
                for i in 0..2000 {
                    let batch = (0..8)
                        .map(|j| rec(&format!("u{i}@x/r"), &format!("v{j}@x")))
                        .collect();
                    b.append_batch(batch, 1000).expect("append");
                }
            })
        };
        let mut largest = 0;
        while !writer.is_finished() {
            b.wal_checkpoint().await.expect("checkpoint");
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        writer.await.expect("writer");
        // What the 2000 commits wrote to the WAL in all: about a page each (a WAL that never
        // starts over ends at 7 MiB here; one that does stays under 1 MiB).
        let written = 2000 * 4096;
        assert!(
            largest > 0 && largest < written / 4,
            "WAL reached {largest} bytes"
        );
    }

    #[tokio::test]
    async fn an_index_file_of_a_newer_layout_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(DB_FILE);
        drop(SqliteBackend::open(&path).await.expect("open"));
        let index = SqlitePool::connect_with(
            SqliteConnectOptions::new().filename(dir.path().join(INDEX_FILE)),
        )
        .await
        .expect("index file");
        sqlx::raw_sql("PRAGMA user_version = 3")
            .execute(&index)
            .await
            .expect("version");
        index.close().await;
        let err = SqliteBackend::open(&path).await.expect_err("refused");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[tokio::test]
    async fn rare_verdicts_and_kinds_are_searched_through_their_partial_indexes() {
        let b = SqliteBackend::open_in_memory().await.expect("open");
        let blocked = SearchQuery {
            verdict: Some(VerdictKind::Blocked),
            ..SearchQuery::default()
        };
        assert!(plan(&b, &blocked).await.contains("records_rare_verdict"));
        let logins = SearchQuery {
            kind: Some(RecordKind::Login),
            ..SearchQuery::default()
        };
        assert!(plan(&b, &logins).await.contains("records_rare_kind"));
        // A common verdict walks the journal newest first instead.
        let delivered = SearchQuery {
            verdict: Some(VerdictKind::Delivered),
            ..SearchQuery::default()
        };
        assert!(!plan(&b, &delivered).await.contains("records_rare"));
    }
}
