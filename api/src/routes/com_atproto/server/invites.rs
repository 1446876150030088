//! Invite codes over XRPC: `com.atproto.server.createInviteCode` / `createInviteCodes` (admin,
//! HTTP Basic `admin:<PDS_ADMIN_PASSWORD>`) and `getAccountInviteCodes` (the account's
//! full-access token). Parses, calls `commands`, renders; never answers 500 for bad input.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;
use crate::event_json::rfc3339;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInviteCodeBody {
    use_count: i64,
    for_account: Option<String>,
}

pub async fn create_invite_code(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Json<Value>, XrpcError> {
    let b: CreateInviteCodeBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    let accounts: Vec<String> = b.for_account.into_iter().collect();
    let made = commands::create_invite_codes(&ctx, &state.config.hostname, 1, b.use_count, &accounts)
        .await
        .map_err(command_error)?;
    let code = made.into_iter().flat_map(|a| a.codes).next().ok_or_else(|| XrpcError::internal(&"no code made"))?;
    Ok(Json(json!({ "code": code })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInviteCodesBody {
    #[serde(default = "one")]
    code_count: i64,
    use_count: i64,
    #[serde(default)]
    for_accounts: Vec<String>,
}

fn one() -> i64 {
    1
}

pub async fn create_invite_codes(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Json<Value>, XrpcError> {
    let b: CreateInviteCodesBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    let made = commands::create_invite_codes(&ctx, &state.config.hostname, b.code_count, b.use_count, &b.for_accounts)
        .await
        .map_err(command_error)?;
    let codes: Vec<Value> = made.iter().map(|a| json!({ "account": a.account, "codes": a.codes })).collect();
    Ok(Json(json!({ "codes": codes })))
}

fn flag(p: &HashMap<String, String>, name: &str, default: bool) -> Result<bool, XrpcError> {
    match p.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(XrpcError::invalid_request(format!("{name} must be a boolean"))),
    }
}

pub async fn get_account_invite_codes(
    State(state): State<AppState>,
    auth: AccessAuth,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    // Full access only, as the reference (clients read `Bad token scope` as "not with an app password").
    let p = params(q)?;
    let include_used = flag(&p, "includeUsed", true)?;
    // `createAvailable` is accepted; this server does not hand out codes to accounts by itself.
    flag(&p, "createAvailable", true)?;
    let ctx = ctx(&state)?;
    let codes = commands::get_account_invite_codes(&ctx, &auth.did, include_used).await.map_err(command_error)?;
    let codes: Vec<Value> = codes
        .iter()
        .map(|c| {
            let uses: Vec<Value> =
                c.uses.iter().map(|(did, at)| json!({ "usedBy": did, "usedAt": rfc3339(*at) })).collect();
            json!({
                "code": c.code,
                "available": c.available,
                "disabled": c.disabled,
                "forAccount": c.for_account,
                "createdBy": c.created_by,
                "createdAt": rfc3339(c.created_at),
                "uses": uses,
            })
        })
        .collect();
    Ok(Json(json!({ "codes": codes })))
}
