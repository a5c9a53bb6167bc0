//! Ingest and search benchmark: `cargo run --release -p rampart-archive --example
//! archive_bench -- [records=1000000] [dir]`. Ingests synthetic traffic from concurrent
//! writers (group commit, durable), then times typical searches, MAM pages and a full
//! verify, and prints p50/p99 latencies.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_archive::{
    Archive, ArchiveOptions, Direction, MamQuery, NewRecord, RecordKind, SearchQuery, Verdict,
    VerdictKind,
};

const USERS: u64 = 10_000;
const WRITERS: u64 = 256;
const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000;
const DAYS: i64 = 30;

/// A small deterministic PRNG (xorshift64*), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Word `i` of a synthetic 20 000-word vocabulary; low indexes are frequent (Zipf-like pick).
fn word(i: u64) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zu", "pe", "do", "ri", "ma", "no", "li",
        "ga",
    ];
    let mut s = String::new();
    let mut x = i + 16;
    while x > 0 {
        s.push_str(SYL[(x % 16) as usize]);
        x /= 16;
    }
    s
}

fn zipf_word(rng: &mut Rng) -> u64 {
    // Squaring a uniform value skews towards small indexes.
    let u = rng.below(1 << 20) as f64 / (1u64 << 20) as f64;
    (u * u * u * 20_000.0) as u64
}

fn record(n: u64, total: u64, rng: &mut Rng) -> NewRecord {
    let at_ms = T0 + (n as i64 * DAYS * DAY_MS) / total as i64;
    let a = rng.below(USERS);
    let b = rng.below(USERS);
    let from = format!("user{a}@corp.example/res{}", rng.below(3));
    let words = 6 + rng.below(14);
    let body: Vec<String> = (0..words).map(|_| word(zipf_word(rng))).collect();
    let body = body.join(" ");
    let roll = rng.below(1000);
    let (kind, verdict, body, to, direction, remote) = if roll < 10 {
        (
            RecordKind::Login,
            Verdict::Delivered,
            None,
            "corp.example".to_owned(),
            Direction::Local,
            None,
        )
    } else if roll < 20 {
        (
            RecordKind::Subscription,
            Verdict::Delivered,
            None,
            format!("user{b}@corp.example"),
            Direction::Local,
            None,
        )
    } else if roll < 25 {
        (
            RecordKind::Message,
            Verdict::Blocked {
                rule: "url-reputation".into(),
                reason: "phishing".into(),
            },
            Some(body),
            format!("user{b}@corp.example"),
            Direction::Local,
            None,
        )
    } else if roll < 125 {
        (
            RecordKind::Message,
            Verdict::Delivered,
            Some(body),
            format!("partner{}@remote.example", b % 500),
            Direction::Outbound,
            Some("remote.example".to_owned()),
        )
    } else {
        let v = if roll < 200 {
            Verdict::Offline
        } else {
            Verdict::Delivered
        };
        (
            RecordKind::Message,
            v,
            Some(body),
            format!("user{b}@corp.example"),
            Direction::Local,
            None,
        )
    };
    let stanza_xml = body.as_ref().map(|b| {
        format!("<message from='{from}' to='{to}' type='chat' id='m{n}'><body>{b}</body></message>")
    });
    NewRecord {
        at_ms,
        kind,
        direction,
        from,
        to,
        remote_domain: remote,
        stanza_id: Some(format!("m{n}")),
        body,
        stanza_xml,
        verdict,
        meta_json: None,
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

async fn time<F, Fut>(name: &str, runs: u32, all: &mut Vec<Duration>, mut f: F)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::new();
    let mut hits = 0;
    for i in 0..runs {
        let t = Instant::now();
        hits += f(i).await;
        times.push(t.elapsed());
    }
    all.extend_from_slice(&times);
    let p50 = pct(&mut times, 0.5);
    let p99 = pct(&mut times, 0.99);
    let max = *times.last().unwrap_or(&Duration::ZERO);
    println!(
        "  {name:<38} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  (avg hits {})",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        hits / runs as usize
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let _tmp;
    let dir: PathBuf = match args.get(2) {
        Some(d) => PathBuf::from(d),
        None => {
            _tmp = tempfile::tempdir()?;
            _tmp.path().to_path_buf()
        }
    };
    let archive = Arc::new(Archive::open(&dir, ArchiveOptions::default()).await?);

    if std::env::var_os("ARCHIVE_BENCH_SEARCH_ONLY").is_some() {
        println!("searching the existing archive in {}", dir.display());
    } else {
        println!(
            "ingesting {total} records with {WRITERS} concurrent writers into {}",
            dir.display()
        );
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let a = archive.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
                let mut n = w;
                let mut lat = Vec::new();
                while n < total {
                    let rec = record(n, total, &mut rng);
                    let t = Instant::now();
                    a.append(rec).await?;
                    lat.push(t.elapsed());
                    n += WRITERS;
                }
                Ok::<_, rampart_archive::ArchiveError>(lat)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "ingest: {total} records in {secs:.1} s = {:.0} records/s; {} transactions ({:.0} records each); append latency p50 {:.2} ms p99 {:.2} ms",
            total as f64 / secs,
            archive.commit_count(),
            total as f64 / archive.commit_count().max(1) as f64,
            pct(&mut lat, 0.5).as_secs_f64() * 1e3,
            pct(&mut lat, 0.99).as_secs_f64() * 1e3,
        );
        let size = std::fs::metadata(dir.join("archive.db"))?.len();
        println!("database: {:.0} MiB", size as f64 / 1048576.0);

        // A lone appender: latency of one durable append (group window + fsync).
        let mut one = Vec::new();
        let mut rng = Rng(42);
        for i in 0..50 {
            let t = Instant::now();
            archive.append(record(total + i, total, &mut rng)).await?;
            one.push(t.elapsed());
        }
        println!(
            "single appender: p50 {:.2} ms p99 {:.2} ms",
            pct(&mut one, 0.5).as_secs_f64() * 1e3,
            pct(&mut one, 0.99).as_secs_f64() * 1e3
        );
    }
    println!("searches (limit 100, newest first):");
    let a = &archive;
    let mut all = Vec::new();
    let mut rng = Rng(7);
    let user = |i: u32| format!("user{}@corp.example", (i as u64 * 7919) % USERS);
    time("text, common word", 50, &mut all, |i| {
        let q = SearchQuery {
            text: Some(word(u64::from(i % 5))),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("text, rare word", 50, &mut all, |i| {
        let q = SearchQuery {
            text: Some(word(15_000 + u64::from(i))),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("text, two words", 50, &mut all, |i| {
        let q = SearchQuery {
            text: Some(format!(
                "{} {}",
                word(u64::from(i)),
                word(200 + u64::from(i))
            )),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("text prefix", 50, &mut all, |i| {
        let w = word(300 + u64::from(i));
        let q = SearchQuery {
            text: Some(format!("{}*", &w[..4])),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("account", 50, &mut all, |i| {
        let q = SearchQuery {
            account: Some(user(i)),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("account + with", 50, &mut all, |i| {
        let q = SearchQuery {
            account: Some(user(i)),
            with: Some(format!("partner{}@remote.example", i % 500)),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("account + common text", 50, &mut all, |i| {
        let q = SearchQuery {
            account: Some(user(i)),
            text: Some(word(u64::from(i % 3))),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("account + rare text", 50, &mut all, |i| {
        let q = SearchQuery {
            account: Some(user(i)),
            text: Some(word(10_000 + u64::from(i))),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("verdict = blocked", 50, &mut all, |_| {
        let q = SearchQuery {
            verdict: Some(VerdictKind::Blocked),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("kind = login", 50, &mut all, |_| {
        let q = SearchQuery {
            kind: Some(RecordKind::Login),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("direction = outbound", 50, &mut all, |_| {
        let q = SearchQuery {
            direction: Some(Direction::Outbound),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("time range (1 h)", 50, &mut all, |i| {
        let since = T0 + (i as i64 % 29) * DAY_MS + 3_600_000 * (i as i64 % 20);
        let q = SearchQuery {
            since_ms: Some(since),
            until_ms: Some(since + 3_600_000),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("common text + time range (1 day)", 50, &mut all, |i| {
        let since = T0 + (i as i64 % 29) * DAY_MS;
        let q = SearchQuery {
            text: Some(word(u64::from(i % 10))),
            since_ms: Some(since),
            until_ms: Some(since + DAY_MS),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("blocked + account", 50, &mut all, |i| {
        let q = SearchQuery {
            verdict: Some(VerdictKind::Blocked),
            account: Some(user(i)),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    time("rare text + blocked (worst case)", 20, &mut all, |i| {
        let q = SearchQuery {
            verdict: Some(VerdictKind::Blocked),
            text: Some(word(5 + u64::from(i))),
            ..Default::default()
        };
        async move { a.search(&q).await.map_or(0, |r| r.len()) }
    })
    .await;
    let _ = rng.next();
    let mut all_p = all.clone();
    println!(
        "  all searches: p50 {:.2} ms p99 {:.2} ms",
        pct(&mut all_p, 0.5).as_secs_f64() * 1e3,
        pct(&mut all_p, 0.99).as_secs_f64() * 1e3
    );
    let mut mam = Vec::new();
    println!("MAM (max 50, with count):");
    time("last page", 50, &mut mam, |i| {
        let q = MamQuery {
            max: Some(50),
            before: Some(String::new()),
            ..Default::default()
        };
        let u = user(i);
        async move { a.mam_query(&u, &q).await.map_or(0, |p| p.records.len()) }
    })
    .await;
    time("with peer", 50, &mut mam, |i| {
        let q = MamQuery {
            max: Some(50),
            with: Some(user(i + 1)),
            ..Default::default()
        };
        let u = user(i);
        async move { a.mam_query(&u, &q).await.map_or(0, |p| p.records.len()) }
    })
    .await;

    let t = Instant::now();
    let rep = archive.verify().await?;
    println!(
        "verify: {} records, {} checkpoints in {:.1} s ({:.0} records/s), ok = {}",
        rep.records_checked,
        rep.checkpoints_checked,
        t.elapsed().as_secs_f64(),
        rep.records_checked as f64 / t.elapsed().as_secs_f64(),
        rep.is_ok()
    );
    Ok(())
}
