-- account_preferences (projections/src/preferences.rs, inline): each account's preferences
-- (app.bsky.actor.putPreferences), in order within their namespace, as the JSON object text.
CREATE TABLE account_preferences (
    did        TEXT    NOT NULL,
    namespace  TEXT    NOT NULL,
    idx        BIGINT  NOT NULL,
    pref_type  TEXT    NOT NULL,
    value_json TEXT    NOT NULL,
    PRIMARY KEY (did, namespace, idx)
);

-- Read-after-write (api/src/app_bsky/read_after_write.rs): an account's records newer than a rev.
CREATE INDEX records_did_rev ON records (did, rev);
