-- The verdict and kind indexes only ever drive searches for the rare values (a blocked or
-- quarantined message, a login, a file): the common ones (a delivered or offline message)
-- are found through the account or full-text index. As partial indexes over the rare values
-- they cost nothing when a delivered message is committed (two B-tree writes fewer per
-- record, two pages fewer per commit). A search uses them by repeating the index's WHERE
-- term (see `build_search`).
DROP INDEX records_verdict;
DROP INDEX records_kind;
CREATE INDEX records_rare_verdict ON records (verdict)
    WHERE verdict NOT IN ('delivered', 'offline');
CREATE INDEX records_rare_kind ON records (kind) WHERE kind <> 'message';
