//! Public data types: records, verdicts, queries, reports and options.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A `<message/>` stanza.
    Message,
    /// A presence subscription change (`subscribe`, `subscribed`, `unsubscribe`,
    /// `unsubscribed`); the type goes in `meta_json` or `stanza_xml`.
    Subscription,
    /// A successful login (resource bound); address and resource in `meta_json`.
    Login,
    /// A session end.
    Logout,
    /// A file transfer (e.g. HTTP upload); the file hash in `meta_json`.
    File,
    /// A personal eventing (XEP-0163) publish: the item in `stanza_xml`, node and item id
    /// in `meta_json`.
    Publish,
    /// A moderation act in a group chat room (XEP-0425 moderated retraction): `from` is the
    /// moderator, `to` the room, `stanza_id` the room's stanza-id of the retracted message
    /// (which itself stays on the record unchanged), `body` the reason, `stanza_xml` the
    /// announcement occupants got, details in `meta_json`.
    Moderation,
}

impl RecordKind {
    /// The canonical tag, as stored and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Message => "message",
            RecordKind::Subscription => "subscription",
            RecordKind::Login => "login",
            RecordKind::Logout => "logout",
            RecordKind::File => "file",
            RecordKind::Publish => "publish",
            RecordKind::Moderation => "moderation",
        }
    }

    /// Parse a canonical tag.
    pub fn parse(s: &str) -> Option<RecordKind> {
        Some(match s {
            "message" => RecordKind::Message,
            "subscription" => RecordKind::Subscription,
            "login" => RecordKind::Login,
            "logout" => RecordKind::Logout,
            "file" => RecordKind::File,
            "publish" => RecordKind::Publish,
            "moderation" => RecordKind::Moderation,
            _ => return None,
        })
    }
}

/// Which way the stanza crossed the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Between two local accounts (or a local session event such as a login).
    Local,
    /// From a remote domain (federation) to a local account.
    Inbound,
    /// From a local account to a remote domain.
    Outbound,
}

impl Direction {
    /// The canonical tag, as stored and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Local => "local",
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    /// Parse a canonical tag.
    pub fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "local" => Direction::Local,
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            _ => return None,
        })
    }
}

/// What the router did with the stanza.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Delivered to a session, room or remote domain.
    Delivered,
    /// Stored offline for later delivery.
    Offline,
    /// Refused by the guard.
    Blocked { rule: String, reason: String },
    /// Held by the guard for review.
    Quarantined { rule: String, reason: String },
    /// Bounced with a stanza error (e.g. `service-unavailable`).
    Bounced { condition: String },
}

impl Verdict {
    /// The verdict's kind.
    pub fn kind(&self) -> VerdictKind {
        match self {
            Verdict::Delivered => VerdictKind::Delivered,
            Verdict::Offline => VerdictKind::Offline,
            Verdict::Blocked { .. } => VerdictKind::Blocked,
            Verdict::Quarantined { .. } => VerdictKind::Quarantined,
            Verdict::Bounced { .. } => VerdictKind::Bounced,
        }
    }

    /// The stored columns: (tag, rule, reason-or-condition).
    pub(crate) fn columns(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            Verdict::Delivered => ("delivered", None, None),
            Verdict::Offline => ("offline", None, None),
            Verdict::Blocked { rule, reason } => ("blocked", Some(rule), Some(reason)),
            Verdict::Quarantined { rule, reason } => ("quarantined", Some(rule), Some(reason)),
            Verdict::Bounced { condition } => ("bounced", None, Some(condition)),
        }
    }

    /// Rebuild from the stored columns; `None` if they are inconsistent.
    pub(crate) fn from_columns(
        tag: &str,
        rule: Option<String>,
        reason: Option<String>,
    ) -> Option<Verdict> {
        Some(match (tag, rule, reason) {
            ("delivered", None, None) => Verdict::Delivered,
            ("offline", None, None) => Verdict::Offline,
            ("blocked", Some(rule), Some(reason)) => Verdict::Blocked { rule, reason },
            ("quarantined", Some(rule), Some(reason)) => Verdict::Quarantined { rule, reason },
            ("bounced", None, Some(condition)) => Verdict::Bounced { condition },
            _ => return None,
        })
    }
}

/// A verdict without its details, for filtering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Delivered,
    Offline,
    Blocked,
    Quarantined,
    Bounced,
}

impl VerdictKind {
    /// The canonical tag, as stored and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Delivered => "delivered",
            VerdictKind::Offline => "offline",
            VerdictKind::Blocked => "blocked",
            VerdictKind::Quarantined => "quarantined",
            VerdictKind::Bounced => "bounced",
        }
    }
}

/// One event to archive. JIDs are expected normalized by the caller (as the router sees
/// them); `from`/`to` may be full JIDs, the account index uses their bare part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRecord {
    /// When the server handled the stanza, milliseconds since the Unix epoch (UTC).
    pub at_ms: i64,
    pub kind: RecordKind,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    /// The remote domain for federated traffic.
    pub remote_domain: Option<String>,
    /// The stanza's `id` (or the server-assigned stanza-id).
    pub stanza_id: Option<String>,
    /// The message body text (indexed for full-text search).
    pub body: Option<String>,
    /// The serialized stanza as routed.
    pub stanza_xml: Option<String>,
    pub verdict: Verdict,
    /// Free-form JSON (login address/resource, subscription type, file hash, ...).
    pub meta_json: Option<String>,
}

/// A stored record: its place in the chain and its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Sequence number: dense, from 1, never reused.
    pub seq: u64,
    /// Chain hash of this record (see the crate docs for the encoding).
    #[serde(with = "crate::hash::hex32")]
    pub hash: [u8; 32],
    /// Chain hash of the previous record (32 zero bytes for seq 1).
    #[serde(with = "crate::hash::hex32")]
    pub prev_hash: [u8; 32],
    #[serde(flatten)]
    pub record: NewRecord,
}

impl Record {
    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// Search filters; all given filters must match. Results are newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Full-text query on the body: whitespace-separated words, all must occur (FTS5,
    /// Unicode-aware, case- and diacritic-insensitive); a word ending in `*` is a prefix.
    pub text: Option<String>,
    /// Bare JID that sent or received the record (a full JID also matches the resource).
    pub account: Option<String>,
    /// Bare JID of the other party (with `account`), or a party (without it).
    pub with: Option<String>,
    pub direction: Option<Direction>,
    pub kind: Option<RecordKind>,
    pub verdict: Option<VerdictKind>,
    /// Inclusive lower bound on `at_ms`.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound on `at_ms`.
    pub until_ms: Option<i64>,
    /// Only records with `seq < before_seq` (for paging search results).
    pub before_seq: Option<u64>,
    /// At most this many records; `None` means 100 for search, unlimited for export.
    pub limit: Option<u32>,
}

/// Export formats. Both write `records.jsonl` (the verifiable evidence) and
/// `manifest.json`; `Eml` adds one RFC 5322 file per record under `eml/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Jsonl,
    Eml,
}

/// A signed statement: the chain had `seq` records ending in `hash` at `at_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    #[serde(with = "crate::hash::hex32")]
    pub hash: [u8; 32],
    pub at_ms: i64,
    /// Ed25519 signature over [`crate::hash::checkpoint_message`].
    #[serde(with = "crate::hash::hex64")]
    pub signature: [u8; 64],
}

/// A signed statement that records `first_seq..=last_seq` were deleted by retention; the
/// chain continues from `last_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub first_seq: u64,
    pub last_seq: u64,
    /// Chain hash entering the segment (the record before `first_seq`).
    #[serde(with = "crate::hash::hex32")]
    pub prev_hash: [u8; 32],
    /// Chain hash of record `last_seq`.
    #[serde(with = "crate::hash::hex32")]
    pub last_hash: [u8; 32],
    pub min_at_ms: i64,
    pub max_at_ms: i64,
    pub deleted_at_ms: i64,
    /// Ed25519 signature over [`crate::hash::tombstone_message`].
    #[serde(with = "crate::hash::hex64")]
    pub signature: [u8; 64],
}

/// Why [`crate::Archive::verify`] stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyFailure {
    /// The first sequence number found bad (a record, a gap, a tombstone's first seq, or the
    /// seq a checkpoint names).
    pub seq: u64,
    pub reason: String,
}

/// What [`crate::Archive::verify`] checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub records_checked: u64,
    pub tombstones_checked: u64,
    pub checkpoints_checked: u64,
    /// The last sequence number reached (record or tombstone) before any failure.
    pub last_seq: u64,
    #[serde(with = "crate::hash::hex32")]
    pub last_hash: [u8; 32],
    /// `None` if the whole chain verified.
    pub failure: Option<VerifyFailure>,
}

impl VerifyReport {
    /// True if no failure was found.
    pub fn is_ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// A legal hold: records matching all given criteria are kept (their whole segment is).
/// A hold with no criteria keeps everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    /// Why (case number, requester). Free text.
    pub reason: String,
    pub account: Option<String>,
    pub with: Option<String>,
    pub text: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// A stored legal hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInfo {
    pub id: i64,
    pub created_at_ms: i64,
    /// `Some` once released; released holds no longer protect anything.
    pub released_at_ms: Option<i64>,
    pub hold: LegalHold,
}

/// What [`crate::Archive::apply_retention`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    /// Tombstones written, one per deleted segment.
    pub deleted_segments: Vec<Tombstone>,
    pub deleted_records: u64,
    /// Old enough segments kept because a hold covers them: (first_seq, last_seq, hold id).
    pub held_segments: Vec<(u64, u64, i64)>,
}

/// A XEP-0313 query over the owner's own messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MamQuery {
    /// Bare JID (matches any resource) or full JID (matches that resource only).
    pub with: Option<String>,
    /// Bare JIDs whose conversations are hidden from this view (e.g. quarantined accounts,
    /// whose withdrawn messages must not come back through the history).
    pub exclude_peers: Vec<String>,
    /// Also return the owner's [`RecordKind::Moderation`] records (with or without a
    /// reason): MAM on a group chat room (the owner is the room) replays moderators'
    /// retraction announcements, so clients catching up apply them.
    pub with_moderation: bool,
    /// Inclusive start, ms since the epoch.
    pub start_ms: Option<i64>,
    /// Inclusive end, ms since the epoch.
    pub end_ms: Option<i64>,
    /// RSM `<after>`: an archive id.
    pub after: Option<String>,
    /// RSM `<before>`: an archive id, or `Some("")` for the last page.
    pub before: Option<String>,
    /// RSM `<max>`; capped at [`MAM_MAX_PAGE`]. `Some(0)` returns only the count.
    pub max: Option<u32>,
}

/// The largest MAM page and the default page size.
pub const MAM_MAX_PAGE: u32 = 250;
/// The default MAM page size when the client gives no `max`.
pub const MAM_DEFAULT_PAGE: u32 = 50;

/// One MAM result page, oldest first, with RSM information.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MamPage {
    pub records: Vec<Record>,
    /// Archive id (seq as a string) of the first and last records on the page.
    pub first: Option<String>,
    pub last: Option<String>,
    /// Index of the first record in the whole result set (RSM `<first index>`).
    pub first_index: Option<u64>,
    /// True if this page reaches the end of the result set in the paging direction.
    pub complete: bool,
    /// Size of the whole result set (ignoring RSM).
    pub count: u64,
}

/// What an export wrote; also serialized as `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    /// `"rampart-archive-export/1"`.
    pub version: String,
    pub format: ExportFormat,
    pub created_at_ms: i64,
    pub query: SearchQuery,
    /// Ed25519 public key (hex) that signed the checkpoint and tombstones.
    pub public_key: String,
    /// Exported records, oldest first.
    pub records: Vec<ManifestRecord>,
    /// Content digests of every record from the oldest exported one to the checkpoint
    /// (`seq`, digest hex), so the chain can be recomputed without the other records' content.
    pub spine: Vec<(u64, String)>,
    /// Tombstones inside the spine's range (deleted segments the chain jumps over).
    pub tombstones: Vec<Tombstone>,
    /// The signed checkpoint covering every exported record.
    pub checkpoint: Checkpoint,
    /// SHA-256 (hex) of every written file other than the manifest, by relative path.
    pub files: Vec<(String, String)>,
}

/// One exported record in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub seq: u64,
    pub hash: String,
    pub prev_hash: String,
    /// The `.eml` file for this record (Eml format).
    pub file: Option<String>,
}

/// What [`crate::verify_export`] established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportVerification {
    pub records: u64,
    pub checkpoint_seq: u64,
    pub public_key: String,
}

/// Tunables.
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    /// Make a signed checkpoint after this many records since the last one.
    pub checkpoint_every_records: u64,
    /// ... or after this long, if any record was appended since.
    pub checkpoint_interval: Duration,
    /// A segment (the unit of retention) ends at a UTC day boundary or after this many
    /// records, whichever comes first.
    pub segment_max_records: u64,
    /// Most appends in one transaction.
    pub max_batch: usize,
}

impl Default for ArchiveOptions {
    fn default() -> ArchiveOptions {
        ArchiveOptions {
            checkpoint_every_records: 10_000,
            checkpoint_interval: Duration::from_secs(300),
            segment_max_records: 100_000,
            max_batch: 2048,
        }
    }
}
