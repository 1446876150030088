-- account_email_tokens (projections/src/accounts.rs, inline): the live emailed token of each
-- purpose per account (requestEmailConfirmation / requestEmailUpdate / requestPasswordReset /
-- requestAccountDelete), as its keyed hash, never the token.
CREATE TABLE account_email_tokens (
    did        TEXT    NOT NULL,
    purpose    TEXT    NOT NULL,
    token_hash TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,  -- unix microseconds
    PRIMARY KEY (did, purpose)
);
CREATE INDEX account_email_tokens_hash ON account_email_tokens (token_hash);

-- Email two-factor login (account.email_auth_factor_updated).
ALTER TABLE accounts ADD COLUMN email_auth_factor BIGINT NOT NULL DEFAULT 0;
