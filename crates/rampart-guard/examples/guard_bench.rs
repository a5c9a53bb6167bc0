//! Measures the guard's per-message cost: `cargo run --release -p rampart-guard --example guard_bench`.
//!
//! Prints nanoseconds per call for plain text, text with links, YARA on short text and files,
//! and the bare YARA-X scanner creation and scan.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use rampart_guard::{BlocklistSet, Guard, GuardConfig, Scanner, YaraScanner};
use rampart_proto::{Element, Jid};

fn msg(body: &str) -> Element {
    Element::new("message", "jabber:client")
        .with_attr("type", "chat")
        .with_child(Element::new("body", "jabber:client").with_text(body))
}

fn rules() -> YaraScanner {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let mut sources = Vec::new();
    for e in std::fs::read_dir(dir).expect("rules dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yar") {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            sources.push((name, std::fs::read_to_string(&p).expect("read rule")));
        }
    }
    YaraScanner::new(sources).expect("compile")
}

/// Nanoseconds this thread has run on a CPU (Linux; 0 elsewhere): unlike wall time, not
/// inflated when other processes share the cores.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(0)
}

struct Mark(Instant, u64);

fn mark() -> Mark {
    Mark(Instant::now(), cpu_ns())
}

fn report(name: &str, n: u32, m: Mark) {
    let wall = m.0.elapsed().as_nanos() as f64 / f64::from(n);
    let cpu = (cpu_ns() - m.1) as f64 / f64::from(n);
    let fmt = |v: f64| {
        if v > 100_000.0 {
            format!("{:.2} ms", v / 1e6)
        } else {
            format!("{v:.0} ns")
        }
    };
    println!("{name:<58} cpu {:>10}   wall {:>10}", fmt(cpu), fmt(wall));
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cfg = GuardConfig {
            trusted_domains: vec!["corp.example".into()],
            ..GuardConfig::default()
        };
        let plain = Guard::new(cfg.clone(), Vec::new(), BlocklistSet::new());
        let yara = Arc::new(rules());
        let with_yara = Guard::new(
            cfg,
            vec![yara.clone() as Arc<dyn Scanner>],
            BlocklistSet::new(),
        );
        let to = Jid::parse("bob@corp.example").expect("jid");
        let senders: Vec<Jid> = (0..1000)
            .map(|i| Jid::parse(&format!("user{i}@corp.example/laptop")).expect("jid"))
            .collect();

        let short = msg("ok, see you at the standup");
        let text = msg(
            "Hey Bob, can you have a look at the quarterly report before the meeting tomorrow?",
        );
        let link =
            msg("Hey Bob, have a look: https://news.example.com/2026/11/story.html?utm_source=x");
        let trusted = msg("Hey Bob, the doc is at https://wiki.corp.example/team/plan");
        let chatstate = Element::new("message", "jabber:client").with_child(Element::new(
            "composing",
            "http://jabber.org/protocol/chatstates",
        ));
        // GUARD_BENCH_N scales the runs down (e.g. under callgrind); GUARD_BENCH_ONLY runs
        // only the cases whose name contains it.
        let n: u32 = std::env::var("GUARD_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let only = std::env::var("GUARD_BENCH_ONLY").unwrap_or_default();
        let wanted = |name: &str| name.contains(only.as_str());

        // Realistic traffic: every message a different sentence, between 1000 accounts.
        let vocab: Vec<String> = (0..400)
            .map(|i| {
                format!(
                    "{}{}",
                    [
                        "report", "team", "deploy", "lunch", "review", "budget", "client",
                        "meeting"
                    ][i % 8],
                    i
                )
            })
            .collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let unique: Vec<Element> = (0..4096)
            .map(|_| {
                let words: Vec<&str> = (0..12)
                    .map(|_| vocab[(next() % 400) as usize].as_str())
                    .collect();
                msg(&words.join(" "))
            })
            .collect();
        let recipients: Vec<Jid> = (0..1000)
            .map(|i| Jid::parse(&format!("peer{i}@corp.example")).expect("jid"))
            .collect();
        // What rampart-load sends: every body unique (run id, sequence number, timestamp),
        // 20 fixed sender/receiver pairs.
        for (name, g) in [
            ("load-generator bodies, 20 pairs (no YARA)", &plain),
            ("load-generator bodies, 20 pairs, with YARA", &with_yara),
        ] {
            if !wanted(name) {
                continue;
            }
            let start = mark();
            for i in 0..n {
                let p = (i % 20) as usize;
                let body = format!("rl1 1a2b3c4d {i} {} xxxxxxxxxxxx", 1_764_180_000_000_000_000u64 + u64::from(i) * 7919);
                let v = g
                    .inspect_at(&senders[p], &recipients[p], None, &msg(&body), 1_800_000_000_000 + i64::from(i))
                    .await
                    .expect("inspect");
                black_box(v);
            }
            report(name, n, start);
        }
        for (name, g) in [
            ("unique 12-word texts, 1000x1000 accounts (no YARA)", &plain),
            ("unique 12-word texts, with YARA", &with_yara),
        ] {
            if !wanted(name) {
                continue;
            }
            let n = if name.contains("with YARA") { n / 4 } else { n };
            let start = mark();
            for i in 0..n {
                let k = next() as usize;
                let v = g
                    .inspect_at(
                        &senders[k % 1000],
                        &recipients[(k >> 12) % 1000],
                        None,
                        &unique[i as usize % unique.len()],
                        1_800_000_000_000 + i64::from(i),
                    )
                    .await
                    .expect("inspect");
                black_box(v);
            }
            report(name, n, start);
        }

        for (name, g, m) in [
            ("chat state (no content)", &plain, &chatstate),
            ("short text, 27 chars (no YARA)", &plain, &short),
            ("text, 82 chars, no URL (no YARA)", &plain, &text),
            ("text with an external URL (no YARA)", &plain, &link),
            ("text with a trusted URL (no YARA)", &plain, &trusted),
            ("short text, 27 chars, with YARA", &with_yara, &short),
            ("text, 82 chars, no URL, with YARA", &with_yara, &text),
            ("text with an external URL, with YARA", &with_yara, &link),
        ] {
            if !wanted(name) {
                continue;
            }
            let n = if name.contains("with YARA") {
                n / 10
            } else {
                n
            };
            let start = mark();
            for i in 0..n {
                let from = &senders[i as usize % senders.len()];
                let v = g
                    .inspect_at(from, &to, None, m, 1_800_000_000_000 + i64::from(i))
                    .await
                    .expect("inspect");
                black_box(v);
            }
            report(name, n, start);
        }

        if !wanted("YaraScanner::scan") {
            return;
        }
        let m200 = vec![b'x'; 200];
        let start = mark();
        for _ in 0..20_000 {
            black_box(yara.scan(&m200).await.expect("scan"));
        }
        report(
            "YaraScanner::scan, 200 bytes (incl. scanner creation)",
            20_000,
            start,
        );
        let mib: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let start = mark();
        for _ in 0..20 {
            black_box(yara.scan(&mib).await.expect("scan"));
        }
        report("YaraScanner::scan, 1 MiB random", 20, start);
        let text_mib: Vec<u8> = b"the quick brown fox jumps over the lazy dog; "
            .iter()
            .cycle()
            .take(1 << 20)
            .copied()
            .collect();
        let start = mark();
        for _ in 0..20 {
            black_box(yara.scan(&text_mib).await.expect("scan"));
        }
        report("YaraScanner::scan, 1 MiB text", 20, start);
        let start = mark();
        for _ in 0..20 {
            black_box(with_yara.scan_file("x.bin", &mib).await.expect("scan"));
        }
        report("Guard::scan_file, 1 MiB (YARA + SHA-256)", 20, start);
    });
}
