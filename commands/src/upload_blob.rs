//! `com.atproto.repo.uploadBlob`: the request body is streamed to a spool file of the blob store
//! (hashing as it goes, never held whole in memory), refused past the upload limit
//! (`BlobTooLarge`), typed by sniffing its first bytes (the declared `Content-Type` only when
//! nothing is recognised), stripped of image metadata (JPEG/PNG/WebP: the only case that reads
//! the blob whole, bounded by the limit, and at most two uploads at a time do it), stored under `<did>/<cid>` and recorded by a
//! `blob.uploaded` event on `blob/<did>`. Until a record references it, the blob is temporary
//! (`clean_temp_blobs.rs` removes it after the grace period).
//!
//! Never appends before the bytes are stored: a `blobs` row always has its object.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use domain::blob::{self, sniff, strip, BlobEvent};
use domain::syntax::Did;
use eventlog::{ExpectedVersion, NewEvent, StreamAppend};

use crate::{load_account, CommandError, Ctx};

/// What `uploadBlob` returns: the blob ref fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedBlob {
    pub cid: String,
    pub mime_type: String,
    pub size: u64,
}

/// How many uploads may hold an image in memory to strip it at the same time.
const STRIPPING: usize = 2;
static STRIP_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(STRIPPING);

/// A spool file removed when dropped (unless it was moved into the store).
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spool_path(dir: &Path) -> PathBuf {
    dir.join(format!("upload-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()))
}

fn internal(what: &str, e: impl std::fmt::Display) -> CommandError {
    CommandError::Internal(format!("{what}: {e}"))
}

/// The blob store a command needs.
pub(crate) fn store(ctx: &Ctx) -> Result<&std::sync::Arc<dyn blobstore::BlobStore>, CommandError> {
    ctx.blobstore.as_ref().ok_or_else(|| CommandError::Internal("no blob store configured".into()))
}

/// Uploads `body` as a blob of `did` (the caller's own account).
pub async fn upload_blob<S, E>(
    ctx: &Ctx,
    did: &str,
    declared_type: Option<&str>,
    body: S,
    limit: u64,
) -> Result<UploadedBlob, CommandError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let parsed = Did::parse(did).map_err(|_| CommandError::InvalidRequest(format!("invalid DID {did}")))?;
    let (account, _) = load_account(ctx.log(), did).await?;
    let Some(account) = account.live() else {
        return Err(CommandError::RepoNotFound(format!("Could not find repo: {did}")));
    };
    if account.takedown.is_some() {
        return Err(CommandError::AccountTakedown);
    }
    let store = store(ctx)?;
    let too_large = || CommandError::BlobTooLarge(format!("This file is too large. The maximum size is {limit} bytes."));

    // 1. Stream to the spool file, hashing and counting.
    let spool = Spool(spool_path(store.spool_dir()));
    let mut file = tokio::fs::File::create(&spool.0).await.map_err(|e| internal("spool file", e))?;
    let mut hasher = Sha256::new();
    let mut head: Vec<u8> = Vec::with_capacity(sniff::SNIFF_LEN);
    let mut size: u64 = 0;
    let mut body = body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CommandError::InvalidRequest(format!("reading the upload: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large());
        }
        if head.len() < sniff::SNIFF_LEN {
            let take = (sniff::SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| internal("spool write", e))?;
    }
    file.flush().await.map_err(|e| internal("spool write", e))?;
    drop(file);

    // 2. Type: sniffed, else declared.
    let mime_type = sniff::effective_mime(sniff::sniff(&head), declared_type);

    // 3. Images lose their metadata; the CID is of the stripped bytes.
    let mut digest: [u8; 32] = hasher.finalize().into();
    if strip::is_strippable(&mime_type) {
        // At most STRIPPING images in memory at once (each up to twice the upload limit).
        let _permit = STRIP_PERMITS.acquire().await.map_err(|e| internal("strip permit", e))?;
        let bytes = tokio::fs::read(&spool.0).await.map_err(|e| internal("spool read", e))?;
        match strip::strip_metadata(&mime_type, &bytes) {
            Ok(Some(stripped)) => {
                digest = Sha256::digest(&stripped).into();
                size = stripped.len() as u64;
                tokio::fs::write(&spool.0, &stripped).await.map_err(|e| internal("spool write", e))?;
            }
            Ok(None) => {}
            // Not walkable: stored as sent (it is what its magic number says only in part).
            Err(e) => tracing::info!(error = %e, "image metadata not stripped"),
        }
    }
    let cid = blob::raw_cid(&digest);

    // 4. Bytes into the store, then the event.
    let key = blobstore::key(did, &cid.to_string());
    store.put_file(&key, &spool.0, size).await.map_err(|e| internal("blob store", e))?;
    let event = BlobEvent::Uploaded { did: parsed, cid, mime_type: mime_type.clone(), size };
    append(ctx, did, &[event]).await?;
    Ok(UploadedBlob { cid: cid.to_string(), mime_type, size })
}

/// Appends blob events to `blob/<did>` (no concurrency check: each event stands alone).
pub(crate) async fn append(ctx: &Ctx, did: &str, events: &[BlobEvent]) -> Result<(), CommandError> {
    let new = events
        .iter()
        .map(|e| {
            let payload = e.to_payload().map_err(|err| internal("blob event payload", err))?;
            Ok(NewEvent::new(e.event_type(), i32::try_from(e.event_version()).unwrap_or(1), payload))
        })
        .collect::<Result<Vec<_>, CommandError>>()?;
    ctx.appender
        .append(vec![StreamAppend::new(blob::events::stream(did), ExpectedVersion::Any, new)])
        .await
        .map_err(|e| internal("append", e))?;
    Ok(())
}
