//! Admin `com.atproto.admin.updateSubjectStatus` / `getSubjectStatus` for one blob
//! (`com.atproto.admin.defs#repoBlobRef`): `blob.takedown_updated` on `blob/<did>`. A taken-down
//! blob is not served (`getBlob` → `BlobNotFound`) and may not be newly referenced; its bytes stay
//! in the store so the takedown can be lifted. Unchanged → nothing appended.

use domain::blob::BlobEvent;
use domain::cbor::Cid;
use domain::syntax::Did;

use crate::upload_blob::append;
use crate::{now, CommandError, Ctx};

/// `(applied, ref)` of a stored blob, `None` when `did` has no blob `cid`.
pub async fn blob_takedown_status(ctx: &Ctx, did: &str, cid: &str) -> Result<Option<Option<String>>, CommandError> {
    Ok(projections::blobs::get(ctx.log(), did, cid).await?.map(|b| b.takedown_ref))
}

/// Applies (`applied`, with `reference`, default the current time in unix microseconds) or
/// lifts a blob's takedown. `BlobNotFound` when `did` has no blob `cid`.
pub async fn update_blob_takedown(
    ctx: &Ctx,
    did: &str,
    cid: &str,
    applied: bool,
    reference: Option<String>,
) -> Result<(), CommandError> {
    let not_found = || CommandError::BlobNotFound(format!("Blob not found: {cid}"));
    let parsed_did = Did::parse(did).map_err(|_| not_found())?;
    let parsed_cid = Cid::try_from(cid).map_err(|_| not_found())?;
    let current = blob_takedown_status(ctx, did, cid).await?.ok_or_else(not_found)?;
    let wanted = match (applied, reference, &current) {
        // Already taken down and no new reference: unchanged.
        (true, None, Some(_)) | (false, _, None) => return Ok(()),
        (true, r, _) => Some(r.unwrap_or_else(|| now().0.to_string())),
        (false, _, Some(_)) => None,
    };
    if current == wanted {
        return Ok(());
    }
    append(ctx, did, &[BlobEvent::TakedownUpdated { did: parsed_did, cid: parsed_cid, takedown_ref: wanted }]).await
}
