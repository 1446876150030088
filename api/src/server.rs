//! The HTTP server: `AppState`, the router (the method table of `routes/` mounted by the XRPC
//! kernel, the other routes, the global layers), the fallback for XRPC methods not served here
//! (the proxy, `proxy/`), `serve`, and the catch-up projection runners.

use std::sync::Arc;

use axum::Router;

use eventlog::EventLog;

use crate::config::Config;
use crate::xrpc::XrpcError;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub log: EventLog,
    /// Every append of the server goes through this (inline projectors in the same transaction).
    pub appender: projections::Appender,
    /// OAuth nonces, replay store, rate limits, client metadata cache (`oauth_runtime.rs`).
    pub oauth: Arc<crate::oauth_runtime::OAuthRuntime>,
    /// Where blob bytes live.
    pub blobstore: Arc<dyn blobstore::BlobStore>,
    /// The firehose seq high-water mark in the data directory (`high_water.rs`).
    pub high_water: Arc<crate::high_water::HighWater>,
    /// The proxy for every XRPC method not served here (`proxy/`).
    pub proxy: crate::proxy::SharedProxy,
    /// The one rate limiter (`rate_limit.rs`).
    pub limits: Arc<crate::rate_limit::RateLimiter>,
    /// Handle and DID resolution with its cache (`commands::identity`).
    pub identity: commands::identity::Identity,
}

/// The identity resolver of a configuration.
pub fn open_identity(config: &Config, scratch: Option<crate::redis_scratch::Scratch>) -> anyhow::Result<commands::identity::Identity> {
    commands::identity::Identity::new(config.identity.clone(), scratch).map_err(|e| anyhow::anyhow!("the DNS resolver: {e}"))
}

/// The scratch store of a configuration (none when unset or unusable, which is logged).
pub fn open_scratch(config: &Config) -> Option<crate::redis_scratch::Scratch> {
    let c = config.scratch()?;
    match crate::redis_scratch::Scratch::open(&c) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "the Redis scratch store cannot be used; keeping state in this process");
            None
        }
    }
}

/// `identity`: from [`open_identity`] (it may fail: a bad resolver configuration stops `serve`).
pub fn router(
    config: Config,
    log: EventLog,
    blobstore: Arc<dyn blobstore::BlobStore>,
    identity: commands::identity::Identity,
    scratch: Option<crate::redis_scratch::Scratch>,
) -> Router {
    let appender = projections::Appender::new(log.clone());
    let firehose = crate::routes::com_atproto::sync::subscribe_repos::Settings::from_config(&config);
    let oauth = Arc::new(crate::oauth_runtime::OAuthRuntime::new(&config, scratch.clone()));
    let high_water = Arc::new(crate::high_water::HighWater::new(&config.data_directory));
    let proxy = Arc::new(crate::proxy::Proxy::new(&config));
    let limits = Arc::new(crate::rate_limit::RateLimiter::new(config.rate_limits.clone(), scratch));
    let state = AppState { config: Arc::new(config), log, appender, oauth, blobstore, high_water, proxy, limits, identity };
    let oauth_nonces = axum::middleware::from_fn_with_state(state.clone(), crate::routes::oauth::server::nonce_layer);
    let methods = crate::routes::methods(firehose);
    crate::xrpc::router(&state, methods, crate::proxy::handle)
        .merge(crate::routes::other())
        .merge(crate::routes::plc_directory::routes(&state.config))
        .merge(crate::metrics::routes())
        .merge(crate::routes::tls_check::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::xrpc::plain_rejections_as_xrpc))
        .layer(oauth_nonces)
        .layer(axum::middleware::from_fn(crate::observe::layer))
        .with_state(state)
}

async fn not_found() -> XrpcError {
    XrpcError::not_found()
}

/// Opens the event log named by the configuration (applying migrations).
pub async fn open_log(config: &Config) -> anyhow::Result<EventLog> {
    let log = EventLog::open(&config.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("opening the database {}: {e}", redact(&config.database_url)))?;
    Ok(log)
}

/// A database URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// How long open connections may take to finish after ctrl-c / SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Binds and serves until ctrl-c / SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let log = open_log(&config).await?;
    // Relays ignore seqs at or below their cursor: never start below what was served.
    crate::high_water::reconcile(&config.data_directory, &log).await?;
    crate::metrics::observe_log(&log);
    let blobstore = config.blobstore.open().map_err(|e| anyhow::anyhow!("opening the blob store: {e}"))?;
    // Run-once jobs: each on one node at a time (`jobs.rs`).
    let node = crate::jobs::node_id(&config);
    let mut jobs = Vec::new();
    for p in projections::all().into_iter().filter(|p| p.kind == projections::Kind::CatchUp) {
        let l = log.clone();
        let start: crate::jobs::Start = Box::new(move || Ok(tokio::spawn(projections::runner::run(l.clone(), p))));
        jobs.push(crate::jobs::spawn(log.clone(), format!("projector:{}", p.name), node.clone(), start));
    }
    {
        let (c, l, b) = (config.clone(), log.clone(), blobstore.clone());
        let start: crate::jobs::Start = Box::new(move || crate::blob_cleaner::spawn_temp_blob_cleaner(&c, &l, b.clone()));
        jobs.push(crate::jobs::spawn(log.clone(), "blob-cleaner".into(), node.clone(), start));
    }
    if !config.crawlers.is_empty() {
        let crawlers = crate::crawlers::Crawlers::new(&config.hostname, &config.crawlers, config.crawl_interval);
        let l = log.clone();
        let start: crate::jobs::Start = Box::new(move || {
            crawlers.clone().spawn(l.clone()).ok_or_else(|| anyhow::anyhow!("no crawlers configured"))
        });
        jobs.push(crate::jobs::spawn(log.clone(), "crawl-notifier".into(), node.clone(), start));
    }
    if let Some(bind) = config.metrics_bind {
        jobs.push(crate::metrics::spawn_listener(bind, log.clone()).await?);
    }
    // The outbox sender runs on every node: each attempt is claimed by a stream-version CAS.
    let outbox = crate::outbox::spawn(&config, &log)?;
    let bind = config.bind;
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let local = listener.local_addr()?;
    let plc = if config.embedded_plc {
        format!("PLC directory: embedded, served at {}/did:plc:… from this database (private hostname, PDS_DID_PLC_URL unset)", config.public_url)
    } else {
        format!("PLC directory: {}", config.did_plc_url)
    };
    tracing::info!(
        "pds {VERSION} listening on http://{local} (public URL {}, {} database {}, data directory {}, secrets in {}, {plc})",
        config.public_url,
        log.backend(),
        redact(&config.database_url),
        config.data_directory.display(),
        config.secrets.file.display()
    );
    let scratch = open_scratch(&config);
    let identity = open_identity(&config, scratch.clone())?;
    let app = router(config, log, blobstore, identity, scratch).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Graceful: stop accepting and let requests finish, but not forever (a slow client reading a
    // large getRepo): whatever is still open after SHUTDOWN_GRACE is dropped. (Upgraded firehose
    // connections are not waited for.)
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            stopping.notify_one();
        }
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(signal);
    tokio::select! {
        r = served => r?,
        _ = async { stopping.notified().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("requests still running {SHUTDOWN_GRACE:?} after the shutdown signal: dropping them");
        }
    }
    // Aborting a job's lease task drops its lease; the job's own task stops with the runtime.
    outbox.abort();
    for j in jobs {
        j.abort();
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
