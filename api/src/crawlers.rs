//! Asking relays to crawl us: `com.atproto.sync.requestCrawl` `{hostname}` POSTed to each
//! `PDS_CRAWLERS` service (comma-separated URLs), as the reference's `src/crawlers.ts`.
//!
//! - Triggered by public events (the reference calls it after every sequenced event): one task per
//!   process follows the log from its head and calls [`Crawlers::notify`] for each public event.
//! - At most once per `PDS_CRAWL_INTERVAL_MS` per crawler (default 20 minutes, the reference's
//!   `NOTIFY_THRESHOLD`), counted from the attempt, whatever its outcome (as the reference).
//! - Circuit breaker (ours, `commands::breaker`, the type every outbound service uses): after
//!   [`BREAKER_THRESHOLD`] consecutive failures (non-2xx, timeout, refused connection) a crawler
//!   is not called for `10 × interval × 2^(failures − threshold)` (at most [`BREAKER_MAX`]); the
//!   next attempt after that is the half-open probe, and one success closes the breaker. Requests
//!   run in the background with a timeout: they never delay a write.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commands::breaker::Breaker;
use futures_util::StreamExt;

use eventlog::EventLog;

/// The reference's `NOTIFY_THRESHOLD`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// Consecutive failures that open a crawler's breaker.
pub const BREAKER_THRESHOLD: u32 = 3;
/// Longest a breaker stays open.
pub const BREAKER_MAX: Duration = Duration::from_secs(24 * 60 * 60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Target {
    url: String,
    last_attempt: Mutex<Option<Instant>>,
    breaker: Breaker,
}

/// The crawlers of this process and when each was last asked.
#[derive(Clone)]
pub struct Crawlers {
    hostname: String,
    interval: Duration,
    targets: Arc<Vec<Target>>,
    client: reqwest::Client,
}

impl Crawlers {
    pub fn new(hostname: &str, urls: &[String], interval: Duration) -> Crawlers {
        let targets = urls
            .iter()
            .map(|u| {
                let url = u.trim_end_matches('/').to_owned();
                let breaker = Breaker::new(format!("crawler {url}"), BREAKER_THRESHOLD, interval.saturating_mul(10))
                    .with_backoff(BREAKER_MAX);
                Target { url, last_attempt: Mutex::new(None), breaker }
            })
            .collect();
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_default();
        Crawlers { hostname: hostname.to_owned(), interval, targets: Arc::new(targets), client }
    }

    /// Asks every crawler that is due (interval passed, breaker closed or probing), in the
    /// background.
    pub fn notify(&self) {
        let now = Instant::now();
        for (i, t) in self.targets.iter().enumerate() {
            {
                let mut last = t.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_some_and(|at| now.duration_since(at) < self.interval) {
                    continue;
                }
                if t.breaker.admit().is_err() {
                    continue;
                }
                *last = Some(now);
            }
            let me = self.clone();
            tokio::spawn(async move { me.request(i).await });
        }
    }

    async fn request(&self, i: usize) {
        let Some(t) = self.targets.get(i) else { return };
        let url = format!("{}/xrpc/com.atproto.sync.requestCrawl", t.url);
        let outcome = self.client.post(&url).json(&serde_json::json!({ "hostname": self.hostname })).send().await;
        let failure = match outcome {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("requestCrawl: status {}", r.status())),
            Err(e) => Some(format!("requestCrawl: {e}")),
        };
        let metrics = crate::metrics::get();
        metrics.outbound("crawler", if failure.is_none() { "ok" } else { "failed" });
        match failure {
            None => t.breaker.success(),
            Some(why) => t.breaker.failure(&why),
        }
        let open = t.breaker.state() != commands::breaker::BreakerState::Closed;
        metrics.breaker_open.get_or_create(&crate::metrics::TargetLabel { target: t.url.clone() }).set(i64::from(open));
    }

    /// Follows the log from its head for the life of the process, notifying on public events.
    pub fn spawn(self, log: EventLog) -> Option<tokio::task::JoinHandle<()>> {
        if self.targets.is_empty() {
            return None;
        }
        Some(tokio::spawn(async move {
            let mut after = match log.head().await {
                Ok(h) => h.position,
                Err(e) => {
                    tracing::error!(error = %e, "crawlers: reading the log head failed; not notifying");
                    return;
                }
            };
            loop {
                let mut tail = Box::pin(log.tail(after));
                while let Some(next) = tail.next().await {
                    match next {
                        Ok(e) => {
                            after = e.position;
                            if e.seq.is_some() {
                                self.notify();
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "crawlers: following the log failed; retrying");
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }
}
