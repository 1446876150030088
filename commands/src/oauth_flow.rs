//! What the OAuth commands share: [`OAuthCommandError`] (an RFC 6749 error code and
//! description, which `api` sends as `{"error","error_description"}`), loading the
//! `oauth/<request id>` aggregate, appending its events, minting the access token, and the
//! resource server's per-request check ([`verify_oauth_access`]: signature, audience, expiry,
//! then the session's current token id and the account's status — revocation is immediate).
//!
//! Never stores a code or refresh token in the clear: events get `sha256_b64url` hashes.

use domain::oauth::access_token::{self, AccessClaims, AccessKey, AccessTokenError};
use domain::oauth::aggregate::{self, OAuthEvent, OAuthState};
use eventlog::{EventLog, ExpectedVersion, NewEvent, StreamAppend};

use crate::{load_account, CommandError, Ctx};

#[derive(Debug, thiserror::Error)]
pub enum OAuthCommandError {
    /// An OAuth error response (`invalid_request`, `invalid_grant`, `invalid_scope`, …).
    #[error("{error}: {description}")]
    OAuth { error: &'static str, description: String },
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl From<projections::ProjectionError> for OAuthCommandError {
    fn from(e: projections::ProjectionError) -> Self {
        OAuthCommandError::Command(e.into())
    }
}

impl From<eventlog::LogError> for OAuthCommandError {
    fn from(e: eventlog::LogError) -> Self {
        OAuthCommandError::Command(e.into())
    }
}

pub fn oauth_err(error: &'static str, description: impl Into<String>) -> OAuthCommandError {
    OAuthCommandError::OAuth { error, description: description.into() }
}

/// The aggregate's refusals as OAuth errors.
pub(crate) fn decision_error(e: aggregate::OAuthError) -> OAuthCommandError {
    use aggregate::OAuthError as E;
    let code = match &e {
        E::UnknownRequest | E::RequestExpired | E::AlreadyAuthorized | E::ClientMismatch | E::OtherDevice => {
            "invalid_request"
        }
        E::ScopeEscalation | E::Scope(_) => "invalid_scope",
        E::DpopKeyMismatch => "invalid_dpop_proof",
        _ => "invalid_grant",
    };
    oauth_err(code, e.to_string())
}

/// The aggregate of `request_id`, folded, and its stream version.
pub async fn load_oauth(log: &EventLog, request_id: &str) -> Result<(OAuthState, i64), CommandError> {
    if !aggregate::is_request_id(request_id) {
        return Ok((OAuthState::Absent, 0));
    }
    let envelopes = log.read_stream(&aggregate::stream_name(request_id)).await?;
    let mut state = OAuthState::Absent;
    let mut version = 0;
    for e in &envelopes {
        let event = OAuthEvent::from_payload(&e.event_type, e.event_version, &e.payload)
            .map_err(|err| CommandError::Internal(format!("{} v{}: {err}", e.stream, e.stream_version)))?;
        state = aggregate::evolve(state, &event);
        version = e.stream_version;
    }
    Ok((state, version))
}

pub(crate) fn oauth_append(request_id: &str, expected: ExpectedVersion, events: &[OAuthEvent]) -> StreamAppend {
    let events =
        events.iter().map(|e| NewEvent::new(e.event_type(), aggregate::EVENT_VERSION, e.to_payload())).collect();
    StreamAppend::new(aggregate::stream_name(request_id), expected, events)
}

/// Appends; `Ok(false)` when another writer moved the stream first (or a unique constraint of
/// the read model refused: a code consumed or a refresh hash used elsewhere).
pub(crate) async fn append(ctx: &Ctx, request_id: &str, version: i64, events: &[OAuthEvent]) -> Result<bool, CommandError> {
    let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
    match ctx.appender.append(vec![oauth_append(request_id, expected, events)]).await {
        Ok(_) => Ok(true),
        Err(eventlog::AppendError::Conflict { .. }) => Ok(false),
        Err(eventlog::AppendError::Inline(inner)) => {
            let unique = matches!(
                inner.downcast_ref::<projections::ProjectionError>(),
                Some(projections::ProjectionError::Database(db)) if db.as_database_error().is_some_and(|d| d.is_unique_violation())
            );
            if unique {
                Ok(false)
            } else {
                Err(CommandError::Internal(inner.to_string()))
            }
        }
        Err(eventlog::AppendError::Log(e)) => Err(CommandError::Internal(e.to_string())),
        Err(eventlog::AppendError::Aborted(m)) => Err(CommandError::Internal(m)),
    }
}

/// The key OAuth access tokens are signed with.
pub fn access_key(ctx: &Ctx) -> AccessKey {
    AccessKey::new(&ctx.jwt_secret)
}

/// A token response (`/oauth/token`).
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub scope: String,
    pub sub: String,
    pub expires_in: i64,
}

pub(crate) fn mint(
    ctx: &Ctx,
    approval: &aggregate::Approval,
    client_id: &str,
    jkt: &str,
    token_id: &str,
    refresh: &str,
    now_secs: i64,
) -> TokenResponse {
    let (did, scope) = (approval.did.as_str(), approval.scope.as_str());
    let claims = AccessClaims {
        iss: ctx.public_url.clone(),
        sub: did.to_owned(),
        aud: ctx.service_did.clone(),
        jti: token_id.to_owned(),
        iat: now_secs,
        exp: now_secs + access_token::LIFETIME_SECS,
        jkt: jkt.to_owned(),
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
    };
    TokenResponse {
        access_token: access_token::sign(&access_key(ctx), &claims),
        refresh_token: refresh.to_owned(),
        scope: scope.to_owned(),
        sub: did.to_owned(),
        expires_in: access_token::LIFETIME_SECS - 1,
    }
}

/// Refuses a takendown or deactivated (or unknown) account.
pub(crate) async fn check_account_usable(log: &EventLog, did: &str) -> Result<(), OAuthCommandError> {
    let (state, _) = load_account(log, did).await?;
    let Some(a) = state.live() else { return Err(oauth_err("invalid_grant", "Account not found")) };
    if a.takedown.is_some() {
        return Err(oauth_err("invalid_grant", "Account has been taken down"));
    }
    if a.deactivation.is_some() {
        return Err(oauth_err("invalid_grant", "Account is deactivated"));
    }
    Ok(())
}

/// A verified, current OAuth access token.
#[derive(Debug, Clone)]
pub struct OAuthAccess {
    pub did: String,
    pub client_id: String,
    pub scope: String,
    /// `cnf.jkt`: the DPoP key the token is bound to.
    pub jkt: String,
    pub token_id: String,
}

/// Why a presented access token is refused (all `invalid_token` on the wire, 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthAccessError {
    #[error("Token expired")]
    Expired,
    #[error("Invalid token")]
    Invalid,
    #[error("Token has been revoked")]
    Revoked,
    #[error("Account has been taken down")]
    Takendown,
    #[error("Account is deactivated")]
    Deactivated,
}

/// The resource server's check on every request.
pub async fn verify_oauth_access(ctx: &Ctx, token: &str, now_secs: i64) -> Result<OAuthAccess, OAuthCommandError> {
    let refuse = |e: OAuthAccessError| oauth_err("invalid_token", e.to_string());
    let claims = access_token::verify(&access_key(ctx), token, &ctx.service_did, now_secs).map_err(|e| match e {
        AccessTokenError::Expired => refuse(OAuthAccessError::Expired),
        _ => refuse(OAuthAccessError::Invalid),
    })?;
    let Some(active) = projections::oauth::active_token(ctx.log(), &claims.jti).await? else {
        // Rotated away by a refresh, or never issued here.
        return Err(refuse(OAuthAccessError::Revoked));
    };
    if active.revoked || active.did != claims.sub {
        return Err(refuse(OAuthAccessError::Revoked));
    }
    let (state, _) = load_account(ctx.log(), &active.did).await?;
    let Some(a) = state.live() else { return Err(refuse(OAuthAccessError::Invalid)) };
    if a.takedown.is_some() {
        return Err(refuse(OAuthAccessError::Takendown));
    }
    if a.deactivation.is_some() {
        return Err(refuse(OAuthAccessError::Deactivated));
    }
    Ok(OAuthAccess { did: active.did, client_id: active.client_id, scope: active.scope, jkt: active.dpop_jkt, token_id: claims.jti })
}

pub(crate) fn now_micros() -> (i64, i64) {
    crate::now()
}
