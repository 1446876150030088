//! Blobs as files: `<location>/<did>/<cid>`, spool files in `<location>/tmp/` (same filesystem,
//! so moving one into place is an atomic rename).

use std::io;
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use tokio::io::AsyncSeekExt;

use crate::{check_key, file_stream, BlobStore, BlobStoreError, ByteRange, ByteStream};

pub struct DiskStore {
    location: PathBuf,
    spool: PathBuf,
}

impl DiskStore {
    /// Creates `location` and its spool directory if needed.
    pub fn open(location: &Path) -> Result<DiskStore, BlobStoreError> {
        let spool = location.join("tmp");
        std::fs::create_dir_all(&spool)?;
        Ok(DiskStore { location: location.to_owned(), spool })
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobStoreError> {
        check_key(key)?;
        Ok(self.location.join(key))
    }
}

impl BlobStore for DiskStore {
    fn kind(&self) -> &'static str {
        "disk"
    }

    fn spool_dir(&self) -> &Path {
        &self.spool
    }

    fn put_file<'a>(&'a self, key: &'a str, file: &'a Path, _len: u64) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async move {
            let dest = self.path(key)?;
            if let Some(dir) = dest.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            // Durable before visible.
            tokio::fs::File::open(file).await?.sync_all().await?;
            if let Err(e) = tokio::fs::rename(file, &dest).await {
                // Spool on another filesystem: copy next to the destination, then rename.
                tracing::debug!(error = %e, "rename from spool failed; copying");
                let near = dest.with_extension(format!("part-{:016x}", rand::random::<u64>()));
                tokio::fs::copy(file, &near).await?;
                tokio::fs::File::open(&near).await?.sync_all().await?;
                tokio::fs::rename(&near, &dest).await?;
                let _ = tokio::fs::remove_file(file).await;
            }
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str, range: Option<ByteRange>) -> BoxFuture<'a, Result<Option<ByteStream>, BlobStoreError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let mut file = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let size = file.metadata().await?.len();
            let (start, len) = match range {
                Some(r) if r.start <= r.end && r.end < size => (r.start, r.end - r.start + 1),
                Some(_) => return Err(BlobStoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, "range outside the blob"))),
                None => (0, size),
            };
            if start > 0 {
                file.seek(io::SeekFrom::Start(start)).await?;
            }
            Ok(Some(file_stream(file, len)))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(key)?).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }
}
