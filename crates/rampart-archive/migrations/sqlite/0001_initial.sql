-- Rampart compliance archive, SQLite schema v1.
-- `records` is the hash-chained journal; everything else is an index or bookkeeping that
-- verify does not trust (see the crate docs).

CREATE TABLE records (
    seq            INTEGER PRIMARY KEY,          -- dense from 1, the chain position
    at_ms          INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    direction      TEXT    NOT NULL,
    from_jid       TEXT    NOT NULL,
    to_jid         TEXT    NOT NULL,
    remote_domain  TEXT,
    stanza_id      TEXT,
    body           TEXT,
    stanza_xml     TEXT,
    verdict        TEXT    NOT NULL,
    verdict_rule   TEXT,
    verdict_reason TEXT,
    meta_json      TEXT,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL
) STRICT;

CREATE INDEX records_at_ms   ON records (at_ms);
CREATE INDEX records_verdict ON records (verdict);
CREATE INDEX records_kind    ON records (kind);

-- One row per (bare JID involved, record): the account index for search, MAM and holds.
CREATE TABLE parties (
    account TEXT    NOT NULL,   -- bare JID of the sender or recipient
    seq     INTEGER NOT NULL,
    peer    TEXT    NOT NULL,   -- bare JID of the other side
    PRIMARY KEY (account, seq)
) STRICT, WITHOUT ROWID;

CREATE INDEX parties_peer ON parties (account, peer, seq);

-- Full-text index on bodies (rowid = seq), written in the same transaction as the record.
CREATE VIRTUAL TABLE records_fts USING fts5 (
    body,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Retention units: contiguous seq ranges, ending at a UTC day boundary or a size limit.
CREATE TABLE segments (
    id        INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    day       INTEGER NOT NULL,   -- UTC day number of the first record
    min_at_ms INTEGER NOT NULL,
    max_at_ms INTEGER NOT NULL,
    deleted   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX segments_first ON segments (first_seq);

-- Signed statements that a segment was deleted by retention.
CREATE TABLE tombstones (
    first_seq     INTEGER PRIMARY KEY,
    last_seq      INTEGER NOT NULL,
    prev_hash     BLOB    NOT NULL,
    last_hash     BLOB    NOT NULL,
    min_at_ms     INTEGER NOT NULL,
    max_at_ms     INTEGER NOT NULL,
    deleted_at_ms INTEGER NOT NULL,
    signature     BLOB    NOT NULL
) STRICT;

-- Signed statements of the chain head.
CREATE TABLE checkpoints (
    id        INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    at_ms     INTEGER NOT NULL,
    signature BLOB    NOT NULL
) STRICT;

CREATE INDEX checkpoints_seq ON checkpoints (seq);

CREATE TABLE legal_holds (
    id             INTEGER PRIMARY KEY,
    created_at_ms  INTEGER NOT NULL,
    released_at_ms INTEGER,
    reason         TEXT    NOT NULL,
    account        TEXT,
    with_jid       TEXT,
    text           TEXT,
    since_ms       INTEGER,
    until_ms       INTEGER
) STRICT;

-- The writer's position: last seq and hash, and the open segment.
CREATE TABLE chain_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    seq        INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    segment_id INTEGER NOT NULL
) STRICT;

-- Facts about this archive (e.g. the signing public key).
CREATE TABLE archive_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
