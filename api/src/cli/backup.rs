//! `pds backup DEST` and `pds restore SRC`: a consistent online copy of a server, and bringing it
//! back — on the same backend or across (SQLite ⇄ Postgres).
//!
//! A backup is a directory:
//! - `pds.sqlite` — SQLite source: the whole database (log AND read models) by `VACUUM INTO`, one
//!   read snapshot taken while the server keeps writing; Postgres source: the log only (every
//!   event, stream version and the head counters, read in ONE repeatable-read transaction) in a
//!   SQLite file. The log is the only truth, so that is a complete backup: `restore` rebuilds the
//!   read models from it. (`pg_dump` of the database is the other way; see the README.)
//! - `blobs/<did>/<cid>` — the bytes of every blob the snapshot knows (read through the blob store,
//!   disk or S3), copied after the snapshot; a blob deleted in between is listed as missing;
//! - `secrets.env` — the data directory's generated secrets (the key-encryption key among them:
//!   without it no signing key can be decrypted);
//! - `manifest.json` — what is in it, the head of the snapshot, and `servedSeq`: the highest
//!   firehose seq that may have been served when the backup finished.
//!
//! `restore` refuses a target that already has events (SQLite: `--force` moves the old files
//! aside), copies or imports the log, replays the read models when needed, copies blobs and
//! secrets, and raises the log head and `<data>/firehose-seq` to at least `servedSeq` (and
//! `--min-seq`), so the next seq is above every seq relays have seen.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use eventlog::EventLog;

use crate::config::{BlobstoreConfig, Config};
use crate::cli::ops::thousands;
use crate::cli::progress::Progress;

pub const MANIFEST: &str = "manifest.json";
pub const DATABASE: &str = "pds.sqlite";
pub const BLOBS: &str = "blobs";
pub const SECRETS: &str = "secrets.env";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    /// `sqlite` or `postgres`: the backend the backup was taken from.
    pub source_backend: String,
    /// `full` (log and read models) or `log` (log only: restore replays).
    pub database: String,
    pub head_position: i64,
    pub head_seq: i64,
    /// The highest seq that may have been served when the backup finished.
    pub served_seq: i64,
    pub events: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub missing_blobs: Vec<String>,
    pub secrets: bool,
}

fn now_rfc3339() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(0))
        .unwrap_or(0);
    crate::event_json::rfc3339(micros).as_str().unwrap_or_default().to_owned()
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The SQLite file of a `sqlite:` URL, if it is one.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).map(PathBuf::from)
}

#[cfg(unix)]
fn private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
}
#[cfg(not(unix))]
fn private_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn private_file(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
}
#[cfg(not(unix))]
fn private_file(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// `pds backup DEST`.
pub async fn backup(config: &Config, dest: &Path, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    if dest.exists() && std::fs::read_dir(dest)?.next().is_some() {
        anyhow::bail!("{} is not empty: back up into a new directory", dest.display());
    }
    std::fs::create_dir_all(dest)?;
    private_dir(dest)?;
    let log = crate::server::open_log(config).await?;
    let db_path = dest.join(DATABASE);
    let (snapshot, kind, head) = match log.backend() {
        "sqlite" => {
            writeln!(err, "backup: database snapshot (VACUUM INTO {})", db_path.display())?;
            log.snapshot_into(&db_path).await?;
            let snap = EventLog::open_sqlite(&db_path, eventlog::Options::default()).await?;
            let head = snap.head().await?;
            (snap, "full", head)
        }
        _ => {
            let snap = EventLog::open_sqlite(&db_path, eventlog::Options::default()).await?;
            let mut bar = Progress::new("backup: log", "events", 0);
            let mut lines = Vec::new();
            let head = log
                .export_into(&snap, |p| {
                    if let Some(l) = bar.update(p.done, p.total) {
                        lines.push(l);
                    }
                })
                .await?;
            bar.finish();
            for l in lines {
                writeln!(err, "{l}")?;
            }
            (snap, "log", head)
        }
    };
    let events = projections::replay::count_events(&snapshot).await?;
    // Blobs: those the snapshot knows (SQLite), or the live read model (a log-only export has none).
    let listed_from = if kind == "full" { &snapshot } else { &log };
    let mut keys = Vec::new();
    let (mut after_did, mut after_cid) = (String::new(), String::new());
    loop {
        let page = projections::blobs::all_keys(listed_from, (&after_did, &after_cid), 1000).await?;
        let Some((d, c)) = page.last().cloned() else { break };
        (after_did, after_cid) = (d, c);
        keys.extend(page);
    }
    let store = config.blobstore.open().map_err(|e| anyhow::anyhow!("opening the blob store: {e}"))?;
    let (copied, bytes, missing) = copy_blobs_out(store.as_ref(), &keys, &dest.join(BLOBS), err).await?;
    for m in &missing {
        writeln!(err, "backup: WARNING: blob {m} is gone from the store (deleted after the snapshot?)")?;
    }
    // Secrets.
    let secrets = config.secrets.file.exists();
    if secrets {
        let to = dest.join(SECRETS);
        std::fs::copy(&config.secrets.file, &to)?;
        private_file(&to)?;
    }
    writeln!(
        err,
        "backup: secrets given in the environment (pds.env) are not in the backup: keep that file too"
    )?;
    snapshot.checkpoint_wal().await?;
    drop(snapshot);
    // Everything served so far: the live head now and the recorded mark.
    let live = log.head().await?;
    let served_seq = live.seq.max(crate::high_water::read(&config.data_directory)?).max(head.seq);
    let manifest = Manifest {
        format: FORMAT,
        created_at: now_rfc3339(),
        source_backend: log.backend().to_owned(),
        database: kind.to_owned(),
        head_position: head.position,
        head_seq: head.seq,
        served_seq,
        events,
        blobs: copied,
        blob_bytes: bytes,
        missing_blobs: missing,
        secrets,
    };
    let path = dest.join(MANIFEST);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    writeln!(
        out,
        "backup: done: {} ({} database, {}): {} events up to seq {}, {} blobs ({} bytes), served seq {}",
        dest.display(),
        log.backend(),
        kind,
        thousands(events),
        head.seq,
        thousands(copied),
        thousands(bytes),
        served_seq
    )?;
    Ok(())
}

/// Copies `keys` from the store into `dir/<did>/<cid>`; returns (copied, bytes, missing keys).
async fn copy_blobs_out(
    store: &dyn blobstore::BlobStore,
    keys: &[(String, String)],
    dir: &Path,
    err: &mut dyn Write,
) -> anyhow::Result<(u64, u64, Vec<String>)> {
    let total = keys.len() as u64;
    let mut bar = Progress::new("backup: blobs", "blobs", total);
    let (mut copied, mut bytes, mut missing) = (0u64, 0u64, Vec::new());
    for (i, (did, cid)) in keys.iter().enumerate() {
        let key = blobstore::key(did, cid);
        match store.get(&key, None).await? {
            None => missing.push(key),
            Some(mut stream) => {
                let to = dir.join(did).join(cid);
                if let Some(parent) = to.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                let mut file = tokio::fs::File::create(&to).await?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    bytes += chunk.len() as u64;
                    tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
                }
                file.sync_all().await?;
                copied += 1;
            }
        }
        if let Some(l) = bar.update(i as u64 + 1, total) {
            writeln!(err, "{l}")?;
        }
    }
    bar.finish();
    Ok((copied, bytes, missing))
}

/// `pds restore SRC [--force] [--min-seq N]`.
pub async fn restore(
    config: &Config,
    src: &Path,
    force: bool,
    min_seq: Option<i64>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(src.join(MANIFEST)).map_err(|e| anyhow::anyhow!("{}: {e} (not a pds backup?)", src.join(MANIFEST).display()))?,
    )?;
    if manifest.format != FORMAT {
        anyhow::bail!("backup format {} is not supported (expected {FORMAT})", manifest.format);
    }
    let backup_db = src.join(DATABASE);
    if !backup_db.exists() {
        anyhow::bail!("{} is missing", backup_db.display());
    }
    let data = &config.data_directory;
    let stamp = unix_secs();
    let log = match sqlite_path(&config.database_url) {
        Some(path) => {
            if path.exists() {
                let existing = EventLog::open_sqlite(&path, eventlog::Options::default()).await?;
                let events = projections::replay::count_events(&existing).await?;
                drop(existing);
                if events > 0 && !force {
                    anyhow::bail!(
                        "{} already holds {} events: restore into a fresh data directory, or pass --force to move it aside",
                        path.display(),
                        thousands(events)
                    );
                }
                for suffix in ["", "-wal", "-shm"] {
                    let p = PathBuf::from(format!("{}{suffix}", path.display()));
                    if p.exists() {
                        let aside = PathBuf::from(format!("{}.before-restore-{stamp}", p.display()));
                        std::fs::rename(&p, &aside)?;
                        if events > 0 {
                            writeln!(err, "restore: moved {} aside to {}", p.display(), aside.display())?;
                        }
                    }
                }
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&backup_db, &path)?;
            let wal = PathBuf::from(format!("{}-wal", backup_db.display()));
            if wal.exists() {
                std::fs::copy(&wal, format!("{}-wal", path.display()))?;
            }
            let log = crate::server::open_log(config).await?;
            if manifest.database != "full" {
                replay_all(&log, err).await?;
            }
            log
        }
        None => {
            let log = crate::server::open_log(config).await?;
            let events = projections::replay::count_events(&log).await?;
            let head = log.head().await?;
            if events > 0 || head.position > 0 {
                anyhow::bail!(
                    "the target database {} is not empty ({} events, head {}): restore into an empty database (drop and create it first)",
                    crate::server::redact(&config.database_url),
                    thousands(events),
                    head.position
                );
            }
            // Read the backup from a copy: opening a SQLite file may migrate it.
            let tmp = data.join(format!("restore-source-{stamp}.sqlite"));
            std::fs::copy(&backup_db, &tmp)?;
            let source = EventLog::open_sqlite(&tmp, eventlog::Options::default()).await?;
            let mut bar = Progress::new("restore: log", "events", manifest.events);
            let mut lines = Vec::new();
            let head = source
                .export_into(&log, |p| {
                    if let Some(l) = bar.update(p.done, p.total) {
                        lines.push(l);
                    }
                })
                .await?;
            bar.finish();
            for l in lines {
                writeln!(err, "{l}")?;
            }
            drop(source);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
            }
            writeln!(err, "restore: log imported up to position {} (seq {})", head.position, head.seq)?;
            replay_all(&log, err).await?;
            log
        }
    };
    // Secrets: the backup's, unless the data directory already has the same.
    if manifest.secrets {
        let from = src.join(SECRETS);
        let to = data.join(SECRETS);
        let same = std::fs::read(&to).ok() == std::fs::read(&from).ok();
        if !same {
            if to.exists() {
                let aside = data.join(format!("{SECRETS}.before-restore-{stamp}"));
                std::fs::rename(&to, &aside)?;
                writeln!(err, "restore: the data directory's secrets.env moved aside to {}", aside.display())?;
            }
            std::fs::copy(&from, &to)?;
            private_file(&to)?;
        }
        for name in ["PDS_KEY_ENCRYPTION_KEY", "PDS_JWT_SECRET", "PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX"] {
            if std::env::var_os(name).is_some() {
                writeln!(err, "restore: note: {name} is set in the environment and wins over the restored secrets.env; it must be the one the backup was made with")?;
            }
        }
    }
    // Blobs.
    let store = config.blobstore.open().map_err(|e| anyhow::anyhow!("opening the blob store: {e}"))?;
    let (blobs, bytes) = copy_blobs_in(store, &src.join(BLOBS), err).await?;
    if let BlobstoreConfig::S3 { .. } = &config.blobstore {
        writeln!(err, "restore: blobs uploaded to the S3 bucket")?;
    }
    // The sequence: above everything ever served.
    let floor = manifest
        .served_seq
        .max(manifest.head_seq)
        .max(crate::high_water::read(data)?)
        .max(min_seq.unwrap_or(0));
    let head = log.raise_head(0, floor).await.map_err(|e| anyhow::anyhow!("raising the log head: {e}"))?;
    crate::high_water::raise(data, floor)?;
    writeln!(
        out,
        "restore: done: {} events ({} backup from {}), {} blobs ({} bytes) into {} {}; head seq {}: the next firehose seq is {}",
        thousands(manifest.events),
        manifest.database,
        manifest.source_backend,
        thousands(blobs),
        thousands(bytes),
        log.backend(),
        crate::server::redact(&config.database_url),
        head.seq,
        head.seq + 1
    )?;
    Ok(())
}

async fn replay_all(log: &EventLog, err: &mut dyn Write) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let progress: Arc<dyn Fn(projections::replay::Progress) + Send + Sync> = Arc::new(move |p| {
        let _ = tx.send(p);
    });
    let job = projections::replay::replay(log, projections::all(), progress);
    tokio::pin!(job);
    let mut bar = Progress::new("restore: replay", "events", 0);
    let report = loop {
        tokio::select! {
            done = &mut job => break done?,
            Some(p) = rx.recv() => {
                if let Some(line) = bar.update(p.done, p.total) {
                    writeln!(err, "{line}")?;
                }
            }
        }
    };
    bar.finish();
    writeln!(err, "restore: read models rebuilt from {} events", thousands(report.events))?;
    Ok(())
}

/// Copies `dir/<did>/<cid>` into the store (through its spool directory: `put_file` consumes
/// its file). Returns (blobs, bytes).
async fn copy_blobs_in(store: Arc<dyn blobstore::BlobStore>, dir: &Path, err: &mut dyn Write) -> anyhow::Result<(u64, u64)> {
    let mut files = Vec::new();
    if dir.exists() {
        for did in std::fs::read_dir(dir)? {
            let did = did?;
            if !did.file_type()?.is_dir() {
                continue;
            }
            for blob in std::fs::read_dir(did.path())? {
                let blob = blob?;
                if blob.file_type()?.is_file() {
                    files.push((did.file_name().to_string_lossy().into_owned(), blob.file_name().to_string_lossy().into_owned(), blob.path()));
                }
            }
        }
    }
    let total = files.len() as u64;
    let mut bar = Progress::new("restore: blobs", "blobs", total);
    let spool = store.spool_dir().to_owned();
    tokio::fs::create_dir_all(&spool).await?;
    let mut bytes = 0u64;
    for (i, (did, cid, path)) in files.iter().enumerate() {
        let tmp = spool.join(format!("restore-{:016x}", rand::random::<u64>()));
        let len = tokio::fs::copy(path, &tmp).await?;
        store.put_file(&blobstore::key(did, cid), &tmp, len).await?;
        bytes += len;
        if let Some(l) = bar.update(i as u64 + 1, total) {
            writeln!(err, "{l}")?;
        }
    }
    bar.finish();
    Ok((total, bytes))
}
