-- blobs (projections/src/blobs.rs, inline): the blobs each account has stored (blob.uploaded,
-- minus blob.expired and minus those the last referencing record dropped), their takedown, and
-- which record references which blob (from the repo.committed record blocks).
CREATE TABLE blobs (
    did          TEXT NOT NULL,
    cid          TEXT NOT NULL,
    mime_type    TEXT NOT NULL,
    size         BIGINT NOT NULL,
    -- recorded_at (unix microseconds) of the latest blob.uploaded: the temp-blob grace starts here
    uploaded_at  BIGINT NOT NULL,
    takedown_ref TEXT,
    PRIMARY KEY (did, cid)
);
CREATE INDEX blobs_uploaded_at ON blobs (uploaded_at);
CREATE TABLE record_blobs (
    did  TEXT NOT NULL,
    -- <collection>/<rkey>
    path TEXT NOT NULL,
    cid  TEXT NOT NULL,
    -- rev of the commit that wrote the record (listBlobs `since`)
    rev  TEXT NOT NULL,
    PRIMARY KEY (did, path, cid)
);
CREATE INDEX record_blobs_cid ON record_blobs (did, cid);
