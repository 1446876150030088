//! Records over XRPC: `com.atproto.repo.{createRecord, putRecord, deleteRecord, applyWrites}`
//! (access token; the repo must be the caller's DID or handle) and the public `getRecord` and
//! `listRecords`. Parses bodies by hand (malformed → `InvalidRequest`, never 500; JSON limit
//! 1,000,000 bytes as the reference), calls `commands`, renders results in input order.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use domain::cbor::Cid;
use domain::repo::{Write, WriteResult};

use crate::xrpc::prelude::*;

/// The reference's JSON limit for record writes.
pub const RECORD_JSON_LIMIT: usize = 1_000_000;

fn bad(m: impl Into<String>) -> XrpcError {
    XrpcError::invalid_request(m)
}

fn object(bytes: &Bytes) -> Result<Map<String, Value>, XrpcError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("Invalid request body: expected an object")),
        Err(e) => Err(bad(format!("Invalid request body: {e}"))),
    }
}

fn req_str<'a>(m: &'a Map<String, Value>, k: &str) -> Result<&'a str, XrpcError> {
    match m.get(k) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(format!("Input/{k} must be a string"))),
        None => Err(bad(format!("Input must have the property \"{k}\""))),
    }
}

fn opt_str<'a>(m: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, XrpcError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("Input/{k} must be a string"))),
    }
}

fn opt_bool(m: &Map<String, Value>, k: &str) -> Result<Option<bool>, XrpcError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("Input/{k} must be a boolean"))),
    }
}

fn cid(s: &str, k: &str) -> Result<Cid, XrpcError> {
    if !domain::syntax::is_valid_cid(s) {
        return Err(bad(format!("Input/{k} must be a cid string")));
    }
    Cid::try_from(s).map_err(|_| bad(format!("Input/{k} must be a cid string")))
}

fn opt_cid(m: &Map<String, Value>, k: &str) -> Result<Option<Cid>, XrpcError> {
    opt_str(m, k)?.map(|s| cid(s, k)).transpose()
}

fn record(m: &Map<String, Value>, k: &str) -> Result<domain::cbor::Ipld, XrpcError> {
    let v = m.get(k).ok_or_else(|| bad(format!("Input must have the property \"{k}\"")))?;
    if !v.is_object() {
        return Err(bad(format!("Input/{k} must be an object")));
    }
    domain::json::json_object_to_ipld(v).map_err(|e| bad(format!("Input/{k}: {e}")))
}

/// The DID of `repo` (a DID or a local handle), which must be the caller's.
async fn own_repo(state: &AppState, auth: &AccessAuth, repo: &str) -> Result<String, XrpcError> {
    if !domain::syntax::is_valid_at_identifier(repo) {
        return Err(bad("Input/repo must be a valid did or a handle"));
    }
    let did = resolve(state, repo).await?;
    match did {
        Some(did) if did == auth.did => Ok(did),
        Some(_) => Err(XrpcError::new(StatusCode::UNAUTHORIZED, "AuthenticationRequired", "Authentication Required")),
        None => Err(bad(format!("Could not find repo: {repo}"))),
    }
}

async fn resolve(state: &AppState, repo: &str) -> Result<Option<String>, XrpcError> {
    if repo.starts_with("did:") {
        return Ok(Some(repo.to_owned()));
    }
    projections::accounts::did_by_handle(&state.log, &repo.to_ascii_lowercase()).await.map_err(|e| XrpcError::internal(&e))
}

fn commit_json(a: &commands::AppliedWrites) -> Value {
    json!({ "cid": a.commit.to_string(), "rev": a.rev })
}

fn status_str(s: Option<commands::ValidationStatus>) -> Option<&'static str> {
    s.map(|s| match s {
        commands::ValidationStatus::Valid => "valid",
        commands::ValidationStatus::Unknown => "unknown",
    })
}

async fn run(
    state: &AppState,
    did: &str,
    writes: Vec<Write>,
    swap_commit: Option<Cid>,
    validate: Option<bool>,
) -> Result<commands::AppliedWrites, XrpcError> {
    let ctx = ctx(state)?;
    commands::apply_writes(&ctx, did, writes, swap_commit, validate).await.map_err(command_error)
}

fn one(a: &commands::AppliedWrites) -> Result<(&WriteResult, Option<&'static str>), XrpcError> {
    let r = a.results.first().ok_or_else(|| XrpcError::internal(&"a write without a result"))?;
    Ok((r, status_str(a.validation.first().copied().flatten())))
}

fn write_json(a: &commands::AppliedWrites) -> Result<Json<Value>, XrpcError> {
    let (r, status) = one(a)?;
    let mut out = Map::new();
    out.insert("uri".into(), json!(r.uri));
    out.insert("cid".into(), json!(r.cid.map(|c| c.to_string())));
    if a.committed {
        out.insert("commit".into(), commit_json(a));
    }
    if let Some(s) = status {
        out.insert("validationStatus".into(), json!(s));
    }
    Ok(Json(Value::Object(out)))
}

pub async fn create_record(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    let m = object(&bytes)?;
    let did = own_repo(&state, &auth, req_str(&m, "repo")?).await?;
    let write = Write::Create {
        collection: req_str(&m, "collection")?.to_owned(),
        rkey: opt_str(&m, "rkey")?.map(str::to_owned),
        value: record(&m, "record")?,
    };
    let a = run(&state, &did, vec![write], opt_cid(&m, "swapCommit")?, opt_bool(&m, "validate")?).await?;
    write_json(&a)
}

pub async fn put_record(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    let m = object(&bytes)?;
    let did = own_repo(&state, &auth, req_str(&m, "repo")?).await?;
    // swapRecord: absent = no condition, null = must not exist, a CID = must be that.
    let swap_record = match m.get("swapRecord") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(cid(s, "swapRecord")?)),
        Some(_) => return Err(bad("Input/swapRecord must be a cid string")),
    };
    let write = Write::Update {
        collection: req_str(&m, "collection")?.to_owned(),
        rkey: req_str(&m, "rkey")?.to_owned(),
        value: record(&m, "record")?,
        swap_record,
    };
    let a = run(&state, &did, vec![write], opt_cid(&m, "swapCommit")?, opt_bool(&m, "validate")?).await?;
    write_json(&a)
}

pub async fn delete_record(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    let m = object(&bytes)?;
    let did = own_repo(&state, &auth, req_str(&m, "repo")?).await?;
    let write = Write::Delete {
        collection: req_str(&m, "collection")?.to_owned(),
        rkey: req_str(&m, "rkey")?.to_owned(),
        swap_record: opt_cid(&m, "swapRecord")?,
    };
    let a = run(&state, &did, vec![write], opt_cid(&m, "swapCommit")?, None).await?;
    Ok(Json(if a.committed { json!({ "commit": commit_json(&a) }) } else { json!({}) }))
}

const CREATE: &str = "com.atproto.repo.applyWrites#create";
const UPDATE: &str = "com.atproto.repo.applyWrites#update";
const DELETE: &str = "com.atproto.repo.applyWrites#delete";

pub async fn apply_writes(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    let m = object(&bytes)?;
    let did = own_repo(&state, &auth, req_str(&m, "repo")?).await?;
    let Some(Value::Array(items)) = m.get("writes") else {
        return Err(bad("Input must have the property \"writes\" (an array)"));
    };
    if items.len() > domain::repo::MAX_WRITES {
        return Err(bad(format!("Too many writes. Max: {}", domain::repo::MAX_WRITES)));
    }
    let mut writes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(w) = item else {
            return Err(bad(format!("Input/writes/{i} must be an object")));
        };
        let collection = req_str(w, "collection")?.to_owned();
        writes.push(match w.get("$type").and_then(Value::as_str) {
            Some(CREATE) => {
                Write::Create { collection, rkey: opt_str(w, "rkey")?.map(str::to_owned), value: record(w, "value")? }
            }
            Some(UPDATE) => Write::Update {
                collection,
                rkey: req_str(w, "rkey")?.to_owned(),
                value: record(w, "value")?,
                swap_record: None,
            },
            Some(DELETE) => Write::Delete { collection, rkey: req_str(w, "rkey")?.to_owned(), swap_record: None },
            _ => return Err(bad(format!("Input/writes/{i} must be an object which includes the \"$type\" property"))),
        });
    }
    let a = run(&state, &did, writes, opt_cid(&m, "swapCommit")?, opt_bool(&m, "validate")?).await?;
    let results: Vec<Value> = a
        .results
        .iter()
        .zip(&a.validation)
        .zip(items)
        .map(|((r, v), item)| {
            let ty = item.get("$type").and_then(Value::as_str).unwrap_or_default();
            if ty == DELETE {
                return json!({ "$type": "com.atproto.repo.applyWrites#deleteResult" });
            }
            let kind = if ty == CREATE { "createResult" } else { "updateResult" };
            let mut o = Map::new();
            o.insert("$type".into(), json!(format!("com.atproto.repo.applyWrites#{kind}")));
            o.insert("uri".into(), json!(r.uri));
            o.insert("cid".into(), json!(r.cid.map(|c| c.to_string())));
            if let Some(s) = status_str(*v) {
                o.insert("validationStatus".into(), json!(s));
            }
            Value::Object(o)
        })
        .collect();
    let mut out = Map::new();
    if a.committed {
        out.insert("commit".into(), commit_json(&a));
    }
    out.insert("results".into(), Value::Array(results));
    Ok(Json(Value::Object(out)))
}

fn required<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, XrpcError> {
    p.get(name).map(String::as_str).ok_or_else(|| bad(format!("Error: Params must have the property \"{name}\"")))
}

async fn public_repo(state: &AppState, repo: &str) -> Result<String, XrpcError> {
    if !domain::syntax::is_valid_at_identifier(repo) {
        return Err(bad("Error: repo must be a valid did or a handle"));
    }
    resolve(state, repo).await?.ok_or_else(|| bad(format!("Could not find repo: {repo}")))
}

pub async fn get_record(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let repo = required(&p, "repo")?;
    let collection = required(&p, "collection")?;
    let rkey = required(&p, "rkey")?;
    if !domain::syntax::is_valid_nsid(collection) {
        return Err(bad("Error: collection must be a valid nsid"));
    }
    let cid = p.get("cid").map(String::as_str);
    if let Some(c) = cid {
        if !domain::syntax::is_valid_cid(c) {
            return Err(bad("Error: cid must be a cid string"));
        }
    }
    let did = public_repo(&state, repo).await?;
    let ctx = ctx(&state)?;
    let r = commands::get_record(&ctx, &did, collection, rkey, cid).await.map_err(command_error)?;
    Ok(Json(json!({
        "uri": format!("at://{did}/{collection}/{}", r.rkey),
        "cid": r.cid,
        "value": domain::json::ipld_to_json(&r.value),
    })))
}

pub async fn list_records(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let repo = required(&p, "repo")?;
    let collection = required(&p, "collection")?;
    if !domain::syntax::is_valid_nsid(collection) {
        return Err(bad("Error: collection must be a valid nsid"));
    }
    let limit = match p.get("limit") {
        None => 50,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => n,
            Ok(_) => return Err(bad("Error: limit must be between 1 and 100")),
            Err(_) => return Err(bad("Error: limit must be an integer")),
        },
    };
    let reverse = match p.get("reverse").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(bad("Error: reverse must be a boolean")),
    };
    let cursor = p.get("cursor").map(String::as_str);
    let did = public_repo(&state, repo).await?;
    let ctx = ctx(&state)?;
    let rows = commands::list_records(&ctx, &did, collection, limit, cursor, reverse).await.map_err(command_error)?;
    let cursor = if rows.len() as i64 == limit { rows.last().map(|r| r.rkey.clone()) } else { None };
    let records: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "uri": format!("at://{did}/{collection}/{}", r.rkey),
                "cid": r.cid,
                "value": domain::json::ipld_to_json(&r.value),
            })
        })
        .collect();
    let mut out = Map::new();
    if let Some(c) = cursor {
        out.insert("cursor".into(), json!(c));
    }
    out.insert("records".into(), Value::Array(records));
    Ok(Json(Value::Object(out)))
}

pub async fn describe_repo(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let repo = required(&p, "repo")?;
    if !domain::syntax::is_valid_at_identifier(repo) {
        return Err(XrpcError::invalid_request("repo must be a handle or a DID"));
    }
    let not_found = || XrpcError::invalid_request(format!("Could not find user: {repo}"));
    let did = if repo.starts_with("did:") {
        repo.to_owned()
    } else {
        projections::accounts::did_by_handle(&state.log, repo)
            .await
            .map_err(|e| XrpcError::internal(&e))?
            .ok_or_else(not_found)?
    };
    let ctx = ctx(&state)?;
    let account = commands::load_account_profile(&state.log, &did).await.map_err(command_error)?;
    let account = account.live().ok_or_else(not_found)?;
    let view = commands::account_view(&ctx, account);
    let collections = projections::records::collections(&state.log, &did).await.map_err(|e| XrpcError::internal(&e))?;
    Ok(Json(json!({
        "handle": view.handle,
        "did": view.did,
        "didDoc": view.did_doc,
        "collections": collections,
        "handleIsCorrect": true,
    })))
}
