//! `com.atproto.repo.importRepo` (`ACCESS_FULL`, the caller's own repo; the kernel checks the
//! token): the `application/vnd.ipld.car` body is streamed into `commands::import_repo` — never
//! read whole; the row's `BodyLimit::RepoImport` lifts the extractor limit — and held to
//! `PDS_MAX_REPO_IMPORT_SIZE` (413 `PayloadTooLarge` from a `Content-Length` over it at once,
//! otherwise as soon as the count passes it). `PDS_ACCEPTING_REPO_IMPORTS=false` refuses every
//! import, as the reference. Answers 200 with no body.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use commands::CommandError;

use crate::xrpc::prelude::*;

pub async fn import_repo(State(state): State<AppState>, auth: AccessAuth, headers: HeaderMap, body: Body) -> Result<StatusCode, XrpcError> {
    if !state.config.accepting_repo_imports {
        return Err(XrpcError::invalid_request("Service is not accepting repo imports"));
    }
    let limit = state.config.max_repo_import_size;
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|l| l > limit) {
        return Err(command_error(CommandError::PayloadTooLarge(format!(
            "request entity too large: the repo import limit is {limit} bytes"
        ))));
    }
    let ctx = ctx(&state)?;
    let done = commands::import_repo::import_repo(&ctx, &auth.did, body.into_data_stream(), limit)
        .await
        .map_err(command_error)?;
    tracing::info!(did = %auth.did, commit = %done.commit, rev = %done.rev, records = done.records, events = done.events, "repo imported");
    Ok(StatusCode::OK)
}
