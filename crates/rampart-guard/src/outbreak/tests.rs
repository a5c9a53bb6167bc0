//! Tests of the outbreak state: thresholds, windows, clustering and memory bounds.

use super::*;

fn params(max_tracked: usize) -> Params {
    let rp = |threshold, window_ms| RuleParams {
        enabled: true,
        threshold,
        window_ms,
        action: Action::Quarantine,
    };
    Params {
        blast: rp(5, 600_000),
        auto_reply: rp(3, 600_000),
        reply_within_ms: 30_000,
        auto_reply_text: false,
        epidemic: rp(3, 3_600_000),
        room_bots: rp(4, 120_000),
        max_tracked,
    }
}

fn url_key(s: &str) -> PayloadKey {
    PayloadKey {
        kind: KeyKind::Url,
        hash: crate::fingerprint::hash_bytes(1, s.as_bytes()),
        label: Arc::from(s),
    }
}

fn obs<'a>(from: &'a str, to: &'a str, keys: &'a [PayloadKey], at_ms: i64) -> Observation<'a> {
    Observation {
        from,
        to,
        room: None,
        at_ms,
        keys,
        text: None,
        text_fresh: false,
        machine_like: false,
        has_content: true,
        delivered: true,
    }
}

#[test]
fn blast_counts_distinct_recipients() {
    let mut o = Outbreak::new(params(1000));
    let k = [url_key("x.example/a")];
    // The same recipient many times is no blast.
    for i in 0..20 {
        assert!(o.observe(&obs("m", "r0", &k, i)).is_none());
    }
    for i in 1..4 {
        assert!(
            o.observe(&obs("m", &format!("r{i}"), &k, 100 + i))
                .is_none()
        );
    }
    let d = o.observe(&obs("m", "r4", &k, 200)).expect("fires at 5");
    assert_eq!(d.rule, Rule::Blast);
    assert_eq!(d.count, 5);
    // Another sender's count is separate.
    assert!(o.observe(&obs("n", "r1", &k, 300)).is_none());
    // A different key is separate.
    let k2 = [url_key("x.example/b")];
    assert!(o.observe(&obs("m", "r9", &k2, 300)).is_none());
}

#[test]
fn text_clustering_tolerates_a_few_bits() {
    let mut o = Outbreak::new(params(1000));
    let base = 0x0123_4567_89ab_cdefu64;
    assert_eq!(o.cluster_text(base), base);
    assert_eq!(o.cluster_text(base ^ 0b101), base);
    assert_eq!(o.cluster_text(base ^ (1 << 63) ^ (1 << 20) ^ 1), base);
    let far = !base;
    assert_eq!(o.cluster_text(far), far);
}

#[test]
fn memory_is_bounded() {
    let mut o = Outbreak::new(params(1000));
    for i in 0..50_000i64 {
        let k = [url_key(&format!("x.example/{i}"))];
        let from = format!("s{}", i % 977);
        let to = format!("r{}", i % 1013);
        o.observe(&obs(&from, &to, &k, i));
        o.cluster_text(crate::fingerprint::mix(i as u64));
    }
    assert!(o.tracked() <= 6 * 1000, "{}", o.tracked());
    assert!(o.names.len() <= 1000);
}

#[test]
fn blocked_messages_do_not_infect_recipients() {
    let mut o = Outbreak::new(params(1000));
    let k = [url_key("x.example/a")];
    let mut blocked = obs("a", "b", &k, 0);
    blocked.delivered = false;
    assert!(o.observe(&blocked).is_none());
    assert!(o.observe(&obs("b", "c", &k, 10)).is_none());
    assert!(
        o.observe(&obs("c", "d", &k, 20)).is_none(),
        "b never received it: only c is a relay"
    );
}

/// A text chain letter: the first sighting keeps no per-text state, yet the chain is
/// recognized from the second hop on, with the origin in it.
#[test]
fn text_epidemic_from_a_fresh_first_sighting() {
    let mut o = Outbreak::new(params(1000));
    let h = 0x5eed_f00d_1234_5678u64;
    let step = |o: &mut Outbreak, from: &str, to: &str, at: i64| {
        let (c, fresh) = o.cluster_text_fresh(h);
        let key = text_key(c);
        let mut ob = obs(from, to, &[], at);
        ob.text = Some(&key);
        ob.text_fresh = fresh;
        (fresh, o.observe(&ob))
    };
    let (fresh, d) = step(&mut o, "a", "b", 0);
    assert!(fresh && d.is_none());
    assert_eq!(o.spread.len(), 0, "no per-text state after one sighting");
    let (fresh, d) = step(&mut o, "b", "c", 10);
    assert!(!fresh && d.is_none());
    let (_, d) = step(&mut o, "c", "d", 20);
    let d = d.expect("a, b, c: the epidemic fires at 3 accounts");
    assert_eq!(d.rule, Rule::Epidemic);
    let chain: Vec<(&str, &str)> = d.chain.iter().map(|l| (l.sender.as_str(), l.recipient.as_str())).collect();
    assert_eq!(chain, [("a", "b"), ("b", "c"), ("c", "d")]);
    // Unrelated one-off texts leave no per-text state behind.
    for i in 0..1000u64 {
        let (c, fresh) = o.cluster_text_fresh(crate::fingerprint::mix(i + 7));
        let key = text_key(c);
        let mut ob = obs("x", "y", &[], 100 + i as i64);
        ob.text = Some(&key);
        ob.text_fresh = fresh;
        o.observe(&ob);
    }
    assert!(o.spread.len() <= 2, "{}", o.spread.len());
}
