-- repo_blocks.rev (projections/src/repo_blocks.rs): the rev of the commit that first stored the
-- block, so `com.atproto.sync.getRepo?since=<rev>` can send only blocks newer than that rev (as
-- the reference's `repo_block.repoRev`). Rows stored before this migration get '' until
-- `pds replay` rebuilds the read model.
ALTER TABLE repo_blocks ADD COLUMN rev TEXT NOT NULL DEFAULT '';
