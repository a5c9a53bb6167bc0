//! The canonical record encoding, the hash chain and the signed statements.
//!
//! All integers are big-endian. A string is `u64 length || UTF-8 bytes`; an optional string
//! is `0x00` (absent) or `0x01 || string`. Every field is present in a fixed order, so two
//! different records never share an encoding.
//!
//! ```text
//! digest(r)  = SHA-256("rampart-archive/record/v1" || i64 at_ms || str kind || str direction
//!                      || str from || str to || opt remote_domain || opt stanza_id || opt body
//!                      || opt stanza_xml || str verdict || opt verdict_rule
//!                      || opt verdict_reason || opt meta_json)
//! hash(n)    = SHA-256("rampart-archive/chain/v1" || u64 seq || hash(n-1) || digest(r_n))
//! hash(0)    = 32 zero bytes (genesis)
//! checkpoint = Ed25519("rampart-archive/checkpoint/v1" || u64 seq || hash(seq) || i64 at_ms)
//! tombstone  = Ed25519("rampart-archive/tombstone/v1" || u64 first_seq || u64 last_seq
//!                      || prev_hash || last_hash || i64 min_at_ms || i64 max_at_ms
//!                      || i64 deleted_at_ms)
//! ```
//! Tags: kind ∈ {message, subscription, login, logout, file, publish, moderation}; direction ∈ {local, inbound,
//! outbound}; verdict ∈ {delivered, offline, blocked, quarantined, bounced} with
//! `verdict_rule` = the rule (blocked, quarantined) and `verdict_reason` = the reason
//! (blocked, quarantined) or the error condition (bounced), absent otherwise.

use sha2::{Digest, Sha256};

use crate::types::{Checkpoint, NewRecord, Tombstone};

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

const RECORD_DOMAIN: &[u8] = b"rampart-archive/record/v1";
const CHAIN_DOMAIN: &[u8] = b"rampart-archive/chain/v1";
const CHECKPOINT_DOMAIN: &[u8] = b"rampart-archive/checkpoint/v1";
const TOMBSTONE_DOMAIN: &[u8] = b"rampart-archive/tombstone/v1";

/// A record's hashed fields as stored (tags as strings), so that a row with an invalid tag
/// can still be hashed and reported rather than rejected.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields<'a> {
    pub at_ms: i64,
    pub kind: &'a str,
    pub direction: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub remote_domain: Option<&'a str>,
    pub stanza_id: Option<&'a str>,
    pub body: Option<&'a str>,
    pub stanza_xml: Option<&'a str>,
    pub verdict: &'a str,
    pub verdict_rule: Option<&'a str>,
    pub verdict_reason: Option<&'a str>,
    pub meta_json: Option<&'a str>,
}

impl<'a> Fields<'a> {
    pub(crate) fn of(r: &'a NewRecord) -> Fields<'a> {
        let (verdict, verdict_rule, verdict_reason) = r.verdict.columns();
        Fields {
            at_ms: r.at_ms,
            kind: r.kind.as_str(),
            direction: r.direction.as_str(),
            from: &r.from,
            to: &r.to,
            remote_domain: r.remote_domain.as_deref(),
            stanza_id: r.stanza_id.as_deref(),
            body: r.body.as_deref(),
            stanza_xml: r.stanza_xml.as_deref(),
            verdict,
            verdict_rule,
            verdict_reason,
            meta_json: r.meta_json.as_deref(),
        }
    }

    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(RECORD_DOMAIN);
        self.encode(&mut h);
        h.finalize().into()
    }

    /// The canonical encoding (the module docs, without the domain tag) into `out`: what
    /// the digest hashes, and what the commit log stores.
    pub(crate) fn encode(&self, out: &mut impl Sink) {
        out.put(&self.at_ms.to_be_bytes());
        for s in [self.kind, self.direction, self.from, self.to] {
            put_str(out, s);
        }
        for o in [
            self.remote_domain,
            self.stanza_id,
            self.body,
            self.stanza_xml,
        ] {
            put_opt(out, o);
        }
        put_str(out, self.verdict);
        for o in [self.verdict_rule, self.verdict_reason, self.meta_json] {
            put_opt(out, o);
        }
    }
}

/// Where [`Fields::encode`] writes: a hash or a buffer.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn put_str(out: &mut impl Sink, s: &str) {
    out.put(&(s.len() as u64).to_be_bytes());
    out.put(s.as_bytes());
}

fn put_opt(out: &mut impl Sink, o: Option<&str>) {
    match o {
        None => out.put(&[0u8]),
        Some(s) => {
            out.put(&[1u8]);
            put_str(out, s);
        }
    }
}

/// The content digest of a record (see the module docs).
pub fn record_digest(r: &NewRecord) -> [u8; 32] {
    Fields::of(r).digest()
}

/// The chain hash of record `seq` given the previous hash and its content digest.
pub fn chain_hash(seq: u64, prev: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHAIN_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(digest);
    h.finalize().into()
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(seq: u64, hash: &[u8; 32], at_ms: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 48);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

/// The bytes a tombstone signature covers.
pub fn tombstone_message(t: &Tombstone) -> Vec<u8> {
    let mut m = Vec::with_capacity(TOMBSTONE_DOMAIN.len() + 104);
    m.extend_from_slice(TOMBSTONE_DOMAIN);
    m.extend_from_slice(&t.first_seq.to_be_bytes());
    m.extend_from_slice(&t.last_seq.to_be_bytes());
    m.extend_from_slice(&t.prev_hash);
    m.extend_from_slice(&t.last_hash);
    m.extend_from_slice(&t.min_at_ms.to_be_bytes());
    m.extend_from_slice(&t.max_at_ms.to_be_bytes());
    m.extend_from_slice(&t.deleted_at_ms.to_be_bytes());
    m
}

/// Check a checkpoint's signature against a public key (32 bytes).
pub fn verify_checkpoint_signature(cp: &Checkpoint, public_key: &[u8; 32]) -> bool {
    verify_sig(
        public_key,
        &checkpoint_message(cp.seq, &cp.hash, cp.at_ms),
        &cp.signature,
    )
}

/// Check a tombstone's signature against a public key (32 bytes).
pub fn verify_tombstone_signature(t: &Tombstone, public_key: &[u8; 32]) -> bool {
    verify_sig(public_key, &tombstone_message(t), &t.signature)
}

fn verify_sig(public_key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    key.verify_strict(msg, &sig).is_ok()
}

/// Convert a stored blob to a fixed-size array.
pub(crate) fn array<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    v.try_into().ok()
}

/// Serde as lowercase hex for `[u8; 32]`.
pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

/// Serde as lowercase hex for `[u8; 64]`.
pub(crate) mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(&s, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::{Direction, RecordKind, Verdict};

    /// A delivered message from a@x/r to b@x.
    pub(crate) fn rec() -> NewRecord {
        NewRecord {
            at_ms: 1,
            kind: RecordKind::Message,
            direction: Direction::Local,
            from: "a@x/r".into(),
            to: "b@x".into(),
            remote_domain: None,
            stanza_id: None,
            body: Some("hi".into()),
            stanza_xml: None,
            verdict: Verdict::Delivered,
            meta_json: None,
        }
    }

    #[test]
    fn encoding_is_unambiguous() {
        // Moving bytes between adjacent fields changes the digest.
        let a = rec();
        let mut b = rec();
        b.from = "a@x/rb".into();
        b.to = "@x".into();
        assert_ne!(record_digest(&a), record_digest(&b));
        // Absent and empty differ.
        let mut c = rec();
        c.stanza_id = Some(String::new());
        assert_ne!(record_digest(&a), record_digest(&c));
        // The verdict details count.
        let mut d = rec();
        d.verdict = Verdict::Bounced {
            condition: "x".into(),
        };
        let mut e = rec();
        e.verdict = Verdict::Blocked {
            rule: "x".into(),
            reason: String::new(),
        };
        assert_ne!(record_digest(&d), record_digest(&e));
    }

    #[test]
    fn chain_depends_on_seq_and_prev() {
        let d = record_digest(&rec());
        assert_ne!(chain_hash(1, &GENESIS, &d), chain_hash(2, &GENESIS, &d));
        assert_ne!(chain_hash(1, &GENESIS, &d), chain_hash(1, &[1; 32], &d));
    }
}
