//! The group chat room store (XEP-0045 persistent rooms): a room's configuration, subject and
//! affiliations survive restarts. The server serializes the configuration itself (this crate
//! knows no XML or JID syntax); a room is written whole, so a save is atomic.
//!
//! Retracted room messages (XEP-0424 by their author, XEP-0425 by a moderator) are kept
//! here too, for temporary rooms as well: the chat service shows a tombstone for them in
//! the room's history and in MAM on the room, while the compliance archive keeps the
//! message itself unchanged.

use async_trait::async_trait;

use crate::Result;

/// A persistent room as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRoom {
    /// Normalized bare room JID (`room@conference.domain`).
    pub jid: String,
    /// The room configuration, serialized by the server (opaque here).
    pub config_json: String,
    pub subject: Option<String>,
    /// Nick that set the subject.
    pub subject_from: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// One affiliation (`owner`, `admin`, `member`, `outcast`) of a bare JID with a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAffiliation {
    /// Normalized bare JID.
    pub jid: String,
    pub affiliation: String,
    pub reason: Option<String>,
}

/// A retracted room message: which one, when, and by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRetraction {
    /// Normalized bare room JID.
    pub room: String,
    /// The room's XEP-0359 stanza-id of the retracted message.
    pub stanza_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The `id` of the retraction message: the author's (XEP-0424) or the room's moderation
    /// announcement (XEP-0425); tombstones name it.
    pub retraction_id: Option<String>,
    /// The moderator's occupant JID (XEP-0425), if a moderator retracted.
    pub moderator: Option<String>,
    /// The moderator's XEP-0421 occupant id.
    pub moderator_occupant_id: Option<String>,
    pub reason: Option<String>,
}

/// Persistent rooms.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Every stored room with its affiliations, rooms sorted by JID.
    async fn rooms(&self) -> Result<Vec<(StoredRoom, Vec<StoredAffiliation>)>>;
    /// Insert or replace a room and all of its affiliations, in one transaction. An
    /// affiliation other than owner/admin/member/outcast fails with `Backend` and changes
    /// nothing.
    async fn save_room(&self, room: &StoredRoom, affiliations: &[StoredAffiliation]) -> Result<()>;
    /// Forget a room and its affiliations; true if it was stored. Retractions stay.
    async fn remove_room(&self, jid: &str) -> Result<bool>;
    /// Remember a retraction; false (and nothing changed) if that message of that room was
    /// retracted already.
    async fn add_retraction(&self, r: &StoredRetraction) -> Result<bool>;
    /// The retractions among these stanza-ids of `room` (at most 1000 ids are looked up).
    async fn retractions(&self, room: &str, stanza_ids: &[String]) -> Result<Vec<StoredRetraction>>;
}
