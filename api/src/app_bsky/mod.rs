//! What a PDS answers itself for the Bluesky app (reference `api/app/bsky/*` and
//! `read-after-write/*`); every other `app.bsky.*` call goes through the proxy as is.
//!
//! - `preferences.rs` — `app.bsky.actor.getPreferences` / `putPreferences` (stored here; proxied
//!   when `atproto-proxy` names another AppView).
//! - `read_after_write.rs` — the layer that merges the caller's newest records into proxied
//!   `getProfile(s)`, `getTimeline`, `getAuthorFeed`, `getActorLikes`, `getPostThread` answers;
//!   `views.rs` — the pure merges and local views.
//! - `feed.rs` — `app.bsky.feed.getFeed` (service JWT for the feed generator).
//! - `push.rs` — `app.bsky.notification.registerPush` / `unregisterPush`.
//! - `appview.rs` — this server's own calls to the configured AppView.
//!
//! Each route here checks OAuth `rpc:` permissions itself, against the audience the call really
//! goes to (`proxy_to`), as the reference's `computeProxyTo` does.

pub mod appview;
pub mod feed;
pub mod preferences;
pub mod push;
pub mod read_after_write;
pub mod views;

use axum::http::{HeaderMap, StatusCode};
use axum::Router;

use crate::server::AppState;
use crate::xrpc::XrpcError;

pub fn routes() -> Router<AppState> {
    Router::new().merge(preferences::routes()).merge(feed::routes()).merge(push::routes())
}

/// The NSIDs whose routes here check OAuth `rpc:` permissions themselves (the OAuth layer
/// leaves them alone, as it does for the proxy's).
pub fn checks_own_rpc(nsid: &str) -> bool {
    matches!(
        nsid,
        "app.bsky.actor.getPreferences"
            | "app.bsky.actor.putPreferences"
            | "app.bsky.feed.getFeed"
            | "app.bsky.notification.registerPush"
            | "app.bsky.notification.unregisterPush"
    )
}

/// Where a call goes (reference `computeProxyTo`): the `atproto-proxy` header, else the
/// configured AppView as `<did>#bsky_appview`; `None` when neither.
pub fn proxy_to(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, XrpcError> {
    if let Some(h) = headers.get("atproto-proxy") {
        let v = h.to_str().map_err(|_| XrpcError::invalid_request("invalid proxy header format"))?;
        return Ok(Some(v.to_owned()));
    }
    Ok(state.config.proxy.bsky_app_view.as_ref().map(|a| format!("{}#bsky_appview", a.did)))
}

/// Whether `proxy_to` is the configured AppView (or nothing is configured and no header given).
pub fn is_own_app_view(state: &AppState, proxy_to: Option<&str>) -> bool {
    match (proxy_to, &state.config.proxy.bsky_app_view) {
        (None, _) => true,
        (Some(p), Some(a)) => p == format!("{}#bsky_appview", a.did),
        (Some(_), None) => false,
    }
}

/// An OAuth caller's `rpc:<lxm>?aud=<aud>` permission (legacy tokens pass).
pub fn check_rpc(headers: &HeaderMap, ext: Option<&crate::oauth_resource::OAuthAuth>, lxm: &str, aud: &str) -> Result<(), XrpcError> {
    if !crate::oauth_resource::is_dpop(headers) {
        return Ok(());
    }
    match ext {
        Some(o) if o.scopes.allows_rpc(lxm, aud) => Ok(()),
        Some(_) => Err(XrpcError::new(
            StatusCode::FORBIDDEN,
            "ScopeMissingError",
            format!("Missing required scope \"rpc:{lxm}?aud={aud}\""),
        )),
        None => Err(XrpcError::new(StatusCode::UNAUTHORIZED, "invalid_token", "DPoP credentials were not verified")),
    }
}
