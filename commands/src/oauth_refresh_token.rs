//! `POST /oauth/token` with `grant_type=refresh_token`: the session's current refresh token
//! rotates (new token id = new access-token `jti`, the old access token stops working at once);
//! presenting an already-rotated one revokes the whole session (reference behaviour, no grace)
//! and answers `invalid_grant`. Two racing refreshes with one token: the append at the decided
//! version lets one rotate; the other decides again and sees a replay.
//!
//! Never stores the refresh token, only its hash.

use domain::oauth::aggregate::{self, RefreshOutcome};
use domain::oauth::{random_id, sha256_b64url};

use crate::oauth_flow::{
    append, check_account_usable, decision_error, load_oauth, mint, now_micros, oauth_err, OAuthCommandError, TokenResponse,
};
use crate::Ctx;

const ATTEMPTS: usize = 3;

pub async fn oauth_refresh_token(
    ctx: &Ctx,
    refresh_token: &str,
    client_id: &str,
    dpop_jkt: &str,
) -> Result<TokenResponse, OAuthCommandError> {
    let invalid = || oauth_err("invalid_grant", "Invalid refresh token");
    let Some(request_id) = projections::oauth::request_by_refresh_hash(ctx.log(), &sha256_b64url(refresh_token)).await? else {
        return Err(invalid());
    };
    for _ in 0..ATTEMPTS {
        let (state, version) = load_oauth(ctx.log(), &request_id).await?;
        let (now, now_secs) = now_micros();
        let token_id = random_id("tok-");
        let refresh = random_id("ref-");
        match aggregate::decide_refresh(&state, refresh_token, client_id, dpop_jkt, &token_id, &refresh, now)
            .map_err(decision_error)?
        {
            RefreshOutcome::Replayed(events) => {
                append(ctx, &request_id, version, &events).await?;
                return Err(oauth_err("invalid_grant", "Refresh token replayed"));
            }
            RefreshOutcome::Rotate(events) => {
                let Some(approval) = state.flow().and_then(|f| f.approval.clone()) else { return Err(invalid()) };
                check_account_usable(ctx.log(), &approval.did).await?;
                if !append(ctx, &request_id, version, &events).await? {
                    continue;
                }
                return Ok(mint(ctx, &approval, client_id, dpop_jkt, &token_id, &refresh, now_secs));
            }
        }
    }
    Err(invalid())
}
