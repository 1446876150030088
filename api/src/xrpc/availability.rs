//! The reference's `assertRepoAvailability`: a repo that exists, is not taken down and not
//! deactivated (sync and blob reads share it).

use axum::http::StatusCode;
use projections::sync_reads::{self, RepoHead};

use super::XrpcError;
use crate::server::AppState;

pub fn repo_not_found(did: &str) -> XrpcError {
    XrpcError::new(
        StatusCode::BAD_REQUEST,
        "RepoNotFound",
        format!("Could not find repo for DID: {did}"),
    )
}

pub async fn head(state: &AppState, did: &str) -> Result<RepoHead, XrpcError> {
    sync_reads::repo_head(&state.log, did)
        .await
        .map_err(|e| XrpcError::internal(&e))?
        .ok_or_else(|| repo_not_found(did))
}

/// The head of an available repo (the reference's `assertRepoAvailability`).
pub async fn available(state: &AppState, did: &str) -> Result<RepoHead, XrpcError> {
    let h = head(state, did).await?;
    if h.taken_down {
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "RepoTakendown",
            format!("Repo has been takendown: {did}"),
        ));
    }
    if h.deactivated {
        return Err(XrpcError::new(
            StatusCode::BAD_REQUEST,
            "RepoDeactivated",
            format!("Repo has been deactivated: {did}"),
        ));
    }
    Ok(h)
}
