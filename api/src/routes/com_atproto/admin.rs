//! Admin account XRPC (HTTP Basic `admin:<PDS_ADMIN_PASSWORD>`): `com.atproto.admin.{getAccountInfo,
//! getAccountInfos, getSubjectStatus, updateSubjectStatus, updateAccountPassword, updateAccountHandle, deleteAccount}`. Subjects are
//! `com.atproto.admin.defs#repoRef` (`{did}`); a takedown emits `#account`. Parses, calls
//! `commands`, renders; never answers 500 for bad input.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use commands::AdminAccountInfo;

use crate::xrpc::prelude::*;
use crate::event_json::rfc3339;

const REPO_REF: &str = "com.atproto.admin.defs#repoRef";

fn not_found() -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "AccountNotFound", "Account not found")
}

fn info_json(a: &AdminAccountInfo, invited_by: Option<&commands::InviteView>) -> Value {
    let mut out = json!({
        "did": a.did,
        "handle": a.handle,
        "email": a.email,
        "indexedAt": rfc3339(a.indexed_at),
        "invitesDisabled": a.invites_disabled,
    });
    if let Some(at) = a.email_confirmed_at {
        out["emailConfirmedAt"] = rfc3339(at);
    }
    if let Some(at) = a.deactivated_at {
        out["deactivatedAt"] = rfc3339(at);
    }
    if let Some(code) = invited_by {
        out["invitedBy"] = crate::views::invite_code(code);
    }
    out
}

fn did_param(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<String, XrpcError> {
    let Query(p) = q.map_err(|e| XrpcError::invalid_request(format!("invalid query string: {e}")))?;
    let did = p.get("did").ok_or_else(|| XrpcError::invalid_request("Error: Params must have the property \"did\""))?;
    check_did(did)?;
    Ok(did.clone())
}

#[derive(Deserialize)]
pub struct DidParams {
    did: String,
}

pub async fn get_account_info(State(state): State<AppState>, Params(p): Params<DidParams>) -> Result<Json<Value>, XrpcError> {
    let ctx = ctx(&state)?;
    let info = commands::admin_account_info(&ctx, &p.did).await.map_err(command_error)?.ok_or_else(not_found)?;
    Ok(Json(info_view(&state, &info).await?))
}

#[derive(Deserialize)]
pub struct DidsParams {
    dids: Vec<String>,
}

/// `dids` repeated in the query string (`?dids=a&dids=b`); unknown DIDs are left out.
pub async fn get_account_infos(State(state): State<AppState>, Params(p): Params<DidsParams>) -> Result<Json<Value>, XrpcError> {
    let ctx = ctx(&state)?;
    let mut infos = Vec::new();
    for did in &p.dids {
        if let Some(info) = commands::admin_account_info(&ctx, did).await.map_err(command_error)? {
            infos.push(info_view(&state, &info).await?);
        }
    }
    Ok(Json(json!({ "infos": infos })))
}

async fn info_view(state: &AppState, info: &AdminAccountInfo) -> Result<Value, XrpcError> {
    let invited_by = match &info.invite_code {
        Some(code) => commands::invite_code_view(&state.log, code).await.map_err(command_error)?,
        None => None,
    };
    Ok(info_json(info, invited_by.as_ref()))
}

pub async fn get_subject_status(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    if let Ok(Query(p)) = &q {
        if p.contains_key("blob") {
            return self::blob_subject_status(&state, p).await;
        }
    }
    let did = did_param(q)?;
    let ctx = ctx(&state)?;
    let info = commands::admin_account_info(&ctx, &did)
        .await
        .map_err(command_error)?
        .ok_or_else(|| XrpcError::new(StatusCode::BAD_REQUEST, "NotFound", "Subject not found"))?;
    let takedown = match &info.takedown {
        Some(reference) => {
            let mut t = json!({ "applied": true });
            if let Some(r) = reference {
                t["ref"] = json!(r);
            }
            t
        }
        None => json!({ "applied": false }),
    };
    Ok(Json(json!({
        "subject": { "$type": REPO_REF, "did": info.did },
        "takedown": takedown,
        "deactivated": { "applied": info.deactivated_at.is_some() },
    })))
}

#[derive(Deserialize)]
struct StatusAttr {
    applied: bool,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

#[derive(Deserialize)]
struct UpdateSubjectStatusBody {
    subject: Value,
    takedown: Option<StatusAttr>,
    deactivated: Option<StatusAttr>,
}

pub async fn update_subject_status(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<Json<Value>, XrpcError> {
    let b: UpdateSubjectStatusBody = body(&bytes)?;
    let kind = b.subject.get("$type").and_then(Value::as_str);
    if kind == Some(self::BLOB_REF) {
        let whole: Value = body(&bytes)?;
        return self::update_blob_subject_status(&state, &whole).await;
    }
    if kind != Some(REPO_REF) {
        return Err(XrpcError::invalid_request(format!("Invalid subject: only {REPO_REF} is supported")));
    }
    let Some(did) = b.subject.get("did").and_then(Value::as_str).filter(|d| domain::syntax::is_valid_did(d)) else {
        return Err(XrpcError::invalid_request("subject.did must be a valid did"));
    };
    let ctx = ctx(&state)?;
    if let Some(t) = &b.takedown {
        commands::admin_update_takedown(&ctx, did, t.applied, t.reference.clone())
            .await
            .map_err(admin_error)?;
    }
    if let Some(d) = &b.deactivated {
        commands::admin_update_deactivated(&ctx, did, d.applied).await.map_err(admin_error)?;
    }
    let mut out = json!({ "subject": b.subject });
    if let Some(t) = &b.takedown {
        let mut tj = json!({ "applied": t.applied });
        if let Some(r) = &t.reference {
            tj["ref"] = json!(r);
        }
        out["takedown"] = tj;
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct UpdatePasswordBody {
    did: String,
    password: String,
}

pub async fn update_account_password(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<StatusCode, XrpcError> {
    let b: UpdatePasswordBody = body(&bytes)?;
    check_did(&b.did)?;
    let ctx = ctx(&state)?;
    commands::admin_update_account_password(&ctx, &b.did, b.password).await.map_err(admin_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct DeleteAccountBody {
    did: String,
}

/// Erasure: the tombstone `#account{deleted}` stays, every earlier event of the DID goes.
pub async fn delete_account(State(state): State<AppState>, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: DeleteAccountBody = body(&bytes)?;
    check_did(&b.did)?;
    let ctx = ctx(&state)?;
    commands::admin_delete_account(&ctx, &b.did).await.map_err(admin_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct UpdateHandleBody {
    did: String,
    handle: String,
}

/// The DID document first (PLC), then `#identity{handle}`.
pub async fn update_account_handle(
    State(state): State<AppState>,
    bytes: Bytes,
) -> Result<StatusCode, XrpcError> {
    let b: UpdateHandleBody = body(&bytes)?;
    check_did(&b.did)?;
    let ctx = ctx(&state)?;
    commands::admin_update_account_handle(&ctx, &b.did, &b.handle).await.map_err(admin_error)?;
    Ok(StatusCode::OK)
}

/// The admin endpoints' error mapping: an unknown account is the reference's `AccountNotFound`.
fn admin_error(e: commands::CommandError) -> XrpcError {
    match e {
        commands::CommandError::AccountNotFound => not_found(),
        e => command_error(e),
    }
}

fn check_did(did: &str) -> Result<(), XrpcError> {
    if domain::syntax::is_valid_did(did) {
        Ok(())
    } else {
        Err(XrpcError::invalid_request("did must be a valid did"))
    }
}

fn takedown_json(reference: &Option<String>) -> Value {
    match reference {
        Some(r) => json!({ "applied": true, "ref": r }),
        None => json!({ "applied": false }),
    }
}

/// `getSubjectStatus?did=…&blob=…` (admin auth already checked).
pub(crate) async fn blob_subject_status(state: &AppState, p: &HashMap<String, String>) -> Result<Json<Value>, XrpcError> {
    let cid = cid_param(p, "blob")?;
    let Some(did) = p.get("did") else {
        return Err(bad("Must provide a did to request blob state"));
    };
    let ctx = ctx(state)?;
    let status = commands::update_blob_takedown::blob_takedown_status(&ctx, did, cid).await.map_err(command_error)?;
    let Some(reference) = status else {
        return Err(XrpcError::new(StatusCode::BAD_REQUEST, "NotFound", "Subject not found"));
    };
    Ok(Json(json!({
        "subject": { "$type": BLOB_REF, "did": did, "cid": cid },
        "takedown": takedown_json(&reference),
    })))
}

/// `updateSubjectStatus` with a `#repoBlobRef` subject (admin auth already checked).
pub(crate) async fn update_blob_subject_status(state: &AppState, body: &Value) -> Result<Json<Value>, XrpcError> {
    let subject = body.get("subject").cloned().unwrap_or(Value::Null);
    let did = subject.get("did").and_then(Value::as_str).filter(|d| domain::syntax::is_valid_did(d));
    let Some(did) = did else { return Err(bad("subject.did must be a valid did")) };
    let cid = subject.get("cid").and_then(Value::as_str).filter(|c| domain::syntax::is_valid_cid(c));
    let Some(cid) = cid else { return Err(bad("subject.cid must be a cid string")) };
    let ctx = ctx(state)?;
    let mut out = json!({ "subject": subject });
    if let Some(t) = body.get("takedown").filter(|t| !t.is_null()) {
        let Some(applied) = t.get("applied").and_then(Value::as_bool) else {
            return Err(bad("takedown.applied must be a boolean"));
        };
        let reference = t.get("ref").and_then(Value::as_str).map(str::to_owned);
        commands::update_blob_takedown::update_blob_takedown(&ctx, did, cid, applied, reference)
            .await
            .map_err(command_error)?;
        let now = commands::update_blob_takedown::blob_takedown_status(&ctx, did, cid).await.map_err(command_error)?;
        out["takedown"] = takedown_json(&now.flatten());
    }
    Ok(Json(out))
}

pub const BLOB_REF: &str = "com.atproto.admin.defs#repoBlobRef";

fn bad(m: impl Into<String>) -> XrpcError {
    XrpcError::invalid_request(m)
}

fn cid_param<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, XrpcError> {
    let cid = p
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| bad(format!("Error: Params must have the property \"{name}\"")))?;
    if !domain::syntax::is_valid_cid(cid) {
        return Err(bad(format!("Error: {name} must be a cid string")));
    }
    Ok(cid)
}

#[derive(Deserialize)]
pub struct GetInviteCodesParams {
    /// `recent` (default) or `usage`; `knownValues`, so anything else is the handler's to refuse.
    sort: String,
    limit: i64,
    cursor: Option<String>,
}

/// `getInviteCodes`: every code, newest (`recent`) or most used (`usage`) first.
pub async fn get_invite_codes(State(state): State<AppState>, Params(p): Params<GetInviteCodesParams>) -> Result<Json<Value>, XrpcError> {
    use projections::invites::CodeOrder;
    let order = match p.sort.as_str() {
        "recent" => CodeOrder::Recent,
        "usage" => CodeOrder::Usage,
        other => return Err(XrpcError::invalid_request(format!("unknown sort method: {other}"))),
    };
    let ctx = ctx(&state)?;
    let (codes, cursor) =
        commands::get_invite_codes::get_invite_codes(&ctx, order, p.cursor.as_deref(), p.limit).await.map_err(command_error)?;
    let mut out = json!({ "codes": codes.iter().map(crate::views::invite_code).collect::<Vec<_>>() });
    if let Some(c) = cursor {
        out["cursor"] = json!(c);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct DisableInviteCodesInput {
    #[serde(default)]
    codes: Vec<String>,
    #[serde(default)]
    accounts: Vec<String>,
}

/// `disableInviteCodes`: the named codes and every code made for the named accounts.
pub async fn disable_invite_codes(State(state): State<AppState>, Input(i): Input<DisableInviteCodesInput>) -> Result<StatusCode, XrpcError> {
    let ctx = ctx(&state)?;
    commands::disable_invite_codes::disable_invite_codes(&ctx, &i.codes, &i.accounts).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
pub struct AccountInput {
    account: String,
}

pub async fn disable_account_invites(State(state): State<AppState>, Input(i): Input<AccountInput>) -> Result<StatusCode, XrpcError> {
    set_invites_disabled(&state, &i.account, true).await
}

pub async fn enable_account_invites(State(state): State<AppState>, Input(i): Input<AccountInput>) -> Result<StatusCode, XrpcError> {
    set_invites_disabled(&state, &i.account, false).await
}

async fn set_invites_disabled(state: &AppState, did: &str, disabled: bool) -> Result<StatusCode, XrpcError> {
    let ctx = ctx(state)?;
    commands::set_account_invites::set_account_invites_disabled(&ctx, did, disabled).await.map_err(admin_error)?;
    Ok(StatusCode::OK)
}
