-- 0009: a repository's import history starts at its pin.  `airlock repo
-- remove --archive` frees the name; a later pin of that name is another
-- repository, and the earlier one's imports are not its history.  Import
-- records are never deleted, so the highest import id at pin time marks the
-- start (0 for the repositories pinned before this migration: all of it).
ALTER TABLE repository ADD COLUMN history_after INTEGER NOT NULL DEFAULT 0;
