//! `app.bsky.actor.putPreferences` / `getPreferences` on this server: the body checked against
//! the lexicon, then `domain::account::preferences` decides on the stored preferences (the
//! `preferences` read model, read after the stream version, so a put that raced ours makes our
//! append conflict and decide again), and one `account.preferences_put` replaces the `app.bsky`
//! namespace. A refused body stores nothing.
//!
//! Never proxies (the caller decides whether the AppView answers instead); never knows HTTP.

use domain::account::preferences::{self, Preference, PreferencesError, APP_BSKY};
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};

use crate::{account_append, append_error, load_account, now, CommandError, Ctx};

const PUT_NSID: &str = "app.bsky.actor.putPreferences";

fn pref_error(e: PreferencesError) -> CommandError {
    match e {
        PreferencesError::AccountNotFound => CommandError::AccountNotFound,
        e => CommandError::InvalidRequest(e.to_string()),
    }
}

/// The body's preferences: a lexicon-valid `putPreferences` input whose items all have a `$type`.
pub fn parse_put_body(body: &serde_json::Value) -> Result<Vec<Preference>, CommandError> {
    crate::validate_input(PUT_NSID, body)?;
    let items = body.get("preferences").and_then(|p| p.as_array()).map(Vec::as_slice).unwrap_or_default();
    items.iter().map(|v| Preference::from_value(v).map_err(pref_error)).collect()
}

/// Replaces `did`'s `app.bsky` preferences with `put`. `full_access`: a password login's token
/// (not an app password, not OAuth), the only caller that may set `#personalDetailsPref`.
pub async fn put_preferences(ctx: &Ctx, did: &str, put: Vec<Preference>, full_access: bool) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    for _ in 0..3 {
        let (state, version) = load_account(ctx.log(), did).await?;
        if state.live().is_some_and(|a| a.takedown.is_some()) {
            return Err(CommandError::AccountTakedown);
        }
        let current = stored(ctx, did).await?;
        let (now_micros, _) = now();
        let events = preferences::decide_put_preferences(&state, &current, APP_BSKY, put.clone(), full_access, now_micros)
            .map_err(pref_error)?;
        if events.is_empty() {
            return Ok(());
        }
        match ctx.appender.append(vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)]).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(append_error(e, "", "")),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}

/// `did`'s `app.bsky` preferences as `getPreferences` shows them to a caller with or without
/// full access (`#declaredAgePref` computed as of now).
pub async fn get_preferences(ctx: &Ctx, did: &str, full_access: bool) -> Result<Vec<serde_json::Value>, CommandError> {
    let current = stored(ctx, did).await?;
    let (now_micros, _) = now();
    Ok(preferences::view_preferences(&current, APP_BSKY, full_access, now_micros).iter().map(Preference::to_value).collect())
}

async fn stored(ctx: &Ctx, did: &str) -> Result<Vec<Preference>, CommandError> {
    projections::preferences::list(ctx.log(), did, APP_BSKY)
        .await?
        .iter()
        .map(|json| {
            Preference::from_json(json).map_err(|e| CommandError::Internal(format!("stored preference of {did}: {e}")))
        })
        .collect()
}
