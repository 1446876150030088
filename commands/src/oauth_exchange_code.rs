//! `POST /oauth/token` with `grant_type=authorization_code`: the code (looked up by its hash) is
//! consumed exactly once — the append is at the version the decision was made on and the
//! `oauth_code_uses` key is unique, so two nodes racing with one code cannot both win; the loser
//! sees a consumed code. A consumed code presented again revokes the session it created
//! (reference behaviour) and answers `invalid_grant`. Checks client, redirect URI, DPoP key and
//! PKCE (`domain::oauth::aggregate::decide_exchange`), and that the account may still sign in.
//!
//! Never logs or stores the code, the verifier or the refresh token.

use domain::oauth::aggregate::{self, Exchange, ExchangeDecision};
use domain::oauth::{random_id, sha256_b64url};

use crate::oauth_flow::{
    append, check_account_usable, decision_error, load_oauth, mint, now_micros, oauth_err, OAuthCommandError, TokenResponse,
};
use crate::Ctx;

pub struct ExchangeCode<'a> {
    pub code: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub dpop_jkt: &'a str,
}

const ATTEMPTS: usize = 3;

pub async fn oauth_exchange_code(ctx: &Ctx, x: ExchangeCode<'_>) -> Result<TokenResponse, OAuthCommandError> {
    let invalid = || oauth_err("invalid_grant", "Invalid code");
    let Some(request_id) = projections::oauth::request_by_code_hash(ctx.log(), &sha256_b64url(x.code)).await? else {
        return Err(invalid());
    };
    for _ in 0..ATTEMPTS {
        let (state, version) = load_oauth(ctx.log(), &request_id).await?;
        let (now, now_secs) = now_micros();
        let token_id = random_id("tok-");
        let refresh = random_id("ref-");
        let exchange = Exchange {
            code: x.code,
            client_id: x.client_id,
            redirect_uri: x.redirect_uri,
            code_verifier: x.code_verifier,
            dpop_jkt: x.dpop_jkt,
            token_id: &token_id,
            refresh_token: &refresh,
        };
        match aggregate::decide_exchange(&state, &exchange, now).map_err(decision_error)? {
            ExchangeDecision::Replayed(events) => {
                if !events.is_empty() {
                    append(ctx, &request_id, version, &events).await?;
                }
                return Err(oauth_err("invalid_grant", "Code replayed"));
            }
            ExchangeDecision::Issue(events) => {
                let Some(approval) = state.flow().and_then(|f| f.approval.clone()) else { return Err(invalid()) };
                check_account_usable(ctx.log(), &approval.did).await?;
                if !append(ctx, &request_id, version, &events).await? {
                    continue; // another node consumed it first: decide again (→ replayed)
                }
                return Ok(mint(ctx, &approval, x.client_id, x.dpop_jkt, &token_id, &refresh, now_secs));
            }
        }
    }
    Err(invalid())
}
