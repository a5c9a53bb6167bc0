-- Rampart SQLite schema, version 4: per-account XEP data — private XML storage (XEP-0049),
-- vCards (XEP-0054), last activity (XEP-0012) and blocklists (XEP-0191). Applied by
-- `rampart_store::sqlite` (see `src/sqlite/mod.rs`), once, inside `BEGIN IMMEDIATE`.
-- Independent of version 3: the runner applies each missing version on its own.

-- One fragment per (account, root namespace, root name), as serialized XML.
CREATE TABLE private_xml (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    xml        TEXT    NOT NULL,
    PRIMARY KEY (account_id, namespace, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE vcards (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    xml        TEXT    NOT NULL,
    -- Unix seconds.
    updated_at INTEGER NOT NULL
) STRICT;

-- The latest logout of each account.
CREATE TABLE last_activity (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- Unix milliseconds.
    at_ms      INTEGER NOT NULL,
    status     TEXT
) STRICT;

-- Blocked JIDs (normalized: bare, full, domain or domain/resource).
CREATE TABLE blocklist (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    jid        TEXT    NOT NULL,
    PRIMARY KEY (account_id, jid)
) STRICT, WITHOUT ROWID;
