//! Records over XRPC: `com.atproto.repo.{createRecord, putRecord, deleteRecord, applyWrites}`
//! (access token; the repo must be the caller's DID or handle) and the public `getRecord` and
//! `listRecords`, `describeRepo`. Bodies and params arrive checked against the lexicon and typed
//! (`Input<…>`, `Params<…>`; JSON limit 1,000,000 bytes as the reference), calls `commands`,
//! renders results in input order.


use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use domain::cbor::Cid;
use domain::repo::{Write, WriteResult};

use crate::xrpc::prelude::*;

/// The reference's JSON limit for record writes.
pub const RECORD_JSON_LIMIT: usize = 1_000_000;

fn bad(m: impl Into<String>) -> XrpcError {
    XrpcError::invalid_request(m)
}

fn cid(s: &str, k: &str) -> Result<Cid, XrpcError> {
    Cid::try_from(s).map_err(|_| bad(format!("Input/{k} must be a cid string")))
}

fn opt_cid(s: Option<&str>, k: &str) -> Result<Option<Cid>, XrpcError> {
    s.map(|s| cid(s, k)).transpose()
}

fn record(v: &Value, k: &str) -> Result<domain::cbor::Ipld, XrpcError> {
    if !v.is_object() {
        return Err(bad(format!("Input/{k} must be an object")));
    }
    domain::json::json_object_to_ipld(v).map_err(|e| bad(format!("Input/{k}: {e}")))
}

/// `Some(None)` for an explicit `null`, `None` when absent (with `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRecordInput {
    repo: String,
    collection: String,
    rkey: Option<String>,
    validate: Option<bool>,
    record: Value,
    swap_commit: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRecordInput {
    repo: String,
    collection: String,
    rkey: String,
    validate: Option<bool>,
    record: Value,
    /// Absent = no condition, `null` = must not exist, a CID = must be that.
    #[serde(default, deserialize_with = "present")]
    swap_record: Option<Option<String>>,
    swap_commit: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRecordInput {
    repo: String,
    collection: String,
    rkey: String,
    swap_record: Option<String>,
    swap_commit: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyWritesInput {
    repo: String,
    validate: Option<bool>,
    writes: Vec<WriteOp>,
    swap_commit: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "$type")]
pub enum WriteOp {
    #[serde(rename = "com.atproto.repo.applyWrites#create")]
    Create { collection: String, rkey: Option<String>, value: Value },
    #[serde(rename = "com.atproto.repo.applyWrites#update")]
    Update { collection: String, rkey: String, value: Value },
    #[serde(rename = "com.atproto.repo.applyWrites#delete")]
    Delete { collection: String, rkey: String },
}

/// The DID of `repo` (a DID or a local handle), which must be the caller's.
async fn own_repo(state: &AppState, auth: &AccessAuth, repo: &str) -> Result<String, XrpcError> {
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

pub async fn create_record(
    State(state): State<AppState>,
    auth: AccessAuth,
    Input(i): Input<CreateRecordInput>,
) -> Result<Json<Value>, XrpcError> {
    let did = own_repo(&state, &auth, &i.repo).await?;
    let write = Write::Create { collection: i.collection, rkey: i.rkey, value: record(&i.record, "record")? };
    let a = run(&state, &did, vec![write], opt_cid(i.swap_commit.as_deref(), "swapCommit")?, i.validate).await?;
    write_json(&a)
}

pub async fn put_record(
    State(state): State<AppState>,
    auth: AccessAuth,
    Input(i): Input<PutRecordInput>,
) -> Result<Json<Value>, XrpcError> {
    let did = own_repo(&state, &auth, &i.repo).await?;
    let swap_record = match &i.swap_record {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => Some(Some(cid(s, "swapRecord")?)),
    };
    let write = Write::Update { collection: i.collection, rkey: i.rkey, value: record(&i.record, "record")?, swap_record };
    let a = run(&state, &did, vec![write], opt_cid(i.swap_commit.as_deref(), "swapCommit")?, i.validate).await?;
    write_json(&a)
}

pub async fn delete_record(
    State(state): State<AppState>,
    auth: AccessAuth,
    Input(i): Input<DeleteRecordInput>,
) -> Result<Json<Value>, XrpcError> {
    let did = own_repo(&state, &auth, &i.repo).await?;
    let write = Write::Delete {
        collection: i.collection,
        rkey: i.rkey,
        swap_record: opt_cid(i.swap_record.as_deref(), "swapRecord")?,
    };
    let a = run(&state, &did, vec![write], opt_cid(i.swap_commit.as_deref(), "swapCommit")?, None).await?;
    Ok(Json(if a.committed { json!({ "commit": commit_json(&a) }) } else { json!({}) }))
}

pub async fn apply_writes(
    State(state): State<AppState>,
    auth: AccessAuth,
    Input(i): Input<ApplyWritesInput>,
) -> Result<Json<Value>, XrpcError> {
    let did = own_repo(&state, &auth, &i.repo).await?;
    if i.writes.len() > domain::repo::MAX_WRITES {
        return Err(bad(format!("Too many writes. Max: {}", domain::repo::MAX_WRITES)));
    }
    let mut writes = Vec::with_capacity(i.writes.len());
    for w in &i.writes {
        writes.push(match w {
            WriteOp::Create { collection, rkey, value } => {
                Write::Create { collection: collection.clone(), rkey: rkey.clone(), value: record(value, "value")? }
            }
            WriteOp::Update { collection, rkey, value } => Write::Update {
                collection: collection.clone(),
                rkey: rkey.clone(),
                value: record(value, "value")?,
                swap_record: None,
            },
            WriteOp::Delete { collection, rkey } => {
                Write::Delete { collection: collection.clone(), rkey: rkey.clone(), swap_record: None }
            }
        });
    }
    let a = run(&state, &did, writes, opt_cid(i.swap_commit.as_deref(), "swapCommit")?, i.validate).await?;
    let results: Vec<Value> = a
        .results
        .iter()
        .zip(&a.validation)
        .zip(&i.writes)
        .map(|((r, v), w)| {
            let kind = match w {
                WriteOp::Delete { .. } => return json!({ "$type": "com.atproto.repo.applyWrites#deleteResult" }),
                WriteOp::Create { .. } => "createResult",
                WriteOp::Update { .. } => "updateResult",
            };
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

async fn public_repo(state: &AppState, repo: &str) -> Result<String, XrpcError> {
    resolve(state, repo).await?.ok_or_else(|| bad(format!("Could not find repo: {repo}")))
}

#[derive(Deserialize)]
pub struct GetRecordParams {
    repo: String,
    collection: String,
    rkey: String,
    cid: Option<String>,
}

pub async fn get_record(State(state): State<AppState>, Params(p): Params<GetRecordParams>) -> Result<Json<Value>, XrpcError> {
    let (repo, collection, rkey, cid) = (p.repo.as_str(), p.collection.as_str(), p.rkey.as_str(), p.cid.as_deref());
    let did = public_repo(&state, repo).await?;
    let ctx = ctx(&state)?;
    let r = commands::get_record(&ctx, &did, collection, rkey, cid).await.map_err(command_error)?;
    Ok(Json(json!({
        "uri": format!("at://{did}/{collection}/{}", r.rkey),
        "cid": r.cid,
        "value": domain::json::ipld_to_json(&r.value),
    })))
}

#[derive(Deserialize)]
pub struct ListRecordsParams {
    repo: String,
    collection: String,
    /// 1–100, default 50 (the lexicon's).
    limit: i64,
    cursor: Option<String>,
    #[serde(default)]
    reverse: bool,
}

pub async fn list_records(State(state): State<AppState>, Params(p): Params<ListRecordsParams>) -> Result<Json<Value>, XrpcError> {
    let (repo, collection, limit, reverse, cursor) = (p.repo.as_str(), p.collection.as_str(), p.limit, p.reverse, p.cursor.as_deref());
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

#[derive(Deserialize)]
pub struct RepoParams {
    repo: String,
}

pub async fn describe_repo(State(state): State<AppState>, Params(p): Params<RepoParams>) -> Result<Json<Value>, XrpcError> {
    let repo = p.repo.as_str();
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
