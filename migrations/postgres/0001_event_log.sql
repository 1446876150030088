-- The event log (see eventlog/README.md). Positions and seqs are handed out under the log_head
-- row lock (SELECT ... FOR UPDATE), never from a sequence or MAX(), so commit order = number order
-- and a purge can never cause a number to be reused.
CREATE TABLE log_head (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL,  -- last position handed out
    seq      BIGINT NOT NULL   -- last public seq handed out
);
INSERT INTO log_head (id, position, seq) VALUES (1, 0, 0);

-- Current version of every stream ever written (kept across purges, so versions never restart).
CREATE TABLE streams (
    stream  TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE TABLE events (
    position       BIGINT PRIMARY KEY,
    seq            BIGINT,
    stream         TEXT    NOT NULL,
    stream_version BIGINT  NOT NULL,
    event_type     TEXT    NOT NULL,
    event_version  INTEGER NOT NULL,
    payload        BYTEA   NOT NULL,
    recorded_at    BIGINT  NOT NULL,  -- unix microseconds
    actor          TEXT,
    correlation    TEXT
);
CREATE UNIQUE INDEX events_stream_version ON events (stream, stream_version);
CREATE UNIQUE INDEX events_seq ON events (seq) WHERE seq IS NOT NULL;
