//! Admin `com.atproto.admin.deleteAccount`: erasure (design invariant 6). Appends
//! `account.deleted` + `#account{deleted}` (the tombstone), then purges every earlier event of the
//! DID's streams — and the `oauth/<request id>` streams of its OAuth requests and sessions, and the
//! `notification/<id>` streams of its messages — with
//! `EventLog::purge_did_and_streams` keeping those two, then rebuilds the read models from
//! the log (`projections::replay`, one writer transaction) so that no row of the DID is left in
//! `accounts`, `records`, `repo_blocks`, `stream_index`, `event_stats`, … and `pds verify` stays
//! clean. The rebuild is O(log size): simple and correct for a rare operator action; a per-DID
//! read-model erase is the upgrade. Re-running on a deleted account finishes an interrupted erasure.
//! The account's blobs are deleted from the blob store after the rebuild (those the `blobs` read
//! model listed before the purge; an interrupted erasure may leave some behind).

use std::sync::Arc;

use domain::account::{self, AccountState};
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};

use crate::{account_append, account_error, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

/// How many events the erasure removed.
pub async fn admin_delete_account(ctx: &Ctx, did: &str) -> Result<u64, CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    let keep = tombstone(ctx, &parsed, did).await?;
    let blobs = projections::blobs::cids_of(ctx.log(), did).await?;
    // Its OAuth requests and sessions live in streams named by request, not by DID.
    let oauth: Vec<String> = projections::oauth::request_ids_of(ctx.log(), did)
        .await?
        .iter()
        .map(|id| domain::oauth::aggregate::stream_name(id))
        .collect();
    // Its messages (`notification/<id>`: addresses and sealed content) go with it.
    let mut streams = oauth;
    streams.extend(projections::notifications::streams_of(ctx.log(), did).await?);
    let purged = ctx.log().purge_did_and_streams(did, &streams, &keep).await?;
    let quiet: Arc<dyn Fn(projections::replay::Progress) + Send + Sync> = Arc::new(|_| {});
    projections::replay::replay(ctx.log(), projections::all(), quiet).await?;
    crate::blob_refs::delete_erased(ctx, did, &blobs).await;
    Ok(purged)
}

/// The positions of the tombstone: appended now, or (an interrupted erasure) already there.
async fn tombstone(ctx: &Ctx, parsed: &Did, did: &str) -> Result<Vec<i64>, CommandError> {
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        if matches!(state, AccountState::Deleted) {
            let stream = ctx.log().read_stream(&account::stream_name(parsed)).await?;
            return Ok(stream.iter().rev().take(2).map(|e| e.position).collect());
        }
        let (now_micros, _) = now();
        let events = account::decide_delete(&state, now_micros).map_err(account_error)?;
        match ctx.appender.append(vec![account_append(parsed, ExpectedVersion::Exact(version), &events)]).await {
            Ok(envelopes) => return Ok(envelopes.iter().map(|e| e.position).collect()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}
