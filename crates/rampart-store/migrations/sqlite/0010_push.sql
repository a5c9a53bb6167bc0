-- Rampart SQLite schema, version 10: XEP-0357 push registrations. Applied by
-- `rampart_store::sqlite` (see `src/sqlite/mod.rs`), once, inside `BEGIN IMMEDIATE`.
-- Independent of the other versions: the runner applies each missing version on its own.

-- One row per registered device: the app server's pubsub service JID and node, the
-- publish-options form the client gave (serialized XML, sent back with every notification)
-- and when it was (last) enabled, which decides which registration is dropped first when an
-- account has too many.
CREATE TABLE push_registrations (
    account_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    service         TEXT    NOT NULL,
    node            TEXT    NOT NULL,
    publish_options TEXT,
    -- Unix milliseconds.
    enabled_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (account_id, service, node)
) STRICT, WITHOUT ROWID;
