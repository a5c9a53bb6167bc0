-- Rampart SQLite schema, version 2: security state written by the guard pipeline: the
-- security event log and quarantined accounts. Applied by `rampart_store::sqlite` (see
-- `src/sqlite/mod.rs`), once, inside a `BEGIN IMMEDIATE` transaction.
--
-- Accounts are referenced by their normalized bare JID, not by `accounts(id)`: senders may be
-- remote (other domains), and the log must outlive a removed account.

-- Append-only log of guard decisions and operator actions, newest = highest id.
CREATE TABLE security_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Unix milliseconds.
    at_ms         INTEGER NOT NULL,
    account       TEXT    NOT NULL,
    -- Stable rule id, e.g. 'signature', 'lure.executable', 'outbreak.blast'.
    rule          TEXT    NOT NULL,
    action        TEXT    NOT NULL CHECK (action IN ('block', 'quarantine', 'release')),
    reason        TEXT    NOT NULL,
    -- The guard's evidence, serialized as JSON by the caller.
    evidence_json TEXT    NOT NULL
) STRICT;

CREATE INDEX security_events_by_time ON security_events (at_ms, id);
CREATE INDEX security_events_by_account ON security_events (account, id);

-- Accounts whose stanzas are held until an operator releases them. One row per account.
CREATE TABLE quarantine (
    account TEXT    PRIMARY KEY,
    rule    TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    -- Unix milliseconds.
    since_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
