-- Rampart compliance archive, SQLite schema v2: the search indexes (`parties`,
-- `records_fts`) move to their own file, `archive-index.db`, written by an indexing task
-- after the records' durable commit, so that commit writes only the journal and the two run
-- side by side. The index file is derived data: it is rebuilt from the journal when missing
-- (and after this migration, which drops the copies that lived here).

-- Nothing reads it: time ranges are mapped to seq ranges through `segments`.
DROP INDEX records_at_ms;
DROP TABLE parties;
DROP TABLE records_fts;
