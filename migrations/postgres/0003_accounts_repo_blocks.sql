-- Read models of accounts and repositories (projections/src/accounts.rs, repo_blocks.rs), both
-- inline: they commit with the events they come from. Pure functions of the log.

-- accounts: one row per account (stream account/<did>). Handles and emails are stored lowercase;
-- the UNIQUE constraints catch two creations racing for one handle or email.
CREATE TABLE accounts (
    did                   TEXT PRIMARY KEY,
    handle                TEXT    NOT NULL UNIQUE,
    email                 TEXT    NOT NULL UNIQUE,
    email_confirmed_at    BIGINT,
    password_hash         TEXT    NOT NULL,
    signing_key_encrypted BYTEA   NOT NULL,
    signing_did_key       TEXT    NOT NULL,
    plc_genesis           TEXT,
    invite_code           TEXT,
    created_at            BIGINT  NOT NULL,  -- unix microseconds
    deactivated_at        BIGINT,
    delete_after          BIGINT,
    takedown_ref          TEXT,
    taken_down_at         BIGINT
);

CREATE TABLE account_app_passwords (
    did           TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    privileged    BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (did, name)
);

-- Refresh tokens by hash (never the token): family = hash of the login's first token.
CREATE TABLE account_refresh_tokens (
    token_hash        TEXT PRIMARY KEY,
    did               TEXT    NOT NULL,
    family            TEXT    NOT NULL,
    app_password_name TEXT,
    expires_at        BIGINT  NOT NULL,
    successor         TEXT
);
CREATE INDEX account_refresh_tokens_did ON account_refresh_tokens (did, family);

-- repo_roots: each repo's current head.
CREATE TABLE repo_roots (
    did        TEXT PRIMARY KEY,
    commit_cid TEXT NOT NULL,
    rev        TEXT NOT NULL,
    data_cid   TEXT NOT NULL
);

-- repo_blocks: every block the repo events carried (CAR slices), by repo.
CREATE TABLE repo_blocks (
    did   TEXT NOT NULL,
    cid   TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (did, cid)
);
