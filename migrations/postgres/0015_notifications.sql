-- The outbox (projections/src/notifications.rs, inline): one row per notification/<id> stream
-- (domain::notification), its status and next due time. A pure function of the log.
CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    did        TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    recipient  TEXT    NOT NULL,
    template   TEXT    NOT NULL,
    status     TEXT    NOT NULL,  -- queued | sending | sent | failed
    attempts   BIGINT NOT NULL,
    next_at    BIGINT NOT NULL,  -- queued: next attempt due; sending: claim lapses (unix micros)
    last_error TEXT,
    version    BIGINT NOT NULL,  -- the stream version the row reflects (the claim's expected version)
    queued_at  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX notifications_due ON notifications (status, next_at);
CREATE INDEX notifications_did ON notifications (did, queued_at);

