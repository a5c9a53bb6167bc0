//! Tests of the SQLite backend through the store traits.

use std::sync::Arc;

use super::SqliteStore;
use crate::{
    AccountStore, OfflineStore, RosterItem, RosterStore, ScramCredentials, ScramHash, StoreError,
    Subscription,
};

fn creds(hash: ScramHash, seed: u8) -> ScramCredentials {
    ScramCredentials {
        hash,
        salt: vec![seed; 16],
        iterations: 4096 + u32::from(seed),
        stored_key: vec![seed.wrapping_add(1); 32],
        server_key: vec![seed.wrapping_add(2); 32],
    }
}

fn both(seed: u8) -> Vec<ScramCredentials> {
    vec![creds(ScramHash::Sha256, seed), creds(ScramHash::Sha1, seed)]
}

fn item(jid: &str, groups: &[&str]) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        name: None,
        subscription: Subscription::None,
        ask: false,
        approved: false,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

async fn mem() -> SqliteStore {
    SqliteStore::open_in_memory().await.expect("open in memory")
}

#[tokio::test]
async fn account_crud_and_errors() {
    let s = mem().await;
    assert_eq!(s.list().await.unwrap(), Vec::<String>::new());
    assert!(s.get("alice@example.org").await.unwrap().is_none());

    s.create("bob@example.org", both(1)).await.unwrap();
    s.create("alice@example.org", both(2)).await.unwrap();
    assert!(matches!(
        s.create("alice@example.org", both(3)).await,
        Err(StoreError::AlreadyExists)
    ));
    // The failed create changed nothing.
    assert_eq!(
        s.get("alice@example.org")
            .await
            .unwrap()
            .unwrap()
            .credentials,
        both(2)
    );
    assert_eq!(
        s.list().await.unwrap(),
        ["alice@example.org", "bob@example.org"]
    );

    let alice = s.get("alice@example.org").await.unwrap().unwrap();
    assert_eq!(alice.jid, "alice@example.org");
    let now = super::unix_seconds();
    assert!((now - 60..=now).contains(&alice.created_at));

    s.remove("bob@example.org").await.unwrap();
    assert!(matches!(
        s.remove("bob@example.org").await,
        Err(StoreError::NotFound)
    ));
    assert!(s.get("bob@example.org").await.unwrap().is_none());
    assert_eq!(s.list().await.unwrap(), ["alice@example.org"]);
    assert!(matches!(
        s.set_credentials("bob@example.org", both(4)).await,
        Err(StoreError::NotFound)
    ));
    // Removed JIDs can be created again.
    s.create("bob@example.org", vec![]).await.unwrap();
    assert_eq!(
        s.get("bob@example.org").await.unwrap().unwrap().credentials,
        vec![]
    );
}

#[tokio::test]
async fn credentials_round_trip() {
    let s = mem().await;
    let mut c = both(7);
    c[0].iterations = u32::MAX;
    c[1].salt = vec![];
    s.create("a@x", c.clone()).await.unwrap();
    assert_eq!(s.get("a@x").await.unwrap().unwrap().credentials, c);

    let created_at = s.get("a@x").await.unwrap().unwrap().created_at;
    let new = vec![creds(ScramHash::Sha1, 9)];
    s.set_credentials("a@x", new.clone()).await.unwrap();
    let a = s.get("a@x").await.unwrap().unwrap();
    assert_eq!(a.credentials, new);
    assert_eq!(a.created_at, created_at);

    // Two credentials for one hash are refused and change nothing.
    let dup = vec![creds(ScramHash::Sha1, 1), creds(ScramHash::Sha1, 2)];
    assert!(matches!(
        s.set_credentials("a@x", dup.clone()).await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(
        s.create("b@x", dup).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(s.get("a@x").await.unwrap().unwrap().credentials, new);
    assert!(s.get("b@x").await.unwrap().is_none());
}

#[tokio::test]
async fn roster_versions() {
    let s = mem().await;
    s.create("o@x", vec![]).await.unwrap();
    assert_eq!(s.roster("o@x").await.unwrap(), (0, vec![]));
    assert_eq!(s.roster("nobody@x").await.unwrap(), (0, vec![]));

    let mut b = item("b@y", &[]);
    b.name = Some("Bee".into());
    b.subscription = Subscription::Both;
    b.approved = true;
    let mut a = item("a@y", &[]);
    a.subscription = Subscription::To;
    a.ask = true;
    assert_eq!(s.put_item("o@x", &b).await.unwrap(), 1);
    assert_eq!(s.put_item("o@x", &a).await.unwrap(), 2);
    assert_eq!(
        s.roster("o@x").await.unwrap(),
        (2, vec![a.clone(), b.clone()])
    );
    assert_eq!(s.item("o@x", "b@y").await.unwrap(), Some(b.clone()));
    assert_eq!(s.item("o@x", "c@y").await.unwrap(), None);
    assert_eq!(s.item("nobody@x", "b@y").await.unwrap(), None);

    // Replace.
    b.subscription = Subscription::From;
    b.name = None;
    assert_eq!(s.put_item("o@x", &b).await.unwrap(), 3);
    assert_eq!(s.item("o@x", "b@y").await.unwrap(), Some(b.clone()));

    // Removal bumps; a no-op removal does not.
    assert_eq!(s.remove_item("o@x", "a@y").await.unwrap(), Some(4));
    assert_eq!(s.remove_item("o@x", "a@y").await.unwrap(), None);
    assert_eq!(s.remove_item("nobody@x", "a@y").await.unwrap(), None);
    assert_eq!(s.roster("o@x").await.unwrap(), (4, vec![b.clone()]));

    // Versions are per account.
    s.create("p@x", vec![]).await.unwrap();
    assert_eq!(s.put_item("p@x", &a).await.unwrap(), 1);
    assert_eq!(s.roster("o@x").await.unwrap().0, 4);

    // No roster writes for a missing account.
    assert!(matches!(
        s.put_item("nobody@x", &a).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn roster_groups_ordered_and_distinct() {
    let s = mem().await;
    s.create("o@x", vec![]).await.unwrap();
    let it = item("c@y", &["Work", "Friends", "Work", "Ächtung", "Friends"]);
    s.put_item("o@x", &it).await.unwrap();
    let got = s.item("o@x", "c@y").await.unwrap().unwrap();
    assert_eq!(got.groups, ["Work", "Friends", "Ächtung"]);
    assert_eq!(s.roster("o@x").await.unwrap().1[0].groups, got.groups);

    // Replacing an item replaces its groups.
    let it2 = item("c@y", &["Family"]);
    s.put_item("o@x", &it2).await.unwrap();
    assert_eq!(
        s.item("o@x", "c@y").await.unwrap().unwrap().groups,
        ["Family"]
    );
    let it3 = item("c@y", &[]);
    s.put_item("o@x", &it3).await.unwrap();
    assert_eq!(s.item("o@x", "c@y").await.unwrap(), Some(it3));

    // Groups of several items stay with their items.
    s.put_item("o@x", &item("a@y", &["A1", "A2"]))
        .await
        .unwrap();
    s.put_item("o@x", &item("b@y", &["B"])).await.unwrap();
    s.put_item("o@x", &item("c@y", &["C"])).await.unwrap();
    let (_, items) = s.roster("o@x").await.unwrap();
    let groups: Vec<_> = items
        .iter()
        .map(|i| (i.jid.as_str(), i.groups.clone()))
        .collect();
    assert_eq!(
        groups,
        [
            ("a@y", vec!["A1".to_owned(), "A2".to_owned()]),
            ("b@y", vec!["B".to_owned()]),
            ("c@y", vec!["C".to_owned()]),
        ]
    );
    s.remove_item("o@x", "a@y").await.unwrap();
    s.put_item("o@x", &item("a@y", &[])).await.unwrap();
    assert_eq!(
        s.item("o@x", "a@y").await.unwrap().unwrap().groups,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn pending_inbound_requests() {
    let s = mem().await;
    s.create("o@x", vec![]).await.unwrap();
    s.create("p@x", vec![]).await.unwrap();
    assert_eq!(s.pending_in("o@x").await.unwrap(), vec![]);

    s.put_pending_in("o@x", "a@y", "<presence n='1'/>")
        .await
        .unwrap();
    s.put_pending_in("o@x", "b@y", "<presence n='2'/>")
        .await
        .unwrap();
    s.put_pending_in("p@x", "a@y", "<presence n='p'/>")
        .await
        .unwrap();
    s.put_pending_in("o@x", "c@y", "<presence n='3'/>")
        .await
        .unwrap();
    // Replacing moves it to the end (it is now the newest).
    s.put_pending_in("o@x", "a@y", "<presence n='4'/>")
        .await
        .unwrap();
    let pend = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        s.pending_in("o@x").await.unwrap(),
        pend(&[
            ("b@y", "<presence n='2'/>"),
            ("c@y", "<presence n='3'/>"),
            ("a@y", "<presence n='4'/>")
        ])
    );
    assert!(s.remove_pending_in("o@x", "b@y").await.unwrap());
    assert!(!s.remove_pending_in("o@x", "b@y").await.unwrap());
    assert!(!s.remove_pending_in("nobody@x", "a@y").await.unwrap());
    assert_eq!(
        s.pending_in("o@x").await.unwrap(),
        pend(&[("c@y", "<presence n='3'/>"), ("a@y", "<presence n='4'/>")])
    );
    assert_eq!(
        s.pending_in("p@x").await.unwrap(),
        pend(&[("a@y", "<presence n='p'/>")])
    );
    // Pending requests are not roster changes.
    assert_eq!(s.roster("o@x").await.unwrap(), (0, vec![]));
    assert!(matches!(
        s.put_pending_in("nobody@x", "a@y", "<presence/>").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn offline_order_ack_and_quota() {
    let s = mem().await;
    s.create("o@x", vec![]).await.unwrap();
    s.create("p@x", vec![]).await.unwrap();
    assert_eq!(s.peek("o@x").await.unwrap(), vec![]);
    assert_eq!(s.count("o@x").await.unwrap(), 0);

    let s1 = s.push("o@x", "sender@x", "<message n='1'/>", 1000, 3).await.unwrap();
    let p1 = s.push("p@x", "sender@x", "<message n='p'/>", 1500, 3).await.unwrap();
    let s2 = s.push("o@x", "sender@x", "<message n='2'/>", 2000, 3).await.unwrap();
    let s3 = s.push("o@x", "sender@x", "<message n='3'/>", 3000, 3).await.unwrap();
    assert!(s1 < p1 && p1 < s2 && s2 < s3);
    assert!(matches!(
        s.push("o@x", "sender@x", "<message n='4'/>", 4000, 3).await,
        Err(StoreError::QuotaExceeded)
    ));
    assert!(matches!(
        s.push("p@x", "sender@x", "<m/>", 0, 0).await,
        Err(StoreError::QuotaExceeded)
    ));
    assert!(matches!(
        s.push("nobody@x", "sender@x", "<m/>", 0, 3).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.count("o@x").await.unwrap(), 3);

    let msgs = s.peek("o@x").await.unwrap();
    let got: Vec<_> = msgs
        .iter()
        .map(|m| (m.seq, m.stanza.as_str(), m.stored_at_ms))
        .collect();
    assert_eq!(
        got,
        [
            (s1, "<message n='1'/>", 1000),
            (s2, "<message n='2'/>", 2000),
            (s3, "<message n='3'/>", 3000)
        ]
    );

    // ack deletes up to and including `up_to`, for this owner only.
    s.ack("o@x", s2).await.unwrap();
    assert_eq!(
        s.peek("o@x")
            .await
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        [s3]
    );
    assert_eq!(s.count("p@x").await.unwrap(), 1);
    s.ack("o@x", s3).await.unwrap();
    s.ack("nobody@x", i64::MAX).await.unwrap();
    assert_eq!(s.count("o@x").await.unwrap(), 0);

    // Sequence numbers are never reused, even after the newest were deleted: a late ack of
    // an earlier batch cannot delete a new message.
    let s4 = s.push("o@x", "sender@x", "<message n='5'/>", 5000, 3).await.unwrap();
    assert!(s4 > s3);
    s.ack("o@x", s3).await.unwrap();
    assert_eq!(s.count("o@x").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_quota_holds_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let a = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b = Arc::new(SqliteStore::open(&path).await.unwrap());
    a.create("o@x", vec![]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.push("o@x", "sender@x", &format!("<message n='{i}'/>"), i, 10).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::QuotaExceeded) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(a.count("o@x").await.unwrap(), 10);
    let seqs: Vec<_> = b.peek("o@x").await.unwrap().iter().map(|m| m.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn remove_cascades_but_leaves_others_pointing_at_it() {
    let s = mem().await;
    s.create("o@x", both(1)).await.unwrap();
    s.create("p@x", vec![]).await.unwrap();
    s.put_item("o@x", &item("p@x", &["G"])).await.unwrap();
    s.put_item("o@x", &item("q@y", &["G", "H"])).await.unwrap();
    s.put_pending_in("o@x", "r@y", "<presence/>").await.unwrap();
    s.push("o@x", "sender@x", "<message/>", 1, 10).await.unwrap();
    s.put_item("p@x", &item("o@x", &["Friends"])).await.unwrap();
    s.put_pending_in("p@x", "o@x", "<presence/>").await.unwrap();
    s.push("p@x", "sender@x", "<message from='o@x'/>", 1, 10).await.unwrap();

    s.remove("o@x").await.unwrap();
    assert!(s.get("o@x").await.unwrap().is_none());
    assert_eq!(s.roster("o@x").await.unwrap(), (0, vec![]));
    assert_eq!(s.pending_in("o@x").await.unwrap(), vec![]);
    assert_eq!(s.count("o@x").await.unwrap(), 0);
    // Nothing is left behind in any table.
    for table in [
        "credentials",
        "roster_items",
        "roster_groups",
        "pending_in",
        "offline_messages",
    ] {
        let sql = format!(
            "SELECT count(*) FROM {table} WHERE {} NOT IN (SELECT id FROM accounts)",
            if table == "roster_groups" {
                "(SELECT account_id FROM roster_items WHERE id = item_id)"
            } else {
                "account_id"
            }
        );
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let (groups,): (i64,) = sqlx::query_as("SELECT count(*) FROM roster_groups")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(groups, 1); // p@x's item

    // Other accounts' data about o@x stays (the server unsubscribes).
    assert_eq!(
        s.roster("p@x").await.unwrap(),
        (1, vec![item("o@x", &["Friends"])])
    );
    assert_eq!(s.pending_in("p@x").await.unwrap().len(), 1);
    assert_eq!(s.count("p@x").await.unwrap(), 1);

    // A re-created account starts empty.
    s.create("o@x", vec![]).await.unwrap();
    assert_eq!(s.roster("o@x").await.unwrap(), (0, vec![]));
    assert_eq!(s.peek("o@x").await.unwrap(), vec![]);
}

#[tokio::test]
async fn two_stores_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let server = SqliteStore::open(&path).await.unwrap();
    let cli = SqliteStore::open(&path).await.unwrap();

    // Pragmas are in effect.
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(&cli.pool)
        .await
        .unwrap();
    assert_eq!(sync, 2); // FULL
    let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
        .fetch_one(&cli.pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);

    cli.create("new@x", both(5)).await.unwrap();
    assert_eq!(
        server.get("new@x").await.unwrap().unwrap().credentials,
        both(5)
    );
    assert!(matches!(
        server.create("new@x", vec![]).await,
        Err(StoreError::AlreadyExists)
    ));
    server.push("new@x", "sender@x", "<message/>", 1, 10).await.unwrap();
    assert_eq!(cli.count("new@x").await.unwrap(), 1);

    // A write transaction in one store makes the other wait (busy_timeout), not fail.
    let mut tx = server.begin_write().await.unwrap();
    sqlx::query("UPDATE accounts SET created_at = 1 WHERE jid = 'new@x'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let waiter = {
        let cli = cli.clone();
        tokio::spawn(async move { cli.create("other@x", vec![]).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    waiter.await.unwrap().unwrap();
    assert_eq!(server.list().await.unwrap(), ["new@x", "other@x"]);
}

#[tokio::test]
async fn reopen_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let seq;
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.create("o@x", both(3)).await.unwrap();
        s.put_item("o@x", &item("a@y", &["G"])).await.unwrap();
        s.put_pending_in("o@x", "b@y", "<presence/>").await.unwrap();
        seq = s.push("o@x", "sender@x", "<message/>", 42, 10).await.unwrap();
        s.close().await;
    }
    let s = Arc::new(SqliteStore::open(&path).await.unwrap());
    let stores = s.stores();
    assert_eq!(
        stores
            .accounts
            .get("o@x")
            .await
            .unwrap()
            .unwrap()
            .credentials,
        both(3)
    );
    assert_eq!(
        stores.roster.roster("o@x").await.unwrap(),
        (1, vec![item("a@y", &["G"])])
    );
    assert_eq!(stores.roster.pending_in("o@x").await.unwrap().len(), 1);
    let msgs = stores.offline.peek("o@x").await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!((msgs[0].seq, msgs[0].stored_at_ms), (seq, 42));
    // Migrations ran once.
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM rampart_migrations")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(n, super::MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let s = SqliteStore::open(&path).await.unwrap();
    sqlx::query("INSERT INTO rampart_migrations (version, description, applied_at) VALUES (999, 'future', 0)")
        .execute(&s.pool)
        .await
        .unwrap();
    s.close().await;
    assert!(matches!(
        SqliteStore::open(&path).await,
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test]
async fn into_stores_shares_one_database() {
    let stores = mem().await.into_stores();
    stores.accounts.create("o@x", vec![]).await.unwrap();
    assert_eq!(
        stores
            .roster
            .put_item("o@x", &item("a@y", &[]))
            .await
            .unwrap(),
        1
    );
    stores.offline.push("o@x", "sender@x", "<m/>", 0, 1).await.unwrap();
    assert_eq!(stores.offline.count("o@x").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_open_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let (a, b, c) = tokio::join!(
        SqliteStore::open(&path),
        SqliteStore::open(&path),
        SqliteStore::open(&path)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.create("o@x", vec![]).await.unwrap();
    assert_eq!(b.list().await.unwrap(), ["o@x"]);
    assert_eq!(c.list().await.unwrap(), ["o@x"]);
}

#[tokio::test]
async fn withdraw_from_deletes_only_that_senders_messages() {
    let s = SqliteStore::open_in_memory().await.unwrap();
    for a in ["o@x", "p@x"] {
        s.create(a, vec![]).await.unwrap();
    }
    s.push("o@x", "worm@x", "<m n='1'/>", 1, 10).await.unwrap();
    s.push("p@x", "worm@x", "<m n='2'/>", 2, 10).await.unwrap();
    s.push("o@x", "friend@x", "<m n='3'/>", 3, 10).await.unwrap();
    assert_eq!(s.withdraw_from("worm@x").await.unwrap(), 2);
    let left = s.peek("o@x").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].stanza, "<m n='3'/>");
    assert_eq!(s.count("p@x").await.unwrap(), 0);
    assert_eq!(s.withdraw_from("worm@x").await.unwrap(), 0);
}
