//! [`PushStore`] on SQLite: the `push_registrations` table (migration 10). Enabling and the
//! trim to the per-account maximum happen in one `BEGIN IMMEDIATE` transaction.

use async_trait::async_trait;

use super::{SqliteStore, account_id, backend};
use crate::push::{PushRegistration, PushStore};
use crate::{Result, StoreError};

type Row = (String, String, Option<String>, i64);

fn reg((service, node, publish_options, enabled_at_ms): Row) -> PushRegistration {
    PushRegistration { service, node, publish_options, enabled_at_ms }
}

#[async_trait]
impl PushStore for SqliteStore {
    async fn push_enable(&self, owner: &str, r: &PushRegistration, max: usize) -> Result<Vec<PushRegistration>> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner).await?.ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO push_registrations (account_id, service, node, publish_options, enabled_at_ms)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (account_id, service, node)
             DO UPDATE SET publish_options = excluded.publish_options, enabled_at_ms = excluded.enabled_at_ms",
        )
        .bind(id)
        .bind(&r.service)
        .bind(&r.node)
        .bind(&r.publish_options)
        .bind(r.enabled_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // Keep the `max` most recently enabled (the one just written among them).
        let keep = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        let dropped: Vec<Row> = sqlx::query_as(
            "DELETE FROM push_registrations WHERE account_id = ?1 AND (service, node) NOT IN
               (SELECT service, node FROM push_registrations WHERE account_id = ?1
                ORDER BY (service = ?3 AND node = ?4) DESC, enabled_at_ms DESC, service, node LIMIT ?2)
             RETURNING service, node, publish_options, enabled_at_ms",
        )
        .bind(id)
        .bind(keep)
        .bind(&r.service)
        .bind(&r.node)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(dropped.into_iter().map(reg).collect())
    }

    async fn push_disable(&self, owner: &str, service: &str, node: Option<&str>) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM push_registrations
             WHERE account_id = (SELECT id FROM accounts WHERE jid = ?) AND service = ? AND (?3 IS NULL OR node = ?3)",
        )
        .bind(owner)
        .bind(service)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn push_registrations(&self, owner: &str) -> Result<Vec<PushRegistration>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT p.service, p.node, p.publish_options, p.enabled_at_ms
             FROM push_registrations p JOIN accounts a ON a.id = p.account_id
             WHERE a.jid = ? ORDER BY p.enabled_at_ms, p.service, p.node",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(reg).collect())
    }

    async fn push_accounts(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT a.jid FROM push_registrations p JOIN accounts a ON a.id = p.account_id ORDER BY a.jid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|(j,)| j).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccountStore;

    fn r(service: &str, node: &str, at: i64) -> PushRegistration {
        PushRegistration { service: service.into(), node: node.into(), publish_options: None, enabled_at_ms: at }
    }

    async fn store_with(accounts: &[&str]) -> SqliteStore {
        let s = SqliteStore::open_in_memory().await.unwrap();
        for a in accounts {
            s.create(a, vec![]).await.unwrap();
        }
        s
    }

    #[tokio::test]
    async fn enable_replaces_same_device_and_lists_in_order() {
        let s = store_with(&["u@x", "v@x"]).await;
        assert!(s.push_enable("u@x", &r("push.example", "a", 1), 8).await.unwrap().is_empty());
        assert!(s.push_enable("u@x", &r("push.example", "b", 2), 8).await.unwrap().is_empty());
        let mut again = r("push.example", "a", 3);
        again.publish_options = Some("<x xmlns='jabber:x:data' type='submit'/>".into());
        assert!(s.push_enable("u@x", &again, 8).await.unwrap().is_empty());
        let regs = s.push_registrations("u@x").await.unwrap();
        assert_eq!(regs, vec![r("push.example", "b", 2), again]);
        assert!(s.push_registrations("v@x").await.unwrap().is_empty());
        assert_eq!(s.push_accounts().await.unwrap(), vec!["u@x".to_owned()]);
    }

    #[tokio::test]
    async fn enable_beyond_max_drops_the_oldest() {
        let s = store_with(&["u@x"]).await;
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            s.push_enable("u@x", &r("p", n, i as i64), 3).await.unwrap();
        }
        let dropped = s.push_enable("u@x", &r("p", "d", 10), 3).await.unwrap();
        assert_eq!(dropped, vec![r("p", "a", 0)]);
        let nodes: Vec<String> = s.push_registrations("u@x").await.unwrap().into_iter().map(|x| x.node).collect();
        assert_eq!(nodes, ["b", "c", "d"]);
        // An older clock than the others': the one just enabled is kept all the same.
        let dropped = s.push_enable("u@x", &r("p", "e", 0), 3).await.unwrap();
        assert_eq!(dropped.len(), 1);
        assert!(s.push_registrations("u@x").await.unwrap().iter().any(|x| x.node == "e"));
    }

    #[tokio::test]
    async fn disable_one_node_or_the_whole_service() {
        let s = store_with(&["u@x"]).await;
        for (svc, n) in [("p", "a"), ("p", "b"), ("q", "a")] {
            s.push_enable("u@x", &r(svc, n, 1), 8).await.unwrap();
        }
        assert_eq!(s.push_disable("u@x", "p", Some("a")).await.unwrap(), 1);
        assert_eq!(s.push_disable("u@x", "p", Some("a")).await.unwrap(), 0);
        assert_eq!(s.push_disable("u@x", "p", None).await.unwrap(), 1);
        assert_eq!(s.push_registrations("u@x").await.unwrap(), vec![r("q", "a", 1)]);
        assert_eq!(s.push_disable("nobody@x", "q", None).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn unknown_owner_and_account_removal() {
        let s = store_with(&["u@x"]).await;
        assert!(matches!(s.push_enable("ghost@x", &r("p", "a", 1), 8).await, Err(StoreError::NotFound)));
        s.push_enable("u@x", &r("p", "a", 1), 8).await.unwrap();
        s.remove("u@x").await.unwrap();
        assert!(s.push_registrations("u@x").await.unwrap().is_empty());
        assert!(s.push_accounts().await.unwrap().is_empty());
    }
}
