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

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hash of a word, lowercased on the fly (no allocation).
fn word_hash(word: &str) -> u64 {
    let mut h = FNV_OFFSET;
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
    text_fingerprint_with_links(text, names, crate::url::extract(text))
}

/// Most link spans a fingerprint skips; links past these stay in the text as words
/// (harmless for a fingerprint).
pub const MAX_LINK_SPANS: usize = 8;

/// [`text_fingerprint`] for a caller that already found the links in `text` (with
/// [`crate::url::extract`], in order; each a subslice of `text`), so the text is not searched
/// twice.
pub fn text_fingerprint_with_links<'t>(
    text: &'t str,
    names: &[&str],
    links: impl IntoIterator<Item = &'t str>,
) -> Option<TextFingerprint> {
    let mut spans: [(usize, usize); MAX_LINK_SPANS] = [(0, 0); MAX_LINK_SPANS];
    let mut n = 0;
    let base = text.as_ptr() as usize;
    for u in links.into_iter().take(MAX_LINK_SPANS) {
        let start = (u.as_ptr() as usize).wrapping_sub(base);
        // Only subslices of `text` (anything else is ignored, never trusted as an index).
        if start <= text.len() && u.len() <= text.len() - start {
            spans[n] = (start, start + u.len());
            n += 1;
        }
    }
    fingerprint_spans(text, names, &spans[..n])
}

/// Byte `b` spread over eight byte lanes: lane `j` holds bit `j` of `b`. Adding
/// `SPREAD[byte k of a shingle]` to a lane counter counts eight bit positions in one add.
const SPREAD: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut j = 0;
        while j < 8 {
            t[b] |= (((b >> j) & 1) as u64) << (8 * j);
            j += 1;
        }
        b += 1;
    }
    t
};

/// Per-bit counts of the shingle hashes: eight byte-lane counters (each lane counts one of
/// the 64 bit positions), flushed to wide counters before a lane can overflow.
struct BitCounts {
    lanes: [u64; 8],
    in_lanes: u32,
    wide: [u32; 64],
    total: u32,
}

impl BitCounts {
    fn new() -> Self {
        BitCounts { lanes: [0; 8], in_lanes: 0, wide: [0; 64], total: 0 }
    }

    fn add(&mut self, s: u64) {
        for (k, lane) in self.lanes.iter_mut().enumerate() {
            *lane += SPREAD[((s >> (8 * k)) & 0xff) as usize];
        }
        self.in_lanes += 1;
        self.total = self.total.saturating_add(1);
        if self.in_lanes == 255 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for (k, lane) in self.lanes.iter_mut().enumerate() {
            for j in 0..8 {
                self.wide[8 * k + j] += ((*lane >> (8 * j)) & 0xff) as u32;
            }
            *lane = 0;
        }
        self.in_lanes = 0;
    }

    /// Bit `b` is set where more than half of the shingles had it.
    fn majority(&mut self) -> u64 {
        if self.total == self.in_lanes {
            // Never flushed (fewer than 255 shingles, i.e. nearly every message): compare
            // the eight byte lanes of each counter at once. With `t = total / 2`, a count `c`
            // (at most `total`) has `2c > total` exactly when `c + 127 - t` reaches 128, and
            // that sum stays below 256, so no lane carries into the next.
            let t = u64::from(self.total / 2);
            let bias = 0x0101_0101_0101_0101u64 * (127 - t);
            let mut h = 0u64;
            for (k, lane) in self.lanes.iter().enumerate() {
                let top = ((lane + bias) >> 7) & 0x0101_0101_0101_0101;
                // Gather the low bit of each byte into one byte (bit j from byte j).
                let byte = top.wrapping_mul(0x0102_0408_1020_4080) >> 56;
                h |= byte << (8 * k);
            }
            return h;
        }
        self.flush();
        let mut h = 0u64;
        for (b, c) in self.wide.iter().enumerate() {
            if 2 * u64::from(*c) > u64::from(self.total) {
                h |= 1 << b;
            }
        }
        h
    }
}

/// The character at byte `i` of `text` (a char boundary) and its length; ASCII without
/// decoding.
#[inline]
fn char_at(text: &str, i: usize) -> Option<(char, usize)> {
    let b = *text.as_bytes().get(i)?;
    if b < 0x80 {
        return Some((char::from(b), 1));
    }
    let c = text.get(i..)?.chars().next()?;
    Some((c, c.len_utf8()))
}

fn fingerprint_spans(text: &str, names: &[&str], links: &[(usize, usize)]) -> Option<TextFingerprint> {
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

    let mut counts = BitCounts::new();
    let mut prev: Option<u64> = None;
    let mut first_word: Option<u64> = None;
    let mut chars = 0usize;
    let mut words = 0usize;
    // Leading phase: greetings and a short vocative are dropped.
    let mut leading = true;
    let mut pending: [(u64, usize); 3] = [(0, 0); 3];
    let mut n_pending = 0usize;

    let mut add = |h: u64, len: usize, prev: &mut Option<u64>, first: &mut Option<u64>| {
        chars += len;
        words += 1;
        if first.is_none() {
            *first = Some(h);
        }
        if let Some(p) = *prev {
            counts.add(mix(p.rotate_left(17) ^ h));
        }
        *prev = Some(h);
    };

    let mut idx = 0usize;
    let mut link_i = 0usize;
    while idx < text.len() {
        if link_i < links.len() && idx >= links[link_i].0 {
            idx = links[link_i].1.max(idx);
            link_i += 1;
            continue;
        }
        let bytes = text.as_bytes();
        let b = bytes[idx];
        if b < 0x80 && !b.is_ascii_alphanumeric() {
            if leading && n_pending > 0 && matches!(b, b',' | b'!' | b':' | b';' | b'\n' | b'-') {
                // "hey alice," / "bob!!": up to three leading words before the mark are a
                // vocative; drop them.
                n_pending = 0;
                leading = false;
            }
            idx += 1;
            continue;
        }
        // An ASCII word is hashed while it is scanned (the same hash as `word_hash`).
        let start = idx;
        let mut ascii_hash = FNV_OFFSET;
        while idx < bytes.len() && bytes[idx].is_ascii_alphanumeric() {
            ascii_hash = (ascii_hash ^ u64::from(bytes[idx].to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
            idx += 1;
        }
        let ascii_word = idx > start && (idx == bytes.len() || bytes[idx] < 0x80);
        let (h, len) = if ascii_word {
            (mix(ascii_hash), idx - start)
        } else {
            // Non-ASCII in or around the word: char by char.
            idx = start;
            let Some((c, clen)) = char_at(text, idx) else {
                break;
            };
            if !is_word_char(c) {
                if leading && is_vocative_end(c) && n_pending > 0 {
                    n_pending = 0;
                    leading = false;
                }
                idx += clen;
                continue;
            }
            let mut len = 0usize;
            while let Some((ch, l)) = char_at(text, idx) {
                if !is_word_char(ch) {
                    break;
                }
                idx += l;
                len += 1;
            }
            (word_hash(&text[start..idx]), len)
        };
        if names.contains(&h) {
            continue;
        }
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
                add(ph, pl, &mut prev, &mut first_word);
            }
            n_pending = 0;
        }
        add(h, len, &mut prev, &mut first_word);
    }
    // Text ended while still leading (a short message with no vocative mark): keep its words.
    for &(ph, pl) in &pending[..n_pending] {
        add(ph, pl, &mut prev, &mut first_word);
    }
    if words == 0 {
        return None;
    }
    let simhash = if counts.total == 0 {
        first_word.unwrap_or(0)
    } else {
        counts.majority()
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

    const STABLE: [&str; 4] = [
        "1cc9eb31308d1ba0",
        "39b11d0839f8c257",
        "55c10904a5109402",
        "111082000b2088c0",
    ];

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
    fn lane_counts_match_plain_counts() {
        // Per-bit majority over many shingles (past the lane flush at 255), against the
        // obvious 64-counter version.
        for n in [1u64, 2, 3, 254, 255, 256, 511, 1000] {
            let mut c = BitCounts::new();
            let mut plain = [0u32; 64];
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ n;
            for i in 0..n {
                x = mix(x.wrapping_add(i));
                // Biased bits, so that majorities are not coin flips.
                let s = x | (x >> 3);
                c.add(s);
                for (b, p) in plain.iter_mut().enumerate() {
                    *p += ((s >> b) & 1) as u32;
                }
            }
            let mut want = 0u64;
            for (b, p) in plain.iter().enumerate() {
                if 2 * u64::from(*p) > n {
                    want |= 1 << b;
                }
            }
            assert_eq!(c.majority(), want, "n = {n}");
        }
    }

    #[test]
    fn fingerprints_are_stable_across_versions() {
        // Fingerprints appear in stored security events; these values were produced by the
        // earlier (char-by-char, 64-counter) implementation and must not change.
        let cases = [
            ("check out these photos of you from the party last night lol", 0),
            ("hey alice, look at this https://evil.example/a.exe it is you", 1),
            ("Grüße aus München, das Treffen ist um drei Uhr im großen Saal", 2),
            ("お疲れ様です 明日もよろしく お願いします", 3),
        ];
        let got: Vec<String> = cases
            .iter()
            .map(|(t, _)| to_hex(fp(t, &["alice"]).simhash))
            .collect();
        assert_eq!(got, STABLE);
    }

    #[test]
    fn links_found_by_the_caller_are_skipped_like_our_own() {
        let t = "look at this https://evil.example/a.exe it is you www.x.example ok";
        let links: Vec<&str> = crate::url::extract(t).collect();
        assert_eq!(
            text_fingerprint_with_links(t, &[], links.iter().copied()),
            text_fingerprint(t, &[])
        );
        // Slices that are not part of the text are ignored, not used as offsets.
        let other = String::from("https://evil.example/a.exe");
        assert_eq!(
            text_fingerprint_with_links("plain words here", &[], [other.as_str()]),
            text_fingerprint("plain words here", &[])
        );
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
