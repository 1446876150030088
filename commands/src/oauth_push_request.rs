//! `POST /oauth/par`: a pushed authorization request, checked against the client's metadata
//! (response type `code`, PKCE S256, redirect URI registered, scope declared by the client and
//! parseable, `state` present, no OIDC parameters), stored as `oauth.requested` on a new
//! `oauth/req-…` stream; answers the `request_uri` and its lifetime (5 minutes).
//!
//! Never authenticates the client (the caller did: `none` or a verified `private_key_jwt`).

use domain::oauth::aggregate::{self, Request, REQUEST_LIFETIME_MICROS, REQUEST_URI_PREFIX};
use domain::oauth::client::{redirect_uri_matches, ClientMetadata};
use domain::oauth::{pkce, random_id, scope};

use crate::oauth_flow::{append, decision_error, now_micros, oauth_err, OAuthCommandError};
use crate::{CommandError, Ctx};

#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    pub response_type: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub login_hint: Option<String>,
    pub response_mode: Option<String>,
    /// `dpop_jkt` parameter.
    pub dpop_jkt: Option<String>,
    /// Whether OIDC-only parameters (`nonce`, `claims`, `id_token_hint`) were sent.
    pub oidc_params: bool,
}

/// The `request_uri` and `expires_in` seconds.
pub async fn oauth_push_request(
    ctx: &Ctx,
    client: &ClientMetadata,
    auth_method: &str,
    proof_jkt: Option<&str>,
    p: PushRequest,
) -> Result<(String, i64), OAuthCommandError> {
    if p.response_type.as_deref() != Some("code") {
        return Err(oauth_err("unsupported_response_type", "response_type must be code"));
    }
    if p.oidc_params {
        return Err(oauth_err("invalid_request", "OpenID Connect parameters (nonce, claims, id_token_hint) are not supported"));
    }
    pkce::check_challenge(p.code_challenge.as_deref(), p.code_challenge_method.as_deref())
        .map_err(|e| oauth_err("invalid_request", e.to_string()))?;
    let redirect_uri = match p.redirect_uri {
        Some(r) => r,
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return Err(oauth_err("invalid_request", "redirect_uri is required")),
    };
    if !redirect_uri_matches(client, &redirect_uri) {
        return Err(oauth_err("invalid_request", "Invalid redirect_uri: not registered by the client"));
    }
    let requested = p.scope.unwrap_or_else(|| client.scope.clone());
    let parsed = scope::parse(&requested).map_err(|e| oauth_err("invalid_scope", e.to_string()))?;
    let declared: Vec<&str> = client.scope.split(' ').collect();
    if let Some(t) = parsed.tokens.iter().find(|t| !declared.contains(&t.as_str())) {
        return Err(oauth_err("invalid_scope", format!("Scope {t:?} is not declared in the client metadata")));
    }
    let state = p.state.filter(|s| !s.is_empty()).ok_or_else(|| oauth_err("invalid_request", "state is required"))?;
    let login_hint = p.login_hint.unwrap_or_default();
    if !login_hint.is_empty()
        && !domain::syntax::is_valid_did(&login_hint)
        && !domain::syntax::is_valid_handle(login_hint.trim_start_matches('@'))
    {
        return Err(oauth_err("invalid_request", "login_hint must be a DID or a handle"));
    }
    let response_mode = p.response_mode.unwrap_or_else(|| "query".to_owned());
    if !matches!(response_mode.as_str(), "query" | "fragment" | "form_post") {
        return Err(oauth_err("invalid_request", "response_mode must be query, fragment or form_post"));
    }
    let dpop_jkt = match (proof_jkt, p.dpop_jkt.as_deref()) {
        (Some(a), Some(b)) if a != b => return Err(oauth_err("invalid_request", "DPoP proof and dpop_jkt do not match")),
        (Some(a), _) | (None, Some(a)) => a.to_owned(),
        (None, None) => String::new(),
    };
    let (now, _) = now_micros();
    let request_id = random_id("req-");
    let request = Request {
        request_id: request_id.clone(),
        client_id: client.client_id.clone(),
        auth_method: auth_method.to_owned(),
        redirect_uri,
        scope: parsed.as_string(),
        state,
        code_challenge: p.code_challenge.unwrap_or_default(),
        dpop_jkt,
        login_hint,
        response_mode,
        expires_at: now + REQUEST_LIFETIME_MICROS,
        at: now,
    };
    let events = aggregate::decide_request(&aggregate::OAuthState::Absent, request).map_err(decision_error)?;
    if !append(ctx, &request_id, 0, &events).await? {
        return Err(CommandError::Conflict(aggregate::stream_name(&request_id)).into());
    }
    Ok((format!("{REQUEST_URI_PREFIX}{request_id}"), REQUEST_LIFETIME_MICROS / 1_000_000))
}
