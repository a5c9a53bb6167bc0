-- XEP-0363 HTTP File Upload: one row per slot handed out. The bytes live in
-- <data_dir>/uploads/<id>; this table holds what the server knows about them.
-- `owner` is not a foreign key: a removed account's files stay (and stay on the
-- compliance record) until upload retention deletes them.
CREATE TABLE uploads (
    id             TEXT    PRIMARY KEY,
    owner          TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    size           INTEGER NOT NULL CHECK (size >= 0),
    content_type   TEXT    NOT NULL,
    created_ms     INTEGER NOT NULL,
    put_expires_ms INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('pending', 'available', 'refused')),
    sha256         TEXT,
    reason         TEXT,
    finished_ms    INTEGER
) STRICT;

CREATE INDEX uploads_owner_state ON uploads (owner, state);
CREATE INDEX uploads_state_created ON uploads (state, created_ms);
