//! `com.atproto.sync.{getLatestCommit, getRepo, getRecord, getBlocks, listRepos, getRepoStatus,
//! getHead, getCheckout}`
//! (public, as the reference), over the `accounts` / `repo_roots` / `repo_blocks` read models
//! (`projections::sync_reads`). Availability as the reference's `assertRepoAvailability`:
//! unknown → `RepoNotFound`, taken down → `RepoTakendown`, deactivated → `RepoDeactivated`.
//!
//! `getRepo` streams its CAR: the header and commit block first, then the tree walked from the
//! head breadth-first, 500 nodes per query, each batch followed by its records (only blocks
//! reachable from the head; memory is the walk's frontier of CIDs, never the blocks).
//! With `since`: the stored blocks first stored by a later rev, in pages of 500 by CID (as the
//! reference's `repoRev > since`; the commit block always comes first). Deprecated `getHead` (`{root}`) and
//! `getCheckout` (= `getRepo` without `since`) are served for old clients.
//! `getRecord` reads only the key's path (nodes faulted in one by one, `commands::repo_tree`) and
//! returns the commit, the covering proof of the key (every node on its path, which proves
//! presence or absence) and the record block when present.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use serde_json::{json, Map, Value};

use domain::car;
use domain::cbor::Cid;
use commands::repo_tree::{self, RepoBlocks};
use domain::mst::{Mst, MstError};
use projections::sync_reads::{self, RepoHead};

use crate::xrpc::availability::{available, head};
use crate::xrpc::prelude::*;

const CAR_MIME: &str = "application/vnd.ipld.car";
const PAGE: i64 = 500;

fn bad(m: impl Into<String>) -> XrpcError {
    XrpcError::invalid_request(m)
}

fn internal(e: &dyn std::fmt::Display) -> XrpcError {
    XrpcError::internal(e)
}

type Params = Vec<(String, String)>;

fn params(q: Result<Query<Params>, QueryRejection>) -> Result<Params, XrpcError> {
    q.map(|Query(v)| v)
        .map_err(|e| bad(format!("invalid query string: {e}")))
}

fn single<'a>(p: &'a Params, name: &str) -> Result<Option<&'a str>, XrpcError> {
    let mut it = p.iter().filter(|(k, _)| k == name);
    let first = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        return Err(bad(format!("Error: {name} must be a single value")));
    }
    Ok(first)
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, XrpcError> {
    single(p, name)?.ok_or_else(|| bad(format!("Error: Params must have the property \"{name}\"")))
}

fn did_param(p: &Params) -> Result<String, XrpcError> {
    let did = required(p, "did")?;
    if !domain::syntax::is_valid_did(did) {
        return Err(bad("Error: did must be a valid did"));
    }
    Ok(did.to_owned())
}


fn status(h: &RepoHead) -> Option<&'static str> {
    if h.taken_down {
        Some("takendown")
    } else if h.deactivated {
        Some("deactivated")
    } else {
        None
    }
}

fn parse_cid(s: &str) -> Result<Cid, XrpcError> {
    if !domain::syntax::is_valid_cid(s) {
        return Err(bad(format!("Error: {s} is not a valid cid")));
    }
    Cid::try_from(s).map_err(|_| bad(format!("Error: {s} is not a valid cid")))
}

fn stored_cid(s: &str) -> Result<Cid, XrpcError> {
    Cid::try_from(s).map_err(|e| internal(&format!("stored CID {s}: {e}")))
}

fn car_response(body: Body) -> Response {
    ([(header::CONTENT_TYPE, CAR_MIME)], body).into_response()
}

pub async fn get_latest_commit(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let h = available(&state, &did).await?;
    Ok(Json(json!({ "cid": h.commit_cid, "rev": h.rev })))
}

/// Deprecated (`getLatestCommit` replaces it): `{root}` = the head commit CID.
pub async fn get_head(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let h = available(&state, &did).await?;
    Ok(Json(json!({ "root": h.commit_cid })))
}

pub async fn get_repo_status(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let h = head(&state, &did).await?;
    let mut out = Map::new();
    out.insert("did".into(), json!(h.did));
    out.insert("active".into(), json!(status(&h).is_none()));
    if let Some(s) = status(&h) {
        out.insert("status".into(), json!(s));
    }
    out.insert("rev".into(), json!(h.rev));
    Ok(Json(Value::Object(out)))
}

pub async fn list_repos(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let limit = match single(&p, "limit")? {
        None => PAGE,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            Ok(_) => return Err(bad("Error: limit must be between 1 and 1000")),
            Err(_) => return Err(bad("Error: limit must be an integer")),
        },
    };
    let cursor = match single(&p, "cursor")? {
        None => None,
        Some(c) => {
            let parsed = c
                .split_once("::")
                .and_then(|(t, d)| Some((t.parse::<i64>().ok()?, d)));
            match parsed {
                Some(v) => Some(v),
                None => return Err(bad("Error: malformed cursor")),
            }
        }
    };
    let rows = sync_reads::list_repos(&state.log, cursor, limit)
        .await
        .map_err(|e| internal(&e))?;
    let repos: Vec<Value> = rows
        .iter()
        .map(|h| {
            let mut m = Map::new();
            m.insert("did".into(), json!(h.did));
            m.insert("head".into(), json!(h.commit_cid));
            m.insert("rev".into(), json!(h.rev));
            m.insert("active".into(), json!(status(h).is_none()));
            if let Some(s) = status(h) {
                m.insert("status".into(), json!(s));
            }
            Value::Object(m)
        })
        .collect();
    let mut out = Map::new();
    if rows.len() as i64 == limit {
        if let Some(last) = rows.last() {
            out.insert(
                "cursor".into(),
                json!(format!("{}::{}", last.created_at, last.did)),
            );
        }
    }
    out.insert("repos".into(), Value::Array(repos));
    Ok(Json(Value::Object(out)))
}

/// The whole repo after the header and commit: the tree walked from `data` breadth-first, a batch
/// of up to `PAGE` nodes per step (one query), each batch followed by the records its entries
/// point at (queries of up to `PAGE`). Only blocks reachable from the head are sent — not the old
/// nodes and records `repo_blocks` still holds — and memory is the frontier's CIDs, not blocks.
fn walk_body(log: eventlog::EventLog, did: String, first: Vec<u8>, data: Cid) -> Body {
    let start = (Some(first), std::collections::VecDeque::from([data]));
    let body = stream::unfold(start, move |(first, mut queue)| {
        let log = log.clone();
        let did = did.clone();
        async move {
            if let Some(first) = first {
                return Some((Ok::<Bytes, std::io::Error>(Bytes::from(first)), (None, queue)));
            }
            if queue.is_empty() {
                return None;
            }
            let n = queue.len().min(PAGE as usize);
            let batch: Vec<Cid> = queue.drain(..n).collect();
            let fail = |e: String| {
                tracing::error!(did, "getRepo: {e}");
                Some((Err(std::io::Error::other(e)), (None, std::collections::VecDeque::new())))
            };
            let nodes = match fetch(&log, &did, &batch).await {
                Ok(n) => n,
                Err(e) => return fail(e),
            };
            let mut chunk = Vec::new();
            let mut records = Vec::new();
            for (cid, bytes) in &nodes {
                chunk.extend_from_slice(&car::encode_block(cid, bytes));
                match node_links(bytes) {
                    Ok((subtrees, values)) => {
                        queue.extend(subtrees);
                        records.extend(values);
                    }
                    Err(e) => return fail(format!("MST node {cid}: {e}")),
                }
            }
            records.sort();
            records.dedup();
            for page in records.chunks(PAGE as usize) {
                match fetch(&log, &did, page).await {
                    Ok(blocks) => {
                        for (cid, bytes) in &blocks {
                            chunk.extend_from_slice(&car::encode_block(cid, bytes));
                        }
                    }
                    Err(e) => return fail(e),
                }
            }
            Some((Ok(Bytes::from(chunk)), (None, queue)))
        }
    });
    Body::from_stream(body)
}

/// The blocks `cids` of `did`, in that order; a missing one is an error (the tree is corrupt).
async fn fetch(log: &eventlog::EventLog, did: &str, cids: &[Cid]) -> Result<Vec<(Cid, Vec<u8>)>, String> {
    let keys: Vec<String> = cids.iter().map(Cid::to_string).collect();
    let mut found: HashMap<String, Vec<u8>> =
        sync_reads::blocks_in(log, did, &keys).await.map_err(|e| e.to_string())?.into_iter().collect();
    cids.iter()
        .zip(keys)
        .map(|(c, k)| found.remove(&k).map(|b| (*c, b)).ok_or_else(|| format!("block {k} is not stored")))
        .collect()
}

/// An MST node's subtree links (`l`, each entry's `t`) and record links (each entry's `v`).
fn node_links(bytes: &[u8]) -> Result<(Vec<Cid>, Vec<Cid>), String> {
    use domain::cbor::Ipld;
    let Ipld::Map(node) = domain::cbor::decode(bytes).map_err(|e| e.to_string())? else {
        return Err("not a map".into());
    };
    let mut subtrees = Vec::new();
    let mut values = Vec::new();
    if let Some(Ipld::Link(l)) = node.get("l") {
        subtrees.push(*l);
    }
    let Some(Ipld::List(entries)) = node.get("e") else {
        return Err("no entry list".into());
    };
    for e in entries {
        let Ipld::Map(e) = e else { return Err("entry is not a map".into()) };
        match e.get("v") {
            Some(Ipld::Link(v)) => values.push(*v),
            _ => return Err("entry without a value link".into()),
        }
        if let Some(Ipld::Link(t)) = e.get("t") {
            subtrees.push(*t);
        }
    }
    Ok((subtrees, values))
}

/// Where the `getRepo?since` body stream is.
enum RepoStream {
    Start,
    After(String),
    Done,
}

pub async fn get_repo(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Response, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let since = match single(&p, "since")? {
        Some(since) if !domain::syntax::is_valid_tid(since) => {
            return Err(bad("Error: since must be a valid tid"))
        }
        since => since.map(str::to_owned),
    };
    repo_car(&state, did, since).await
}

/// Deprecated (`getRepo` replaces it): the whole repo as a CAR.
pub async fn get_checkout(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Response, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    repo_car(&state, did, None).await
}

/// The repo CAR, streamed: header and commit first, then pages of blocks (only those first
/// stored after `since`, if given).
async fn repo_car(state: &AppState, did: String, since: Option<String>) -> Result<Response, XrpcError> {
    let h = available(state, &did).await?;
    let commit = stored_cid(&h.commit_cid)?;
    let commit_bytes = sync_reads::block(&state.log, &did, &h.commit_cid)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| internal(&format!("commit block {} of {did} missing", h.commit_cid)))?;
    let mut first = car::encode_header(&[commit]);
    first.extend_from_slice(&car::encode_block(&commit, &commit_bytes));
    let Some(since) = since else {
        let data = stored_cid(&h.data_cid)?;
        return Ok(car_response(walk_body(state.log.clone(), did, first, data)));
    };
    let since = Some(since);
    let log = state.log.clone();
    let commit_str = h.commit_cid.clone();
    let body = stream::unfold(RepoStream::Start, move |st| {
        let log = log.clone();
        let did = did.clone();
        let commit_str = commit_str.clone();
        let first = first.clone();
        let since = since.clone();
        async move {
            let after = match st {
                RepoStream::Done => return None,
                RepoStream::Start => {
                    return Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(first)),
                        RepoStream::After(String::new()),
                    ))
                }
                RepoStream::After(a) => a,
            };
            let page = match sync_reads::blocks_page(&log, &did, &after, since.as_deref(), PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(%e, did, "getRepo: reading blocks");
                    return Some((Err(std::io::Error::other(e.to_string())), RepoStream::Done));
                }
            };
            let (last, _) = page.last()?;
            let next = if (page.len() as i64) < PAGE {
                RepoStream::Done
            } else {
                RepoStream::After(last.clone())
            };
            let mut chunk = Vec::new();
            for (cid, bytes) in &page {
                if *cid == commit_str {
                    continue;
                }
                match Cid::try_from(cid.as_str()) {
                    Ok(c) => chunk.extend_from_slice(&car::encode_block(&c, bytes)),
                    Err(e) => {
                        tracing::error!(%e, did, cid, "getRepo: stored CID");
                        return Some((Err(std::io::Error::other(e.to_string())), RepoStream::Done));
                    }
                }
            }
            Some((Ok(Bytes::from(chunk)), next))
        }
    });
    Ok(car_response(Body::from_stream(body)))
}

pub async fn get_blocks(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Response, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let cids: Vec<Cid> = p
        .iter()
        .filter(|(k, _)| k == "cids" || k == "cids[]")
        .map(|(_, v)| parse_cid(v))
        .collect::<Result<_, _>>()?;
    available(&state, &did).await?;
    let mut blocks = Vec::with_capacity(cids.len());
    let mut missing = Vec::new();
    for c in cids {
        match sync_reads::block(&state.log, &did, &c.to_string())
            .await
            .map_err(|e| internal(&e))?
        {
            Some(b) => blocks.push((c, b)),
            None => missing.push(c.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "BlockNotFound",
            format!("Could not find cids: {}", missing.join(", ")),
        ));
    }
    Ok(car_response(Body::from(car::write_car(&[], blocks))))
}

pub async fn get_record(
    State(state): State<AppState>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Response, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let collection = required(&p, "collection")?;
    let rkey = required(&p, "rkey")?;
    if !domain::syntax::is_valid_nsid(collection) {
        return Err(bad("Error: collection must be a valid nsid"));
    }
    if !domain::syntax::is_valid_record_key(rkey) {
        return Err(bad("Error: rkey must be a valid record key"));
    }
    let h = available(&state, &did).await?;
    let commit = stored_cid(&h.commit_cid)?;
    let data = stored_cid(&h.data_cid)?;
    let key = format!("{collection}/{rkey}");
    // Only the key's path (and the proof's neighbours) is read, faulted in node by node.
    let mut cache = RepoBlocks::default();
    let walked = repo_tree::faulting(
        &state.log,
        &did,
        &mut cache,
        |src| {
            let tree = Mst::load(src, data)?;
            Ok::<_, MstError>((tree.covering_proof(src, &key)?, tree.get(src, &key)?))
        },
        repo_tree::missing_in_mst,
    )
    .await
    .map_err(|e| internal(&e))?;
    let (proof, record) = walked.map_err(|e| internal(&e))?;
    let mut blocks: Vec<(Cid, Vec<u8>)> = Vec::with_capacity(proof.len() + 2);
    let commit_bytes = sync_reads::block(&state.log, &did, &h.commit_cid)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| internal(&format!("commit block {commit} of {did} missing")))?;
    blocks.push((commit, commit_bytes));
    blocks.extend(proof.0);
    if let Some(rc) = record {
        let rb = sync_reads::block(&state.log, &did, &rc.to_string())
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| internal(&format!("record block {rc} of {did} missing")))?;
        blocks.push((rc, rb));
    }
    Ok(car_response(Body::from(car::write_car(&[commit], blocks))))
}
