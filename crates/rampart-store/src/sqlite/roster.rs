//! [`RosterStore`] on SQLite: `roster_items`, `roster_groups`, `pending_in`, and the
//! per-account `accounts.roster_version` counter.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::{SqliteStore, account_id, backend};
use crate::{Result, RosterItem, RosterStore, StoreError, Subscription};

type ItemRow = (i64, String, Option<String>, String, bool, bool);

fn item_from_row(owner: &str, row: ItemRow, groups: Vec<String>) -> Result<RosterItem> {
    let (_, jid, name, subscription, ask, approved) = row;
    let subscription = Subscription::parse(&subscription).ok_or_else(|| {
        StoreError::Backend(format!(
            "roster of {owner}: invalid subscription {subscription:?} for {jid}"
        ))
    })?;
    Ok(RosterItem {
        jid,
        name,
        subscription,
        ask,
        approved,
        groups,
    })
}

/// Bump the roster version of account `id` in the caller's transaction; the new version.
async fn bump_version(conn: &mut SqliteConnection, id: i64) -> Result<u64> {
    let (version,): (i64,) = sqlx::query_as(
        "UPDATE accounts SET roster_version = roster_version + 1 WHERE id = ?
         RETURNING roster_version",
    )
    .bind(id)
    .fetch_one(conn)
    .await
    .map_err(backend)?;
    u64::try_from(version)
        .map_err(|_| StoreError::Backend(format!("invalid roster version {version}")))
}

/// Groups in first-given order, duplicates dropped.
fn distinct_groups(groups: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(groups.len());
    for g in groups {
        if !out.contains(&g.as_str()) {
            out.push(g);
        }
    }
    out
}

#[async_trait]
impl RosterStore for SqliteStore {
    async fn roster(&self, owner: &str) -> Result<(u64, Vec<RosterItem>)> {
        let mut tx = self.begin_read().await?;
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT id, roster_version FROM accounts WHERE jid = ?")
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        let Some((id, version)) = row else {
            return Ok((0, Vec::new()));
        };
        let version = u64::try_from(version)
            .map_err(|_| StoreError::Backend(format!("invalid roster version {version}")))?;
        let rows: Vec<ItemRow> = sqlx::query_as(
            "SELECT id, contact, name, subscription, ask, approved
             FROM roster_items WHERE account_id = ? ORDER BY contact",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let group_rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT g.item_id, g.name
             FROM roster_groups g JOIN roster_items i ON i.id = g.item_id
             WHERE i.account_id = ? ORDER BY g.item_id, g.position",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;

        let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
        for (item_id, name) in group_rows {
            groups.entry(item_id).or_default().push(name);
        }
        let items = rows
            .into_iter()
            .map(|row| {
                let g = groups.remove(&row.0).unwrap_or_default();
                item_from_row(owner, row, g)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((version, items))
    }

    async fn item(&self, owner: &str, contact: &str) -> Result<Option<RosterItem>> {
        let mut tx = self.begin_read().await?;
        let row: Option<ItemRow> = sqlx::query_as(
            "SELECT i.id, i.contact, i.name, i.subscription, i.ask, i.approved
             FROM roster_items i JOIN accounts a ON a.id = i.account_id
             WHERE a.jid = ? AND i.contact = ?",
        )
        .bind(owner)
        .bind(contact)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let groups: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM roster_groups WHERE item_id = ? ORDER BY position")
                .bind(row.0)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        let groups = groups.into_iter().map(|(g,)| g).collect();
        item_from_row(owner, row, groups).map(Some)
    }

    async fn put_item(&self, owner: &str, item: &RosterItem) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner)
            .await?
            .ok_or(StoreError::NotFound)?;
        // Upsert keeps the row id, so the item's groups are replaced below, not orphaned.
        let (item_id,): (i64,) = sqlx::query_as(
            "INSERT INTO roster_items (account_id, contact, name, subscription, ask, approved)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (account_id, contact) DO UPDATE SET
                 name = excluded.name,
                 subscription = excluded.subscription,
                 ask = excluded.ask,
                 approved = excluded.approved
             RETURNING id",
        )
        .bind(id)
        .bind(&item.jid)
        .bind(item.name.as_deref())
        .bind(item.subscription.as_str())
        .bind(item.ask)
        .bind(item.approved)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM roster_groups WHERE item_id = ?")
            .bind(item_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for (position, group) in distinct_groups(&item.groups).into_iter().enumerate() {
            sqlx::query("INSERT INTO roster_groups (item_id, position, name) VALUES (?, ?, ?)")
                .bind(item_id)
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(group)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        let version = bump_version(&mut tx, id).await?;
        tx.commit().await.map_err(backend)?;
        Ok(version)
    }

    async fn remove_item(&self, owner: &str, contact: &str) -> Result<Option<u64>> {
        let mut tx = self.begin_write().await?;
        let Some(id) = account_id(&mut tx, owner).await? else {
            return Ok(None);
        };
        let removed: Option<(i64,)> = sqlx::query_as(
            "DELETE FROM roster_items WHERE account_id = ? AND contact = ? RETURNING id",
        )
        .bind(id)
        .bind(contact)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some((item_id,)) = removed else {
            // Nothing changed; dropping the transaction rolls it back.
            return Ok(None);
        };
        sqlx::query("DELETE FROM roster_groups WHERE item_id = ?")
            .bind(item_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let version = bump_version(&mut tx, id).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(version))
    }

    async fn put_pending_in(&self, owner: &str, contact: &str, stanza: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = account_id(&mut tx, owner)
            .await?
            .ok_or(StoreError::NotFound)?;
        // Delete, then insert: the replacement is the newest request (a new, larger rowid).
        sqlx::query("DELETE FROM pending_in WHERE account_id = ? AND contact = ?")
            .bind(id)
            .bind(contact)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO pending_in (account_id, contact, stanza) VALUES (?, ?, ?)")
            .bind(id)
            .bind(contact)
            .bind(stanza)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn remove_pending_in(&self, owner: &str, contact: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM pending_in
             WHERE account_id = (SELECT id FROM accounts WHERE jid = ?) AND contact = ?",
        )
        .bind(owner)
        .bind(contact)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn pending_in(&self, owner: &str) -> Result<Vec<(String, String)>> {
        sqlx::query_as(
            "SELECT p.contact, p.stanza
             FROM pending_in p JOIN accounts a ON a.id = p.account_id
             WHERE a.jid = ? ORDER BY p.id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }
}
