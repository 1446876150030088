//! `app.bsky.actor.*` answered here (reference `api/app/bsky/actor/*.ts`):
//! `getProfile` / `getProfiles` are proxied with read-after-write (`crate::read_after_write`);
//! `getPreferences` / `putPreferences` are the caller's own `app.bsky` preferences.
//! Auth as the reference: a password or app-password login (or OAuth); `getPreferences` also
//! takes a taken-down account's session. Full access (a password login — not an app password,
//! not OAuth) is what sees and sets `#personalDetailsPref`. JSON body limit 150 KiB.
//!
//! When `atproto-proxy` names another service than the configured AppView, the call is proxied
//! there instead (the reference does the same), after the OAuth `rpc:` check against that
//! audience.
//!
//! Parses, calls `commands`, renders; the rules are `domain::account::preferences`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::session_jwt::Scope;
use serde_json::{json, Value};

use crate::read_after_write::{pipethrough, views::Merge};
use crate::xrpc::prelude::*;

pub async fn get_profile(State(state): State<AppState>, auth: AccessAuth, req: Request) -> Response {
    pipethrough(&state, &auth.did, Merge::GetProfile, req).await
}

pub async fn get_profiles(State(state): State<AppState>, auth: AccessAuth, req: Request) -> Response {
    pipethrough(&state, &auth.did, Merge::GetProfiles, req).await
}

fn bad_scope() -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token scope")
}

/// The reference's `hasAccessFull`: a legacy access token of a password login. OAuth tokens
/// (`Authorization: DPoP`) never have it, whatever their scopes.
fn full_access(auth: &AccessAuth, headers: &HeaderMap) -> bool {
    auth.scope == Scope::Access && !crate::xrpc::oauth::is_dpop(headers)
}

const GET: &str = "app.bsky.actor.getPreferences";
const PUT: &str = "app.bsky.actor.putPreferences";

/// The caller, or the proxied answer when the call is for another AppView.
async fn local_or_proxied(state: &AppState, req: Request, lxm: &str) -> Result<Result<(Parts, axum::body::Body, AccessAuth), Response>, XrpcError> {
    let proxy_to = super::proxy_to(state, req.headers())?;
    let (mut parts, body) = req.into_parts();
    let auth = AccessAuth::from_request_parts(&mut parts, state).await?;
    if let Some(aud) = &proxy_to {
        super::check_rpc(&parts.headers, parts.extensions.get(), lxm, aud)?;
    }
    if !super::is_own_app_view(state, proxy_to.as_deref()) {
        let req = Request::from_parts(parts, body);
        return Ok(Err(crate::proxy::handle(State(state.clone()), req).await));
    }
    Ok(Ok((parts, body, auth)))
}

pub async fn get_preferences(State(state): State<AppState>, req: Request) -> Result<Response, XrpcError> {
    let (parts, _, auth) = match local_or_proxied(&state, req, GET).await? {
        Ok(local) => local,
        Err(proxied) => return Ok(proxied),
    };
    if !(auth.scope.is_standard_access() || auth.scope == Scope::Takendown) {
        return Err(bad_scope());
    }
    let ctx = ctx(&state)?;
    let preferences =
        commands::get_preferences(&ctx, &auth.did, full_access(&auth, &parts.headers)).await.map_err(command_error)?;
    Ok(Json(json!({ "preferences": preferences })).into_response())
}

pub async fn put_preferences(State(state): State<AppState>, req: Request) -> Result<Response, XrpcError> {
    let (parts, body, auth) = match local_or_proxied(&state, req, PUT).await? {
        Ok(local) => local,
        Err(proxied) => return Ok(proxied),
    };
    if !auth.scope.is_standard_access() {
        return Err(bad_scope());
    }
    let bytes = axum::body::to_bytes(body, JSON_LIMIT).await.map_err(|_| {
        XrpcError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", "request entity too large")
    })?;
    if bytes.is_empty() {
        return Err(XrpcError::invalid_request("A request body is expected but none was provided"));
    }
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))?;
    let prefs = commands::parse_put_body(&body).map_err(command_error)?;
    let ctx = ctx(&state)?;
    commands::put_preferences(&ctx, &auth.did, prefs, full_access(&auth, &parts.headers)).await.map_err(command_error)?;
    Ok(StatusCode::OK.into_response())
}
