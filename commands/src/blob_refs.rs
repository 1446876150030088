//! The blob side of a record write (`apply_writes.rs` calls in twice: before deciding, and after
//! a commit was appended).
//!
//! Before: every blob ref of every created or updated record must name a blob this account has
//! stored and not taken down (`BlobNotFound`, as the reference names it), with the stored MIME
//! type and size (`domain::blob::check_ref`; the lexicon's `accept`/`maxSize` were checked on the
//! ref by record validation). It also notes which blobs the updated or deleted paths referenced.
//!
//! After: of those, each that the `blobs` projector dropped with the commit (no record references
//! it any more) is deleted from the blob store. Never fails the write: a store error leaves an
//! unreachable object behind and is logged.

use domain::blob::{self, BlobRefError, StoredBlob};
use domain::json::BlobRef;
use domain::repo::Write;

use crate::{CommandError, Ctx};

/// What [`check_writes`] found out, for [`BlobWrites::after_commit`].
#[derive(Debug, Default)]
pub struct BlobWrites {
    /// Blobs referenced, before the write, by the paths it updates or deletes.
    dereference_candidates: Vec<String>,
}

/// Checks the blob refs of `writes` against `did`'s stored blobs.
pub async fn check_writes(ctx: &Ctx, did: &str, writes: &[Write]) -> Result<BlobWrites, CommandError> {
    let mut paths = Vec::new();
    for w in writes {
        let value = match w {
            Write::Create { value, .. } => Some(value),
            Write::Update { collection, rkey, value, .. } => {
                paths.push(format!("{collection}/{rkey}"));
                Some(value)
            }
            Write::Delete { collection, rkey, .. } => {
                paths.push(format!("{collection}/{rkey}"));
                None
            }
        };
        for r in value.map(blob::refs).unwrap_or_default() {
            check_one(ctx, did, &r).await?;
        }
    }
    let dereference_candidates = if paths.is_empty() {
        Vec::new()
    } else {
        projections::blobs::cids_at_paths(ctx.log(), did, &paths).await?
    };
    Ok(BlobWrites { dereference_candidates })
}

async fn check_one(ctx: &Ctx, did: &str, r: &BlobRef) -> Result<(), CommandError> {
    let row = projections::blobs::get(ctx.log(), did, &r.cid().to_string()).await?;
    let stored = row.map(|b| StoredBlob { mime_type: b.mime_type, size: b.size, taken_down: b.takedown_ref.is_some() });
    blob::check_ref(r, stored.as_ref()).map_err(|e| match e {
        BlobRefError::NotFound(_) => CommandError::BlobNotFound(e.to_string()),
        BlobRefError::MimeMismatch { .. } => CommandError::InvalidMimeType(e.to_string()),
        BlobRefError::SizeMismatch { .. } => CommandError::InvalidBlob(e.to_string()),
    })
}

/// Erasure: deletes `did`'s blobs `cids` from the store (errors are logged).
pub async fn delete_erased(ctx: &Ctx, did: &str, cids: &[String]) {
    let Some(store) = ctx.blobstore.as_ref() else { return };
    for cid in cids {
        if let Err(e) = store.delete(&blobstore::key(did, cid)).await {
            tracing::warn!(%did, %cid, error = %e, "erased account's blob not deleted from the store");
        }
    }
}

impl BlobWrites {
    /// After the commit: deletes the bytes of every candidate blob that no longer has a row.
    pub async fn after_commit(self, ctx: &Ctx, did: &str) {
        let Some(store) = ctx.blobstore.as_ref() else { return };
        for cid in self.dereference_candidates {
            match projections::blobs::get(ctx.log(), did, &cid).await {
                Ok(None) => {
                    if let Err(e) = store.delete(&blobstore::key(did, &cid)).await {
                        tracing::warn!(%did, %cid, error = %e, "dereferenced blob not deleted from the store");
                    }
                }
                Ok(Some(_)) => {}
                Err(e) => tracing::warn!(%did, %cid, error = %e, "dereferenced blob: lookup failed"),
            }
        }
    }
}
