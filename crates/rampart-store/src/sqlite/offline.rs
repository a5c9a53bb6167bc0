//! [`OfflineStore`] on SQLite: the `offline_messages` table.

use async_trait::async_trait;

use super::{SqliteStore, account_id, backend};
use crate::{OfflineMessage, OfflineStore, Result, StoreError};

#[async_trait]
impl OfflineStore for SqliteStore {
    async fn push(
        &self,
        owner: &str,
        sender: &str,
        stanza: &str,
        stored_at_ms: i64,
        limit: usize,
    ) -> Result<i64> {
        // BEGIN IMMEDIATE: the count and the insert happen under the write lock, so concurrent
        // pushes (from any process) cannot pass the limit. One commit, one WAL fsync.
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner)
            .await?
            .ok_or(StoreError::NotFound)?;
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM offline_messages WHERE account_id = ?")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        // A negative count cannot happen; treat it as zero rather than fail.
        if usize::try_from(count).unwrap_or(0) >= limit {
            return Err(StoreError::QuotaExceeded);
        }
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO offline_messages (account_id, sender, stanza, stored_at_ms)
             VALUES (?, ?, ?, ?) RETURNING seq",
        )
        .bind(id)
        .bind(sender)
        .bind(stanza)
        .bind(stored_at_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(seq)
    }

    async fn withdraw_from(&self, sender: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM offline_messages WHERE sender = ?")
            .bind(sender)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn peek(&self, owner: &str) -> Result<Vec<OfflineMessage>> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT o.seq, o.stanza, o.stored_at_ms
             FROM offline_messages o JOIN accounts a ON a.id = o.account_id
             WHERE a.jid = ? ORDER BY o.seq",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(seq, stanza, stored_at_ms)| OfflineMessage {
                seq,
                stanza,
                stored_at_ms,
            })
            .collect())
    }

    async fn ack(&self, owner: &str, up_to: i64) -> Result<()> {
        sqlx::query(
            "DELETE FROM offline_messages
             WHERE account_id = (SELECT id FROM accounts WHERE jid = ?) AND seq <= ?",
        )
        .bind(owner)
        .bind(up_to)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn count(&self, owner: &str) -> Result<usize> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*)
             FROM offline_messages o JOIN accounts a ON a.id = o.account_id
             WHERE a.jid = ?",
        )
        .bind(owner)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        usize::try_from(count).map_err(|_| StoreError::Backend(format!("invalid count {count}")))
    }
}
