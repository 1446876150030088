-- Read models of the projection engine (projections/). Every table here is a pure function of the
-- log: `pds replay` empties and rebuilds it, `pds verify` rebuilds a scratch copy and compares.

-- How far each catch-up projector has applied the log; written in the same transaction as its rows.
CREATE TABLE projection_checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;

-- event_stats (catch-up): per event type, how many and where.
CREATE TABLE event_stats (
    event_type       TEXT PRIMARY KEY,
    count            INTEGER NOT NULL,
    first_position   INTEGER NOT NULL,
    last_position    INTEGER NOT NULL,
    last_recorded_at INTEGER NOT NULL  -- unix microseconds
) WITHOUT ROWID;

-- stream_index (inline): every aggregate, its kind (stream name before '/') and version.
CREATE TABLE stream_index (
    stream        TEXT PRIMARY KEY,
    kind          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    last_position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX stream_index_kind ON stream_index (kind, stream);
