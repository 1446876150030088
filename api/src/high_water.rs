//! The firehose high-water mark: the highest `seq` this data directory ever served, kept in
//! `<data directory>/firehose-seq` — OUTSIDE the database, so it survives a restore of an older
//! backup, a reinstall over the same data directory or a move between SQLite and Postgres.
//!
//! - Before a frame with seq `s` goes to any subscriber, the file says at least `s`
//!   ([`HighWater::ensure`]; one write covers every seq the process knows committed, so a burst
//!   costs one write, not one per frame).
//! - At start ([`reconcile`]), a log head below the mark means the database lost events relays have
//!   already seen: the head is raised to the mark, so the next seq is above every seq ever served
//!   and no relay ignores us (the reference PDS's "relay desync", fixed there by hand).
//!
//! The file is one line, `<seq>\n`, replaced atomically (write, rename).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use eventlog::EventLog;

pub const FILE: &str = "firehose-seq";

pub fn path(data_directory: &Path) -> PathBuf {
    data_directory.join(FILE)
}

/// The recorded mark (0 when there is no file). A file that cannot be parsed is an error: guessing
/// low could make seqs go backwards.
pub fn read(data_directory: &Path) -> anyhow::Result<i64> {
    let p = path(data_directory);
    match std::fs::read_to_string(&p) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| anyhow::anyhow!("{}: expected one integer (the highest firehose seq served), found {:?}", p.display(), text.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", p.display())),
    }
}

/// Replaces the file with `seq` (atomically, by rename). Not fsynced: it sits on the firehose's
/// path, and it guards against an OLDER database coming back, not against power loss — after a
/// crash the database itself (fsynced at every commit) is at or above every seq served.
pub fn write(data_directory: &Path, seq: i64) -> std::io::Result<()> {
    std::fs::create_dir_all(data_directory)?;
    let p = path(data_directory);
    let tmp = data_directory.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, format!("{seq}\n"))?;
    std::fs::rename(&tmp, &p)
}

/// [`write`], fsynced (CLI jobs: restore, `seq raise`).
pub fn write_durable(data_directory: &Path, seq: i64) -> std::io::Result<()> {
    write(data_directory, seq)?;
    std::fs::File::open(path(data_directory))?.sync_all()
}

/// Raises the mark to `seq` if it is lower (never lowers it).
pub fn raise(data_directory: &Path, seq: i64) -> anyhow::Result<i64> {
    let current = read(data_directory)?;
    if seq > current {
        write_durable(data_directory, seq)?;
        return Ok(seq);
    }
    Ok(current)
}

/// At start: the log head must be at or above the mark. Returns the (possibly raised) head seq.
pub async fn reconcile(data_directory: &Path, log: &EventLog) -> anyhow::Result<i64> {
    let mark = read(data_directory)?;
    let head = log.head().await?;
    if head.seq >= mark {
        return Ok(head.seq);
    }
    tracing::warn!(
        head_seq = head.seq,
        served_seq = mark,
        "the log head seq {} is below the highest firehose seq this data directory served ({mark}): the \
         database was restored or replaced; raising the sequence so relays do not ignore new events",
        head.seq
    );
    let raised = log.raise_head(head.position, mark).await.map_err(|e| anyhow::anyhow!("raising the log head: {e}"))?;
    Ok(raised.seq)
}

/// The process's guard of the mark, shared by every firehose subscriber.
pub struct HighWater {
    dir: PathBuf,
    /// What the file says.
    recorded: AtomicI64,
    /// The highest seq known committed (the firehose hub's latest), written instead of a lower
    /// one so a burst needs one write.
    known: AtomicI64,
    lock: tokio::sync::Mutex<()>,
}

impl HighWater {
    pub fn new(data_directory: &Path) -> HighWater {
        let recorded = read(data_directory).unwrap_or(0);
        HighWater {
            dir: data_directory.to_owned(),
            recorded: AtomicI64::new(recorded),
            known: AtomicI64::new(recorded),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Notes a seq known committed (no I/O).
    pub fn note(&self, seq: i64) {
        self.known.fetch_max(seq, Ordering::Relaxed);
    }

    /// The recorded mark.
    pub fn recorded(&self) -> i64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Makes the file say at least `seq` before a frame with that seq is sent. A failed write is
    /// logged (and counted) but does not stop the firehose.
    pub async fn ensure(&self, seq: i64) {
        if seq <= self.recorded.load(Ordering::Acquire) {
            return;
        }
        let _guard = self.lock.lock().await;
        if seq <= self.recorded.load(Ordering::Acquire) {
            return;
        }
        self.note(seq);
        let target = self.known.load(Ordering::Relaxed).max(seq);
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || write(&dir, target)).await;
        match written {
            Ok(Ok(())) => {
                self.recorded.fetch_max(target, Ordering::Release);
                crate::metrics::get().high_water.set(target);
            }
            Ok(Err(e)) => tracing::error!(error = %e, seq = target, "firehose: writing the seq high-water mark failed"),
            Err(e) => tracing::error!(error = %e, "firehose: the high-water writer panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn raise_never_lowers_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(super::read(dir.path()).ok(), Some(0));
        assert_eq!(super::raise(dir.path(), 42).ok(), Some(42));
        assert_eq!(super::raise(dir.path(), 7).ok(), Some(42));
        assert_eq!(super::read(dir.path()).ok(), Some(42));
        std::fs::write(super::path(dir.path()), "not a number").unwrap_or_else(|e| panic!("{e}"));
        assert!(super::read(dir.path()).is_err());
    }
}
