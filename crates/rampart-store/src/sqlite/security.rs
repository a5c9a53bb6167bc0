//! [`SecurityStore`] on SQLite: the `security_events` and `quarantine` tables.

use async_trait::async_trait;

use super::{SqliteStore, backend};
use crate::Result;
use crate::security::{Quarantined, SecurityEvent, SecurityStore};

#[async_trait]
impl SecurityStore for SqliteStore {
    async fn record_event(&self, ev: &SecurityEvent) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO security_events (at_ms, account, rule, action, reason, evidence_json)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(ev.at_ms)
        .bind(&ev.account)
        .bind(&ev.rule)
        .bind(&ev.action)
        .bind(&ev.reason)
        .bind(&ev.evidence_json)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(id)
    }

    async fn events(&self, since_ms: Option<i64>, limit: usize) -> Result<Vec<SecurityEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64, String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, at_ms, account, rule, action, reason, evidence_json FROM security_events
             WHERE at_ms >= ? ORDER BY at_ms DESC, id DESC LIMIT ?",
        )
        .bind(since_ms.unwrap_or(i64::MIN))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, at_ms, account, rule, action, reason, evidence_json)| SecurityEvent {
                    id,
                    at_ms,
                    account,
                    rule,
                    action,
                    reason,
                    evidence_json,
                },
            )
            .collect())
    }

    async fn quarantine(
        &self,
        account: &str,
        rule: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO quarantine (account, rule, reason, since_ms) VALUES (?, ?, ?, ?)
             ON CONFLICT (account) DO NOTHING",
        )
        .bind(account)
        .bind(rule)
        .bind(reason)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, account: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM quarantine WHERE account = ?")
            .bind(account)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn quarantined(&self) -> Result<Vec<Quarantined>> {
        sqlx::query_as("SELECT account, rule, reason, since_ms FROM quarantine ORDER BY account")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn is_quarantined(&self, account: &str) -> Result<bool> {
        let (yes,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM quarantine WHERE account = ?)")
                .bind(account)
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
        Ok(yes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_ms: i64, account: &str, action: &str) -> SecurityEvent {
        SecurityEvent {
            id: 0,
            at_ms,
            account: account.into(),
            rule: "outbreak.blast".into(),
            action: action.into(),
            reason: "quarantined: the same link was sent to 5 people".into(),
            evidence_json: r#"{"url":"x.example/a","chain":[]}"#.into(),
        }
    }

    #[tokio::test]
    async fn event_log() {
        let s = SqliteStore::open_in_memory().await.unwrap();
        assert!(s.events(None, 10).await.unwrap().is_empty());
        let a = s
            .record_event(&ev(1000, "m@corp.example", "block"))
            .await
            .unwrap();
        let b = s
            .record_event(&ev(2000, "m@corp.example", "quarantine"))
            .await
            .unwrap();
        let c = s
            .record_event(&ev(2000, "ops@corp.example", "release"))
            .await
            .unwrap();
        assert!(a < b && b < c);
        let all = s.events(None, 10).await.unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [c, b, a]);
        assert_eq!(
            all[2],
            SecurityEvent {
                id: a,
                ..ev(1000, "m@corp.example", "block")
            }
        );
        assert_eq!(s.events(Some(1500), 10).await.unwrap().len(), 2);
        assert_eq!(s.events(None, 1).await.unwrap()[0].id, c);
        assert!(s.events(None, 0).await.unwrap().is_empty());
        assert!(s.record_event(&ev(1, "x@y", "explode")).await.is_err());
    }

    #[tokio::test]
    async fn quarantine_lifecycle() {
        let s = SqliteStore::open_in_memory().await.unwrap();
        assert!(!s.is_quarantined("m@corp.example").await.unwrap());
        assert!(
            s.quarantine("m@corp.example", "outbreak.blast", "blast", 10)
                .await
                .unwrap()
        );
        assert!(
            !s.quarantine("m@corp.example", "outbreak.epidemic", "later", 20)
                .await
                .unwrap()
        );
        assert!(
            s.quarantine("bot@remote.example", "outbreak.room_bots", "bots", 30)
                .await
                .unwrap()
        );
        assert!(s.is_quarantined("m@corp.example").await.unwrap());
        assert_eq!(
            s.quarantined().await.unwrap(),
            [
                (
                    "bot@remote.example".into(),
                    "outbreak.room_bots".into(),
                    "bots".into(),
                    30
                ),
                (
                    "m@corp.example".into(),
                    "outbreak.blast".into(),
                    "blast".into(),
                    10
                ),
            ]
        );
        assert!(s.release("m@corp.example").await.unwrap());
        assert!(!s.release("m@corp.example").await.unwrap());
        assert!(!s.is_quarantined("m@corp.example").await.unwrap());
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        {
            let s = SqliteStore::open(&path).await.unwrap();
            s.quarantine("m@corp.example", "signature", "eicar", 1)
                .await
                .unwrap();
            s.record_event(&ev(5, "m@corp.example", "quarantine"))
                .await
                .unwrap();
            s.close().await;
        }
        let s = SqliteStore::open(&path).await.unwrap();
        assert!(s.is_quarantined("m@corp.example").await.unwrap());
        assert_eq!(s.events(None, 10).await.unwrap().len(), 1);
    }
}
