//! Removes temporary blobs: uploaded, never (or no longer) referenced by a record, and older than
//! the grace period (`PDS_BLOB_TEMP_GRACE_SECONDS`). Appends `blob.expired` (the `blobs`
//! projector drops the row unless a record referenced the blob meanwhile), then deletes the bytes
//! of each blob whose row is gone. The server runs it periodically (`api::server`).

use std::collections::BTreeMap;
use std::time::Duration;

use domain::blob::BlobEvent;
use domain::cbor::Cid;
use domain::syntax::Did;

use crate::upload_blob::{append, store};
use crate::{now, CommandError, Ctx};

/// At most this many blobs per run.
const BATCH: i64 = 500;

/// One sweep; returns how many blobs were removed.
pub async fn clean_temp_blobs(ctx: &Ctx, grace: Duration) -> Result<usize, CommandError> {
    let store = store(ctx)?;
    let (now_micros, _) = now();
    let before = now_micros - i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
    let expired = projections::blobs::expired_temporaries(ctx.log(), before, BATCH).await?;
    let mut by_did: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (did, cid) in expired {
        by_did.entry(did).or_default().push(cid);
    }
    let mut removed = 0;
    for (did, cids) in by_did {
        let Ok(parsed) = Did::parse(&did) else { continue };
        let events = cids
            .iter()
            .filter_map(|c| Cid::try_from(c.as_str()).ok())
            .map(|cid| BlobEvent::Expired { did: parsed.clone(), cid })
            .collect::<Vec<_>>();
        append(ctx, &did, &events).await?;
        for cid in cids {
            if projections::blobs::get(ctx.log(), &did, &cid).await?.is_some() {
                continue; // referenced meanwhile
            }
            match store.delete(&blobstore::key(&did, &cid)).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(%did, %cid, error = %e, "expired blob not deleted from the store"),
            }
        }
    }
    Ok(removed)
}
