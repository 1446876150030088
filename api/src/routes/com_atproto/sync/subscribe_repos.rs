//! `com.atproto.sync.subscribeRepos`: the firehose, read straight from the log.
//!
//! Every public event (one with a `seq`) becomes one binary frame by its type: `repo.committed` →
//! `#commit`, `repo.synced` → `#sync`, `account.identity` → `#identity`, `account.status` →
//! `#account`, with `seq` from the envelope and `time` = `recorded_at` (RFC 3339, milliseconds,
//! `Z`). An event that cannot be rendered is skipped with a warning; it never ends a stream.
//!
//! Cursors as the reference PDS: none → live only (after the head seq at connection time);
//! `cursor` → every event with `seq > cursor`, then live; `cursor` above the head seq → error
//! frame `FutureCursor` and close 1008; a cursor whose next event is older than
//! `PDS_REPO_BACKFILL_LIMIT_MS` → `#info OutdatedCursor`, then from the oldest event inside that
//! window.
//!
//! Fan-out: one [`Hub`] per router follows the log (`EventLog::tail`, so appends of any process
//! on the same database) and renders each public event once into a bounded
//! `tokio::sync::broadcast` (`PDS_MAX_SUBSCRIPTION_BUFFER` frames). Live subscribers only read
//! that channel; one that falls further behind than the buffer gets `ConsumerTooSlow` and is
//! closed, and nobody else waits for it. A subscriber with a cursor reads the database itself;
//! once a page comes back short it subscribes to the hub, reads the database until it is empty,
//! and then takes hub frames, dropping those at or below the last seq it sent: whatever the hub
//! had broadcast before the subscription was already committed, so the database read after it
//! reaches at least that far — no gap — and the seq filter removes the overlap — no duplicate.
//!
//! Never writes to the log and never interprets a payload beyond rendering its frame.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use futures_util::StreamExt;
use tokio::sync::{broadcast, OnceCell};

use domain::account::AccountEvent;
use domain::repo::firehose::{self, StreamError};
use domain::repo::{RepoEvent, REPO_COMMITTED, REPO_SYNCED};
use eventlog::{Envelope, EventLog, LogError};

use crate::xrpc::prelude::*;

pub const NSID: &str = "com.atproto.sync.subscribeRepos";
/// Reference default of `PDS_MAX_SUBSCRIPTION_BUFFER` (frames a live subscriber may lag behind).
pub const DEFAULT_MAX_SUBSCRIPTION_BUFFER: usize = 500;
/// Reference default of `PDS_REPO_BACKFILL_LIMIT_MS` (24 hours).
pub const DEFAULT_REPO_BACKFILL_LIMIT_MS: u64 = 24 * 60 * 60 * 1000;
/// Backfill page size (the reference's outbox pages by 500 too).
const PAGE: u32 = 500;
/// Close code after an error frame (the reference's `stream/server.ts`: policy violation).
const CLOSE_POLICY: u16 = 1008;
/// Close code when the server cannot go on (the log cannot be read).
const CLOSE_INTERNAL: u16 = 1011;
/// How often a subscriber blocked on a slow socket checks whether it fell out of the buffer.
const LAG_CHECK: Duration = Duration::from_millis(100);
/// How long the error frame and close of a dropped subscriber may take to go out.
const FAREWELL: Duration = Duration::from_secs(10);
/// Pause before the hub re-opens its tail after a read error.
const HUB_RETRY: Duration = Duration::from_secs(1);
const EVENT_IDENTITY: &str = "account.identity";
const EVENT_STATUS: &str = "account.status";

/// Firehose settings, from the reference's environment variables.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `PDS_MAX_SUBSCRIPTION_BUFFER`: frames a live subscriber may fall behind before
    /// `ConsumerTooSlow` (the broadcast capacity; tokio rounds it up to a power of two).
    pub max_subscription_buffer: usize,
    /// `PDS_REPO_BACKFILL_LIMIT_MS`: how far back a cursor may reach.
    pub backfill_limit: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_subscription_buffer: DEFAULT_MAX_SUBSCRIPTION_BUFFER,
            backfill_limit: Duration::from_millis(DEFAULT_REPO_BACKFILL_LIMIT_MS),
        }
    }
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        Settings {
            max_subscription_buffer: config.max_subscription_buffer,
            backfill_limit: config.repo_backfill_limit,
        }
    }
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The route, with its hub (started by the first subscriber, then kept for the router's life).
/// The route, with its hub (started by the first subscriber, then kept for the router's life).
pub fn route(settings: Settings) -> MethodRouter<AppState> {
    let hub: Arc<OnceCell<Hub>> = Arc::new(OnceCell::new());
    get(move |state: State<AppState>, q: Params, ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>| {
        subscribe_repos(state, q, ws, hub.clone(), settings)
    })
}

/// One live frame as the hub broadcasts it.
#[derive(Clone)]
struct LiveFrame {
    seq: i64,
    frame: Bytes,
}

/// The process's one follower of the log for live subscribers.
struct Hub {
    sender: broadcast::Sender<LiveFrame>,
}

impl Hub {
    /// Starts following the log after its current head.
    async fn start(log: &EventLog, capacity: usize) -> Result<Hub, LogError> {
        let after = log.head().await?.position;
        let (sender, _) = broadcast::channel(capacity.max(1));
        tokio::spawn(run_hub(log.clone(), after, sender.clone()));
        Ok(Hub { sender })
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveFrame> {
        self.sender.subscribe()
    }
}

/// Follows the log forever, rendering each public event once; re-opens the tail after an error
/// at the last position it saw, so nothing is skipped or repeated.
async fn run_hub(log: EventLog, mut after: i64, sender: broadcast::Sender<LiveFrame>) {
    loop {
        let mut tail = Box::pin(log.tail(after));
        while let Some(next) = tail.next().await {
            match next {
                Ok(envelope) => {
                    after = envelope.position;
                    if let Some(seq) = envelope.seq {
                        if let Some(frame) = render(&envelope) {
                            // No receivers is not an error: frames are only for who is listening.
                            let _ = sender.send(LiveFrame { seq, frame });
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, after, "firehose: following the log failed; retrying");
                    break;
                }
            }
        }
        tokio::time::sleep(HUB_RETRY).await;
    }
}

/// The frame of a public event; `None` (with a warning) when it has no frame.
fn render(envelope: &Envelope) -> Option<Bytes> {
    let seq = envelope.seq?;
    let skip = |why: &dyn std::fmt::Display| {
        tracing::warn!(
            seq,
            position = envelope.position,
            event_type = %envelope.event_type,
            "firehose: skipping an event that has no frame: {why}"
        );
        None
    };
    let Some(time) = domain::syntax::Datetime::from_unix_micros(envelope.recorded_at) else {
        return skip(&format!("recorded_at {} is out of range", envelope.recorded_at));
    };
    let time = time.as_str();
    let version = envelope.event_version;
    let framed = match envelope.event_type.as_str() {
        REPO_COMMITTED | REPO_SYNCED => {
            let Ok(v) = u32::try_from(version) else {
                return skip(&format!("unknown version {version}"));
            };
            match RepoEvent::from_payload(&envelope.event_type, v, &envelope.payload) {
                Ok(ev) => firehose::repo_event_frame(&ev, seq, time),
                Err(e) => return skip(&e),
            }
        }
        EVENT_IDENTITY | EVENT_STATUS => {
            match AccountEvent::from_payload(&envelope.event_type, version, &envelope.payload) {
                Ok(AccountEvent::Identity { did, handle }) => {
                    firehose::identity_frame(did.as_str(), handle.as_ref().map(|h| h.as_str()), seq, time)
                }
                Ok(AccountEvent::Status { did, active, status }) => {
                    firehose::account_frame(did.as_str(), active, status.map(|s| s.as_str()), seq, time)
                }
                Ok(other) => return skip(&format!("{} is not a firehose event", other.event_type())),
                Err(e) => return skip(&e),
            }
        }
        _ => return skip(&"not a firehose event type"),
    };
    match framed {
        Ok(bytes) => Some(Bytes::from(bytes)),
        Err(e) => skip(&e),
    }
}

fn error_frame(error: StreamError, message: &str) -> Bytes {
    // Only two short strings: encoding cannot fail, but an empty frame is still better than a panic.
    Bytes::from(firehose::error_frame(error, Some(message)).unwrap_or_default())
}

/// `GET /xrpc/com.atproto.sync.subscribeRepos?cursor=` (WebSocket).
async fn subscribe_repos(
    State(state): State<AppState>,
    q: Params,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    hub: Arc<OnceCell<Hub>>,
    settings: Settings,
) -> Response {
    let cursor = match parse_cursor(q) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return XrpcError::invalid_request(format!("{NSID} is a WebSocket subscription: {e}")).into_response()
        }
    };
    let log = state.log.clone();
    ws.on_upgrade(move |socket| async move {
        let hub = match hub.get_or_try_init(|| Hub::start(&log, settings.max_subscription_buffer)).await {
            Ok(hub) => hub,
            Err(e) => {
                tracing::error!(error = %e, "firehose: cannot read the log head");
                close(socket, CLOSE_INTERNAL, "internal error reading the log").await;
                return;
            }
        };
        serve(socket, log, hub, settings, cursor).await;
    })
}

fn parse_cursor(q: Params) -> Result<Option<i64>, XrpcError> {
    let Query(p) = q.map_err(|e| XrpcError::invalid_request(format!("invalid query string: {e}")))?;
    match p.get("cursor").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(XrpcError::invalid_request(format!("cursor must be a non-negative integer, found {v:?}"))),
        },
    }
}

/// Why a stream ends.
enum Stop {
    /// The client went away (or its socket failed).
    Gone,
    /// An error frame, then close 1008.
    Error(StreamError, String),
    /// The log could not be read: close 1011.
    Internal,
}

/// Where the next frames come from.
enum Phase {
    /// Pages from the database. `rx` is taken once a page comes back short (near the head).
    Backfill { rx: Option<broadcast::Receiver<LiveFrame>>, last_page_full: bool },
    /// Frames from the hub.
    Live(broadcast::Receiver<LiveFrame>),
}

/// One subscriber's frame source: backfill, the cut-over, then live.
struct Source<'a> {
    log: EventLog,
    hub: &'a Hub,
    /// The last seq sent (or skipped); nothing at or below it is sent again.
    last: i64,
    pending: VecDeque<Envelope>,
    phase: Phase,
    /// Beyond this many unread frames the broadcast has dropped some for this subscriber.
    lag_limit: usize,
}

impl Source<'_> {
    /// The next frame. Cancel-safe: state changes only after an await has completed.
    async fn next(&mut self) -> Result<Bytes, Stop> {
        loop {
            if let Some(envelope) = self.pending.pop_front() {
                let Some(seq) = envelope.seq else { continue };
                if seq <= self.last {
                    continue;
                }
                self.last = seq;
                match render(&envelope) {
                    Some(frame) => return Ok(frame),
                    None => continue,
                }
            }
            match &mut self.phase {
                Phase::Backfill { rx, last_page_full } => {
                    if rx.is_none() && !*last_page_full {
                        *rx = Some(self.hub.subscribe());
                    }
                    let page = self.log.read_public(self.last, PAGE).await.map_err(|e| {
                        tracing::error!(error = %e, "firehose: backfill read failed");
                        Stop::Internal
                    })?;
                    if page.is_empty() {
                        if let Some(r) = rx.take() {
                            if r.len() > self.lag_limit {
                                // The hub ran ahead while this subscriber read the database: take
                                // a fresh subscription and read the database up to it again.
                                *rx = Some(self.hub.subscribe());
                                continue;
                            }
                            self.phase = Phase::Live(r);
                            continue;
                        }
                    }
                    *last_page_full = page.len() >= PAGE as usize;
                    self.pending.extend(page);
                }
                Phase::Live(rx) => match rx.recv().await {
                    Ok(f) if f.seq <= self.last => continue,
                    Ok(f) => {
                        self.last = f.seq;
                        return Ok(f.frame);
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "firehose: a live subscriber fell behind the buffer");
                        return Err(too_slow());
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop::Internal),
                },
            }
        }
    }

    /// Whether a live subscriber has fallen out of the buffer.
    fn lagging(&self) -> bool {
        match &self.phase {
            Phase::Live(rx) => rx.len() > self.lag_limit,
            Phase::Backfill { .. } => false,
        }
    }
}

fn too_slow() -> Stop {
    tracing::info!("firehose: dropping a subscriber that is too slow (ConsumerTooSlow)");
    Stop::Error(StreamError::ConsumerTooSlow, "Stream consumer too slow".into())
}

/// Runs one subscription until the client leaves or the stream ends with an error.
async fn serve(mut socket: WebSocket, log: EventLog, hub: &Hub, settings: Settings, cursor: Option<i64>) {
    // Subscribe before reading the head: every frame after the head then reaches `rx`.
    let rx = hub.subscribe();
    let head = match log.head().await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "firehose: cannot read the log head");
            close(socket, CLOSE_INTERNAL, "internal error reading the log").await;
            return;
        }
    };
    let (last, phase) = match cursor {
        None => (head.seq, Phase::Live(rx)),
        Some(c) if c > head.seq => {
            let frame = error_frame(StreamError::FutureCursor, "Cursor in the future.");
            farewell(socket, frame, StreamError::FutureCursor).await;
            return;
        }
        Some(cursor) => {
            drop(rx);
            let start = match window_start(&log, cursor, head.seq, settings.backfill_limit).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "firehose: backfill read failed");
                    close(socket, CLOSE_INTERNAL, "internal error reading the log").await;
                    return;
                }
            };
            if start > cursor {
                let info = firehose::info_frame("OutdatedCursor", Some("Requested cursor exceeded limit. Possibly missing events"));
                let info = Bytes::from(info.unwrap_or_default());
                if socket.send(Message::Binary(info)).await.is_err() {
                    return;
                }
            }
            (start, Phase::Backfill { rx: None, last_page_full: true })
        }
    };
    // tokio's broadcast holds the next power of two at least the requested capacity.
    let lag_limit = settings.max_subscription_buffer.max(1).next_power_of_two();
    let mut source = Source { log, hub, last, pending: VecDeque::new(), phase, lag_limit };
    let stop = loop {
        let next = tokio::select! {
            next = source.next() => next,
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Stop::Gone,
                // The stream is one-way: anything the client sends is ignored.
                Some(Ok(_)) => continue,
            },
        };
        let frame = match next {
            Ok(frame) => frame,
            Err(stop) => break stop,
        };
        // A live subscriber blocked on its socket is dropped once it falls out of the buffer.
        let lagged = async {
            loop {
                tokio::time::sleep(LAG_CHECK).await;
                if source.lagging() {
                    return;
                }
            }
        };
        tokio::select! {
            sent = socket.send(Message::Binary(frame)) => if sent.is_err() { break Stop::Gone },
            _ = lagged => break too_slow(),
        }
    };
    match stop {
        Stop::Gone => {}
        Stop::Error(error, message) => farewell(socket, error_frame(error, &message), error).await,
        Stop::Internal => close(socket, CLOSE_INTERNAL, "internal error reading the log").await,
    }
}

/// The seq to start after: `cursor`, or — when the first event after it is older than the
/// retention window — the last seq before the window, found by bisection on seq (`recorded_at`
/// grows with `seq`), so a long history costs a few reads, not a scan.
async fn window_start(log: &EventLog, cursor: i64, head_seq: i64, limit: Duration) -> Result<i64, LogError> {
    let limit_micros = i64::try_from(limit.as_micros()).unwrap_or(i64::MAX);
    let cutoff = now_micros().saturating_sub(limit_micros);
    let first_old_after = |after: i64| async move {
        let first = log.read_public(after, 1).await?.into_iter().next();
        Ok::<_, LogError>(first.filter(|e| e.recorded_at < cutoff).and_then(|e| e.seq))
    };
    let Some(oldest) = first_old_after(cursor).await? else {
        return Ok(cursor);
    };
    // Invariants: every event up to `lo` is old; the first event after `hi` is inside the
    // window (or there is none yet).
    let (mut lo, mut hi) = (oldest, head_seq.max(oldest));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match first_old_after(mid).await? {
            Some(seq) => lo = seq.max(mid),
            None => hi = mid,
        }
    }
    Ok(first_old_after(lo).await?.unwrap_or(lo).max(lo))
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Sends the error frame and closes with 1008 and the error's name; gives up after [`FAREWELL`]
/// (a client that does not read at all gets only the dropped connection).
async fn farewell(mut socket: WebSocket, frame: Bytes, error: StreamError) {
    let _ = tokio::time::timeout(FAREWELL, async {
        if socket.send(Message::Binary(frame)).await.is_ok() {
            let close = CloseFrame { code: CLOSE_POLICY, reason: error.as_str().into() };
            let _ = socket.send(Message::Close(Some(close))).await;
        }
    })
    .await;
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let close = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(FAREWELL, socket.send(Message::Close(Some(close)))).await;
}
