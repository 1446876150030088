-- records (projections/src/records.rs, inline): the record index of every repo, from the
-- repo.committed ops. The record bytes live in repo_blocks (by cid).
CREATE TABLE records (
    did        TEXT NOT NULL,
    collection TEXT NOT NULL,
    rkey       TEXT NOT NULL,
    cid        TEXT NOT NULL,
    rev        TEXT NOT NULL,
    PRIMARY KEY (did, collection, rkey)
);
