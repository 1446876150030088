-- OAuth read model (projections/src/oauth.rs, inline), from the oauth/<request id> streams.
-- Codes and refresh tokens only as hashes. The UNIQUE constraints back the stream-version check:
-- a code is consumed once, a refresh hash belongs to one session.
CREATE TABLE oauth_requests (
    request_id TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL, -- unix microseconds
    created_at INTEGER NOT NULL,
    did        TEXT,
    scope      TEXT,
    code_hash  TEXT UNIQUE
) WITHOUT ROWID;

CREATE TABLE oauth_code_uses (
    code_hash  TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    used_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE oauth_sessions (
    request_id   TEXT PRIMARY KEY,
    token_id     TEXT NOT NULL UNIQUE,
    refresh_hash TEXT NOT NULL UNIQUE,
    dpop_jkt     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    refreshed_at INTEGER NOT NULL,
    revoked_at   INTEGER
) WITHOUT ROWID;

CREATE TABLE oauth_used_refresh_tokens (
    refresh_hash TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL
) WITHOUT ROWID;
