//! `com.atproto.sync.getBlob` (the read side of blobs, kept here because it needs the blob store):
//! a stored, not taken down blob of `did`, whole or a byte range, streamed from the store.
//! `BlobNotFound` for anything else (never uploaded, still temporary, dereferenced and deleted,
//! taken down, or its object missing).

pub use blobstore::{ByteRange, ByteStream};

use crate::upload_blob::store;
use crate::{CommandError, Ctx};

/// A blob being served.
pub struct BlobBody {
    pub mime_type: String,
    /// The whole blob's size.
    pub size: u64,
    /// The bytes sent (`None`: all of them).
    pub range: Option<ByteRange>,
    pub stream: ByteStream,
}

/// A `Range` header resolved against the blob's size: `Ok(None)` = everything, `Err(())` = not
/// satisfiable.
pub type RangeFn = dyn Fn(u64) -> Result<Option<ByteRange>, ()> + Send + Sync;

/// What `get_blob` found.
pub enum BlobReply {
    Body(BlobBody),
    /// The range asked for lies outside the blob of `size` bytes.
    Unsatisfiable { size: u64 },
}

fn not_found(cid: &str) -> CommandError {
    CommandError::BlobNotFound(format!("Blob not found: {cid}"))
}

/// The blob `cid` of `did`; `range` maps the blob's size to the bytes wanted (an unsatisfiable
/// range is the caller's error to report).
pub async fn get_blob(ctx: &Ctx, did: &str, cid: &str, range: &RangeFn) -> Result<BlobReply, CommandError> {
    let row = projections::blobs::get(ctx.log(), did, cid).await?.ok_or_else(|| not_found(cid))?;
    // Temporary blobs are not served (the reference keeps them in its temp store until a
    // record references them).
    if row.takedown_ref.is_some() || !projections::blobs::is_referenced(ctx.log(), did, cid).await? {
        return Err(not_found(cid));
    }
    let Ok(range) = range(row.size) else {
        return Ok(BlobReply::Unsatisfiable { size: row.size });
    };
    let stream = store(ctx)?
        .get(&blobstore::key(did, cid), range)
        .await
        .map_err(|e| CommandError::Internal(format!("blob store: {e}")))?
        .ok_or_else(|| not_found(cid))?;
    Ok(BlobReply::Body(BlobBody { mime_type: row.mime_type, size: row.size, range, stream }))
}
