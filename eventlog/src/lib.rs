//! eventlog: the append-only log every write of the PDS goes through.
//!
//! One [`EventLog`] over one of two backends (SQLite file or Postgres). Appends carry an expected
//! stream version and are all-or-nothing; every append of this process goes through one writer
//! task that batches concurrent requests into one transaction (group commit). Numbers (`position`,
//! and `seq` for public events) are handed out from the `log_head` row while holding the write
//! lock, so they become visible in commit order and a tailing reader never skips one.
//! See `eventlog/README.md` for the ordering argument.
//!
//! This crate never interprets payloads (they are opaque DAG-CBOR bytes) and never updates a log
//! row; the only deletion is [`EventLog::purge_did`] (account erasure).

mod lease;
mod postgres;
mod sqlite;
mod tail;
mod transfer;
mod writer;

pub use lease::{lease_key, LeaseClaim};
pub use transfer::{ExportError, ExportProgress};

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};

pub use sqlx::postgres::PgConnectOptions;
pub use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

/// One stored event, as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Global order of all events, strictly increasing in commit order, never reused.
    pub position: i64,
    /// Public firehose sequence; only on public events.
    pub seq: Option<i64>,
    /// The aggregate, e.g. `repo/<did>`.
    pub stream: String,
    /// 1 for the first event of a stream.
    pub stream_version: i64,
    pub event_type: String,
    pub event_version: i32,
    /// DAG-CBOR bytes; opaque to the log.
    pub payload: Vec<u8>,
    /// Unix microseconds at which the append transaction was prepared.
    pub recorded_at: i64,
    pub actor: Option<String>,
    pub correlation: Option<String>,
}

/// An event to append; the stream comes from its [`StreamAppend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: i32,
    pub payload: Vec<u8>,
    /// Public events (firehose frames) get a `seq`.
    pub public: bool,
    pub actor: Option<String>,
    pub correlation: Option<String>,
}

impl NewEvent {
    /// A private event (no seq) with no audit fields.
    pub fn new(event_type: impl Into<String>, event_version: i32, payload: Vec<u8>) -> Self {
        NewEvent {
            event_type: event_type.into(),
            event_version,
            payload,
            public: false,
            actor: None,
            correlation: None,
        }
    }

    /// Marks the event public: it gets a firehose `seq`.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }
}

/// The optimistic-concurrency check of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must have no events yet (version 0).
    NoStream,
    /// The stream's current version (its last `stream_version`) must be exactly this.
    Exact(i64),
}

impl ExpectedVersion {
    fn admits(self, actual: i64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Events for one stream within an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    pub fn new(stream: impl Into<String>, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        StreamAppend {
            stream: stream.into(),
            expected,
            events,
        }
    }
}

/// The last numbers handed out (0 when none yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub position: i64,
    pub seq: i64,
}

/// Counters of this process's writer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Committed append transactions (one per group commit).
    pub transactions: u64,
    /// Append requests that committed.
    pub appends: u64,
    /// Events that committed.
    pub events: u64,
}

/// The open transaction handed to an inline projection, on whichever backend the log uses.
pub enum Tx<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

impl Tx<'_> {
    /// The same transaction for a shorter borrow, so one `Tx` can be handed to several calls.
    pub fn reborrow(&mut self) -> Tx<'_> {
        match self {
            Tx::Sqlite(c) => Tx::Sqlite(c),
            Tx::Postgres(c) => Tx::Postgres(c),
        }
    }

    /// Events with `position > after`, in position order, at most `limit`, read inside this
    /// transaction (so a catch-up projector sees exactly what its checkpoint update will cover).
    pub async fn read_all(&mut self, after: i64, limit: u32) -> Result<Vec<Envelope>, LogError> {
        match self {
            Tx::Sqlite(c) => sqlite::read_all_conn(c, after, limit).await,
            Tx::Postgres(c) => postgres::read_all_conn(c, after, limit).await,
        }
    }
}

/// The log's read pool, for queries over read-model tables that live in the same database.
#[derive(Clone, Copy)]
pub enum ReadPool<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

/// What an inline projection may fail with; the append then fails with [`AppendError::Inline`].
pub type InlineError = Box<dyn std::error::Error + Send + Sync>;

/// Caller-supplied work run inside the append's transaction, after the events are inserted, with
/// the new envelopes. Its writes commit atomically with the events, or not at all.
pub type Inline =
    Box<dyn for<'a> FnOnce(Tx<'a>, &'a [Envelope]) -> BoxFuture<'a, Result<(), InlineError>> + Send>;

/// Boxes a closure as an [`Inline`] (and gives the closure its higher-ranked signature):
/// `eventlog::inline(|tx, events| Box::pin(async move { ...; Ok(()) }))`.
pub fn inline<F>(f: F) -> Inline
where
    F: for<'a> FnOnce(Tx<'a>, &'a [Envelope]) -> BoxFuture<'a, Result<(), InlineError>> + Send + 'static,
{
    Box::new(f)
}

/// Caller work run in a writer transaction of its own, without appending (see
/// [`EventLog::transact`]).
pub type Work = Box<dyn for<'a> FnOnce(Tx<'a>) -> BoxFuture<'a, Result<(), InlineError>> + Send>;

/// Why a [`EventLog::transact`] did not commit. Nothing of its work is stored.
#[derive(Debug, thiserror::Error)]
pub enum TransactError {
    #[error("transaction work failed: {0}")]
    Work(#[source] InlineError),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<sqlx::Error> for TransactError {
    fn from(e: sqlx::Error) -> Self {
        TransactError::Log(e.into())
    }
}

fn boxed_work<F>(f: F) -> Work
where
    F: for<'a> FnOnce(Tx<'a>) -> BoxFuture<'a, Result<(), InlineError>> + Send + 'static,
{
    Box::new(f)
}

/// Errors of opening, reading and purging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log database error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    #[error("event log migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported event log URL {0:?}: expected sqlite:<path> or postgres://...")]
    UnsupportedUrl(String),
    #[error("the event log writer task has stopped")]
    WriterStopped,
}

impl From<sqlx::Error> for LogError {
    fn from(e: sqlx::Error) -> Self {
        LogError::Database(Arc::new(e))
    }
}

/// A message of [`EventLog::append_parts`].
pub enum Part {
    /// The next events (expected versions checked against the transaction so far) and the inline
    /// work to run on them.
    Events(Vec<StreamAppend>, Option<Inline>),
    /// Commit everything sent so far.
    Commit,
}

/// Why an append did not commit. Nothing of a failed append is stored.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("append aborted: {0}")]
    Aborted(String),
    #[error("stream {stream}: expected version {expected}, actual version is {actual}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: i64,
    },
    #[error("inline projection failed: {0}")]
    Inline(#[source] InlineError),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<sqlx::Error> for AppendError {
    fn from(e: sqlx::Error) -> Self {
        AppendError::Log(e.into())
    }
}

/// Tunables; `Options::default()` suits a server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Read connections (Postgres: plus one for LISTEN).
    pub read_connections: u32,
    /// How often the shared head poller looks for appends made by other processes/nodes
    /// (SQLite: the only cross-process signal; Postgres: fallback behind LISTEN/NOTIFY).
    pub poll_interval: Duration,
    /// Most append requests merged into one transaction.
    pub max_group: usize,
    /// SQLite: how long a writer waits for another process's write lock.
    pub busy_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_connections: 4,
            poll_interval: Duration::from_millis(25),
            max_group: 256,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

impl Options {
    fn postgres_default() -> Self {
        Options {
            poll_interval: Duration::from_millis(500),
            ..Options::default()
        }
    }
}

#[derive(Clone)]
enum Reader {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
    /// Told about every committed group (metrics); set once per log.
    observer: std::sync::OnceLock<CommitObserver>,
}

/// What the writer reports about one committed group transaction.
#[derive(Debug, Clone)]
pub struct CommitObservation {
    /// Append requests that committed in it (the group-commit size).
    pub requests: usize,
    pub events: usize,
    /// From taking the group to commit.
    pub commit: Duration,
    /// Per request of the group: from being queued to commit.
    pub latencies: Vec<Duration>,
}

/// A callback for [`EventLog::observe_commits`].
pub type CommitObserver = Box<dyn Fn(&CommitObservation) + Send + Sync>;

/// Connections of the read pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

struct Inner {
    reader: Reader,
    jobs: mpsc::Sender<writer::Job>,
    /// Highest position known committed (own writer, poller, NOTIFY).
    head: watch::Receiver<i64>,
    counters: Arc<Counters>,
    poll_interval: Duration,
}

/// The event log. Cheap to clone; all clones share one writer task and one read pool.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

const JOB_QUEUE: usize = 4096;

/// Payload bytes after which `read_all` ends a page (the event that crosses it is the last).
pub const PAGE_BYTES: i64 = 4 << 20;

impl EventLog {
    /// Opens `sqlite:<path>` (also `sqlite://<path>`) or `postgres://...` / `postgresql://...`.
    pub async fn open(url: &str) -> Result<Self, LogError> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() || path.starts_with(":memory:") {
                // Each connection would get its own empty database: use a file (e.g. a temp dir).
                return Err(LogError::UnsupportedUrl(url.to_owned()));
            }
            Self::open_sqlite(Path::new(path), Options::default()).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts: PgConnectOptions = url.parse()?;
            Self::open_postgres(opts, Options::postgres_default()).await
        } else {
            Err(LogError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// Opens (creating if missing) a SQLite log file and applies migrations.
    pub async fn open_sqlite(path: &Path, options: Options) -> Result<Self, LogError> {
        let (conn, reconnect, pool) = sqlite::open(path, &options).await?;
        let head = sqlite::head(&pool).await?;
        Ok(Self::start(
            writer::Conn::Sqlite(conn, reconnect),
            Reader::Sqlite(pool),
            head.position,
            options,
        ))
    }

    /// Connects to Postgres and applies migrations (under sqlx's advisory lock, so many nodes
    /// may start at once).
    pub async fn open_postgres(connect: PgConnectOptions, options: Options) -> Result<Self, LogError> {
        let (conn, reconnect, pool) = postgres::open(connect, &options).await?;
        let head = postgres::head(&pool).await?;
        Ok(Self::start(
            writer::Conn::Postgres(conn, reconnect),
            Reader::Postgres(pool),
            head.position,
            options,
        ))
    }

    fn start(conn: writer::Conn, reader: Reader, head: i64, options: Options) -> Self {
        let (head_tx, head_rx) = watch::channel(head);
        let (jobs_tx, jobs_rx) = mpsc::channel(JOB_QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(writer::run(
            conn,
            jobs_rx,
            head_tx.clone(),
            counters.clone(),
            options.max_group.max(1),
        ));
        tokio::spawn(tail::watch_head(reader.clone(), head_tx, options.poll_interval));
        EventLog {
            inner: Arc::new(Inner {
                reader,
                jobs: jobs_tx,
                head: head_rx,
                counters,
                poll_interval: options.poll_interval,
            }),
        }
    }

    /// Appends to one or more streams, all or nothing.
    pub async fn append(&self, batch: Vec<StreamAppend>) -> Result<Vec<Envelope>, AppendError> {
        self.submit(batch, None).await
    }

    /// Appends and runs `inline` in the same transaction (see [`Inline`]).
    pub async fn append_with(
        &self,
        batch: Vec<StreamAppend>,
        inline: Inline,
    ) -> Result<Vec<Envelope>, AppendError> {
        self.submit(batch, Some(inline)).await
    }

    async fn submit(
        &self,
        batch: Vec<StreamAppend>,
        inline: Option<Inline>,
    ) -> Result<Vec<Envelope>, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .jobs
            .send(writer::Job::Append(writer::AppendJob { batch, inline, reply, enqueued: std::time::Instant::now() }))
            .await
            .map_err(|_| LogError::WriterStopped)?;
        rx.await.map_err(|_| LogError::WriterStopped)?
    }

    /// Appends a long run of events in ONE transaction without holding them all in memory: the
    /// caller sends [`Part::Events`] one at a time (each numbered, written and inline-projected
    /// before the next is received), then [`Part::Commit`]. All or nothing: a conflict, a failing
    /// inline work, a channel closed before `Commit`, or a part not arriving within 30 s rolls
    /// everything back. The writer is held (other appends of this process wait) until then, so
    /// send parts that are already prepared. Returns the envelopes of the last part.
    pub async fn append_parts(&self, parts: mpsc::Receiver<Part>) -> Result<Vec<Envelope>, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .jobs
            .send(writer::Job::Parts { parts, reply })
            .await
            .map_err(|_| LogError::WriterStopped)?;
        rx.await.map_err(|_| LogError::WriterStopped)?
    }

    /// Runs `work` in a transaction of the writer connection, without appending: it commits if
    /// `work` returns `Ok`, and rolls back otherwise. Queued with appends (on SQLite the writer
    /// connection is the only one that may write), so keep it short: appends of this process wait
    /// meanwhile. Catch-up projectors write their rows and checkpoint this way, atomically.
    pub async fn transact<T, F>(&self, work: F) -> Result<T, TransactError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(Tx<'a>) -> BoxFuture<'a, Result<T, InlineError>> + Send + 'static,
    {
        let (value_tx, value_rx) = oneshot::channel();
        let job = boxed_work(move |tx| {
            Box::pin(async move {
                let v = work(tx).await?;
                let _ = value_tx.send(v);
                Ok(())
            })
        });
        let (reply, rx) = oneshot::channel();
        self.inner
            .jobs
            .send(writer::Job::Transact { work: job, reply })
            .await
            .map_err(|_| LogError::WriterStopped)?;
        rx.await.map_err(|_| LogError::WriterStopped)??;
        value_rx.await.map_err(|_| TransactError::Log(LogError::WriterStopped))
    }

    /// Waits until a position above `after` is known committed (by this process's writer, the
    /// head poller or NOTIFY), at most `timeout`. Returns whether it was.
    pub async fn wait_past(&self, after: i64, timeout: Duration) -> bool {
        let mut head = self.inner.head.clone();
        let reached = matches!(tokio::time::timeout(timeout, head.wait_for(|h| *h > after)).await, Ok(Ok(_)));
        reached
    }

    /// The read pool, for queries over read models stored beside the log.
    pub fn read_pool(&self) -> ReadPool<'_> {
        match &self.inner.reader {
            Reader::Sqlite(p) => ReadPool::Sqlite(p),
            Reader::Postgres(p) => ReadPool::Postgres(p),
        }
    }

    /// Events with `position > after`, in position order, at most `limit` and about
    /// [`PAGE_BYTES`] of payload (always at least one event): a page of big events (an import's
    /// chunks) never costs a reader more than a few MB.
    pub async fn read_all(&self, after: i64, limit: u32) -> Result<Vec<Envelope>, LogError> {
        match &self.inner.reader {
            Reader::Sqlite(p) => sqlite::read_all(p, after, limit).await,
            Reader::Postgres(p) => postgres::read_all(p, after, limit).await,
        }
    }

    /// Public events with `seq > after_seq`, in seq order, at most `limit` (the firehose backfill).
    pub async fn read_public(&self, after_seq: i64, limit: u32) -> Result<Vec<Envelope>, LogError> {
        match &self.inner.reader {
            Reader::Sqlite(p) => sqlite::read_public(p, after_seq, limit).await,
            Reader::Postgres(p) => postgres::read_public(p, after_seq, limit).await,
        }
    }

    /// All events of one stream, in stream-version order.
    pub async fn read_stream(&self, stream: &str) -> Result<Vec<Envelope>, LogError> {
        match &self.inner.reader {
            Reader::Sqlite(p) => sqlite::read_stream(p, stream).await,
            Reader::Postgres(p) => postgres::read_stream(p, stream).await,
        }
    }

    /// The last event of one stream (its highest stream version), if it has any: the head of an
    /// aggregate whose last event carries its whole state, read without folding the stream.
    pub async fn read_stream_last(&self, stream: &str) -> Result<Option<Envelope>, LogError> {
        match &self.inner.reader {
            Reader::Sqlite(p) => sqlite::read_stream_last(p, stream).await,
            Reader::Postgres(p) => postgres::read_stream_last(p, stream).await,
        }
    }

    /// The stream's current version (0 if it has no events yet).
    pub async fn stream_version(&self, stream: &str) -> Result<i64, LogError> {
        match &self.inner.reader {
            Reader::Sqlite(p) => sqlite::stream_version(p, stream).await,
            Reader::Postgres(p) => postgres::stream_version(p, stream).await,
        }
    }

    /// The last position and seq handed out (committed).
    pub async fn head(&self) -> Result<Head, LogError> {
        match &self.inner.reader {
            Reader::Sqlite(p) => sqlite::head(p).await,
            Reader::Postgres(p) => postgres::head(p).await,
        }
    }

    /// Deletes every event of the streams `<kind>/<did>` except the positions in `keep` (the
    /// tombstone, e.g. the final `#account` status event). Counters are untouched, so no position
    /// or seq is ever reused. Returns how many events were deleted.
    pub async fn purge_did(&self, did: &str, keep: &[i64]) -> Result<u64, LogError> {
        self.purge_did_and_streams(did, &[], keep).await
    }

    /// [`EventLog::purge_did`], and also every event of the named `streams` (aggregates that are
    /// not named by the DID but hold its data, e.g. its OAuth sessions `oauth/<request id>`).
    pub async fn purge_did_and_streams(&self, did: &str, streams: &[String], keep: &[i64]) -> Result<u64, LogError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .jobs
            .send(writer::Job::Purge {
                did: did.to_owned(),
                streams: streams.to_vec(),
                keep: keep.to_vec(),
                reply,
            })
            .await
            .map_err(|_| LogError::WriterStopped)?;
        rx.await.map_err(|_| LogError::WriterStopped)?
    }

    /// Counters of this process's writer (group commit: `transactions <= appends`).
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            transactions: c.transactions.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
        }
    }

    /// Every event with `position > after`: first the backlog, then live appends of this and of
    /// other processes/nodes, forever, in position order with no gap and no duplicate.
    pub fn tail(
        &self,
        after: i64,
    ) -> impl futures_util::Stream<Item = Result<Envelope, LogError>> + Send + 'static {
        tail::tail(self.clone(), after)
    }

    /// Calls `observer` after every group commit of this process's writer (first caller wins;
    /// returns whether it was installed). It runs on the writer task: keep it to counters.
    pub fn observe_commits(&self, observer: CommitObserver) -> bool {
        self.inner.counters.observer.set(observer).is_ok()
    }

    /// The read pool's connections now.
    pub fn pool_stats(&self) -> PoolStats {
        match &self.inner.reader {
            Reader::Sqlite(p) => PoolStats { size: p.size(), idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX), max: p.options().get_max_connections() },
            Reader::Postgres(p) => PoolStats { size: p.size(), idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX), max: p.options().get_max_connections() },
        }
    }

    /// Which backend this log runs on: `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match &self.inner.reader {
            Reader::Sqlite(_) => "sqlite",
            Reader::Postgres(_) => "postgres",
        }
    }
}

/// Unix microseconds now.
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
