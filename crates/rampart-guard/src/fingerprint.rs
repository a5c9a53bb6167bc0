//! Fuzzy text fingerprints and exact content keys.
//!
//! Worms vary the words around their payload ("hey alice, look", "bob!! look") and pace their
//! sends; the outbreak rules therefore compare what does not vary:
//! - links: the normalized URL ([`crate::url::Url::key`]),
//! - files: their hash,
//! - text: a 64-bit [simhash](https://en.wikipedia.org/wiki/SimHash) over lowercased word
//!   bigrams, computed after removing links, a leading greeting/vocative ("hi bob,", "hey
//!   alice!!", "Dear Carol:") and the recipient's name anywhere in the text. Near-identical
//!   texts get fingerprints a few bits apart ([`hamming`]); the outbreak state clusters them.
//!
//! Hashes are deterministic (FNV-1a with a 64-bit finalizer), so fingerprints in security
//! events are comparable across restarts. Nothing here allocates per word.

/// Words dropped from the start of a message before fingerprinting (greetings, in the
/// languages our users write).
const GREETINGS: &[&str] = &[
    "hi",
    "hey",
    "heya",
    "hello",
    "hiya",
    "helo",
    "yo",
    "dear",
    "morning",
    "evening",
    "afternoon",
    "good",
    "gm",
    "there",
    "all",
    "guys",
    "team",
    "folks",
    "hallo",
    "hola",
    "bonjour",
    "salut",
    "coucou",
    "ciao",
    "ola",
    "olá",
    "oi",
    "hej",
    "hei",
    "moin",
    "servus",
    "grüß",
    "gruss",
    "ahoj",
    "czesc",
    "cześć",
    "merhaba",
    "namaste",
    "privet",
    "привет",
    "здравствуйте",
    "здравствуй",
    "hoi",
    "halo",
    "sveiki",
    "tere",
    "szia",
    "buongiorno",
    "buenos",
    "dias",
    "días",
    "guten",
    "tag",
    "morgen",
    "bom",
    "dia",
    "こんにちは",
    "你好",
    "안녕하세요",
    "مرحبا",
    "שלום",
];

/// A text fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TextFingerprint {
    /// 64-bit simhash of the normalized text.
    pub simhash: u64,
    /// Characters in the normalized words (greetings, names and links removed): how much
    /// content the fingerprint stands for.
    pub chars: usize,
    /// Normalized words.
    pub words: usize,
}

/// FNV-1a over bytes, finalized with splitmix64 so that similar inputs spread.
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64 finalizer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Number of differing bits.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// A fingerprint as 16 hex digits.
pub fn to_hex(h: u64) -> String {
    format!("{h:016x}")
}

/// Hashes of [`GREETINGS`], sorted, computed once.
fn greeting_hashes() -> &'static [u64] {
    static HASHES: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    HASHES.get_or_init(|| {
        let mut v: Vec<u64> = GREETINGS.iter().map(|g| word_hash(g)).collect();
        v.sort_unstable();
        v
    })
}

/// Hash of a word, lowercased on the fly (no allocation).
fn word_hash(word: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    if word.is_ascii() {
        for &b in word.as_bytes() {
            h ^= u64::from(b.to_ascii_lowercase());
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        return mix(h);
    }
    let mut buf = [0u8; 4];
    for c in word.chars() {
        for lc in c.to_lowercase() {
            for &b in lc.encode_utf8(&mut buf).as_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    mix(h)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// True for characters that end a leading vocative ("bob!!", "hey alice,", "Dear Carol:").
fn is_vocative_end(c: char) -> bool {
    matches!(
        c,
        ',' | '!' | ':' | ';' | '\n' | '—' | '–' | '-' | '¡' | '，' | '！' | '、'
    )
}

/// Fingerprint `text` for the outbreak rules. `names` are words to remove anywhere (the
/// recipient's name parts, e.g. `["alice", "smith"]` for `alice.smith@corp`), compared
/// case-insensitively. `None` if no words remain.
pub fn text_fingerprint(text: &str, names: &[&str]) -> Option<TextFingerprint> {
    // Hashes of names and greetings, computed once per call (names) / cheaply (greetings are
    // compared by hash too).
    let mut name_hashes = [0u64; 8];
    let mut n_names = 0;
    for n in names.iter().filter(|n| !n.is_empty()).take(8) {
        name_hashes[n_names] = word_hash(n);
        n_names += 1;
    }
    let names = &name_hashes[..n_names];
    let greetings = greeting_hashes();

    // Spans of links, skipped.
    let mut links: [(usize, usize); 8] = [(0, 0); 8];
    let mut n_links = 0;
    // Links past the eighth stay in the text as words: harmless for a fingerprint.
    for u in crate::url::extract(text).take(links.len()) {
        let start = u.as_ptr() as usize - text.as_ptr() as usize;
        links[n_links] = (start, start + u.len());
        n_links += 1;
    }
    let links = &links[..n_links];

    let mut acc = [0i32; 64];
    let mut prev: Option<u64> = None;
    let mut first_word: Option<u64> = None;
    let mut shingles = 0usize;
    let mut chars = 0usize;
    let mut words = 0usize;
    // Leading phase: greetings and a short vocative are dropped.
    let mut leading = true;
    let mut pending: [(u64, usize); 3] = [(0, 0); 3];
    let mut n_pending = 0usize;

    let mut add = |h: u64,
                   len: usize,
                   acc: &mut [i32; 64],
                   prev: &mut Option<u64>,
                   first: &mut Option<u64>| {
        chars += len;
        words += 1;
        if first.is_none() {
            *first = Some(h);
        }
        if let Some(p) = *prev {
            let s = mix(p.rotate_left(17) ^ h);
            // Count set bits per position (branch-free, vectorizes); the sign is taken
            // against the shingle count at the end.
            for (b, a) in acc.iter_mut().enumerate() {
                *a += ((s >> b) & 1) as i32;
            }
            shingles += 1;
        }
        *prev = Some(h);
    };

    let mut idx = 0usize;
    let bytes_len = text.len();
    let mut link_i = 0usize;
    while idx < bytes_len {
        if link_i < links.len() && idx >= links[link_i].0 {
            idx = links[link_i].1.max(idx);
            link_i += 1;
            continue;
        }
        let Some(c) = text[idx..].chars().next() else {
            break;
        };
        if !is_word_char(c) {
            if leading && is_vocative_end(c) && n_pending > 0 {
                // "hey alice," / "bob!!": up to three leading words before the mark are a
                // vocative; drop them.
                n_pending = 0;
                leading = false;
            }
            idx += c.len_utf8();
            continue;
        }
        let start = idx;
        let mut end = idx;
        for (off, ch) in text[idx..].char_indices() {
            if !is_word_char(ch) {
                break;
            }
            end = idx + off + ch.len_utf8();
        }
        let word = &text[start..end];
        idx = end;
        let h = word_hash(word);
        if names.contains(&h) {
            continue;
        }
        let len = word.chars().count();
        if leading {
            if greetings.binary_search(&h).is_ok() {
                continue;
            }
            if n_pending < pending.len() {
                pending[n_pending] = (h, len);
                n_pending += 1;
                continue;
            }
            // More than three words before any vocative mark: it was no vocative.
            leading = false;
            for &(ph, pl) in &pending[..n_pending] {
                add(ph, pl, &mut acc, &mut prev, &mut first_word);
            }
            n_pending = 0;
        }
        add(h, len, &mut acc, &mut prev, &mut first_word);
    }
    // Text ended while still leading (a short message with no vocative mark): keep its words.
    for &(ph, pl) in &pending[..n_pending] {
        add(ph, pl, &mut acc, &mut prev, &mut first_word);
    }
    if words == 0 {
        return None;
    }
    let simhash = if shingles == 0 {
        first_word.unwrap_or(0)
    } else {
        let mut h = 0u64;
        let n = i32::try_from(shingles).unwrap_or(i32::MAX);
        for (b, a) in acc.iter().enumerate() {
            if 2 * *a > n {
                h |= 1 << b;
            }
        }
        h
    };
    Some(TextFingerprint {
        simhash,
        chars,
        words,
    })
}

/// Name parts of a JID's local part (`alice.smith` → `alice`, `smith`), for
/// [`text_fingerprint`].
pub fn name_parts(localpart: &str) -> impl Iterator<Item = &str> {
    localpart
        .split(['.', '_', '-', '+'])
        .filter(|p| p.len() >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(t: &str, names: &[&str]) -> TextFingerprint {
        text_fingerprint(t, names).expect("words")
    }

    #[test]
    fn varied_greetings_map_to_the_same_fingerprint() {
        let body = "check out these photos of you from the party last night lol";
        let a = fp(&format!("hey alice, {body}"), &["alice"]);
        let b = fp(&format!("Bob!! {body}"), &["bob"]);
        let c = fp(&format!("Hi Carol Smith: {body}"), &["carol", "smith"]);
        let d = fp(&format!("{body} dave"), &["dave"]);
        let e = fp(&format!("Hello there!  {}", body.to_uppercase()), &["erin"]);
        assert_eq!(a.simhash, b.simhash);
        assert_eq!(a.simhash, c.simhash);
        assert_eq!(a.simhash, d.simhash);
        assert_eq!(a.simhash, e.simhash);
        assert!(a.chars >= 40);
    }

    #[test]
    fn links_do_not_change_the_text_fingerprint() {
        let a = fp("look at this https://evil.example/a.exe it is you", &[]);
        let b = fp("look at this http://other.example/b it is you", &[]);
        assert_eq!(a.simhash, b.simhash);
    }

    #[test]
    fn unrelated_messages_differ() {
        let texts = [
            "can you review my pull request before lunch please",
            "the build is broken again on the main branch",
            "are we still meeting at three in the big room",
            "please send me the quarterly numbers when you have them",
            "lunch at the new thai place today anyone",
            "der Server ist wieder erreichbar, danke für die Geduld",
            "je serai en retard de dix minutes pour la réunion",
        ];
        let fps: Vec<u64> = texts.iter().map(|t| fp(t, &[]).simhash).collect();
        for i in 0..fps.len() {
            for j in i + 1..fps.len() {
                assert!(
                    hamming(fps[i], fps[j]) > 8,
                    "{} vs {}: {}",
                    texts[i],
                    texts[j],
                    hamming(fps[i], fps[j])
                );
            }
        }
    }

    #[test]
    fn near_duplicates_are_close() {
        let a = fp(
            "urgent: the attached invoice must be paid today or your account will be suspended by the bank",
            &[],
        );
        let b = fp(
            "urgent: the attached invoice must be paid today or your account will be suspended by the bank!!!",
            &[],
        );
        assert_eq!(a.simhash, b.simhash);
    }

    #[test]
    fn short_and_empty_texts() {
        assert!(text_fingerprint("", &[]).is_none());
        assert!(text_fingerprint("!!! ... ???", &[]).is_none());
        assert!(text_fingerprint("hi", &[]).is_none());
        let ok = fp("ok", &[]);
        assert_eq!(ok.chars, 2);
        // Emoji and CJK do not panic.
        let _ = text_fingerprint("🎉🎉 お疲れ様です！明日もよろしく 👍", &[]);
        let _ = text_fingerprint("\u{0}\u{FFFF}\u{10FFFF}", &[]);
    }

    #[test]
    fn name_parts_split_localparts() {
        assert_eq!(
            name_parts("alice.smith").collect::<Vec<_>>(),
            ["alice", "smith"]
        );
        assert_eq!(name_parts("b").count(), 0);
    }
}
