-- Rampart SQLite schema, version 8: federation (server-to-server). Applied by
-- `rampart_store::sqlite` (see `src/sqlite/mod.rs`), once, inside `BEGIN IMMEDIATE`.
-- Independent of the other versions: the runner applies each missing version on its own.

-- Stanzas waiting for a remote domain, in delivery order (seq). A row is deleted once the
-- stanza was written to an authenticated link, or bounced after the configured time.
CREATE TABLE s2s_queue (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    domain       TEXT    NOT NULL,
    stanza       TEXT    NOT NULL,
    -- Unix milliseconds when it was queued.
    queued_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX s2s_queue_domain ON s2s_queue (domain, seq);

-- The running server's view of its peer links, for `rampart s2s status` (another process).
-- Replaced whenever a link changes state; emptied when the server starts.
CREATE TABLE s2s_links (
    id          INTEGER PRIMARY KEY,
    domain      TEXT    NOT NULL,
    direction   TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    remote_addr TEXT,
    tls         TEXT,
    auth        TEXT,
    since_ms    INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    last_error  TEXT,
    stanzas_in  INTEGER NOT NULL DEFAULT 0,
    stanzas_out INTEGER NOT NULL DEFAULT 0
) STRICT;
