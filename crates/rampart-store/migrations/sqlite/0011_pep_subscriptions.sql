-- Rampart SQLite schema, version 11: explicit pubsub subscriptions and affiliations on PEP
-- nodes (XEP-0060 §6.1, §8.8, §8.9). Applied by `rampart_store::sqlite` (see
-- `src/sqlite/mod.rs`), once, inside `BEGIN IMMEDIATE`. Builds on version 7.

-- One row per subscribed JID (bare or full) of a node. `bare` is the subscriber's bare JID
-- (for "my subscriptions" and for cleaning up after an account goes).
CREATE TABLE pep_subscriptions (
    node_id    INTEGER NOT NULL REFERENCES pep_nodes (id) ON DELETE CASCADE,
    jid        TEXT    NOT NULL,
    bare       TEXT    NOT NULL,
    subid      TEXT    NOT NULL,
    -- Unix milliseconds.
    created_at INTEGER NOT NULL,
    PRIMARY KEY (node_id, jid)
) STRICT;

CREATE INDEX pep_subscriptions_bare ON pep_subscriptions (bare);

-- Affiliations other than the owner's own (always `owner`) and `none` (no row).
CREATE TABLE pep_affiliations (
    node_id     INTEGER NOT NULL REFERENCES pep_nodes (id) ON DELETE CASCADE,
    -- A bare JID.
    jid         TEXT    NOT NULL,
    affiliation TEXT    NOT NULL,
    PRIMARY KEY (node_id, jid)
) STRICT;

CREATE INDEX pep_affiliations_jid ON pep_affiliations (jid);

-- An account that is removed keeps no subscriptions or affiliations anywhere: a new
-- account of the same name must not inherit them.
CREATE TRIGGER pep_forget_removed_account AFTER DELETE ON accounts
BEGIN
    DELETE FROM pep_subscriptions WHERE bare = OLD.jid;
    DELETE FROM pep_affiliations WHERE jid = OLD.jid;
END;
