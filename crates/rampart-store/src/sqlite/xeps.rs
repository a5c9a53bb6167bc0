//! [`PrivateStore`], [`VCardStore`], [`LastActivityStore`] and [`BlockingStore`] on SQLite:
//! the `private_xml`, `vcards`, `last_activity` and `blocklist` tables (migration 4).
//! Blocklist reads and checks go through the store's [`BlocklistCache`](crate::BlocklistCache).

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::{SqliteStore, account_id, backend, unix_seconds};
use crate::xeps::within;
use crate::{
    BlockingStore, LastActivity, LastActivityStore, PrivateItem, PrivateStore, Result, StoreError,
    VCardStore,
};

#[async_trait]
impl PrivateStore for SqliteStore {
    async fn private_get(&self, owner: &str, namespace: &str, name: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT p.xml FROM private_xml p JOIN accounts a ON a.id = p.account_id
             WHERE a.jid = ? AND p.namespace = ? AND p.name = ?",
        )
        .bind(owner)
        .bind(namespace)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(|(x,)| x))
    }

    async fn private_set(&self, owner: &str, items: &[PrivateItem], max_items: usize) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner).await?.ok_or(StoreError::NotFound)?;
        for item in items {
            sqlx::query(
                "INSERT INTO private_xml (account_id, namespace, name, xml) VALUES (?, ?, ?, ?)
                 ON CONFLICT (account_id, namespace, name) DO UPDATE SET xml = excluded.xml",
            )
            .bind(id)
            .bind(&item.namespace)
            .bind(&item.name)
            .bind(&item.xml)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM private_xml WHERE account_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        // Dropping the transaction rolls it back.
        within(usize::try_from(count).unwrap_or(usize::MAX), max_items)?;
        tx.commit().await.map_err(backend)
    }
}

#[async_trait]
impl VCardStore for SqliteStore {
    async fn vcard(&self, owner: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT v.xml FROM vcards v JOIN accounts a ON a.id = v.account_id WHERE a.jid = ?",
        )
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(|(x,)| x))
    }

    async fn set_vcard(&self, owner: &str, xml: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner).await?.ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO vcards (account_id, xml, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (account_id) DO UPDATE SET xml = excluded.xml, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(xml)
        .bind(unix_seconds())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn remove_vcard(&self, owner: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM vcards WHERE account_id = (SELECT id FROM accounts WHERE jid = ?)")
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected() > 0)
    }
}

#[async_trait]
impl LastActivityStore for SqliteStore {
    async fn set_last(&self, owner: &str, at_ms: i64, status: Option<&str>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner).await?.ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO last_activity (account_id, at_ms, status) VALUES (?, ?, ?)
             ON CONFLICT (account_id) DO UPDATE SET at_ms = excluded.at_ms, status = excluded.status",
        )
        .bind(id)
        .bind(at_ms)
        .bind(status)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn last(&self, owner: &str) -> Result<Option<LastActivity>> {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT l.at_ms, l.status FROM last_activity l JOIN accounts a ON a.id = l.account_id
             WHERE a.jid = ?",
        )
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.map(|(at_ms, status)| LastActivity { at_ms, status }))
    }
}

impl SqliteStore {
    async fn load_blocklist(&self, owner: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT b.jid FROM blocklist b JOIN accounts a ON a.id = b.account_id
             WHERE a.jid = ? ORDER BY b.jid",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(|(j,)| j).collect())
    }
}

#[async_trait]
impl BlockingStore for SqliteStore {
    async fn blocklist(&self, owner: &str) -> Result<Vec<String>> {
        if let Some(set) = self.blocklists.get(owner) {
            let sorted: BTreeSet<&String> = set.iter().collect();
            return Ok(sorted.into_iter().cloned().collect());
        }
        let generation = self.blocklists.generation();
        let jids = self.load_blocklist(owner).await?;
        self.blocklists.insert(owner, generation, jids.clone());
        Ok(jids)
    }

    async fn block(&self, owner: &str, jids: &[String], max_items: usize) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner).await?.ok_or(StoreError::NotFound)?;
        let mut added = Vec::new();
        for jid in jids {
            let r = sqlx::query("INSERT INTO blocklist (account_id, jid) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(jid)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            if r.rows_affected() > 0 {
                added.push(jid.clone());
            }
        }
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM blocklist WHERE account_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        within(usize::try_from(count).unwrap_or(usize::MAX), max_items)?;
        tx.commit().await.map_err(backend)?;
        self.blocklists.changed(owner, &added, &[], false);
        Ok(added)
    }

    async fn unblock(&self, owner: &str, jids: &[String]) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let Some(id) = account_id(&mut tx, owner).await? else { return Ok(Vec::new()) };
        let mut removed = Vec::new();
        for jid in jids {
            let r = sqlx::query("DELETE FROM blocklist WHERE account_id = ? AND jid = ?")
                .bind(id)
                .bind(jid)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            if r.rows_affected() > 0 {
                removed.push(jid.clone());
            }
        }
        tx.commit().await.map_err(backend)?;
        self.blocklists.changed(owner, &[], &removed, false);
        Ok(removed)
    }

    async fn unblock_all(&self, owner: &str) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let Some(id) = account_id(&mut tx, owner).await? else { return Ok(Vec::new()) };
        let rows: Vec<(String,)> = sqlx::query_as("DELETE FROM blocklist WHERE account_id = ? RETURNING jid")
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.blocklists.changed(owner, &[], &[], true);
        let mut removed: Vec<String> = rows.into_iter().map(|(j,)| j).collect();
        removed.sort();
        Ok(removed)
    }

    async fn is_blocked(&self, owner: &str, candidates: &[&str]) -> Result<bool> {
        let set = match self.blocklists.get(owner) {
            Some(set) => set,
            None => {
                let generation = self.blocklists.generation();
                let jids = self.load_blocklist(owner).await?;
                self.blocklists.insert(owner, generation, jids)
            }
        };
        Ok(candidates.iter().any(|c| set.contains(*c)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::SqliteStore;
    use crate::{AccountStore, BlockingStore, LastActivityStore, PrivateItem, PrivateStore, StoreError, VCardStore};

    async fn store() -> Arc<SqliteStore> {
        let s = SqliteStore::open_in_memory().await.unwrap();
        s.create("o@x", vec![]).await.unwrap();
        Arc::new(s)
    }

    fn item(ns: &str, name: &str, xml: &str) -> PrivateItem {
        PrivateItem { namespace: ns.into(), name: name.into(), xml: xml.into() }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn private_xml() {
        let s = store().await;
        assert_eq!(s.private_get("o@x", "a:b", "prefs").await.unwrap(), None);
        s.private_set("o@x", &[item("a:b", "prefs", "<prefs xmlns='a:b'/>")], 2).await.unwrap();
        s.private_set("o@x", &[item("a:b", "prefs", "<prefs xmlns='a:b'>2</prefs>")], 2).await.unwrap();
        assert_eq!(s.private_get("o@x", "a:b", "prefs").await.unwrap().as_deref(), Some("<prefs xmlns='a:b'>2</prefs>"));
        // Same namespace, other name: a separate fragment.
        s.private_set("o@x", &[item("a:b", "other", "<other xmlns='a:b'/>")], 2).await.unwrap();
        assert_eq!(s.private_get("o@x", "a:b", "prefs").await.unwrap().as_deref(), Some("<prefs xmlns='a:b'>2</prefs>"));
        // Over the quota: nothing of the set is kept.
        assert!(matches!(
            s.private_set("o@x", &[item("a:b", "prefs", "<prefs xmlns='a:b'>3</prefs>"), item("c:d", "x", "<x/>")], 2).await,
            Err(StoreError::QuotaExceeded)
        ));
        assert_eq!(s.private_get("o@x", "a:b", "prefs").await.unwrap().as_deref(), Some("<prefs xmlns='a:b'>2</prefs>"));
        assert_eq!(s.private_get("o@x", "c:d", "x").await.unwrap(), None);
        assert!(matches!(s.private_set("nobody@x", &[item("a:b", "p", "<p/>")], 2).await, Err(StoreError::NotFound)));
        assert_eq!(s.private_get("nobody@x", "a:b", "prefs").await.unwrap(), None);
    }

    #[tokio::test]
    async fn vcards() {
        let s = store().await;
        assert_eq!(s.vcard("o@x").await.unwrap(), None);
        s.set_vcard("o@x", "<vCard xmlns='vcard-temp'/>").await.unwrap();
        s.set_vcard("o@x", "<vCard xmlns='vcard-temp'><FN>O</FN></vCard>").await.unwrap();
        assert_eq!(s.vcard("o@x").await.unwrap().as_deref(), Some("<vCard xmlns='vcard-temp'><FN>O</FN></vCard>"));
        assert!(s.remove_vcard("o@x").await.unwrap());
        assert!(!s.remove_vcard("o@x").await.unwrap());
        assert_eq!(s.vcard("o@x").await.unwrap(), None);
        assert!(matches!(s.set_vcard("nobody@x", "<vCard/>").await, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn last_activity() {
        let s = store().await;
        assert_eq!(s.last("o@x").await.unwrap(), None);
        s.set_last("o@x", 1000, Some("gone")).await.unwrap();
        s.set_last("o@x", 2000, None).await.unwrap();
        let l = s.last("o@x").await.unwrap().unwrap();
        assert_eq!((l.at_ms, l.status), (2000, None));
        s.set_last("o@x", 3000, Some("away")).await.unwrap();
        assert_eq!(s.last("o@x").await.unwrap().unwrap().status.as_deref(), Some("away"));
        assert!(matches!(s.set_last("nobody@x", 1, None).await, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn blocklist_and_cache() {
        let s = store().await;
        assert!(!s.is_blocked("o@x", &["a@y"]).await.unwrap());
        assert_eq!(s.blocklist("o@x").await.unwrap(), Vec::<String>::new());
        assert_eq!(s.block("o@x", &strings(&["b@y", "a@y"]), 3).await.unwrap(), strings(&["b@y", "a@y"]));
        // Cached (loaded above) and updated by the write.
        assert!(s.is_blocked("o@x", &["z@y/r", "a@y"]).await.unwrap());
        assert_eq!(s.block("o@x", &strings(&["a@y", "y"]), 3).await.unwrap(), strings(&["y"]));
        assert_eq!(s.blocklist("o@x").await.unwrap(), strings(&["a@y", "b@y", "y"]));
        assert!(matches!(s.block("o@x", &strings(&["c@y"]), 3).await, Err(StoreError::QuotaExceeded)));
        assert!(!s.is_blocked("o@x", &["c@y"]).await.unwrap());
        assert_eq!(s.unblock("o@x", &strings(&["a@y", "q@y"])).await.unwrap(), strings(&["a@y"]));
        assert!(!s.is_blocked("o@x", &["a@y"]).await.unwrap());
        assert_eq!(s.unblock_all("o@x").await.unwrap(), strings(&["b@y", "y"]));
        assert!(!s.is_blocked("o@x", &["b@y", "y"]).await.unwrap());

        // A second handle on the same database (no cache yet) sees the committed state.
        s.block("o@x", &strings(&["d@y"]), 3).await.unwrap();
        let fresh = SqliteStore { pool: s.pool.clone(), blocklists: Arc::default() };
        assert!(fresh.is_blocked("o@x", &["d@y"]).await.unwrap());

        // Removing the account forgets its cached list.
        s.remove("o@x").await.unwrap();
        s.create("o@x", vec![]).await.unwrap();
        assert!(!s.is_blocked("o@x", &["d@y"]).await.unwrap());
        assert!(matches!(s.block("nobody@x", &strings(&["a@y"]), 3).await, Err(StoreError::NotFound)));
        assert_eq!(s.unblock("nobody@x", &strings(&["a@y"])).await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn stores_share_the_cache() {
        let s = store().await;
        let (a, b) = (s.stores(), s.stores());
        assert!(!a.blocking.is_blocked("o@x", &["e@y"]).await.unwrap());
        b.blocking.block("o@x", &strings(&["e@y"]), 10).await.unwrap();
        assert!(a.blocking.is_blocked("o@x", &["e@y"]).await.unwrap());
        b.vcards.set_vcard("o@x", "<vCard/>").await.unwrap();
        assert!(a.vcards.vcard("o@x").await.unwrap().is_some());
    }
}
