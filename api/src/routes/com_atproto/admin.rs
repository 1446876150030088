//! Admin account XRPC (HTTP Basic `admin:<PDS_ADMIN_PASSWORD>`): `com.atproto.admin.{getAccountInfo,
//! getAccountInfos, getSubjectStatus, updateSubjectStatus, updateAccountPassword, updateAccountHandle, deleteAccount}`. Subjects are
//! `com.atproto.admin.defs#repoRef` (`{did}`); a takedown emits `#account`. Parses, calls
//! `commands`, renders; never answers 500 for bad input.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
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

fn info_json(a: &AdminAccountInfo) -> Value {
    let mut out = json!({
        "did": a.did,
        "handle": a.handle,
        "email": a.email,
        "indexedAt": rfc3339(a.indexed_at),
        "invitesDisabled": false,
    });
    if let Some(at) = a.email_confirmed_at {
        out["emailConfirmedAt"] = rfc3339(at);
    }
    if let Some(at) = a.deactivated_at {
        out["deactivatedAt"] = rfc3339(at);
    }
    if let Some(code) = &a.invite_code {
        out["invitedBy"] = json!({ "code": code });
    }
    out
}

fn did_param(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<String, XrpcError> {
    let Query(p) = q.map_err(|e| XrpcError::invalid_request(format!("invalid query string: {e}")))?;
    let did = p.get("did").ok_or_else(|| XrpcError::invalid_request("Error: Params must have the property \"did\""))?;
    check_did(did)?;
    Ok(did.clone())
}

pub async fn get_account_info(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let did = did_param(q)?;
    let ctx = ctx(&state)?;
    let info = commands::admin_account_info(&ctx, &did).await.map_err(command_error)?.ok_or_else(not_found)?;
    Ok(Json(info_json(&info)))
}

/// `dids` repeated in the query string (`?dids=a&dids=b`); unknown DIDs are left out.
pub async fn get_account_infos(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, XrpcError> {
    let mut dids = Vec::new();
    for pair in raw.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "dids" {
            let v = percent_decode(v).ok_or_else(|| XrpcError::invalid_request("invalid query string"))?;
            if !domain::syntax::is_valid_did(&v) {
                return Err(XrpcError::invalid_request("dids must be valid dids"));
            }
            dids.push(v);
        }
    }
    if dids.is_empty() {
        return Err(XrpcError::invalid_request("Error: Params must have the property \"dids\""));
    }
    let ctx = ctx(&state)?;
    let mut infos = Vec::new();
    for did in &dids {
        if let Some(info) = commands::admin_account_info(&ctx, did).await.map_err(command_error)? {
            infos.push(info_json(&info));
        }
    }
    Ok(Json(json!({ "infos": infos })))
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space, `%XX` a byte).
fn percent_decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
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
