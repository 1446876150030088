//! The authorization endpoint's decision (`POST /oauth/authorize`): the user signs in (handle,
//! DID or email with the account password — app passwords are not accepted here) and approves
//! a scope that may only narrow the request's; a code is issued (`oauth.code_issued`, the code
//! only as its hash) and returned with where to send the browser. Takendown and deactivated
//! accounts cannot authorize.
//!
//! Never renders anything: the page, CSRF and cookies are `api`'s.

use domain::oauth::aggregate::{self, Request};
use domain::oauth::random_id;
use domain::password;

use crate::create_session::resolve_identifier;
use crate::oauth_flow::{append, check_account_usable, decision_error, load_oauth, now_micros, oauth_err, OAuthCommandError};
use crate::{blocking, load_account, CommandError, Ctx};

/// Where to redirect after approval.
#[derive(Debug, Clone)]
pub struct Approved {
    pub redirect_uri: String,
    pub response_mode: String,
    pub state: String,
    pub code: String,
}

/// The pending request behind a `request_uri`, for the consent page (`None`: unknown, expired,
/// already used, or another client's).
pub async fn pending_request(ctx: &Ctx, request_id: &str, client_id: &str) -> Result<Option<Request>, CommandError> {
    let (state, _) = load_oauth(ctx.log(), request_id).await?;
    let (now, _) = now_micros();
    Ok(state
        .flow()
        .filter(|f| f.approval.is_none() && f.revoked.is_none() && f.request.expires_at > now && f.request.client_id == client_id)
        .map(|f| f.request.clone()))
}

/// The consent page was opened by `device_id`: binds the request to it on first use
/// (`oauth.device_bound`); another device gets `invalid_request` "…in use on another device".
pub async fn bind_device(ctx: &Ctx, request_id: &str, client_id: &str, device_id: &str) -> Result<(), OAuthCommandError> {
    for _ in 0..3 {
        let (state, version) = load_oauth(ctx.log(), request_id).await?;
        let (now, _) = now_micros();
        let events = aggregate::decide_bind_device(&state, client_id, device_id, now).map_err(decision_error)?;
        if events.is_empty() || append(ctx, request_id, version, &events).await? {
            return Ok(());
        }
    }
    Err(CommandError::Conflict(aggregate::stream_name(request_id)).into())
}

pub async fn oauth_authorize(
    ctx: &Ctx,
    request_id: &str,
    client_id: &str,
    identifier: &str,
    password_text: String,
    approved_scope: &str,
    device_id: &str,
) -> Result<Approved, OAuthCommandError> {
    if pending_request(ctx, request_id, client_id).await?.is_none() {
        return Err(oauth_err("invalid_request", "This authorization request is unknown, expired or already used"));
    }
    let denied = || oauth_err("access_denied", "Invalid identifier or password");
    let did = resolve_identifier(ctx, identifier).await?;
    let hash = match &did {
        Some(d) => load_account(ctx.log(), d).await?.0.live().map(|a| a.password_hash.clone()),
        None => None,
    };
    let ok = blocking(move || match hash {
        Some(h) => password::verify_password(&password_text, &h),
        None => {
            password::dummy_verify(&password_text);
            false
        }
    })
    .await?;
    let Some(did) = did.filter(|_| ok) else { return Err(denied()) };
    check_account_usable(ctx.log(), &did).await.map_err(|e| match e {
        OAuthCommandError::OAuth { description, .. } => oauth_err("access_denied", description),
        other => other,
    })?;
    let (state, version) = load_oauth(ctx.log(), request_id).await?;
    let (now, _) = now_micros();
    let code = random_id("cod-");
    let events = aggregate::decide_authorize(&state, client_id, &did, approved_scope, &code, device_id, now)
        .map_err(decision_error)?;
    if !append(ctx, request_id, version, &events).await? {
        return Err(oauth_err("invalid_request", "This authorization request was already used"));
    }
    let Some(f) = state.flow() else { return Err(CommandError::Internal("request vanished".into()).into()) };
    Ok(Approved {
        redirect_uri: f.request.redirect_uri.clone(),
        response_mode: f.request.response_mode.clone(),
        state: f.request.state.clone(),
        code,
    })
}
