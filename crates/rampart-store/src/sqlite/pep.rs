//! [`PepStore`] on SQLite: the `pep_nodes` and `pep_items` tables (migration 7). Item order
//! is the AUTOINCREMENT `seq`; republishing an id deletes and re-inserts it, so it becomes
//! the newest. Trimming to `max_items` happens in the publishing transaction.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::{SqliteStore, account_id, backend, is_unique_violation};
use crate::pep::{PepItem, PepNode, PepStore};
use crate::{Result, StoreError};

/// The id of `owner`'s node `node`.
async fn node_id(conn: &mut SqliteConnection, owner: &str, node: &str) -> Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT n.id FROM pep_nodes n JOIN accounts a ON a.id = n.account_id WHERE a.jid = ? AND n.name = ?",
    )
    .bind(owner)
    .bind(node)
    .fetch_optional(conn)
    .await
    .map_err(backend)?;
    Ok(row.map(|(id,)| id))
}

/// Delete all but the `max_items` newest items of a node; returns the deleted ids.
async fn trim(conn: &mut SqliteConnection, node: i64, max_items: usize) -> Result<Vec<String>> {
    let keep = i64::try_from(max_items).unwrap_or(i64::MAX);
    let rows: Vec<(String,)> = sqlx::query_as(
        "DELETE FROM pep_items WHERE node_id = ?1 AND seq NOT IN
           (SELECT seq FROM pep_items WHERE node_id = ?1 ORDER BY seq DESC LIMIT ?2)
         RETURNING item_id",
    )
    .bind(node)
    .bind(keep)
    .fetch_all(conn)
    .await
    .map_err(backend)?;
    Ok(rows.into_iter().map(|(i,)| i).collect())
}

type ItemRow = (String, String, String, i64);

fn item((id, xml, publisher, published_at_ms): ItemRow) -> PepItem {
    PepItem { id, xml, publisher, published_at_ms }
}

#[async_trait]
impl PepStore for SqliteStore {
    async fn pep_node(&self, owner: &str, node: &str) -> Result<Option<PepNode>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT n.name, n.config FROM pep_nodes n JOIN accounts a ON a.id = n.account_id
             WHERE a.jid = ? AND n.name = ?",
        )
        .bind(owner)
        .bind(node)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(|(name, config)| PepNode { name, config }))
    }

    async fn pep_nodes(&self, owner: &str) -> Result<Vec<PepNode>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT n.name, n.config FROM pep_nodes n JOIN accounts a ON a.id = n.account_id
             WHERE a.jid = ? ORDER BY n.name",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|(name, config)| PepNode { name, config }).collect())
    }

    async fn create_node(&self, owner: &str, node: &str, config: &str, max_nodes: usize) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner).await?.ok_or(StoreError::NotFound)?;
        if node_id(&mut tx, owner, node).await?.is_some() {
            return Ok(false);
        }
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM pep_nodes WHERE account_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= max_nodes {
            return Err(StoreError::QuotaExceeded);
        }
        match sqlx::query("INSERT INTO pep_nodes (account_id, name, config) VALUES (?, ?, ?)")
            .bind(id)
            .bind(node)
            .bind(config)
            .execute(&mut *tx)
            .await
        {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(backend(e)),
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn configure_node(&self, owner: &str, node: &str, config: &str, max_items: usize) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let id = node_id(&mut tx, owner, node).await?.ok_or(StoreError::NotFound)?;
        sqlx::query("UPDATE pep_nodes SET config = ? WHERE id = ?")
            .bind(config)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let dropped = trim(&mut tx, id, max_items).await?;
        tx.commit().await.map_err(backend)?;
        Ok(dropped)
    }

    async fn delete_node(&self, owner: &str, node: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(id) = node_id(&mut tx, owner, node).await? else { return Ok(false) };
        sqlx::query("DELETE FROM pep_nodes WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn publish(&self, owner: &str, node: &str, it: &PepItem, max_items: usize) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let id = node_id(&mut tx, owner, node).await?.ok_or(StoreError::NotFound)?;
        sqlx::query("DELETE FROM pep_items WHERE node_id = ? AND item_id = ?")
            .bind(id)
            .bind(&it.id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO pep_items (node_id, item_id, xml, publisher, published_at) VALUES (?, ?, ?, ?, ?)")
            .bind(id)
            .bind(&it.id)
            .bind(&it.xml)
            .bind(&it.publisher)
            .bind(it.published_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let dropped = trim(&mut tx, id, max_items).await?;
        tx.commit().await.map_err(backend)?;
        Ok(dropped)
    }

    async fn items(&self, owner: &str, node: &str, max: Option<usize>) -> Result<Vec<PepItem>> {
        let limit = max.map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX));
        let rows: Vec<ItemRow> = sqlx::query_as(
            "SELECT i.item_id, i.xml, i.publisher, i.published_at FROM pep_items i
             JOIN pep_nodes n ON n.id = i.node_id JOIN accounts a ON a.id = n.account_id
             WHERE a.jid = ? AND n.name = ? ORDER BY i.seq DESC LIMIT ?",
        )
        .bind(owner)
        .bind(node)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(item).collect())
    }

    async fn items_by_id(&self, owner: &str, node: &str, ids: &[String]) -> Result<Vec<PepItem>> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        let Some(nid) = node_id(&mut conn, owner, node).await? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for id in ids {
            let row: Option<ItemRow> = sqlx::query_as(
                "SELECT item_id, xml, publisher, published_at FROM pep_items WHERE node_id = ? AND item_id = ?",
            )
            .bind(nid)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
            out.extend(row.map(item));
        }
        Ok(out)
    }

    async fn retract(&self, owner: &str, node: &str, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(nid) = node_id(&mut tx, owner, node).await? else { return Ok(false) };
        let r = sqlx::query("DELETE FROM pep_items WHERE node_id = ? AND item_id = ?")
            .bind(nid)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }

    async fn purge(&self, owner: &str, node: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let Some(nid) = node_id(&mut tx, owner, node).await? else { return Ok(0) };
        let r = sqlx::query("DELETE FROM pep_items WHERE node_id = ?").bind(nid).execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccountStore;

    async fn store() -> SqliteStore {
        let s = SqliteStore::open_in_memory().await.unwrap();
        s.create("o@x", vec![]).await.unwrap();
        s
    }

    fn it(id: &str, n: i64) -> PepItem {
        PepItem { id: id.into(), xml: format!("<p xmlns='u'>{n}</p>"), publisher: "o@x/r".into(), published_at_ms: n }
    }

    fn ids(v: &[PepItem]) -> Vec<&str> {
        v.iter().map(|i| i.id.as_str()).collect()
    }

    #[tokio::test]
    async fn nodes_items_order_and_trim() {
        let s = store().await;
        assert!(s.create_node("o@x", "n", "c1", 2).await.unwrap());
        assert!(!s.create_node("o@x", "n", "c2", 2).await.unwrap());
        assert_eq!(s.pep_node("o@x", "n").await.unwrap().unwrap().config, "c1");
        assert!(s.create_node("o@x", "m", "c", 2).await.unwrap());
        assert!(matches!(s.create_node("o@x", "k", "c", 2).await, Err(StoreError::QuotaExceeded)));
        assert!(matches!(s.create_node("nobody@x", "k", "c", 2).await, Err(StoreError::NotFound)));
        assert_eq!(s.pep_nodes("o@x").await.unwrap().len(), 2);

        assert!(s.publish("o@x", "n", &it("a", 1), 3).await.unwrap().is_empty());
        s.publish("o@x", "n", &it("b", 2), 3).await.unwrap();
        s.publish("o@x", "n", &it("a", 3), 3).await.unwrap(); // republished: newest
        assert_eq!(ids(&s.items("o@x", "n", None).await.unwrap()), ["a", "b"]);
        s.publish("o@x", "n", &it("c", 4), 3).await.unwrap();
        assert_eq!(s.publish("o@x", "n", &it("d", 5), 3).await.unwrap(), ["b"]);
        assert_eq!(ids(&s.items("o@x", "n", Some(2)).await.unwrap()), ["d", "c"]);
        assert_eq!(ids(&s.items_by_id("o@x", "n", &["a".into(), "zz".into()]).await.unwrap()), ["a"]);
        assert!(s.retract("o@x", "n", "a").await.unwrap());
        assert!(!s.retract("o@x", "n", "a").await.unwrap());
        assert_eq!(s.configure_node("o@x", "n", "c3", 1).await.unwrap(), ["c"]);
        assert_eq!(s.pep_node("o@x", "n").await.unwrap().unwrap().config, "c3");
        assert_eq!(s.purge("o@x", "n").await.unwrap(), 1);
        assert!(s.items("o@x", "n", None).await.unwrap().is_empty());
        assert!(matches!(s.publish("o@x", "zz", &it("a", 1), 3).await, Err(StoreError::NotFound)));
        assert!(s.delete_node("o@x", "n").await.unwrap());
        assert!(!s.delete_node("o@x", "n").await.unwrap());
        assert!(s.pep_node("o@x", "n").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn removing_the_account_removes_its_nodes() {
        let s = store().await;
        s.create_node("o@x", "n", "c", 10).await.unwrap();
        s.publish("o@x", "n", &it("a", 1), 3).await.unwrap();
        s.remove("o@x").await.unwrap();
        s.create("o@x", vec![]).await.unwrap();
        assert!(s.pep_nodes("o@x").await.unwrap().is_empty());
        assert!(s.items("o@x", "n", None).await.unwrap().is_empty());
    }
}
