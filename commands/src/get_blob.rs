//! `com.atproto.sync.getBlob` (the read side of blobs, kept here because it needs the blob store):
//! a stored, not taken down blob of `did`, whole or a byte range, streamed from the store.
//! `BlobNotFound` for anything else (never uploaded, temporary and expired, dereferenced and
//! deleted, taken down, or its object missing).

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

/// What a `Range` header asked for, already resolved against the blob's size by the caller.
pub type RangeFn = dyn Fn(u64) -> Result<Option<ByteRange>, CommandError> + Send + Sync;

fn not_found(cid: &str) -> CommandError {
    CommandError::BlobNotFound(format!("Blob not found: {cid}"))
}

/// The blob `cid` of `did`; `range` maps the blob's size to the bytes wanted (an unsatisfiable
/// range is the caller's error to report).
pub async fn get_blob(ctx: &Ctx, did: &str, cid: &str, range: &RangeFn) -> Result<BlobBody, CommandError> {
    let row = projections::blobs::get(ctx.log(), did, cid).await?.ok_or_else(|| not_found(cid))?;
    if row.takedown_ref.is_some() {
        return Err(not_found(cid));
    }
    let range = range(row.size)?;
    let stream = store(ctx)?
        .get(&blobstore::key(did, cid), range)
        .await
        .map_err(|e| CommandError::Internal(format!("blob store: {e}")))?
        .ok_or_else(|| not_found(cid))?;
    Ok(BlobBody { mime_type: row.mime_type, size: row.size, range, stream })
}
