//! [`S2sStore`] on SQLite: the `s2s_queue` and `s2s_links` tables.

use async_trait::async_trait;

use super::{SqliteStore, backend};
use crate::Result;
use crate::s2s::{LinkRow, QueuedStanza, S2sStore};

type LinkTuple = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<String>,
    i64,
    i64,
);

#[async_trait]
impl S2sStore for SqliteStore {
    async fn enqueue(&self, domain: &str, stanza: &str, queued_at_ms: i64) -> Result<i64> {
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO s2s_queue (domain, stanza, queued_at_ms) VALUES (?, ?, ?) RETURNING seq",
        )
        .bind(domain)
        .bind(stanza)
        .bind(queued_at_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(seq)
    }

    async fn peek(&self, domain: &str, limit: usize) -> Result<Vec<QueuedStanza>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT seq, domain, stanza, queued_at_ms FROM s2s_queue WHERE domain = ?
             ORDER BY seq LIMIT ?",
        )
        .bind(domain)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(row).collect())
    }

    async fn remove(&self, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for seq in seqs {
            sqlx::query("DELETE FROM s2s_queue WHERE seq = ?")
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn expire(&self, domain: &str, before_ms: i64) -> Result<Vec<QueuedStanza>> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "DELETE FROM s2s_queue WHERE domain = ? AND queued_at_ms < ?
             RETURNING seq, domain, stanza, queued_at_ms",
        )
        .bind(domain)
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut out: Vec<QueuedStanza> = rows.into_iter().map(row).collect();
        out.sort_by_key(|q| q.seq);
        Ok(out)
    }

    async fn queue_depths(&self) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT domain, count(*) FROM s2s_queue GROUP BY domain ORDER BY domain",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(d, n)| (d, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    async fn put_link(&self, l: &LinkRow) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO s2s_links (id, domain, direction, state, remote_addr, tls, auth,
                 since_ms, updated_ms, last_error, stanzas_in, stanzas_out)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(l.id)
        .bind(&l.domain)
        .bind(&l.direction)
        .bind(&l.state)
        .bind(&l.remote_addr)
        .bind(&l.tls)
        .bind(&l.auth)
        .bind(l.since_ms)
        .bind(l.updated_ms)
        .bind(&l.last_error)
        .bind(l.stanzas_in)
        .bind(l.stanzas_out)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn remove_link(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM s2s_links WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn clear_links(&self) -> Result<()> {
        sqlx::query("DELETE FROM s2s_links")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn links(&self) -> Result<Vec<LinkRow>> {
        let rows: Vec<LinkTuple> = sqlx::query_as(
            "SELECT id, domain, direction, state, remote_addr, tls, auth, since_ms, updated_ms,
                    last_error, stanzas_in, stanzas_out
             FROM s2s_links ORDER BY domain, direction, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, domain, direction, state, remote_addr, tls, auth, since_ms, updated_ms, last_error, stanzas_in, stanzas_out)| LinkRow {
                    id,
                    domain,
                    direction,
                    state,
                    remote_addr,
                    tls,
                    auth,
                    since_ms,
                    updated_ms,
                    last_error,
                    stanzas_in,
                    stanzas_out,
                },
            )
            .collect())
    }
}

fn row((seq, domain, stanza, queued_at_ms): (i64, String, String, i64)) -> QueuedStanza {
    QueuedStanza {
        seq,
        domain,
        stanza,
        queued_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_keeps_order_and_expires() {
        let s = SqliteStore::open_in_memory().await.unwrap();
        let a = s.enqueue("b.example", "<message id='1'/>", 100).await.unwrap();
        let b = s.enqueue("b.example", "<message id='2'/>", 200).await.unwrap();
        s.enqueue("c.example", "<message id='3'/>", 300).await.unwrap();
        assert!(a < b);
        let q = s.peek("b.example", 10).await.unwrap();
        assert_eq!(q.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(
            s.queue_depths().await.unwrap(),
            vec![("b.example".into(), 2), ("c.example".into(), 1)]
        );
        let gone = s.expire("b.example", 150).await.unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].stanza, "<message id='1'/>");
        s.remove(&[b]).await.unwrap();
        assert!(s.peek("b.example", 10).await.unwrap().is_empty());
        assert_eq!(s.peek("c.example", 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn link_rows_replace_and_clear() {
        let s = SqliteStore::open_in_memory().await.unwrap();
        let mut l = LinkRow {
            id: 7,
            domain: "b.example".into(),
            direction: "out".into(),
            state: "connecting".into(),
            ..LinkRow::default()
        };
        s.put_link(&l).await.unwrap();
        l.state = "up".into();
        l.auth = Some("sasl-external".into());
        s.put_link(&l).await.unwrap();
        assert_eq!(s.links().await.unwrap(), vec![l.clone()]);
        s.remove_link(7).await.unwrap();
        assert!(s.links().await.unwrap().is_empty());
        s.put_link(&l).await.unwrap();
        s.clear_links().await.unwrap();
        assert!(s.links().await.unwrap().is_empty());
    }
}
