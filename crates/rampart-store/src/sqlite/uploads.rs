//! [`UploadStore`] on SQLite: the `uploads` table (migration 6).

use async_trait::async_trait;

use super::{SqliteStore, backend, is_unique_violation};
use crate::uploads::{Upload, UploadState, UploadStore};
use crate::{Result, StoreError};

type Row = (String, String, String, i64, String, i64, i64, String, Option<String>, Option<String>, Option<i64>);

/// The columns of [`Row`], in order (a macro so queries stay `&'static str` literals).
macro_rules! columns {
    () => {
        "id, owner, name, size, content_type, created_ms, put_expires_ms, state, sha256, reason, finished_ms"
    };
}

fn from_row(r: Row) -> Result<Upload> {
    let state = UploadState::parse(&r.7).ok_or_else(|| StoreError::Backend(format!("uploads: bad state {:?}", r.7)))?;
    Ok(Upload {
        id: r.0,
        owner: r.1,
        name: r.2,
        size: u64::try_from(r.3).unwrap_or(0),
        content_type: r.4,
        created_ms: r.5,
        put_expires_ms: r.6,
        state,
        sha256: r.8,
        reason: r.9,
        finished_ms: r.10,
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn limit_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const USAGE: &str = "SELECT COALESCE(SUM(size), 0) FROM uploads
     WHERE owner = ? AND (state = 'available' OR (state = 'pending' AND put_expires_ms > ?))";

#[async_trait]
impl UploadStore for SqliteStore {
    async fn create_upload(&self, u: &Upload, quota: u64, now_ms: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let (used,): (i64,) = sqlx::query_as(USAGE)
            .bind(&u.owner)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let used = u64::try_from(used).unwrap_or(0);
        if used.saturating_add(u.size) > quota {
            return Err(StoreError::QuotaExceeded);
        }
        sqlx::query(concat!("INSERT INTO uploads (", columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&u.id)
            .bind(&u.owner)
            .bind(&u.name)
            .bind(to_i64(u.size))
            .bind(&u.content_type)
            .bind(u.created_ms)
            .bind(u.put_expires_ms)
            .bind(u.state.as_str())
            .bind(&u.sha256)
            .bind(&u.reason)
            .bind(u.finished_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| if is_unique_violation(&e) { StoreError::AlreadyExists } else { backend(e) })?;
        tx.commit().await.map_err(backend)
    }

    async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let row: Option<Row> = sqlx::query_as(concat!("SELECT ", columns!(), " FROM uploads WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(from_row).transpose()
    }

    async fn upload_accepted(&self, id: &str, sha256: &str, at_ms: i64) -> Result<()> {
        let r = sqlx::query(
            "UPDATE uploads SET state = 'available', sha256 = ?, finished_ms = ? WHERE id = ? AND state = 'pending'",
        )
        .bind(sha256)
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn upload_refused(&self, id: &str, sha256: Option<&str>, reason: &str, at_ms: i64) -> Result<()> {
        let r = sqlx::query(
            "UPDATE uploads SET state = 'refused', sha256 = ?, reason = ?, finished_ms = ?
             WHERE id = ? AND state = 'pending'",
        )
        .bind(sha256)
        .bind(reason)
        .bind(at_ms)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn upload_usage(&self, owner: &str, now_ms: i64) -> Result<u64> {
        let (used,): (i64,) = sqlx::query_as(USAGE)
            .bind(owner)
            .bind(now_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn uploads_created_before(&self, cutoff_ms: i64, limit: usize) -> Result<Vec<Upload>> {
        let rows: Vec<Row> = sqlx::query_as(concat!(
            "SELECT ", columns!(), " FROM uploads WHERE created_ms < ? ORDER BY created_ms, id LIMIT ?"
        ))
        .bind(cutoff_ms)
        .bind(limit_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(from_row).collect()
    }

    async fn expired_pending_uploads(&self, now_ms: i64, limit: usize) -> Result<Vec<Upload>> {
        let rows: Vec<Row> = sqlx::query_as(concat!(
            "SELECT ", columns!(), " FROM uploads WHERE state = 'pending' AND put_expires_ms <= ? ORDER BY created_ms LIMIT ?"
        ))
        .bind(now_ms)
        .bind(limit_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(from_row).collect()
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: &str, owner: &str, size: u64, now: i64) -> Upload {
        Upload {
            id: id.into(),
            owner: owner.into(),
            name: "a.txt".into(),
            size,
            content_type: "text/plain".into(),
            created_ms: now,
            put_expires_ms: now + 1000,
            state: UploadState::Pending,
            sha256: None,
            reason: None,
            finished_ms: None,
        }
    }

    #[tokio::test]
    async fn quota_counts_open_slots_and_available_files() {
        let s = SqliteStore::open_in_memory().await.unwrap();
        s.create_upload(&slot("a", "u@x", 600, 0), 1000, 0).await.unwrap();
        let e = s.create_upload(&slot("b", "u@x", 500, 0), 1000, 0).await.unwrap_err();
        assert!(matches!(e, StoreError::QuotaExceeded));
        // Another owner has their own quota.
        s.create_upload(&slot("c", "v@x", 500, 0), 1000, 0).await.unwrap();
        // An expired open slot no longer counts.
        s.create_upload(&slot("b", "u@x", 500, 2000), 1000, 2000).await.unwrap();
        assert_eq!(s.upload_usage("u@x", 2000).await.unwrap(), 500);
        s.upload_accepted("b", "ab", 2100).await.unwrap();
        assert_eq!(s.upload_usage("u@x", 99_999).await.unwrap(), 500);
        let u = s.upload("b").await.unwrap().unwrap();
        assert_eq!(u.state, UploadState::Available);
        assert_eq!(u.sha256.as_deref(), Some("ab"));
        // Only a pending slot changes state.
        assert!(matches!(s.upload_refused("b", None, "x", 1).await, Err(StoreError::NotFound)));
        assert!(matches!(s.create_upload(&slot("b", "u@x", 1, 0), 10_000, 0).await, Err(StoreError::AlreadyExists)));
    }

    #[tokio::test]
    async fn refused_and_retention_queries() {
        let s = SqliteStore::open_in_memory().await.unwrap();
        s.create_upload(&slot("a", "u@x", 10, 0), 1000, 0).await.unwrap();
        s.create_upload(&slot("b", "u@x", 10, 5000), 1000, 5000).await.unwrap();
        s.upload_refused("a", Some("ff"), "blocked: test", 10).await.unwrap();
        let a = s.upload("a").await.unwrap().unwrap();
        assert_eq!((a.state, a.reason.as_deref()), (UploadState::Refused, Some("blocked: test")));
        assert_eq!(s.upload_usage("u@x", 5000).await.unwrap(), 10);
        let old: Vec<String> = s.uploads_created_before(1000, 10).await.unwrap().into_iter().map(|u| u.id).collect();
        assert_eq!(old, ["a"]);
        let exp: Vec<String> = s.expired_pending_uploads(7000, 10).await.unwrap().into_iter().map(|u| u.id).collect();
        assert_eq!(exp, ["b"]);
        assert!(s.delete_upload("b").await.unwrap());
        assert!(!s.delete_upload("b").await.unwrap());
        assert!(s.upload("b").await.unwrap().is_none());
    }
}
