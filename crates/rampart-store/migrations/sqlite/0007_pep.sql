-- Rampart SQLite schema, version 7: personal eventing (XEP-0163 PEP on XEP-0060 pubsub).
-- Applied by `rampart_store::sqlite` (see `src/sqlite/mod.rs`), once, inside
-- `BEGIN IMMEDIATE`. Independent of the other versions.

-- One row per node an account owns; `config` is serialized by the server.
CREATE TABLE pep_nodes (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    config     TEXT    NOT NULL,
    UNIQUE (account_id, name)
) STRICT;

-- Items of a node; `seq` orders them (a republished id gets a new seq: it is the newest).
CREATE TABLE pep_items (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id      INTEGER NOT NULL REFERENCES pep_nodes (id) ON DELETE CASCADE,
    item_id      TEXT    NOT NULL,
    xml          TEXT    NOT NULL,
    publisher    TEXT    NOT NULL,
    -- Unix milliseconds.
    published_at INTEGER NOT NULL,
    UNIQUE (node_id, item_id)
) STRICT;

CREATE INDEX pep_items_node_seq ON pep_items (node_id, seq);
