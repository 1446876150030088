//! What a PDS answers itself for the Bluesky app (reference `api/app/bsky/*`); every other
//! `app.bsky.*` call goes to the proxy (the kernel's fallback) as is.
//!
//! - `actor.rs` — `getPreferences` / `putPreferences` (stored here; proxied when `atproto-proxy`
//!   names another AppView), `getProfile` / `getProfiles` (read-after-write).
//! - `feed.rs` — `getTimeline`, `getAuthorFeed`, `getActorLikes`, `getPostThread`
//!   (read-after-write), `getFeed` (a service JWT for the feed generator).
//! - `notification.rs` — `registerPush` / `unregisterPush`.
//!
//! Their table rows use `Permission::Proxied`: each checks OAuth `rpc:` itself against the
//! audience the call really goes to (`proxy_to`), as the reference's `computeProxyTo` does.

pub mod actor;
pub mod feed;
pub mod notification;

use axum::http::{HeaderMap, StatusCode};

use crate::server::AppState;
use crate::xrpc::XrpcError;

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
pub fn check_rpc(headers: &HeaderMap, ext: Option<&crate::xrpc::oauth::OAuthAuth>, lxm: &str, aud: &str) -> Result<(), XrpcError> {
    if !crate::xrpc::oauth::is_dpop(headers) {
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
