-- Rampart SQLite schema, version 9: retracted group chat messages (XEP-0424 by their
-- author, XEP-0425 by a moderator). The compliance archive keeps every message unchanged
-- and records the act; this table is what the chat service consults to show a tombstone
-- instead of the message in a room's history and in MAM on the room. Rows are kept for
-- temporary rooms too (MAM on a room outlives its occupants), and are never edited.

CREATE TABLE muc_retractions (
    room              TEXT    NOT NULL,  -- normalized bare room JID
    stanza_id         TEXT    NOT NULL,  -- the room's XEP-0359 stanza-id of the message
    at_ms             INTEGER NOT NULL,  -- when it was retracted
    retraction_id     TEXT,              -- id of the retraction message (the author's, or the room's announcement)
    moderator         TEXT,              -- occupant JID of the moderator (XEP-0425)
    moderator_occupant_id TEXT,          -- the moderator's XEP-0421 occupant id
    reason            TEXT,
    PRIMARY KEY (room, stanza_id)
) STRICT, WITHOUT ROWID;
