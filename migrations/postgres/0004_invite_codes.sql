-- Invite codes (projections/src/invites.rs, inline): one row per code (stream invite/<code>) and
-- one per use. Pure functions of the log.
CREATE TABLE invite_codes (
    code        TEXT PRIMARY KEY,
    available   BIGINT NOT NULL,
    for_account TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  BIGINT NOT NULL  -- unix microseconds
);
CREATE INDEX invite_codes_for_account ON invite_codes (for_account);

CREATE TABLE invite_code_uses (
    code    TEXT    NOT NULL,
    used_by TEXT    NOT NULL,
    used_at BIGINT NOT NULL,
    PRIMARY KEY (code, used_by)
);
