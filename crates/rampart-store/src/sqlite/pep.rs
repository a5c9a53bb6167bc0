//! [`PepStore`] on SQLite: the `pep_nodes` and `pep_items` tables (migration 7). Item order
//! is the AUTOINCREMENT `seq`; republishing an id deletes and re-inserts it, so it becomes
//! the newest. Trimming to `max_items` happens in the publishing transaction.
//! Subscriptions and affiliations are `pep_subscriptions` and `pep_affiliations`
//! (migration 11), deleted with their node (cascade) and with a removed account (trigger).

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::{SqliteStore, account_id, backend, is_unique_violation};
use crate::pep::{PepAffiliation, PepItem, PepNode, PepStore, PepSubscription};
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

    async fn subscriptions(&self, owner: &str, node: Option<&str>, bare: Option<&str>) -> Result<Vec<PepSubscription>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT n.name, s.jid, s.subid FROM pep_subscriptions s
             JOIN pep_nodes n ON n.id = s.node_id JOIN accounts a ON a.id = n.account_id
             WHERE a.jid = ?1 AND (?2 IS NULL OR n.name = ?2) AND (?3 IS NULL OR s.bare = ?3)
             ORDER BY n.name, s.jid",
        )
        .bind(owner)
        .bind(node)
        .bind(bare)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|(node, jid, subid)| PepSubscription { node, jid, subid }).collect())
    }

    async fn subscriptions_of(&self, bare: &str, max: usize) -> Result<Vec<(String, PepSubscription)>> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT a.jid, n.name, s.jid, s.subid FROM pep_subscriptions s
             JOIN pep_nodes n ON n.id = s.node_id JOIN accounts a ON a.id = n.account_id
             WHERE s.bare = ? ORDER BY s.created_at DESC, s.rowid DESC LIMIT ?",
        )
        .bind(bare)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|(owner, node, jid, subid)| (owner, PepSubscription { node, jid, subid })).collect())
    }

    async fn subscribe(&self, owner: &str, sub: &PepSubscription, bare: &str, max_per_node: usize, max_per_subscriber: usize) -> Result<PepSubscription> {
        let mut tx = self.begin_write().await?;
        let nid = node_id(&mut tx, owner, &sub.node).await?.ok_or(StoreError::NotFound)?;
        let existing: Option<(String,)> = sqlx::query_as("SELECT subid FROM pep_subscriptions WHERE node_id = ? AND jid = ?")
            .bind(nid)
            .bind(&sub.jid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if let Some((subid,)) = existing {
            return Ok(PepSubscription { subid, ..sub.clone() });
        }
        let (per_node, per_subscriber): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(bare = ?2), 0) FROM pep_subscriptions WHERE node_id = ?1",
        )
        .bind(nid)
        .bind(bare)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let full = |n: i64, max: usize| usize::try_from(n).unwrap_or(usize::MAX) >= max;
        if full(per_node, max_per_node) || full(per_subscriber, max_per_subscriber) {
            return Err(StoreError::QuotaExceeded);
        }
        sqlx::query("INSERT INTO pep_subscriptions (node_id, jid, bare, subid, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(nid)
            .bind(&sub.jid)
            .bind(bare)
            .bind(&sub.subid)
            .bind(super::unix_seconds().saturating_mul(1000))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(sub.clone())
    }

    async fn unsubscribe(&self, owner: &str, node: &str, jid: &str, bare_too: bool) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let Some(nid) = node_id(&mut tx, owner, node).await? else { return Ok(0) };
        let sql = if bare_too {
            "DELETE FROM pep_subscriptions WHERE node_id = ? AND bare = ?"
        } else {
            "DELETE FROM pep_subscriptions WHERE node_id = ? AND jid = ?"
        };
        let r = sqlx::query(sql).bind(nid).bind(jid).execute(&mut *tx).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(r.rows_affected())
    }

    async fn affiliations(&self, owner: &str, node: Option<&str>, jid: Option<&str>) -> Result<Vec<PepAffiliation>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT n.name, f.jid, f.affiliation FROM pep_affiliations f
             JOIN pep_nodes n ON n.id = f.node_id JOIN accounts a ON a.id = n.account_id
             WHERE a.jid = ?1 AND (?2 IS NULL OR n.name = ?2) AND (?3 IS NULL OR f.jid = ?3)
             ORDER BY n.name, f.jid",
        )
        .bind(owner)
        .bind(node)
        .bind(jid)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|(node, jid, affiliation)| PepAffiliation { node, jid, affiliation }).collect())
    }

    async fn set_affiliation(&self, owner: &str, node: &str, jid: &str, affiliation: Option<&str>, max_per_node: usize) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let nid = node_id(&mut tx, owner, node).await?.ok_or(StoreError::NotFound)?;
        match affiliation {
            None => {
                sqlx::query("DELETE FROM pep_affiliations WHERE node_id = ? AND jid = ?")
                    .bind(nid)
                    .bind(jid)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            Some(a) => {
                let (others,): (i64,) = sqlx::query_as("SELECT count(*) FROM pep_affiliations WHERE node_id = ? AND jid <> ?")
                    .bind(nid)
                    .bind(jid)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend)?;
                if usize::try_from(others).unwrap_or(usize::MAX) >= max_per_node {
                    return Err(StoreError::QuotaExceeded);
                }
                sqlx::query(
                    "INSERT INTO pep_affiliations (node_id, jid, affiliation) VALUES (?, ?, ?)
                     ON CONFLICT (node_id, jid) DO UPDATE SET affiliation = excluded.affiliation",
                )
                .bind(nid)
                .bind(jid)
                .bind(a)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
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

    fn sub(node: &str, jid: &str, subid: &str) -> PepSubscription {
        PepSubscription { node: node.into(), jid: jid.into(), subid: subid.into() }
    }

    #[tokio::test]
    async fn subscriptions_are_bounded_and_go_with_node_and_account() {
        let s = store().await;
        s.create("b@x", vec![]).await.unwrap();
        s.create_node("o@x", "n", "c", 10).await.unwrap();
        s.create_node("o@x", "m", "c", 10).await.unwrap();
        assert_eq!(s.subscribe("o@x", &sub("n", "b@x", "1"), "b@x", 3, 2).await.unwrap().subid, "1");
        // Subscribing again keeps the first subscription.
        assert_eq!(s.subscribe("o@x", &sub("n", "b@x", "2"), "b@x", 3, 2).await.unwrap().subid, "1");
        s.subscribe("o@x", &sub("n", "b@x/r", "3"), "b@x", 3, 2).await.unwrap();
        assert!(matches!(s.subscribe("o@x", &sub("n", "b@x/s", "4"), "b@x", 3, 2).await, Err(StoreError::QuotaExceeded)));
        s.subscribe("o@x", &sub("n", "c@x", "5"), "c@x", 3, 2).await.unwrap();
        assert!(matches!(s.subscribe("o@x", &sub("n", "d@x", "6"), "d@x", 3, 2).await, Err(StoreError::QuotaExceeded)));
        assert!(matches!(s.subscribe("o@x", &sub("zz", "d@x", "6"), "d@x", 3, 2).await, Err(StoreError::NotFound)));
        s.subscribe("o@x", &sub("m", "b@x", "7"), "b@x", 3, 2).await.unwrap();
        let mine = s.subscriptions("o@x", None, Some("b@x")).await.unwrap();
        assert_eq!(mine, vec![sub("m", "b@x", "7"), sub("n", "b@x", "1"), sub("n", "b@x/r", "3")]);
        // Across owners, most recent first, bounded.
        s.create("p@x", vec![]).await.unwrap();
        s.create_node("p@x", "k", "c", 10).await.unwrap();
        s.subscribe("p@x", &sub("k", "b@x", "9"), "b@x", 3, 2).await.unwrap();
        let all = s.subscriptions_of("b@x", 10).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], ("p@x".to_owned(), sub("k", "b@x", "9")));
        assert_eq!(s.subscriptions_of("b@x", 2).await.unwrap().len(), 2);
        assert!(s.subscriptions_of("nobody@x", 10).await.unwrap().is_empty());
        assert_eq!(s.subscriptions("o@x", Some("n"), None).await.unwrap().len(), 3);
        assert_eq!(s.unsubscribe("o@x", "n", "b@x/r", false).await.unwrap(), 1);
        assert_eq!(s.unsubscribe("o@x", "n", "b@x/r", false).await.unwrap(), 0);
        s.subscribe("o@x", &sub("n", "b@x/r", "8"), "b@x", 3, 2).await.unwrap();
        assert_eq!(s.unsubscribe("o@x", "n", "b@x", true).await.unwrap(), 2);
        // A removed account's subscriptions go (a new account of that name starts clean).
        s.remove("b@x").await.unwrap();
        assert!(s.subscriptions("o@x", None, Some("b@x")).await.unwrap().is_empty());
        // Deleting the node deletes its subscriptions.
        s.delete_node("o@x", "n").await.unwrap();
        assert!(s.subscriptions("o@x", None, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn affiliations_set_replace_remove_and_bound() {
        let s = store().await;
        s.create("b@x", vec![]).await.unwrap();
        s.create_node("o@x", "n", "c", 10).await.unwrap();
        s.set_affiliation("o@x", "n", "b@x", Some("member"), 2).await.unwrap();
        s.set_affiliation("o@x", "n", "b@x", Some("outcast"), 2).await.unwrap();
        s.set_affiliation("o@x", "n", "c@x", Some("member"), 2).await.unwrap();
        assert!(matches!(s.set_affiliation("o@x", "n", "d@x", Some("member"), 2).await, Err(StoreError::QuotaExceeded)));
        // Changing an existing one is not a new one.
        s.set_affiliation("o@x", "n", "c@x", Some("publisher"), 2).await.unwrap();
        let all = s.affiliations("o@x", Some("n"), None).await.unwrap();
        assert_eq!(all.iter().map(|a| (a.jid.as_str(), a.affiliation.as_str())).collect::<Vec<_>>(), [("b@x", "outcast"), ("c@x", "publisher")]);
        assert_eq!(s.affiliations("o@x", None, Some("c@x")).await.unwrap().len(), 1);
        s.set_affiliation("o@x", "n", "c@x", None, 2).await.unwrap();
        assert!(s.affiliations("o@x", None, Some("c@x")).await.unwrap().is_empty());
        assert!(matches!(s.set_affiliation("o@x", "zz", "c@x", Some("member"), 2).await, Err(StoreError::NotFound)));
        s.remove("b@x").await.unwrap();
        assert!(s.affiliations("o@x", None, None).await.unwrap().is_empty());
    }
}
