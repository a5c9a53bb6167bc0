//! [`RoomStore`] on SQLite: the `muc_rooms` and `muc_affiliations` tables (migration 5).

use async_trait::async_trait;

use super::{SqliteStore, backend};
use crate::muc::{RoomStore, StoredAffiliation, StoredRoom};
use crate::Result;

#[async_trait]
impl RoomStore for SqliteStore {
    async fn rooms(&self) -> Result<Vec<(StoredRoom, Vec<StoredAffiliation>)>> {
        let mut tx = self.begin_read().await?;
        let rooms: Vec<(String, String, Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT jid, config_json, subject, subject_from, created_at_ms FROM muc_rooms ORDER BY jid",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let affs: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT room, jid, affiliation, reason FROM muc_affiliations ORDER BY room, jid",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut out: Vec<(StoredRoom, Vec<StoredAffiliation>)> = rooms
            .into_iter()
            .map(|(jid, config_json, subject, subject_from, created_at_ms)| {
                (StoredRoom { jid, config_json, subject, subject_from, created_at_ms }, Vec::new())
            })
            .collect();
        for (room, jid, affiliation, reason) in affs {
            if let Ok(i) = out.binary_search_by(|(r, _)| r.jid.as_str().cmp(room.as_str())) {
                out[i].1.push(StoredAffiliation { jid, affiliation, reason });
            }
        }
        Ok(out)
    }

    async fn save_room(&self, room: &StoredRoom, affiliations: &[StoredAffiliation]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO muc_rooms (jid, config_json, subject, subject_from, created_at_ms)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (jid) DO UPDATE SET config_json = excluded.config_json,
                 subject = excluded.subject, subject_from = excluded.subject_from",
        )
        .bind(&room.jid)
        .bind(&room.config_json)
        .bind(&room.subject)
        .bind(&room.subject_from)
        .bind(room.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM muc_affiliations WHERE room = ?")
            .bind(&room.jid)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for a in affiliations {
            sqlx::query("INSERT INTO muc_affiliations (room, jid, affiliation, reason) VALUES (?, ?, ?, ?)")
                .bind(&room.jid)
                .bind(&a.jid)
                .bind(&a.affiliation)
                .bind(&a.reason)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn remove_room(&self, jid: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM muc_rooms WHERE jid = ?")
            .bind(jid)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(jid: &str) -> StoredRoom {
        StoredRoom { jid: jid.into(), config_json: "{}".into(), subject: Some("hi".into()), subject_from: Some("al".into()), created_at_ms: 7 }
    }

    fn aff(jid: &str, a: &str) -> StoredAffiliation {
        StoredAffiliation { jid: jid.into(), affiliation: a.into(), reason: None }
    }

    #[tokio::test]
    async fn save_replace_remove() {
        let s = SqliteStore::open_in_memory().await.unwrap();
        assert!(s.rooms().await.unwrap().is_empty());
        s.save_room(&room("b@c.x"), &[aff("o@x", "owner")]).await.unwrap();
        s.save_room(&room("a@c.x"), &[aff("o@x", "owner"), aff("m@x", "member"), aff("e@x", "outcast")]).await.unwrap();
        let all = s.rooms().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0.jid, "a@c.x");
        assert_eq!(all[0].1.len(), 3);
        assert_eq!(all[1].1, vec![aff("o@x", "owner")]);
        // Replace: affiliations are the new set, created_at kept.
        let mut r = room("a@c.x");
        r.subject = None;
        r.created_at_ms = 99;
        s.save_room(&r, &[aff("o@x", "owner")]).await.unwrap();
        let all = s.rooms().await.unwrap();
        assert_eq!(all[0].0.subject, None);
        assert_eq!(all[0].0.created_at_ms, 7);
        assert_eq!(all[0].1.len(), 1);
        // A bad affiliation changes nothing.
        assert!(s.save_room(&room("a@c.x"), &[aff("o@x", "king")]).await.is_err());
        assert_eq!(s.rooms().await.unwrap()[0].1.len(), 1);
        assert!(s.remove_room("a@c.x").await.unwrap());
        assert!(!s.remove_room("a@c.x").await.unwrap());
        assert_eq!(s.rooms().await.unwrap().len(), 1);
    }
}
