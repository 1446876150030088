//! `com.atproto.repo.importRepo`: a whole repository (a CAR) replaces the caller's repo, all or
//! nothing, with memory flat in the repo's size.
//!
//! 1. Stage: the body is decoded as it arrives (`car::CarDecoder`: structure, every block's hash,
//!    a section limit) and each block goes to a scratch SQLite file in the blob spool directory,
//!    deleted when the import ends however it ends. The byte count is held to the limit
//!    (`PDS_MAX_REPO_IMPORT_SIZE`) as it grows; a body that stalls for [`IDLE_TIMEOUT`] is refused.
//!    Scratch directories a crashed process left behind are swept after a day.
//! 2. Check and cut: one root, a commit for the caller's DID (its signature against the account's
//!    key when the account is active: a repo that is already ours), then the whole MST walked from
//!    the scratch file (`mst::TreeWalk`: every node checked, keys in global order, every record
//!    block present and a DAG-CBOR map) and cut into bounded events (`repo::ImportChunker`), which
//!    go back to the scratch file, not into memory.
//! 3. Append: under the repo's write lock, `repo.import_started`, the chunks and `repo.imported`
//!    go into ONE transaction part by part (`EventLog::append_parts`), the inline read models
//!    following each part, at the repo stream's expected version (and the account's: its status
//!    decided what is announced). Nothing is announced for a deactivated account (the reference's
//!    importRepo sequences nothing; `activateAccount` later announces the head with `#sync`); an
//!    active account's import ends with a `#sync` of the new head, so firehose consumers resync.
//!
//! Never leaves anything behind on failure: staging is a scratch file and the log transaction
//! rolls back whole. Never holds the writer while waiting for the network: the body is staged and
//! checked before the transaction starts.

use std::time::Duration;

use bytes::Bytes;
use domain::car::{CarDecoder, CarItem, CarReadOptions};
use domain::cbor::Cid;
use domain::crypto::PublicKey;
use domain::mst::{BlockMap, MstError, TreeWalk, Visit};
use domain::repo::{self, ImportChunker, ImportError, RepoEvent, Synced};
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion, NewEvent, Part, StreamAppend};
use futures_util::{Stream, StreamExt};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::{load_account, CommandError, Ctx};

/// A body that sends nothing for this long is refused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Blocks written to the scratch file per transaction.
const STAGE_BATCH: usize = 500;
/// Pending tree items fetched from the scratch file in one query.
const PREFETCH: usize = 128;
/// Scratch directories older than this belong to imports that died with their process.
const STALE_SCRATCH: Duration = Duration::from_secs(24 * 60 * 60);
/// Attempts at the append when another writer moved the repo or the account meanwhile.
const ATTEMPTS: usize = 3;

/// What an import did.
#[derive(Debug, Clone)]
pub struct Imported {
    pub commit: Cid,
    pub rev: String,
    pub records: u64,
    /// Events appended (started + chunks + imported [+ synced]).
    pub events: u64,
}

fn invalid(e: impl std::fmt::Display) -> CommandError {
    CommandError::InvalidRequest(e.to_string())
}

fn import_error(e: ImportError) -> CommandError {
    invalid(e)
}

fn scratch(e: impl std::fmt::Display) -> CommandError {
    CommandError::Internal(format!("import scratch file: {e}"))
}

/// The scratch store of one import: staged blocks and prepared events.
struct Staging {
    conn: SqliteConnection,
    pending: Vec<(Cid, Vec<u8>)>,
    pending_bytes: usize,
    parts: i64,
    // Dropped last: removes the directory and the file.
    _dir: tempfile::TempDir,
}

impl Staging {
    async fn create(parent: &std::path::Path) -> Result<Staging, CommandError> {
        tokio::fs::create_dir_all(parent).await.map_err(scratch)?;
        sweep(parent).await;
        let dir = tempfile::Builder::new().prefix("import-").tempdir_in(parent).map_err(scratch)?;
        let mut conn = SqliteConnectOptions::new()
            .filename(dir.path().join("staging.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Off)
            .synchronous(SqliteSynchronous::Off)
            .connect()
            .await
            .map_err(scratch)?;
        sqlx::query("CREATE TABLE blocks (cid BLOB PRIMARY KEY, bytes BLOB NOT NULL) WITHOUT ROWID")
            .execute(&mut conn)
            .await
            .map_err(scratch)?;
        sqlx::query("CREATE TABLE parts (n INTEGER PRIMARY KEY, event_type TEXT NOT NULL, payload BLOB NOT NULL)")
            .execute(&mut conn)
            .await
            .map_err(scratch)?;
        Ok(Staging { conn, pending: Vec::new(), pending_bytes: 0, parts: 0, _dir: dir })
    }

    async fn put(&mut self, cid: Cid, bytes: Vec<u8>) -> Result<(), CommandError> {
        self.pending_bytes += bytes.len();
        self.pending.push((cid, bytes));
        if self.pending.len() >= STAGE_BATCH || self.pending_bytes >= 4 << 20 {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CommandError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut tx = self.conn.begin().await.map_err(scratch)?;
        for (cid, bytes) in self.pending.drain(..) {
            sqlx::query("INSERT OR IGNORE INTO blocks (cid, bytes) VALUES (?, ?)")
                .bind(cid.to_bytes())
                .bind(bytes)
                .execute(&mut *tx)
                .await
                .map_err(scratch)?;
        }
        tx.commit().await.map_err(scratch)?;
        self.pending_bytes = 0;
        Ok(())
    }

    async fn get_many(&mut self, cids: &[Cid]) -> Result<Vec<(Cid, Vec<u8>)>, CommandError> {
        if cids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT cid, bytes FROM blocks WHERE cid IN ({})", vec!["?"; cids.len()].join(", "));
        let mut q = sqlx::query_as::<_, (Vec<u8>, Vec<u8>)>(&sql);
        for c in cids {
            q = q.bind(c.to_bytes());
        }
        let rows = q.fetch_all(&mut self.conn).await.map_err(scratch)?;
        rows.into_iter()
            .map(|(c, b)| Ok((Cid::try_from(c.as_slice()).map_err(scratch)?, b)))
            .collect()
    }

    async fn get(&mut self, cid: &Cid) -> Result<Option<Vec<u8>>, CommandError> {
        Ok(self.get_many(std::slice::from_ref(cid)).await?.into_iter().next().map(|(_, b)| b))
    }

    async fn put_event(&mut self, event: &RepoEvent) -> Result<(), CommandError> {
        let payload = event.to_payload().map_err(|e| CommandError::Internal(format!("import event: {e}")))?;
        sqlx::query("INSERT INTO parts (n, event_type, payload) VALUES (?, ?, ?)")
            .bind(self.parts)
            .bind(event.event_type())
            .bind(payload)
            .execute(&mut self.conn)
            .await
            .map_err(scratch)?;
        self.parts += 1;
        Ok(())
    }

    async fn event(&mut self, n: i64) -> Result<NewEvent, CommandError> {
        let (event_type, payload) =
            sqlx::query_as::<_, (String, Vec<u8>)>("SELECT event_type, payload FROM parts WHERE n = ?")
                .bind(n)
                .fetch_one(&mut self.conn)
                .await
                .map_err(scratch)?;
        Ok(NewEvent::new(event_type, 1, payload))
    }
}

/// Removes scratch directories of imports that died with their process (older than a day: no
/// import runs that long). Best effort.
async fn sweep(parent: &std::path::Path) {
    let Ok(mut entries) = tokio::fs::read_dir(parent).await else { return };
    while let Ok(Some(e)) = entries.next_entry().await {
        let stale = e.file_name().to_string_lossy().starts_with("import-")
            && e.metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_SCRATCH);
        if stale {
            let _ = tokio::fs::remove_dir_all(e.path()).await;
        }
    }
}

/// Imports the CAR `body` (at most `limit` bytes) into the repo of `did` (the caller's own).
pub async fn import_repo<S, E>(ctx: &Ctx, did: &str, mut body: S, limit: u64) -> Result<Imported, CommandError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    let account = crate::load_account_profile(ctx.log(), did).await?;
    let account = account.live().ok_or(CommandError::AccountNotFound)?;
    if account.takedown.is_some() {
        return Err(CommandError::AccountTakedown);
    }
    let spool = ctx
        .blobstore
        .as_ref()
        .map(|b| b.spool_dir().to_path_buf())
        .ok_or_else(|| CommandError::Internal("no blob store configured".into()))?;
    let mut stage = Staging::create(&spool).await?;

    // 1. Stage the body.
    let mut decoder = CarDecoder::new(CarReadOptions::default());
    let mut roots = None;
    let mut total: u64 = 0;
    loop {
        let next = tokio::time::timeout(IDLE_TIMEOUT, body.next())
            .await
            .map_err(|_| invalid(format!("the upload stalled: nothing received for {}s", IDLE_TIMEOUT.as_secs())))?;
        let Some(piece) = next else { break };
        let piece = piece.map_err(|e| invalid(format!("the upload failed: {e}")))?;
        total += piece.len() as u64;
        if total > limit {
            return Err(CommandError::PayloadTooLarge(format!(
                "request entity too large: the repo import limit is {limit} bytes"
            )));
        }
        decoder.push(&piece);
        while let Some(item) = decoder.next_item().map_err(|e| invalid(format!("invalid CAR: {e}")))? {
            match item {
                CarItem::Header(r) => roots = Some(r),
                CarItem::Block(cid, bytes) => stage.put(cid, bytes).await?,
            }
        }
    }
    decoder.finish().map_err(|e| invalid(format!("invalid CAR: {e}")))?;
    stage.flush().await?;
    tracing::info!(%did, bytes = total, "import: staged");
    let roots = roots.unwrap_or_default();
    let [root] = roots.as_slice() else {
        return Err(import_error(ImportError::RootCount(roots.len())));
    };
    let root = *root;

    // 2. Check the commit and the tree, cut into events.
    let commit_bytes = stage.get(&root).await?.ok_or(ImportError::RootMissing(root)).map_err(import_error)?;
    let active = account.status().is_none();
    let key = if active {
        Some(PublicKey::from_did_key(&account.signing_did_key).map_err(|e| CommandError::Internal(format!("signing key: {e}")))?)
    } else {
        None
    };
    let commit = repo::check_import_commit(&parsed, &root, &commit_bytes, key.as_ref()).map_err(import_error)?;
    let (mut chunker, started) = ImportChunker::new(parsed.clone(), root, commit.rev);
    stage.put_event(&started).await?;
    let mut walk = TreeWalk::new(commit.data);
    let mut cache = BlockMap::new();
    loop {
        match walk.next(&cache) {
            Ok(None) => break,
            Ok(Some(Visit::Node(cid))) => {
                let bytes = cache.0.remove(&cid).unwrap_or_default();
                chunker.add_block(&cid, &bytes);
            }
            Ok(Some(Visit::Leaf(path, cid))) => {
                let bytes = match cache.0.remove(&cid) {
                    Some(b) => b,
                    None => stage.get(&cid).await?.ok_or_else(|| {
                        import_error(ImportError::RecordMissing { path: path.clone(), cid })
                    })?,
                };
                repo::check_record(&path, &bytes).map_err(import_error)?;
                chunker.add_record(path, cid, &bytes);
                if let Some(event) = chunker.take_full() {
                    stage.put_event(&event).await?;
                }
            }
            Err(MstError::MissingBlock(cid)) => {
                let want: Vec<Cid> = walk.upcoming(PREFETCH).into_iter().filter(|c| !cache.contains(c)).collect();
                for (c, b) in stage.get_many(&want).await? {
                    cache.insert(c, b);
                }
                if !cache.contains(&cid) {
                    return Err(import_error(ImportError::Tree(format!("MST block {cid} is not in the CAR"))));
                }
            }
            Err(e) => return Err(import_error(ImportError::Tree(e.to_string()))),
        }
    }
    let records_total;
    {
        let finish = chunker.finish(&commit_bytes, commit.data);
        records_total = match finish.last() {
            Some(RepoEvent::Imported(i)) => i.records,
            _ => 0,
        };
        for event in &finish {
            stage.put_event(event).await?;
        }
    }

    tracing::info!(%did, records = records_total, parts = stage.parts, "import: checked");
    // 3. Append, under the repo's write lock.
    let lock = crate::apply_writes::repo_lock(did);
    let mut repo_cache = lock.lock().await;
    let repo_stream = format!("repo/{did}");
    let account_stream = domain::account::stream_name(&parsed);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let repo_version = ctx.log().stream_version(&repo_stream).await?;
        let (state, account_version) = load_account(ctx.log(), did).await?;
        let Some(now_account) = state.live() else { return Err(CommandError::AccountNotFound) };
        if now_account.takedown.is_some() {
            return Err(CommandError::AccountTakedown);
        }
        if (now_account.status().is_none()) != active {
            // Activated or deactivated meanwhile: what is checked and announced changed.
            return Err(CommandError::Conflict(account_stream));
        }
        let synced = active.then(|| {
            RepoEvent::Synced(Synced {
                did: parsed.clone(),
                commit: root,
                rev: commit.rev,
                data: commit.data,
                blocks: domain::car::write_car(&[root], [(root, commit_bytes.clone())]),
            })
        });
        let expected = if repo_version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(repo_version) };
        let (tx, rx) = tokio::sync::mpsc::channel::<Part>(2);
        let parts = stage.parts;
        let appender = ctx.appender.clone();
        let account_stream_c = account_stream.clone();
        let repo_stream_c = repo_stream.clone();
        let stage_ref = &mut stage;
        let producer = async move {
            for n in 0..parts {
                let mut events = vec![stage_ref.event(n).await?];
                let mut batch = Vec::new();
                let is_last = n + 1 == parts;
                if is_last {
                    if let Some(s) = &synced {
                        let payload = s.to_payload().map_err(|e| CommandError::Internal(format!("sync payload: {e}")))?;
                        events.push(NewEvent::new(s.event_type(), 1, payload).public());
                    }
                    // The account's status decided the checks and the announcement: it must not
                    // have moved.
                    batch.push(StreamAppend::new(account_stream_c.clone(), ExpectedVersion::Exact(account_version), vec![]));
                }
                let exp = if n == 0 { expected } else { ExpectedVersion::Any };
                batch.insert(0, StreamAppend::new(repo_stream_c.clone(), exp, events));
                if tx.send(appender.part(batch)).await.is_err() {
                    // The writer gave up (its error is the append's result).
                    return Ok(());
                }
            }
            let _ = tx.send(Part::Commit).await;
            Ok::<(), CommandError>(())
        };
        let (appended, produced) = tokio::join!(ctx.log().append_parts(rx), producer);
        produced?;
        match appended {
            Ok(_) => {
                repo_cache.clear();
                let events = u64::try_from(parts).unwrap_or(0) + u64::from(active);
                return Ok(Imported { commit: root, rev: commit.rev.to_string(), records: records_total, events });
            }
            Err(AppendError::Conflict { stream, .. }) if attempt < ATTEMPTS => {
                tracing::debug!(%stream, "import lost a race; appending again");
            }
            Err(AppendError::Conflict { stream, .. }) => return Err(CommandError::Conflict(stream)),
            Err(e) => return Err(CommandError::Internal(format!("import append: {e}"))),
        }
    }
}
