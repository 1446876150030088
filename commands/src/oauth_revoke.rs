//! `POST /oauth/revoke` (RFC 7009): a refresh token (by hash) or an access token (by its id, even
//! if expired) revokes its whole session (`oauth.revoked`). Unknown tokens are not an error —
//! the endpoint answers 200 whatever happens here.
//!
//! Never reveals whether a token existed.

use domain::oauth::access_token;
use domain::oauth::aggregate;
use domain::oauth::sha256_b64url;

use crate::oauth_flow::{access_key, append, load_oauth, now_micros, OAuthCommandError};
use crate::Ctx;

/// Whether a session was revoked now.
pub async fn oauth_revoke(ctx: &Ctx, token: &str) -> Result<bool, OAuthCommandError> {
    let log = ctx.log();
    let request_id = match projections::oauth::request_by_refresh_hash(log, &sha256_b64url(token)).await? {
        Some(id) => Some(id),
        None => match access_token::verify(&access_key(ctx), token, &ctx.service_did, 0) {
            Ok(claims) => projections::oauth::request_by_token_id(log, &claims.jti).await?,
            Err(_) => None,
        },
    };
    let Some(request_id) = request_id else { return Ok(false) };
    for _ in 0..3 {
        let (state, version) = load_oauth(log, &request_id).await?;
        let (now, _) = now_micros();
        let events = aggregate::decide_revoke(&state, "revoked by the client", now);
        if events.is_empty() {
            return Ok(false);
        }
        if append(ctx, &request_id, version, &events).await? {
            return Ok(true);
        }
    }
    Ok(false)
}
