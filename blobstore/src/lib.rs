//! blobstore: where blob bytes live. One trait, [`BlobStore`], and two stores chosen by
//! configuration: [`DiskStore`] (files under `PDS_BLOBSTORE_DISK_LOCATION`, written to a spool
//! file and renamed into place, so a reader never sees half a blob) and [`S3Store`] (any
//! S3-compatible object store, requests signed with AWS Signature V4 over the `reqwest` client
//! the server already has).
//!
//! Keys are `<did>/<cid>`. The store knows nothing of records, references, takedowns or the log:
//! `commands` decides what to put and delete and the read models say what exists. Uploads are
//! first streamed to a spool file (see [`BlobStore::spool_dir`]), because a blob's key (its CID)
//! is only known once every byte has been read; memory stays bounded by the copy buffer.

mod disk;
mod s3;

use std::io;
use std::path::Path;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::Stream;

pub use disk::DiskStore;
pub use s3::{S3Config, S3Store};

/// A blob body, read as it is sent.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Bytes `start..=end` of a blob (both inclusive, as HTTP `Range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobStoreError {
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    #[error("blob store I/O: {0}")]
    Io(#[from] io::Error),
    #[error("object store request failed: {0}")]
    Http(String),
    #[error("object store answered {status} to {method} {key}: {body}")]
    Status { method: &'static str, key: String, status: u16, body: String },
}

/// Blob bytes at rest. Implementations are cheap to share (`Arc<dyn BlobStore>`).
pub trait BlobStore: Send + Sync {
    /// `disk` or `s3`, for logs.
    fn kind(&self) -> &'static str;

    /// A directory for upload spool files; [`BlobStore::put_file`] is cheapest from here.
    fn spool_dir(&self) -> &Path;

    /// Stores the spool file `file` (`len` bytes) under `key`, replacing any object there, and
    /// removes the spool file. The object appears whole or not at all.
    fn put_file<'a>(&'a self, key: &'a str, file: &'a Path, len: u64) -> BoxFuture<'a, Result<(), BlobStoreError>>;

    /// The object at `key` (or the given bytes of it); `None` when there is none.
    fn get<'a>(&'a self, key: &'a str, range: Option<ByteRange>) -> BoxFuture<'a, Result<Option<ByteStream>, BlobStoreError>>;

    /// Removes `key`; removing an absent key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobStoreError>>;
}

/// The key of `did`'s blob `cid`.
pub fn key(did: &str, cid: &str) -> String {
    format!("{did}/{cid}")
}

/// Keys are two path segments of safe characters (a DID and a CID), never `.`/`..`.
fn check_key(key: &str) -> Result<(), BlobStoreError> {
    let bad = || BlobStoreError::InvalidKey(key.to_owned());
    let (a, b) = key.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && s.bytes().all(|c| c.is_ascii_alphanumeric() || b":._-%".contains(&c))
    };
    if ok(a) && ok(b) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A file read in chunks of `chunk` bytes, `len` bytes from `start`.
pub(crate) fn file_stream(mut file: tokio::fs::File, len: u64) -> ByteStream {
    use tokio::io::AsyncReadExt;
    Box::pin(async_stream::try_stream! {
        let mut left = len;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = file.read(&mut buf[..want]).await?;
            if n == 0 {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob file shorter than expected"))?;
            }
            left -= n as u64;
            yield Bytes::copy_from_slice(&buf[..n]);
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_a_did_and_a_cid() {
        let cases = [
            ("did:plc:abc/bafkreiabc", true),
            ("did:web:example.com%3A8080/bafkreiabc", true),
            ("did:plc:abc/../x", false),
            ("../bafkrei", false),
            ("did:plc:abc", false),
            ("did:plc:abc/", false),
            ("did:plc:abc/a/b", false),
            ("did:plc:abc/a b", false),
        ];
        for (k, ok) in cases {
            assert_eq!(check_key(k).is_ok(), ok, "{k}");
        }
    }
}
