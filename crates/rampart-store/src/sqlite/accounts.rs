//! [`AccountStore`] on SQLite: the `accounts` and `credentials` tables.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::{SqliteStore, account_id, backend, is_unique_violation, unix_seconds};
use crate::{Account, AccountStore, Result, ScramCredentials, ScramHash, StoreError};

/// The `credentials.hash` column value of a hash.
fn hash_name(hash: ScramHash) -> &'static str {
    match hash {
        ScramHash::Sha1 => "SCRAM-SHA-1",
        ScramHash::Sha256 => "SCRAM-SHA-256",
    }
}

fn parse_hash(name: &str) -> Option<ScramHash> {
    match name {
        "SCRAM-SHA-1" => Some(ScramHash::Sha1),
        "SCRAM-SHA-256" => Some(ScramHash::Sha256),
        _ => None,
    }
}

/// Refuse two credentials for one hash (the table keeps one per account and hash).
fn check_distinct(credentials: &[ScramCredentials]) -> Result<()> {
    for (i, c) in credentials.iter().enumerate() {
        if credentials[..i]
            .iter()
            .any(|earlier| earlier.hash == c.hash)
        {
            return Err(StoreError::Backend(format!(
                "two credentials for {}",
                hash_name(c.hash)
            )));
        }
    }
    Ok(())
}

/// Insert `credentials` for account `id` (which has none), in the caller's transaction.
async fn insert_credentials(
    conn: &mut SqliteConnection,
    id: i64,
    credentials: &[ScramCredentials],
) -> Result<()> {
    for (position, c) in credentials.iter().enumerate() {
        sqlx::query(
            "INSERT INTO credentials
                 (account_id, hash, position, salt, iterations, stored_key, server_key)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(hash_name(c.hash))
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(&c.salt)
        .bind(i64::from(c.iterations))
        .bind(&c.stored_key)
        .bind(&c.server_key)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

type CredentialRow = (String, Vec<u8>, i64, Vec<u8>, Vec<u8>);

fn credentials_from_row(jid: &str, row: CredentialRow) -> Result<ScramCredentials> {
    let (hash, salt, iterations, stored_key, server_key) = row;
    let hash = parse_hash(&hash).ok_or_else(|| {
        StoreError::Backend(format!("account {jid}: unknown credential hash {hash:?}"))
    })?;
    let iterations = u32::try_from(iterations).map_err(|_| {
        StoreError::Backend(format!(
            "account {jid}: invalid iteration count {iterations}"
        ))
    })?;
    Ok(ScramCredentials {
        hash,
        salt,
        iterations,
        stored_key,
        server_key,
    })
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create(&self, jid: &str, credentials: Vec<ScramCredentials>) -> Result<()> {
        check_distinct(&credentials)?;
        let mut tx = self.begin_write().await?;
        let inserted: std::result::Result<(i64,), sqlx::Error> =
            sqlx::query_as("INSERT INTO accounts (jid, created_at) VALUES (?, ?) RETURNING id")
                .bind(jid)
                .bind(unix_seconds())
                .fetch_one(&mut *tx)
                .await;
        let (id,) = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => return Err(StoreError::AlreadyExists),
            Err(e) => return Err(backend(e)),
        };
        insert_credentials(&mut tx, id, &credentials).await?;
        tx.commit().await.map_err(backend)
    }

    async fn get(&self, jid: &str) -> Result<Option<Account>> {
        let mut tx = self.begin_read().await?;
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT id, created_at FROM accounts WHERE jid = ?")
                .bind(jid)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        let Some((id, created_at)) = row else {
            return Ok(None);
        };
        let rows: Vec<CredentialRow> = sqlx::query_as(
            "SELECT hash, salt, iterations, stored_key, server_key
             FROM credentials WHERE account_id = ? ORDER BY position",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        let credentials = rows
            .into_iter()
            .map(|row| credentials_from_row(jid, row))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Account {
            jid: jid.to_owned(),
            credentials,
            created_at,
        }))
    }

    async fn list(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT jid FROM accounts ORDER BY jid")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(|(jid,)| jid).collect())
    }

    async fn remove(&self, jid: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, jid)
            .await?
            .ok_or(StoreError::NotFound)?;
        // Explicit, child tables first (the foreign keys would cascade anyway). Roster items
        // of *other* accounts that point at this one stay: the server unsubscribes them.
        for sql in [
            "DELETE FROM offline_messages WHERE account_id = ?",
            "DELETE FROM pending_in WHERE account_id = ?",
            "DELETE FROM roster_groups
             WHERE item_id IN (SELECT id FROM roster_items WHERE account_id = ?)",
            "DELETE FROM roster_items WHERE account_id = ?",
            "DELETE FROM credentials WHERE account_id = ?",
            "DELETE FROM accounts WHERE id = ?",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        // The XEP tables cascade; the in-memory blocklist must not outlive the account.
        self.blocklists.forget(jid);
        Ok(())
    }

    async fn set_credentials(&self, jid: &str, credentials: Vec<ScramCredentials>) -> Result<()> {
        check_distinct(&credentials)?;
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, jid)
            .await?
            .ok_or(StoreError::NotFound)?;
        sqlx::query("DELETE FROM credentials WHERE account_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        insert_credentials(&mut tx, id, &credentials).await?;
        tx.commit().await.map_err(backend)
    }
}
