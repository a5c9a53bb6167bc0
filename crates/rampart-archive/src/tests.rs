//! Tests: round trips, group commit, tamper detection, retention, holds, MAM, export.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use super::*;

const DAY: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

fn msg(at_ms: i64, from: &str, to: &str, body: &str) -> NewRecord {
    NewRecord {
        at_ms,
        kind: RecordKind::Message,
        direction: Direction::Local,
        from: from.into(),
        to: to.into(),
        remote_domain: None,
        stanza_id: Some(format!("id-{at_ms}")),
        body: Some(body.into()),
        stanza_xml: Some(format!("<message to='{to}'><body>{body}</body></message>")),
        verdict: Verdict::Delivered,
        meta_json: None,
    }
}

/// How many records `search` finds with the word "message" (in `account`'s, if given).
async fn message_hits(a: &Archive, account: Option<&str>) -> usize {
    let q = SearchQuery {
        account: account.map(Into::into),
        text: Some("message".into()),
        limit: Some(100),
        ..SearchQuery::default()
    };
    a.search(&q).await.unwrap().len()
}

/// How many records a MAM query of `owner`'s whole archive returns (up to 100).
async fn mam_count(a: &Archive, owner: &str) -> usize {
    let q = MamQuery { max: Some(100), ..MamQuery::default() };
    a.mam_query(owner, &q).await.unwrap().records.len()
}

fn opts() -> ArchiveOptions {
    ArchiveOptions {
        checkpoint_every_records: 1_000_000,
        checkpoint_interval: Duration::from_secs(3600),
        ..ArchiveOptions::default()
    }
}

async fn raw_pool(dir: &std::path::Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(dir.join(DB_FILE)))
        .await
        .unwrap()
}

async fn file_archive(n: i64) -> (tempfile::TempDir, Archive) {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open(dir.path(), opts()).await.unwrap();
    for i in 0..n {
        a.append(msg(
            T0 + i,
            "alice@x/phone",
            "bob@x",
            &format!("message {i}"),
        ))
        .await
        .unwrap();
    }
    settled(&a).await;
    (dir, a)
}

/// Wait until the database holds every append so far (the applier runs a few milliseconds
/// behind the commit log), for tests that change the file behind the archive's back.
async fn settled(a: &Archive) {
    a.backend().head().await.unwrap();
}

/// Dropping the archive (a clean shutdown) waits for the commit thread and the applier: the
/// database alone then holds every record, right away, without the commit log.
#[tokio::test]
async fn dropping_the_archive_leaves_the_database_complete() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open(dir.path(), opts()).await.unwrap();
    for i in 0..5 {
        a.enqueue(msg(T0 + i, "alice@x/phone", "bob@x", &format!("m{i}")))
            .await
            .unwrap();
    }
    let last = a
        .append(msg(T0 + 5, "alice@x/phone", "bob@x", "m5"))
        .await
        .unwrap();
    assert_eq!(last, 6);
    drop(a);
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let (n, head): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM records), (SELECT seq FROM chain_head)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, head), (6, 6));
}

#[tokio::test]
async fn append_search_verify_round_trip() {
    let a = Archive::open_in_memory_for_tests(opts()).await.unwrap();
    assert!(a.verify().await.unwrap().is_ok());
    let mut r = msg(T0, "alice@x/phone", "bob@x", "hello world");
    r.meta_json = Some(r#"{"k":1}"#.into());
    assert_eq!(a.append(r.clone()).await.unwrap(), 1);
    let blocked = NewRecord {
        verdict: Verdict::Blocked {
            rule: "url-reputation".into(),
            reason: "phishing link".into(),
        },
        ..msg(T0 + 1, "mallory@evil", "bob@x", "click http://evil/")
    };
    assert_eq!(a.append(blocked.clone()).await.unwrap(), 2);
    let login = NewRecord {
        kind: RecordKind::Login,
        body: None,
        stanza_xml: None,
        meta_json: Some(r#"{"address":"192.0.2.1:5555","resource":"phone"}"#.into()),
        ..msg(T0 + 2, "alice@x/phone", "x", "")
    };
    a.append(login).await.unwrap();

    let got = a
        .search(&SearchQuery {
            text: Some("hello".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record, r);
    assert_eq!(got[0].seq, 1);
    assert_eq!(got[0].prev_hash, hash::GENESIS);

    let got = a
        .search(&SearchQuery {
            verdict: Some(VerdictKind::Blocked),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record, blocked);
    assert_eq!(
        got[0].prev_hash,
        a.search(&SearchQuery {
            text: Some("hello".into()),
            ..Default::default()
        })
        .await
        .unwrap()[0]
            .hash
    );

    let all = a.search(&SearchQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 2, 1]);
    let logins = a
        .search(&SearchQuery {
            kind: Some(RecordKind::Login),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logins.len(), 1);

    let cp = a.checkpoint().await.unwrap();
    assert_eq!(cp.seq, 3);
    assert!(hash::verify_checkpoint_signature(&cp, &a.public_key()));
    let rep = a.verify().await.unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!(rep.records_checked, 3);
    assert_eq!(rep.checkpoints_checked, 1);
}

#[tokio::test]
async fn search_filters() {
    let a = Archive::open_in_memory_for_tests(opts()).await.unwrap();
    a.append(msg(T0, "alice@x/a", "bob@x", "Привет, мир"))
        .await
        .unwrap();
    a.append(msg(T0 + 10, "bob@x/b", "alice@x", "Un café au lait"))
        .await
        .unwrap();
    a.append(msg(T0 + 20, "carol@x/c", "bob@x", "Quarterly report draft"))
        .await
        .unwrap();
    a.append(NewRecord {
        direction: Direction::Outbound,
        remote_domain: Some("remote.example".into()),
        verdict: Verdict::Quarantined {
            rule: "r1".into(),
            reason: "attachment".into(),
        },
        ..msg(
            T0 + 30,
            "alice@x/a",
            "dave@remote.example",
            "report attached",
        )
    })
    .await
    .unwrap();

    let s = |q: SearchQuery| {
        let a = &a;
        async move {
            a.search(&q)
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        }
    };
    // Non-ASCII, case- and diacritic-insensitive.
    assert_eq!(
        s(SearchQuery {
            text: Some("привет".into()),
            ..Default::default()
        })
        .await,
        vec![1]
    );
    assert_eq!(
        s(SearchQuery {
            text: Some("МИР".into()),
            ..Default::default()
        })
        .await,
        vec![1]
    );
    assert_eq!(
        s(SearchQuery {
            text: Some("cafe".into()),
            ..Default::default()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        s(SearchQuery {
            text: Some("café lait".into()),
            ..Default::default()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        s(SearchQuery {
            text: Some("repo*".into()),
            ..Default::default()
        })
        .await,
        vec![4, 3]
    );
    // FTS operators in user text are inert.
    assert_eq!(
        s(SearchQuery {
            text: Some("report OR NEAR(\"x".into()),
            ..Default::default()
        })
        .await,
        Vec::<u64>::new()
    );
    assert!(
        a.search(&SearchQuery {
            text: Some("  ,, ".into()),
            ..Default::default()
        })
        .await
        .is_err()
    );
    // Account: sender or recipient.
    assert_eq!(
        s(SearchQuery {
            account: Some("alice@x".into()),
            ..Default::default()
        })
        .await,
        vec![4, 2, 1]
    );
    assert_eq!(
        s(SearchQuery {
            account: Some("alice@x/a".into()),
            ..Default::default()
        })
        .await,
        vec![4, 1]
    );
    assert_eq!(
        s(SearchQuery {
            account: Some("bob@x".into()),
            with: Some("carol@x".into()),
            ..Default::default()
        })
        .await,
        vec![3]
    );
    assert_eq!(
        s(SearchQuery {
            account: Some("alice@x".into()),
            text: Some("report".into()),
            ..Default::default()
        })
        .await,
        vec![4]
    );
    assert_eq!(
        s(SearchQuery {
            verdict: Some(VerdictKind::Quarantined),
            ..Default::default()
        })
        .await,
        vec![4]
    );
    assert_eq!(
        s(SearchQuery {
            direction: Some(Direction::Outbound),
            ..Default::default()
        })
        .await,
        vec![4]
    );
    // Time range [since, until).
    assert_eq!(
        s(SearchQuery {
            since_ms: Some(T0 + 10),
            until_ms: Some(T0 + 30),
            ..Default::default()
        })
        .await,
        vec![3, 2]
    );
    assert_eq!(
        s(SearchQuery {
            since_ms: Some(T0 + 100),
            ..Default::default()
        })
        .await,
        Vec::<u64>::new()
    );
    assert_eq!(
        s(SearchQuery {
            text: Some("report".into()),
            until_ms: Some(T0 + 25),
            ..Default::default()
        })
        .await,
        vec![3]
    );
    // Limit and paging.
    assert_eq!(
        s(SearchQuery {
            limit: Some(2),
            ..Default::default()
        })
        .await,
        vec![4, 3]
    );
    assert_eq!(
        s(SearchQuery {
            limit: Some(2),
            before_seq: Some(3),
            ..Default::default()
        })
        .await,
        vec![2, 1]
    );
}

#[tokio::test]
async fn group_commit_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(Archive::open(dir.path(), opts()).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..50 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                seqs.push(
                    a.append(msg(
                        T0 + i,
                        &format!("u{t}@x"),
                        "bob@x",
                        &format!("m {t} {i}"),
                    ))
                    .await
                    .unwrap(),
                );
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
    let commits = a.commit_count();
    assert!(commits < 200, "{commits} transactions for 1000 appends");
    // Durable: a fresh handle on the file sees everything (once the first one has closed:
    // until then it applies what it logged, a few milliseconds behind).
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = Archive::open(dir.path(), opts()).await.unwrap();
    let rep = b.verify().await.unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!(rep.records_checked, 1000);
}

async fn first_bad(a: &Archive) -> u64 {
    let rep = a.verify().await.unwrap();
    match rep.failure {
        Some(f) => f.seq,
        None => panic!("verify passed: {rep:?}"),
    }
}

#[tokio::test]
async fn tamper_changed_body() {
    let (dir, a) = file_archive(10).await;
    let pool = raw_pool(dir.path()).await;
    sqlx::query("UPDATE records SET body = 'message 5!' WHERE seq = 6")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(first_bad(&a).await, 6);
}

#[tokio::test]
async fn tamper_flipped_byte_in_every_field() {
    let (dir, a) = file_archive(4).await;
    let pool = raw_pool(dir.path()).await;
    let mut rec = NewRecord {
        remote_domain: Some("r.example".into()),
        meta_json: Some("{}".into()),
        verdict: Verdict::Blocked {
            rule: "rule".into(),
            reason: "why".into(),
        },
        ..msg(T0 + 100, "alice@x/phone", "bob@x", "body")
    };
    rec.direction = Direction::Inbound;
    a.append(rec).await.unwrap();
    a.append(msg(T0 + 101, "bob@x", "alice@x", "after"))
        .await
        .unwrap();
    settled(&a).await;
    for col in [
        "kind",
        "direction",
        "from_jid",
        "to_jid",
        "remote_domain",
        "stanza_id",
        "body",
        "stanza_xml",
        "verdict",
        "verdict_rule",
        "verdict_reason",
        "meta_json",
    ] {
        let orig: String = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {col} FROM records WHERE seq = 5"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        let mut bytes = orig.clone().into_bytes();
        bytes[0] ^= 0x01;
        let changed = String::from_utf8(bytes).unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE records SET {col} = ? WHERE seq = 5"
        )))
        .bind(&changed)
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(first_bad(&a).await, 5, "column {col}");
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE records SET {col} = ? WHERE seq = 5"
        )))
        .bind(&orig)
        .execute(&pool)
        .await
        .unwrap();
        assert!(a.verify().await.unwrap().is_ok());
    }
    for col in ["at_ms"] {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE records SET {col} = {col} + 1 WHERE seq = 5"
        )))
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(first_bad(&a).await, 5);
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE records SET {col} = {col} - 1 WHERE seq = 5"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    for col in ["hash", "prev_hash"] {
        let orig: Vec<u8> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {col} FROM records WHERE seq = 5"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        let mut changed = orig.clone();
        changed[31] ^= 0x80;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE records SET {col} = ? WHERE seq = 5"
        )))
        .bind(&changed)
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(first_bad(&a).await, 5, "column {col}");
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE records SET {col} = ? WHERE seq = 5"
        )))
        .bind(&orig)
        .execute(&pool)
        .await
        .unwrap();
    }
    // A NULL where a value was, and a value where NULL was.
    sqlx::query("UPDATE records SET meta_json = NULL WHERE seq = 5")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(first_bad(&a).await, 5);
    sqlx::query("UPDATE records SET meta_json = '{}', remote_domain = NULL WHERE seq = 5")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(first_bad(&a).await, 5);
}

#[tokio::test]
async fn tamper_deleted_row() {
    let (dir, a) = file_archive(10).await;
    let pool = raw_pool(dir.path()).await;
    sqlx::query("DELETE FROM records WHERE seq = 4")
        .execute(&pool)
        .await
        .unwrap();
    let rep = a.verify().await.unwrap();
    assert_eq!(rep.failure.as_ref().unwrap().seq, 4, "{rep:?}");
    assert!(rep.failure.unwrap().reason.contains("missing"));
}

#[tokio::test]
async fn tamper_swapped_rows() {
    let (dir, a) = file_archive(10).await;
    let pool = raw_pool(dir.path()).await;
    let cols = "at_ms, kind, direction, from_jid, to_jid, remote_domain, stanza_id, body, stanza_xml, verdict, verdict_rule, verdict_reason, meta_json, prev_hash, hash";
    let list: Vec<&str> = cols.split(", ").collect();
    let set = list
        .iter()
        .map(|c| format!("{c} = (SELECT {c} FROM tmp WHERE tmp.seq = ?)"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE tmp AS SELECT seq, {cols} FROM records WHERE seq IN (3, 7)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    for (dst, src) in [(3i64, 7i64), (7, 3)] {
        let mut q = sqlx::query(AssertSqlSafe(format!(
            "UPDATE records SET {set} WHERE seq = ?"
        )));
        for _ in &list {
            q = q.bind(src);
        }
        q.bind(dst).execute(&pool).await.unwrap();
    }
    let b3: String = sqlx::query_scalar("SELECT body FROM records WHERE seq = 3")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(b3, "message 6");
    assert_eq!(first_bad(&a).await, 3);
}

#[tokio::test]
async fn tamper_truncation_and_checkpoints() {
    let (dir, a) = file_archive(10).await;
    let cp = a.checkpoint().await.unwrap();
    for i in 10..15 {
        a.append(msg(T0 + i, "alice@x", "bob@x", "later"))
            .await
            .unwrap();
    }
    settled(&a).await;
    let pool = raw_pool(dir.path()).await;
    // Truncating after the last checkpoint is caught by the head row...
    sqlx::query("DELETE FROM records WHERE seq > 12")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(first_bad(&a).await, 13);
    // ... and past a checkpoint by the checkpoint, even with the head rewritten.
    sqlx::query("DELETE FROM records WHERE seq > 8")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE chain_head SET seq = 8, hash = (SELECT hash FROM records WHERE seq = 8)")
        .execute(&pool)
        .await
        .unwrap();
    let rep = a.verify().await.unwrap();
    assert_eq!(rep.failure.as_ref().unwrap().seq, 9, "{rep:?}");
    assert!(rep.failure.unwrap().reason.contains("truncated"));
    // Deleting the checkpoint too: only an outside checkpoint catches it.
    sqlx::query("DELETE FROM checkpoints")
        .execute(&pool)
        .await
        .unwrap();
    assert!(a.verify().await.unwrap().is_ok());
    assert_eq!(
        a.verify_against(std::slice::from_ref(&cp))
            .await
            .unwrap()
            .failure
            .unwrap()
            .seq,
        9
    );
    // A forged checkpoint (bad signature) is caught.
    sqlx::query("INSERT INTO checkpoints (seq, hash, at_ms, signature) SELECT seq, hash, 1, zeroblob(64) FROM records WHERE seq = 5")
        .execute(&pool).await.unwrap();
    let rep = a.verify().await.unwrap();
    assert_eq!(rep.failure.as_ref().unwrap().seq, 5);
    assert!(rep.failure.unwrap().reason.contains("signature"));
}

/// Records on three UTC days: seqs 1-3 day 0, 4-6 day 1, 7-9 day 2.
async fn three_days(dir: &std::path::Path) -> Archive {
    let a = Archive::open(dir, opts()).await.unwrap();
    for d in 0..3 {
        for i in 0..3 {
            let (from, to) = if i == 0 {
                ("carol@x/c", "dave@x")
            } else {
                ("alice@x/a", "bob@x")
            };
            a.append(msg(
                T0 + d * DAY + i * 1000,
                from,
                to,
                &format!("day {d} item {i}"),
            ))
            .await
            .unwrap();
        }
    }
    settled(&a).await;
    a
}

#[tokio::test]
async fn retention_deletes_old_segments_and_verify_passes() {
    let dir = tempfile::tempdir().unwrap();
    let a = three_days(dir.path()).await;
    a.checkpoint().await.unwrap();
    // Cutoff: start of day 2. Days 0 and 1 go; day 2 is the open segment anyway.
    let rep = a
        .apply_retention(T0 + 12 * DAY, Duration::from_millis(10 * DAY as u64))
        .await
        .unwrap();
    assert_eq!(rep.deleted_records, 6);
    assert_eq!(rep.deleted_segments.len(), 2);
    assert_eq!(
        (
            rep.deleted_segments[0].first_seq,
            rep.deleted_segments[0].last_seq
        ),
        (1, 3)
    );
    assert_eq!(
        (
            rep.deleted_segments[1].first_seq,
            rep.deleted_segments[1].last_seq
        ),
        (4, 6)
    );
    let left = a.search(&SearchQuery::default()).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![9, 8, 7]
    );
    assert!(
        a.search(&SearchQuery {
            text: Some("day".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
            == 3
    );
    let v = a.verify().await.unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!((v.records_checked, v.tombstones_checked), (3, 2));
    // Never the open segment, even when old.
    let rep = a
        .apply_retention(T0 + 100 * DAY, Duration::from_millis(DAY as u64))
        .await
        .unwrap();
    assert_eq!(rep.deleted_records, 0);
    // Appending continues the chain across the tombstones.
    a.append(msg(T0 + 3 * DAY, "alice@x", "bob@x", "new day"))
        .await
        .unwrap();
    assert!(a.verify().await.unwrap().is_ok());

    // Tampering with a tombstone is caught at its first seq.
    let pool = raw_pool(dir.path()).await;
    sqlx::query("UPDATE tombstones SET last_seq = 5 WHERE first_seq = 4")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(first_bad(&a).await, 4);
    sqlx::query("UPDATE tombstones SET last_seq = 6 WHERE first_seq = 4")
        .execute(&pool)
        .await
        .unwrap();
    assert!(a.verify().await.unwrap().is_ok());
    sqlx::query("UPDATE tombstones SET max_at_ms = max_at_ms + 1 WHERE first_seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    let rep = a.verify().await.unwrap();
    assert_eq!(rep.failure.as_ref().unwrap().seq, 1);
    assert!(rep.failure.unwrap().reason.contains("signature"));
    sqlx::query("UPDATE tombstones SET max_at_ms = max_at_ms - 1 WHERE first_seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    // Deleting a tombstone leaves a gap.
    sqlx::query("DELETE FROM tombstones WHERE first_seq = 4")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(first_bad(&a).await, 4);
}

#[tokio::test]
async fn retention_refuses_tampered_segment() {
    let dir = tempfile::tempdir().unwrap();
    let a = three_days(dir.path()).await;
    let pool = raw_pool(dir.path()).await;
    sqlx::query("UPDATE records SET body = 'rewritten' WHERE seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    let err = a
        .apply_retention(T0 + 12 * DAY, Duration::from_millis(10 * DAY as u64))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArchiveError::SegmentTampered { first_seq: 1, .. }),
        "{err}"
    );
    assert_eq!(first_bad(&a).await, 2);
}

#[tokio::test]
async fn legal_hold_keeps_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let a = three_days(dir.path()).await;
    // carol's records are the first of each day: holds on her keep days 0 and 1.
    let h1 = a
        .add_hold(LegalHold {
            reason: "case 1".into(),
            account: Some("carol@x".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // A text hold restricted in time covers day 1 only.
    let h2 = a
        .add_hold(LegalHold {
            reason: "case 2".into(),
            text: Some("item".into()),
            since_ms: Some(T0 + DAY),
            until_ms: Some(T0 + 2 * DAY),
            ..Default::default()
        })
        .await
        .unwrap();
    let rep = a
        .apply_retention(T0 + 12 * DAY, Duration::from_millis(10 * DAY as u64))
        .await
        .unwrap();
    assert_eq!(rep.deleted_records, 0);
    assert_eq!(rep.held_segments, vec![(1, 3, h1), (4, 6, h1)]);
    a.release_hold(h1).await.unwrap();
    assert!(matches!(
        a.release_hold(h1).await,
        Err(ArchiveError::NoSuchHold(_))
    ));
    let rep = a
        .apply_retention(T0 + 12 * DAY, Duration::from_millis(10 * DAY as u64))
        .await
        .unwrap();
    assert_eq!(rep.deleted_records, 3);
    assert_eq!(rep.held_segments, vec![(4, 6, h2)]);
    let holds = a.holds().await.unwrap();
    assert_eq!(holds.len(), 2);
    assert!(holds[0].released_at_ms.is_some() && holds[1].released_at_ms.is_none());
    assert!(a.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn segments_split_by_record_count() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open(
        dir.path(),
        ArchiveOptions {
            segment_max_records: 4,
            ..opts()
        },
    )
    .await
    .unwrap();
    for i in 0..10 {
        a.append(msg(T0 + i, "alice@x", "bob@x", "x"))
            .await
            .unwrap();
    }
    let rep = a
        .apply_retention(T0 + DAY, Duration::from_millis(1))
        .await
        .unwrap();
    let ranges: Vec<_> = rep
        .deleted_segments
        .iter()
        .map(|t| (t.first_seq, t.last_seq))
        .collect();
    assert_eq!(ranges, vec![(1, 4), (5, 8)]);
    assert!(a.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn mam_paging_and_with() {
    let a = Archive::open_in_memory_for_tests(opts()).await.unwrap();
    // 1..=10 alternate alice<->bob; 11 carol->alice; 12 blocked; 13 chat state without body.
    for i in 0..10 {
        let (f, t) = if i % 2 == 0 {
            ("alice@x/a", "bob@x/b")
        } else {
            ("bob@x/b", "alice@x/a")
        };
        a.append(msg(T0 + i, f, t, &format!("m{i}"))).await.unwrap();
    }
    a.append(msg(T0 + 10, "carol@x/c", "alice@x", "from carol"))
        .await
        .unwrap();
    a.append(NewRecord {
        verdict: Verdict::Blocked {
            rule: "r".into(),
            reason: "x".into(),
        },
        ..msg(T0 + 11, "bob@x/b", "alice@x", "bad")
    })
    .await
    .unwrap();
    a.append(NewRecord {
        body: None,
        ..msg(T0 + 12, "bob@x/b", "alice@x", "")
    })
    .await
    .unwrap();
    a.append(msg(T0 + 13, "dave@x", "erin@x", "not alice's"))
        .await
        .unwrap();

    let ids = |p: &MamPage| p.records.iter().map(|r| r.seq).collect::<Vec<_>>();
    // First page, oldest first.
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                max: Some(4),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![1, 2, 3, 4]);
    assert_eq!((p.count, p.complete, p.first_index), (11, false, Some(0)));
    assert_eq!(
        (p.first.as_deref(), p.last.as_deref()),
        (Some("1"), Some("4"))
    );
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                max: Some(4),
                after: p.last.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![5, 6, 7, 8]);
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                max: Some(4),
                after: p.last.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![9, 10, 11]);
    assert!(p.complete);
    assert_eq!(p.first_index, Some(8));
    // Last page, then backwards.
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                max: Some(4),
                before: Some(String::new()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![8, 9, 10, 11]);
    assert!(!p.complete);
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                max: Some(4),
                before: p.first.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![4, 5, 6, 7]);
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                max: Some(4),
                before: p.first.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![1, 2, 3]);
    assert!(p.complete);
    // with: bare and full JIDs.
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                with: Some("carol@x".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![11]);
    assert!(p.complete);
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                with: Some("bob@x/b".into()),
                max: Some(100),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p.count, 10);
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                with: Some("bob@x/other".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p.count, 0);
    // Time range.
    let p = a
        .mam_query(
            "alice@x",
            &MamQuery {
                start_ms: Some(T0 + 2),
                end_ms: Some(T0 + 4),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&p), vec![3, 4, 5]);
    // Count only.
    let p = a
        .mam_query(
            "bob@x",
            &MamQuery {
                max: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((p.count, p.records.len()), (10, 0));
    // Unknown and foreign ids.
    assert!(matches!(
        a.mam_query(
            "alice@x",
            &MamQuery {
                after: Some("zzz".into()),
                ..Default::default()
            }
        )
        .await,
        Err(ArchiveError::ItemNotFound(_))
    ));
    assert!(matches!(
        a.mam_query(
            "alice@x",
            &MamQuery {
                after: Some("14".into()),
                ..Default::default()
            }
        )
        .await,
        Err(ArchiveError::ItemNotFound(_))
    ));
}

#[tokio::test]
async fn export_jsonl_and_eml_verify() {
    let dir = tempfile::tempdir().unwrap();
    let a = three_days(dir.path()).await;
    a.append(msg(
        T0 + 3 * DAY,
        "alice@x/a",
        "bob@x",
        "line1\r\nSubject: injected\r\n\r\nüñï",
    ))
    .await
    .unwrap();
    a.checkpoint().await.unwrap();
    a.append(msg(
        T0 + 3 * DAY + 1,
        "bob@x",
        "alice@x",
        "after checkpoint",
    ))
    .await
    .unwrap();
    a.apply_retention(T0 + 12 * DAY, Duration::from_millis(10 * DAY as u64 + 1))
        .await
        .unwrap();

    // carol's records (1, 4 deleted; 7 left) and alice's.
    let q = SearchQuery {
        account: Some("alice@x".into()),
        ..Default::default()
    };
    let out = dir.path().join("export-jsonl");
    let m = a.export(&q, ExportFormat::Jsonl, &out).await.unwrap();
    let seqs: Vec<u64> = m.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![8, 9, 10, 11]);
    assert_eq!(
        m.checkpoint.seq, 11,
        "a new checkpoint covers the newest record"
    );
    let v = verify_export(&out, Some(&a.public_key())).unwrap();
    assert_eq!(v.records, 4);
    assert!(verify_export(&out, Some(&[7; 32])).is_err());

    // Older records across a tombstone, covered by the existing checkpoint.
    let q = SearchQuery {
        account: Some("carol@x".into()),
        ..Default::default()
    };
    let out2 = dir.path().join("export-eml");
    let m = a.export(&q, ExportFormat::Eml, &out2).await.unwrap();
    assert_eq!(m.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![7]);
    verify_export(&out2, None).unwrap();
    let eml = std::fs::read_to_string(out2.join(m.records[0].file.as_ref().unwrap())).unwrap();
    assert!(eml.contains("From: carol@x/c\r\n") && eml.contains("X-Rampart-Seq: 7\r\n"));

    let out3 = dir.path().join("export-eml2");
    let q = SearchQuery {
        text: Some("injected".into()),
        ..Default::default()
    };
    let m = a.export(&q, ExportFormat::Eml, &out3).await.unwrap();
    let eml = std::fs::read_to_string(out3.join(m.records[0].file.as_ref().unwrap())).unwrap();
    assert!(!eml.contains("\r\nSubject: injected"));
    verify_export(&out3, None).unwrap();
    // Exporting again into the same directory is refused.
    assert!(a.export(&q, ExportFormat::Jsonl, &out3).await.is_err());

    // Tampering with the export is caught: a record's content (file digest fixed up too).
    let path = out.join("records.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("day 2 item 1", "day 2 item X");
    std::fs::write(&path, &text).unwrap();
    assert!(verify_export(&out, None).is_err());
    let mpath = out.join("manifest.json");
    let mut man: ExportManifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    man.files[0].1 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
    std::fs::write(&mpath, serde_json::to_vec(&man).unwrap()).unwrap();
    let err = verify_export(&out, None).unwrap_err();
    assert!(err.to_string().contains("record 8"), "{err}");
}

#[tokio::test]
async fn key_file_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open(dir.path(), opts()).await.unwrap();
    a.append(msg(T0, "a@x", "b@x", "hi")).await.unwrap();
    let pk = a.public_key();
    drop(a);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pubhex = std::fs::read_to_string(dir.path().join(PUBLIC_KEY_FILE)).unwrap();
    assert_eq!(pubhex.trim(), hex::encode(pk));
    let b = Archive::open(dir.path(), opts()).await.unwrap();
    assert_eq!(b.public_key(), pk);
    assert_eq!(
        b.append(msg(T0 + 1, "a@x", "b@x", "again")).await.unwrap(),
        2
    );
    drop(b);
    // A different key is refused.
    std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
    assert!(matches!(
        Archive::open(dir.path(), opts()).await,
        Err(ArchiveError::Key(_))
    ));
}

#[tokio::test]
async fn automatic_checkpoints() {
    let a = Archive::open_in_memory_for_tests(ArchiveOptions {
        checkpoint_every_records: 5,
        checkpoint_interval: Duration::from_millis(50),
        ..opts()
    })
    .await
    .unwrap();
    for i in 0..12 {
        a.append(msg(T0 + i, "a@x", "b@x", "x")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cps = a.backend().checkpoints().await.unwrap();
    assert!(cps.len() >= 3, "{cps:?}");
    assert_eq!(cps.last().unwrap().seq, 12);
    let rep = a.verify().await.unwrap();
    assert!(rep.is_ok(), "{rep:?}");
}

#[tokio::test]
async fn moderation_record_keeps_the_original_and_verifies() {
    for k in [
        RecordKind::Message,
        RecordKind::Subscription,
        RecordKind::Login,
        RecordKind::Logout,
        RecordKind::File,
        RecordKind::Publish,
        RecordKind::Moderation,
    ] {
        assert_eq!(RecordKind::parse(k.as_str()), Some(k));
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Archive::open(dir.path(), opts()).await.unwrap();
    let room = "lobby@conference.x";
    let original = a
        .append(msg(T0, "mallory@x/pc", room, "buy cheap pills"))
        .await
        .unwrap();
    let moderation = NewRecord {
        kind: RecordKind::Moderation,
        stanza_id: Some(original.to_string()),
        body: Some("spam".into()),
        stanza_xml: Some(format!(
            "<message from='{room}' type='groupchat'><retract id='{original}' xmlns='urn:xmpp:message-retract:1'/></message>"
        )),
        meta_json: Some(r#"{"room_nick":"mod","target":"1"}"#.into()),
        ..msg(T0 + 1, "alice@x/pc", room, "")
    };
    let seq = a.append(moderation.clone()).await.unwrap();
    assert!(a.verify().await.unwrap().is_ok());
    // Both are found; the original is unchanged.
    let q = SearchQuery {
        account: Some(room.into()),
        ..Default::default()
    };
    let found = a.search(&q).await.unwrap();
    assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![seq, original]);
    assert_eq!(found[0].record, moderation);
    assert_eq!(found[1].record.body.as_deref(), Some("buy cheap pills"));
    let only = a
        .search(&SearchQuery {
            kind: Some(RecordKind::Moderation),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].record.stanza_id.as_deref(), Some("1"));
    // MAM shows messages only: the moderation act is not a message of the room.
    let page = a.mam_query(room, &MamQuery::default()).await.unwrap();
    assert_eq!(page.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![original]);
    // MAM on a room asks for the announcements too (with or without a reason); the
    // moderator's own MAM never shows them.
    let silent = a
        .append(NewRecord {
            body: None,
            stanza_id: Some("99".into()),
            ..moderation.clone()
        })
        .await
        .unwrap();
    let mq = MamQuery {
        with_moderation: true,
        ..Default::default()
    };
    let page = a.mam_query(room, &mq).await.unwrap();
    assert_eq!(page.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![original, seq, silent]);
    assert_eq!(page.count, 3);
    let mine = a.mam_query("alice@x", &MamQuery::default()).await.unwrap();
    assert!(mine.records.is_empty(), "{:?}", mine.records);
    // An export of the room carries both and verifies.
    let out = dir.path().join("export");
    let m = a.export(&q, ExportFormat::Jsonl, &out).await.unwrap();
    assert_eq!(m.records.len(), 3);
    verify_export(&out, Some(&a.public_key())).unwrap();
}

#[tokio::test]
async fn queries_see_records_the_moment_they_are_committed() {
    // The indexes are written after the durable commit; a query waits for them.
    let a = Archive::open_in_memory_for_tests(opts()).await.unwrap();
    for i in 0..50 {
        let seq = a
            .append(msg(T0 + i, "alice@x/phone", "bob@x", &format!("ping {i}")))
            .await
            .unwrap();
        let hits = a
            .search(&SearchQuery {
                text: Some(format!("ping {i}")),
                ..SearchQuery::default()
            })
            .await
            .unwrap();
        assert!(hits.iter().any(|r| r.seq == seq), "record {seq} not found");
        let page = a
            .mam_query("bob@x", &MamQuery::default())
            .await
            .unwrap();
        assert_eq!(page.records.len(), i as usize + 1);
        assert!(page.records.iter().any(|r| r.seq == seq));
    }
}

#[tokio::test]
async fn indexes_catch_up_after_a_crash_between_commit_and_indexing() {
    // Also what happens when the index file is lost, or on the first open after migration 2.
    let (dir, a) = file_archive(30).await;
    a.sync_index().await.unwrap();
    drop(a);
    // As if the process died after the journal commit and before the indexing pass.
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new().filename(dir.path().join(INDEX_FILE)),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE index_head SET seq = 10").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM records_fts WHERE rowid > 10").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM parties WHERE seq > 10").execute(&pool).await.unwrap();
    let b = Archive::open(dir.path(), opts()).await.unwrap();
    assert_eq!(message_hits(&b, None).await, 30);
    assert_eq!(mam_count(&b, "alice@x").await, 30);
    let (head,): (i64,) = sqlx::query_as("SELECT seq FROM index_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(head, 30);
}

#[tokio::test]
async fn a_lost_index_file_is_rebuilt_from_the_journal() {
    let (dir, a) = file_archive(25).await;
    a.sync_index().await.unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{INDEX_FILE}{suffix}")));
    }
    let b = Archive::open(dir.path(), opts()).await.unwrap();
    assert_eq!(message_hits(&b, Some("bob@x")).await, 25);
    assert!(b.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_commit_the_database_refuses_is_retried_and_reads_wait_for_it() {
    let (dir, a) = file_archive(3).await;
    let pool = raw_pool(dir.path()).await;
    sqlx::raw_sql(
        "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.body = 'boom'
         BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Durable in the commit log: the append succeeds; the applier's commit fails and is
    // retried, and the record after it waits behind it.
    assert_eq!(a.append(msg(T0 + 10, "alice@x", "bob@x", "boom")).await.unwrap(), 4);
    assert_eq!(a.append(msg(T0 + 11, "alice@x", "bob@x", "fine")).await.unwrap(), 5);
    let reader = tokio::spawn(async move {
        let rep = a.verify().await.unwrap();
        (a, rep)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.is_finished(), "a read waits for the applier");
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM records")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 3);
    sqlx::raw_sql("DROP TRIGGER refuse").execute(&pool).await.unwrap();
    let (a, rep) = reader.await.unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!(rep.records_checked, 5);
    assert_eq!(a.backend().head().await.unwrap().0, 5);
}

#[tokio::test]
async fn a_second_handle_reads_beside_the_writer_and_takes_over_when_it_closes() {
    // Like the server and the CLI: two processes, each with its indexer; one appends.
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(Archive::open(dir.path(), opts()).await.unwrap());
    let b = Arc::new(Archive::open(dir.path(), opts()).await.unwrap());
    for i in 0..50 {
        a.append(msg(T0 + i, "alice@x", "bob@x", &format!("message side {i}")))
            .await
            .unwrap();
        if i % 10 == 0 {
            // The other handle indexes what it finds, beside the appends.
            b.sync_index().await.unwrap();
        }
    }
    let err = b.append(msg(T0, "alice@x", "bob@x", "refused")).await.unwrap_err();
    assert!(err.to_string().contains("another process is appending"), "{err}");
    // What the writer acknowledged, the other handle reads at once (it waits for the
    // writer's applier to bring the database up to the log).
    let seq = a.append(msg(T0 + 50, "alice@x", "bob@x", "just now")).await.unwrap();
    assert_eq!(b.backend().head().await.unwrap().0, seq);
    a.sync_index().await.unwrap();
    assert_eq!(message_hits(&b, Some("bob@x")).await, 50);
    // Once the writer closes, the other handle appends, continuing the chain.
    drop(a);
    assert_eq!(b.append(msg(T0 + 51, "alice@x", "bob@x", "message next")).await.unwrap(), 52);
    assert_eq!(message_hits(&b, Some("bob@x")).await, 51);
    assert!(b.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn records_logged_but_not_in_the_database_are_replayed_on_open() {
    // A crash between the commit log and the database: simulated by logging batches and
    // then undoing the database's copy of them (the log keeps its frames).
    let (dir, a) = file_archive(5).await;
    let stamped: Vec<u64> = {
        let mut v = Vec::new();
        for i in 5..8 {
            v.push(a.append(msg(T0 + i, "alice@x", "bob@x", &format!("message late {i}"))).await.unwrap());
        }
        v
    };
    assert_eq!(stamped, [6, 7, 8]);
    settled(&a).await;
    let head_before = a.backend().head().await.unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pool = raw_pool(dir.path()).await;
    sqlx::raw_sql(
        "DELETE FROM records WHERE seq > 5;
         UPDATE segments SET last_seq = 5 WHERE last_seq > 5;
         UPDATE chain_head SET seq = 5, hash = (SELECT hash FROM records WHERE seq = 5);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let b = Archive::open(dir.path(), opts()).await.unwrap();
    assert_eq!(b.backend().head().await.unwrap(), head_before);
    let rep = b.verify().await.unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    assert_eq!(rep.records_checked, 8);
    assert_eq!(message_hits(&b, Some("bob@x")).await, 8);
    assert_eq!(b.append(msg(T0 + 9, "alice@x", "bob@x", "after")).await.unwrap(), 9);
}

#[tokio::test]
async fn a_commit_log_that_does_not_continue_the_database_stops_appends_not_reads() {
    let (dir, a) = file_archive(5).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another archive's log, with records the database does not lead up to.
    let other = tempfile::tempdir().unwrap();
    let b = Archive::open(other.path(), opts()).await.unwrap();
    for i in 0..9 {
        b.append(msg(T0 + i, "carol@x", "dave@x", "elsewhere")).await.unwrap();
    }
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for f in crate::commitlog::LOG_FILES {
        std::fs::copy(other.path().join(f), dir.path().join(f)).unwrap();
    }
    // Appends are refused; reading and verifying still work, to find out why.
    let c = Archive::open(dir.path(), opts()).await.unwrap();
    let why = c.appends_refused().expect("appends are refused");
    assert!(why.contains("does not continue the archive database"), "{why}");
    let err = c.append(msg(T0 + 20, "alice@x", "bob@x", "x")).await.unwrap_err();
    assert!(err.to_string().contains("does not continue the archive database"), "{err}");
    assert!(c.verify().await.unwrap().is_ok());
    assert_eq!(c.backend().head().await.unwrap().0, 5);
}

#[tokio::test]
async fn an_index_file_of_the_text_keyed_layout_is_rebuilt() {
    // An archive indexed by a Rampart whose account index keyed bare JIDs as text.
    let (dir, a) = file_archive(20).await;
    a.append(msg(T0 + 20, "carol@x", "alice@x/laptop", "from carol"))
        .await
        .unwrap();
    a.sync_index().await.unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{INDEX_FILE}{suffix}")));
    }
    let old = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(dir.path().join(INDEX_FILE))
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE parties (
            account TEXT NOT NULL, seq INTEGER NOT NULL, peer TEXT NOT NULL,
            PRIMARY KEY (account, seq)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX parties_peer ON parties (account, peer, seq);
        CREATE VIRTUAL TABLE records_fts USING fts5 (
            body, content = '', contentless_delete = 1,
            tokenize = 'unicode61 remove_diacritics 2'
        );
        CREATE TABLE index_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)
            STRICT;
        INSERT INTO index_head VALUES (1, 21);
        INSERT INTO parties VALUES ('alice@x', 1, 'bob@x'), ('bob@x', 1, 'alice@x');
        INSERT INTO records_fts (rowid, body) VALUES (1, 'message 0');",
    )
    .execute(&old)
    .await
    .unwrap();
    old.close().await;

    let b = Archive::open(dir.path(), opts()).await.unwrap();
    b.sync_index().await.unwrap();
    assert_eq!(message_hits(&b, Some("bob@x")).await, 20);
    let hits = b
        .search(&SearchQuery {
            account: Some("alice@x".into()),
            with: Some("carol@x".into()),
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(hits.iter().map(|r| r.seq).collect::<Vec<_>>(), [21]);
    assert_eq!(mam_count(&b, "alice@x").await, 21);
    let page = b
        .mam_query(
            "alice@x",
            &MamQuery {
                with: Some("carol@x".into()),
                ..MamQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [21]);
    // The file has the integer-keyed layout now, and a reopen keeps it.
    drop(b);
    let c = Archive::open(dir.path(), opts()).await.unwrap();
    let index = SqlitePool::connect_with(
        SqliteConnectOptions::new().filename(dir.path().join(INDEX_FILE)),
    )
    .await
    .unwrap();
    let (version, kind, n): (i64, String, i64) = sqlx::query_as(
        "SELECT (SELECT user_version FROM pragma_user_version),
                (SELECT typeof(account) FROM parties LIMIT 1),
                (SELECT count(*) FROM parties)",
    )
    .fetch_one(&index)
    .await
    .unwrap();
    assert_eq!((version, kind.as_str(), n), (2, "integer", 42));
    assert_eq!(c.search(&SearchQuery::default()).await.unwrap().len(), 21);
}
