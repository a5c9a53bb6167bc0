-- Rampart SQLite schema, version 1: accounts, SCRAM credentials, rosters, pending inbound
-- subscription requests and offline messages. Applied by `rampart_store::sqlite` (see
-- `src/sqlite/mod.rs`), once, inside a `BEGIN IMMEDIATE` transaction.
--
-- Everything an account owns references `accounts(id)` with ON DELETE CASCADE as a backstop;
-- `AccountStore::remove` also deletes it explicitly.

CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    -- Normalized bare JID (`user@domain`), compared byte-wise.
    jid            TEXT    NOT NULL UNIQUE,
    -- Unix seconds.
    created_at     INTEGER NOT NULL,
    -- Roster version (RFC 6121 §2.6): bumped in the transaction of every roster change.
    roster_version INTEGER NOT NULL DEFAULT 0 CHECK (roster_version >= 0)
) STRICT;

-- One row per account and SCRAM hash. Never a password.
CREATE TABLE credentials (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    hash       TEXT    NOT NULL CHECK (hash IN ('SCRAM-SHA-1', 'SCRAM-SHA-256')),
    -- Order the credentials were given in, so reads round-trip.
    position   INTEGER NOT NULL,
    salt       BLOB    NOT NULL,
    iterations INTEGER NOT NULL CHECK (iterations BETWEEN 1 AND 4294967295),
    stored_key BLOB    NOT NULL,
    server_key BLOB    NOT NULL,
    PRIMARY KEY (account_id, hash)
) STRICT, WITHOUT ROWID;

CREATE TABLE roster_items (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- Contact's normalized bare JID.
    contact      TEXT    NOT NULL,
    name         TEXT,
    subscription TEXT    NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask          INTEGER NOT NULL CHECK (ask IN (0, 1)),
    approved     INTEGER NOT NULL CHECK (approved IN (0, 1)),
    UNIQUE (account_id, contact)
) STRICT;

-- Groups of a roster item, de-duplicated, in the order they were given.
CREATE TABLE roster_groups (
    item_id  INTEGER NOT NULL REFERENCES roster_items (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    PRIMARY KEY (item_id, position),
    UNIQUE (item_id, name)
) STRICT, WITHOUT ROWID;

-- Inbound subscription requests the owner has not answered yet; rowid order = arrival order.
CREATE TABLE pending_in (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact    TEXT    NOT NULL,
    stanza     TEXT    NOT NULL,
    UNIQUE (account_id, contact)
) STRICT;

-- AUTOINCREMENT: a sequence number is never reused, even after the newest rows are deleted,
-- so a late `ack(up_to)` can never delete a message stored after it was peeked.
CREATE TABLE offline_messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stanza       TEXT    NOT NULL,
    -- Unix milliseconds.
    stored_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX offline_messages_by_account ON offline_messages (account_id, seq);
