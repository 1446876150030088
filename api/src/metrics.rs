//! Prometheus metrics: one registry per process (`get()`), exposed at `GET /metrics` in the
//! OpenMetrics text format — on the main listener behind the admin password (HTTP Basic
//! `admin:<PDS_ADMIN_PASSWORD>`), and without auth on `PDS_METRICS_BIND` when that is set (a
//! private address for the scraper).
//!
//! Crate: `prometheus-client` (the Prometheus project's own Rust client): a registry and an
//! encoder, no HTTP server or global recorder of its own, a handful of small dependencies — lighter
//! than `metrics` + `metrics-exporter-prometheus`, which brings an HTTP stack and a recorder.
//!
//! Values read at scrape time (log head, projector lag, pool use, job leases) are refreshed by
//! [`refresh`]; counters and histograms move as things happen (`observe.rs` for requests, the log
//! writer's commit observer, the firehose, the crawlers).

use std::sync::{Mutex, OnceLock};

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use eventlog::EventLog;

use crate::server::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub nsid: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NsidLabel {
    pub nsid: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectorLabel {
    pub projector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboundLabels {
    pub service: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
    pub state: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<NsidLabel, Histogram, fn() -> Histogram>,
    pub log_head_position: Gauge,
    pub log_head_seq: Gauge,
    pub append_duration: Histogram,
    pub group_commit_duration: Histogram,
    pub group_commit_size: Histogram,
    pub appended_events: Counter,
    pub projector_lag: Family<ProjectorLabel, Gauge>,
    pub firehose_subscribers: Gauge,
    pub firehose_frames: Counter,
    pub firehose_dropped: Counter,
    pub high_water: Gauge,
    pub outbound: Family<OutboundLabels, Counter>,
    pub breaker_open: Family<TargetLabel, Gauge>,
    pub pool: Family<PoolLabel, Gauge>,
    pub job_leader: Family<JobLabel, Gauge>,
    pub job_runs: Family<JobLabel, Counter>,
    /// NSID labels seen so far (bounded, see [`Metrics::nsid_label`]).
    nsids: Mutex<std::collections::HashSet<String>>,
}

/// Most distinct NSID labels; later ones are counted as `other`.
const MAX_NSIDS: usize = 400;

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("pds");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register("http_requests", "HTTP requests by XRPC method (NSID or route) and status", requests.clone());
        let request_duration = Family::<NsidLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        r.register("http_request_duration_seconds", "HTTP request latency by XRPC method", request_duration.clone());
        let log_head_position = Gauge::default();
        r.register("log_head_position", "Last position handed out by the event log", log_head_position.clone());
        let log_head_seq = Gauge::default();
        r.register("log_head_seq", "Last firehose seq handed out by the event log", log_head_seq.clone());
        let append_duration = latency_histogram();
        r.register("log_append_duration_seconds", "Append latency: queued to committed (this process's writer)", append_duration.clone());
        let group_commit_duration = latency_histogram();
        r.register("log_group_commit_duration_seconds", "Duration of one group-commit transaction", group_commit_duration.clone());
        let group_commit_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        r.register("log_group_commit_size", "Append requests merged into one transaction", group_commit_size.clone());
        let appended_events = Counter::default();
        r.register("log_appended_events", "Events appended by this process", appended_events.clone());
        let projector_lag = Family::<ProjectorLabel, Gauge>::default();
        r.register("projector_lag_events", "Log positions a catch-up projector is behind the head", projector_lag.clone());
        let firehose_subscribers = Gauge::default();
        r.register("firehose_subscribers", "Open subscribeRepos connections on this node", firehose_subscribers.clone());
        let firehose_frames = Counter::default();
        r.register("firehose_frames", "Frames sent to firehose subscribers", firehose_frames.clone());
        let firehose_dropped = Counter::default();
        r.register("firehose_dropped_slow_consumers", "Subscribers closed with ConsumerTooSlow", firehose_dropped.clone());
        let high_water = Gauge::default();
        r.register("firehose_seq_high_water", "Highest seq recorded as served in <data>/firehose-seq", high_water.clone());
        let outbound = Family::<OutboundLabels, Counter>::default();
        r.register("outbound_requests", "Calls to other services by service and outcome", outbound.clone());
        let breaker_open = Family::<TargetLabel, Gauge>::default();
        r.register("outbound_breaker_open", "1 while a crawler's circuit breaker is open", breaker_open.clone());
        let pool = Family::<PoolLabel, Gauge>::default();
        r.register("pool_connections", "Connections of the database read pool (state: open, idle, max)", pool.clone());
        let job_leader = Family::<JobLabel, Gauge>::default();
        r.register("job_leader", "1 on the node that holds a run-once job's lease", job_leader.clone());
        let job_runs = Family::<JobLabel, Counter>::default();
        r.register("job_lease_acquired", "Times this node took a run-once job's lease", job_runs.clone());
        Metrics {
            registry: r,
            requests,
            request_duration,
            log_head_position,
            log_head_seq,
            append_duration,
            group_commit_duration,
            group_commit_size,
            appended_events,
            projector_lag,
            firehose_subscribers,
            firehose_frames,
            firehose_dropped,
            high_water,
            outbound,
            breaker_open,
            pool,
            job_leader,
            job_runs,
            nsids: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// `nsid` as a label value, or `other` once [`MAX_NSIDS`] distinct ones were seen (a client
    /// inventing NSIDs must not grow the registry without bound).
    pub fn nsid_label(&self, nsid: &str) -> String {
        let mut seen = self.nsids.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(nsid) {
            return nsid.to_owned();
        }
        if seen.len() >= MAX_NSIDS {
            return "other".to_owned();
        }
        seen.insert(nsid.to_owned());
        nsid.to_owned()
    }

    pub fn outbound(&self, service: &str, outcome: &str) {
        self.outbound.get_or_create(&OutboundLabels { service: service.into(), outcome: outcome.into() }).inc();
    }

    pub fn set_job_leader(&self, job: &str, held: bool) {
        self.job_leader.get_or_create(&JobLabel { job: job.into() }).set(i64::from(held));
        if held {
            self.job_runs.get_or_create(&JobLabel { job: job.into() }).inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// Feeds the log writer's group commits into the histograms (once per log).
pub fn observe_log(log: &EventLog) {
    log.observe_commits(Box::new(|c| {
        let m = get();
        m.group_commit_size.observe(c.requests as f64);
        m.group_commit_duration.observe(c.commit.as_secs_f64());
        m.appended_events.inc_by(c.events as u64);
        for l in &c.latencies {
            m.append_duration.observe(l.as_secs_f64());
        }
    }));
}

/// Values read at scrape time: head, projector lag, pool use.
pub async fn refresh(log: &EventLog) {
    let m = get();
    let head = match log.head().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading the log head failed");
            return;
        }
    };
    m.log_head_position.set(head.position);
    m.log_head_seq.set(head.seq);
    for p in projections::all() {
        if p.kind != projections::Kind::CatchUp {
            continue;
        }
        if let Ok(at) = projections::checkpoints::get(log, p.name).await {
            m.projector_lag.get_or_create(&ProjectorLabel { projector: p.name.into() }).set((head.position - at).max(0));
        }
    }
    let pool = log.pool_stats();
    for (state, v) in [("open", pool.size), ("idle", pool.idle), ("max", pool.max)] {
        m.pool.get_or_create(&PoolLabel { pool: "database".into(), state: state.into() }).set(i64::from(v));
    }
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn scrape(log: &EventLog) -> Response {
    refresh(log).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], get().encode()).into_response()
}

/// `GET /metrics` on the main listener: admin Basic auth.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/metrics",
        routing::get(|State(state): State<AppState>, headers: HeaderMap| async move {
            if let Err(e) = crate::xrpc::auth::require_admin(&state, &headers) {
                let mut r = e.into_response();
                r.headers_mut().insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Basic realm=\"pds metrics\""));
                return r;
            }
            scrape(&state.log).await
        }),
    )
}

/// `PDS_METRICS_BIND`: `/metrics` without auth on its own listener, for the life of the process.
pub async fn spawn_listener(bind: std::net::SocketAddr, log: EventLog) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    let app = Router::new().route("/metrics", routing::get(move || {
        let log = log.clone();
        async move { scrape(&log).await }
    }));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    }))
}
