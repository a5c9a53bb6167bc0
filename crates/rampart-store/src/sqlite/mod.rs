//! The embedded SQLite backend: all stores on one database file in `data_dir`.
//!
//! [`SqliteStore`] owns a small connection pool on one database file and implements
//! [`AccountStore`](crate::AccountStore), [`RosterStore`](crate::RosterStore) and
//! [`OfflineStore`](crate::OfflineStore). Several processes may open the same file at once
//! (the server and `rampart user add`): the file is in WAL mode and every writing transaction
//! starts with `BEGIN IMMEDIATE`, waiting up to [`BUSY_TIMEOUT`] for the write lock.
//!
//! Durability: `synchronous = FULL`, so a write that returned `Ok` survives a crash or power
//! loss. Integrity: `foreign_keys = ON`; everything an account owns references it.
//!
//! Semantics beyond the traits:
//! - Writes on behalf of an owner that is not an account (`put_item`, `put_pending_in`,
//!   `push`) fail with [`StoreError::NotFound`]: nothing is stored for a missing account, so a
//!   re-created account never inherits a removed one's data. Reads for such an owner return
//!   nothing (`roster` gives `(0, vec![])`), and `remove_item`, `remove_pending_in` and `ack`
//!   do nothing.
//! - `put_item` bumps the roster version even if the item was already identical.
//! - `roster` lists items sorted by contact JID; groups keep their first-given order with
//!   duplicates dropped.
//! - Offline sequence numbers are never reused within a database (AUTOINCREMENT).
//! - `create`/`set_credentials` with two credentials for one hash fail with
//!   [`StoreError::Backend`] and change nothing.
//!
//! The schema lives in `migrations/sqlite/*.sql`, embedded in the binary and applied by
//! [`SqliteStore::open`]; the applied versions are recorded in `rampart_migrations`. A
//! database written by a newer Rampart (unknown migration versions) is refused.

mod accounts;
mod muc;
mod offline;
mod pep;
mod push;
mod roster;
mod s2s;
mod security;
mod uploads;
mod xeps;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::{Result, SecurityStores, StoreError, Stores};

/// How long a connection waits for another one's (or another process's) lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool size for a database file. SQLite has a single writer anyway; a few connections let
/// reads proceed beside a write.
const MAX_CONNECTIONS: u32 = 4;

/// Schema migrations, applied in order. Never edit one that was released: add a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial",
        sql: include_str!("../../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "security",
        sql: include_str!("../../migrations/sqlite/0002_security.sql"),
    },
    Migration {
        version: 3,
        description: "offline sender",
        sql: include_str!("../../migrations/sqlite/0003_offline_sender.sql"),
    },
    Migration {
        version: 4,
        description: "xeps",
        sql: include_str!("../../migrations/sqlite/0004_xeps.sql"),
    },
    Migration {
        version: 5,
        description: "muc rooms",
        sql: include_str!("../../migrations/sqlite/0005_muc.sql"),
    },
    Migration {
        version: 6,
        description: "uploads",
        sql: include_str!("../../migrations/sqlite/0006_uploads.sql"),
    },
    Migration {
        version: 7,
        description: "pep",
        sql: include_str!("../../migrations/sqlite/0007_pep.sql"),
    },
    Migration {
        version: 8,
        description: "s2s queue and links",
        sql: include_str!("../../migrations/sqlite/0008_s2s.sql"),
    },
    Migration {
        version: 9,
        description: "muc retractions",
        sql: include_str!("../../migrations/sqlite/0009_muc_retractions.sql"),
    },
    Migration {
        version: 10,
        description: "push registrations",
        sql: include_str!("../../migrations/sqlite/0010_push.sql"),
    },
    Migration {
        version: 11,
        description: "pep subscriptions and affiliations",
        sql: include_str!("../../migrations/sqlite/0011_pep_subscriptions.sql"),
    },
];

struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// All of Rampart's stores on one SQLite database.
///
/// Cheap to share: wrap it in an [`Arc`] and call [`SqliteStore::stores`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Blocklists in memory, shared by every clone (see [`crate::BlocklistCache`]).
    blocklists: Arc<crate::BlocklistCache>,
}

impl SqliteStore {
    /// Open (creating if missing) the database file at `path` and apply pending migrations.
    ///
    /// The parent directory must exist.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        // Switching a brand-new file to WAL takes an exclusive lock, and SQLite can answer
        // "database is locked" at once (without its busy handler) when several processes
        // create the file at the same moment — e.g. `rampart user add` racing a first
        // `serve`. Such an open is retried; any other error is final.
        let mut attempt = 0u32;
        loop {
            match Self::open_once(path).await {
                Err(StoreError::Backend(msg)) if attempt < 10 && (msg.contains("locked") || msg.contains("busy")) => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %msg, "database busy while opening; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn open_once(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        Self::with_pool(pool).await
    }

    /// A fresh, empty in-memory database (for tests). It lives as long as this store (and
    /// its clones): the pool holds exactly one connection, which is never recycled.
    pub async fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(":memory:")
            .in_memory(true)
            .journal_mode(SqliteJournalMode::Memory)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Self::with_pool(pool).await
    }

    /// All stores backed by this database (each one is this same `SqliteStore`).
    pub fn stores(self: &Arc<Self>) -> Stores {
        Stores {
            accounts: self.clone(),
            roster: self.clone(),
            offline: self.clone(),
            private: self.clone(),
            vcards: self.clone(),
            last_activity: self.clone(),
            blocking: self.clone(),
            pep: self.clone(),
            push: self.clone(),
        }
    }

    /// The security stores (event log, quarantine) on this database.
    pub fn security_stores(self: &Arc<Self>) -> SecurityStores {
        SecurityStores {
            security: self.clone(),
        }
    }

    /// Like [`SqliteStore::stores`], consuming the store.
    pub fn into_stores(self) -> Stores {
        Arc::new(self).stores()
    }

    /// Close every connection, waiting for running queries. Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn with_pool(pool: SqlitePool) -> Result<SqliteStore> {
        let store = SqliteStore { pool, blocklists: Arc::default() };
        store.migrate().await?;
        Ok(store)
    }

    /// Apply the migrations this database lacks, each in its own `BEGIN IMMEDIATE`
    /// transaction (so two processes opening a new file at once do not both apply one).
    async fn migrate(&self) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS rampart_migrations (
                version     INTEGER PRIMARY KEY,
                description TEXT    NOT NULL,
                applied_at  INTEGER NOT NULL
            ) STRICT",
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;

        // Versions need not be contiguous or listed in order: each is applied if missing.
        let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
        for migration in MIGRATIONS {
            let mut tx = self.begin_write().await?;
            let (newest,): (Option<i64>,) =
                sqlx::query_as("SELECT max(version) FROM rampart_migrations")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
            let newest = newest.unwrap_or(0);
            if newest > known {
                return Err(StoreError::Backend(format!(
                    "database schema version {newest} is newer than this Rampart's ({known})"
                )));
            }
            let (applied,): (bool,) = sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM rampart_migrations WHERE version = ?)",
            )
            .bind(migration.version)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            if applied {
                continue;
            }
            sqlx::raw_sql(migration.sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    StoreError::Backend(format!(
                        "migration {} ({}): {e}",
                        migration.version, migration.description
                    ))
                })?;
            sqlx::query(
                "INSERT INTO rampart_migrations (version, description, applied_at) VALUES (?, ?, ?)",
            )
            .bind(migration.version)
            .bind(migration.description)
            .bind(unix_seconds())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            tracing::info!(
                version = migration.version,
                description = migration.description,
                "applied SQLite migration"
            );
        }
        Ok(())
    }

    /// A transaction holding the write lock from its start. In WAL mode a deferred
    /// transaction that reads first and then writes fails with `SQLITE_BUSY` (without waiting)
    /// if another connection wrote in between; taking the lock up front avoids that, and
    /// makes read-check-write sequences (quota, existence) atomic.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }

    /// A read transaction: one consistent snapshot for several queries.
    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool.begin().await.map_err(backend)
    }
}

/// Map an sqlx error to [`StoreError::Backend`].
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Whether `e` is a UNIQUE or PRIMARY KEY constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The `id` of account `jid`, inside a transaction.
pub(crate) async fn account_id(
    conn: &mut sqlx::SqliteConnection,
    jid: &str,
) -> Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM accounts WHERE jid = ?")
        .bind(jid)
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    Ok(row.map(|(id,)| id))
}

#[cfg(test)]
mod tests;
