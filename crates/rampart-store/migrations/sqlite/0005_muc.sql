-- Rampart SQLite schema, version 5: persistent group chat rooms (XEP-0045) — each room's
-- configuration and subject, and its affiliations. Applied by `rampart_store::sqlite`
-- (see `src/sqlite/mod.rs`), once, inside `BEGIN IMMEDIATE`. Only rooms configured as
-- persistent are stored; temporary rooms live in memory.

CREATE TABLE muc_rooms (
    jid           TEXT    PRIMARY KEY,   -- normalized bare room JID
    config_json   TEXT    NOT NULL,      -- the room configuration, as the server serialized it
    subject       TEXT,
    subject_from  TEXT,                  -- nick that set the subject
    created_at_ms INTEGER NOT NULL
) STRICT;

-- One row per (room, bare JID) with an affiliation other than `none`.
CREATE TABLE muc_affiliations (
    room        TEXT NOT NULL REFERENCES muc_rooms (jid) ON DELETE CASCADE,
    jid         TEXT NOT NULL,
    affiliation TEXT NOT NULL CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
    reason      TEXT,
    PRIMARY KEY (room, jid)
) STRICT, WITHOUT ROWID;
