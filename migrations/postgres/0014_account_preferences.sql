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
