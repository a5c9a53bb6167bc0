//! The group chat room store (XEP-0045 persistent rooms): a room's configuration, subject and
//! affiliations survive restarts. The server serializes the configuration itself (this crate
//! knows no XML or JID syntax); a room is written whole, so a save is atomic.

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

/// Persistent rooms.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Every stored room with its affiliations, rooms sorted by JID.
    async fn rooms(&self) -> Result<Vec<(StoredRoom, Vec<StoredAffiliation>)>>;
    /// Insert or replace a room and all of its affiliations, in one transaction. An
    /// affiliation other than owner/admin/member/outcast fails with `Backend` and changes
    /// nothing.
    async fn save_room(&self, room: &StoredRoom, affiliations: &[StoredAffiliation]) -> Result<()>;
    /// Forget a room and its affiliations; true if it was stored.
    async fn remove_room(&self, jid: &str) -> Result<bool>;
}
