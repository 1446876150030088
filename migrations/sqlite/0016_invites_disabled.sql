-- The operator stopped an account's invite codes (account.invites_disabled_updated).
ALTER TABLE accounts ADD COLUMN invites_disabled INTEGER NOT NULL DEFAULT 0;
