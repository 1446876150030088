-- The event log (see eventlog/README.md). Positions and seqs are handed out from log_head, never
-- from MAX() or AUTOINCREMENT, so a purge can never cause a number to be reused.
CREATE TABLE log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,  -- last position handed out
    seq      INTEGER NOT NULL   -- last public seq handed out
);
INSERT INTO log_head (id, position, seq) VALUES (1, 0, 0);

-- Current version of every stream ever written (kept across purges, so versions never restart).
CREATE TABLE streams (
    stream  TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    seq            INTEGER,
    stream         TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    event_version  INTEGER NOT NULL,
    payload        BLOB    NOT NULL,
    recorded_at    INTEGER NOT NULL,  -- unix microseconds
    actor          TEXT,
    correlation    TEXT
);
CREATE UNIQUE INDEX events_stream_version ON events (stream, stream_version);
CREATE UNIQUE INDEX events_seq ON events (seq) WHERE seq IS NOT NULL;
