//! [`RoomStore`] on SQLite: the `muc_rooms` and `muc_affiliations` tables (migration 5) and
//! `muc_retractions` (migration 9).

use async_trait::async_trait;

use super::{SqliteStore, backend};
use crate::muc::{RoomStore, StoredAffiliation, StoredRetraction, StoredRoom};
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

    async fn add_retraction(&self, r: &StoredRetraction) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO muc_retractions (room, stanza_id, at_ms, retraction_id, moderator, moderator_occupant_id, reason)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room, stanza_id) DO NOTHING",
        )
        .bind(&r.room)
        .bind(&r.stanza_id)
        .bind(r.at_ms)
        .bind(&r.retraction_id)
        .bind(&r.moderator)
        .bind(&r.moderator_occupant_id)
        .bind(&r.reason)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn retractions(&self, room: &str, stanza_ids: &[String]) -> Result<Vec<StoredRetraction>> {
        type Row = (String, i64, Option<String>, Option<String>, Option<String>, Option<String>);
        let mut out = Vec::new();
        // A bounded number of ids, a bounded number of bound parameters per query.
        for chunk in stanza_ids[..stanza_ids.len().min(MAX_RETRACTION_LOOKUP)].chunks(100) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT stanza_id, at_ms, retraction_id, moderator, moderator_occupant_id, reason
                 FROM muc_retractions WHERE room = ? AND stanza_id IN ({marks})"
            );
            let mut q = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).bind(room);
            for id in chunk {
                q = q.bind(id);
            }
            let rows = q.fetch_all(&self.pool).await.map_err(backend)?;
            out.extend(rows.into_iter().map(|(stanza_id, at_ms, retraction_id, moderator, moderator_occupant_id, reason)| {
                StoredRetraction { room: room.to_owned(), stanza_id, at_ms, retraction_id, moderator, moderator_occupant_id, reason }
            }));
        }
        Ok(out)
    }
}

/// Most stanza-ids one [`RoomStore::retractions`] call looks up.
const MAX_RETRACTION_LOOKUP: usize = 1000;

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

    fn retraction(room: &str, id: &str, moderator: Option<&str>) -> StoredRetraction {
        StoredRetraction {
            room: room.into(),
            stanza_id: id.into(),
            at_ms: 5,
            retraction_id: moderator.is_none().then(|| format!("r-{id}")),
            moderator: moderator.map(str::to_owned),
            moderator_occupant_id: moderator.map(|_| "occ".to_owned()),
            reason: moderator.map(|_| "spam".to_owned()),
        }
    }

    #[tokio::test]
    async fn retractions_once_per_message_and_room() {
        let s = SqliteStore::open_in_memory().await.unwrap();
        let a = retraction("a@c.x", "7", Some("a@c.x/mod"));
        assert!(s.add_retraction(&a).await.unwrap());
        assert!(!s.add_retraction(&retraction("a@c.x", "7", None)).await.unwrap(), "a message is retracted once");
        let b = retraction("a@c.x", "9", None);
        assert!(s.add_retraction(&b).await.unwrap());
        // Same stanza-id in another room: a different message.
        assert!(s.add_retraction(&retraction("b@c.x", "7", None)).await.unwrap());
        let ids: Vec<String> = (1..300).map(|i| i.to_string()).collect();
        let mut got = s.retractions("a@c.x", &ids).await.unwrap();
        got.sort_by(|x, y| x.stanza_id.cmp(&y.stanza_id));
        assert_eq!(got, vec![a, b]);
        assert!(s.retractions("a@c.x", &[]).await.unwrap().is_empty());
        assert!(s.retractions("z@c.x", &ids).await.unwrap().is_empty());
        // Removing a room keeps its retractions (MAM on it still shows tombstones).
        s.save_room(&room("a@c.x"), &[]).await.unwrap();
        s.remove_room("a@c.x").await.unwrap();
        assert_eq!(s.retractions("a@c.x", &["9".to_owned()]).await.unwrap().len(), 1);
    }
}
