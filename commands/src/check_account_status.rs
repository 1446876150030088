//! `com.atproto.server.checkAccountStatus` (the migration helper): whether the account is active,
//! whether its DID document (resolved from the PLC directory) names this PDS and the account's
//! signing key, and the repo's head, rev, block count and indexed records.
//!
//! Reads only: the log (account and repo streams), the `repo_blocks` and `records` read models
//! and the directory; `expectedBlobs` / `importedBlobs` from the `blobs` read model (blobs the
//! records reference / of those, stored). Not yet: private state is not tracked, so
//! `privateStateValues` is 0.

use std::time::Duration;

use domain::crypto::{KeyType, PublicKey};
use domain::syntax::Did;
use serde_json::Value;

use crate::activate_account::load_repo_head;
use crate::{plc_client, CommandError, Ctx};

const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AccountStatusView {
    pub activated: bool,
    pub valid_did: bool,
    pub repo_commit: Option<String>,
    pub repo_rev: Option<String>,
    pub repo_blocks: i64,
    pub indexed_records: i64,
    pub private_state_values: i64,
    pub expected_blobs: i64,
    pub imported_blobs: i64,
}

pub async fn check_account_status(ctx: &Ctx, did: &str) -> Result<AccountStatusView, CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    let state = crate::load_account_profile(ctx.log(), did).await?;
    let account = state.live().ok_or(CommandError::AccountNotFound)?;
    let (repo, _, _) = load_repo_head(ctx.log(), &parsed).await?;
    let blocks = count(ctx, "SELECT CAST(COUNT(*) AS TEXT) FROM repo_blocks WHERE did = ?", did).await?;
    let records = count(ctx, "SELECT CAST(COUNT(*) AS TEXT) FROM records WHERE did = ?", did).await?;
    let (expected_blobs, imported_blobs) = projections::blobs::counts(ctx.log(), did).await?;
    let valid_did = match resolve_plc(ctx, did).await {
        Some(doc) => names_us(&doc, &ctx.public_url, &account.signing_did_key),
        None => false,
    };
    Ok(AccountStatusView {
        activated: account.deactivation.is_none(),
        valid_did,
        repo_commit: repo.root.as_ref().map(|r| r.commit.to_string()),
        repo_rev: repo.rev().map(|r| r.to_string()),
        repo_blocks: blocks,
        indexed_records: records,
        private_state_values: 0,
        expected_blobs,
        imported_blobs,
    })
}

/// A `COUNT(*)` over a read model, for one DID.
async fn count(ctx: &Ctx, sql: &str, did: &str) -> Result<i64, CommandError> {
    Ok(projections::sql::fetch_text(ctx.log().read_pool(), sql, &[did.into()])
        .await
        .map_err(|e| CommandError::Internal(e.to_string()))?
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// The directory's DID document, or `None` if it does not answer with one.
async fn resolve_plc(ctx: &Ctx, did: &str) -> Option<Value> {
    if !did.starts_with("did:plc:") {
        return None;
    }
    tokio::time::timeout(RESOLVE_TIMEOUT, plc_client::document(ctx, did)).await.ok()?.ok()?
}

/// Whether `doc` names `public_url` as `#atproto_pds` and `did_key` as `#atproto`.
fn names_us(doc: &Value, public_url: &str, did_key: &str) -> bool {
    let by_fragment = |list: &str, fragment: &str| {
        doc[list].as_array().and_then(|a| {
            a.iter().find(|e| e["id"].as_str().is_some_and(|id| id.ends_with(fragment))).cloned()
        })
    };
    let pds_ok = by_fragment("service", "#atproto_pds")
        .and_then(|s| s["serviceEndpoint"].as_str().map(|e| e.trim_end_matches('/') == public_url.trim_end_matches('/')))
        .unwrap_or(false);
    let key_ok = by_fragment("verificationMethod", "#atproto")
        .and_then(|vm| {
            let mb = vm["publicKeyMultibase"].as_str()?;
            let key = match vm["type"].as_str()? {
                "Multikey" => PublicKey::from_multikey(mb).ok()?,
                suite => PublicKey::from_legacy_multibase(KeyType::from_legacy_suite(suite)?, mb).ok()?,
            };
            Some(key.to_did_key() == did_key)
        })
        .unwrap_or(false);
    pds_ok && key_ok
}
