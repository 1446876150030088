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
    /// The proxy for every XRPC method not served here (`proxy/`).
    pub proxy: crate::proxy::SharedProxy,
}

pub fn router(config: Config, log: EventLog, blobstore: Arc<dyn blobstore::BlobStore>) -> Router {
    let appender = projections::Appender::new(log.clone());
    let firehose = crate::routes::com_atproto::sync::subscribe_repos::Settings::from_config(&config);
    let oauth = Arc::new(crate::oauth_runtime::OAuthRuntime::new(&config));
    let proxy = Arc::new(crate::proxy::Proxy::new(&config));
    let state = AppState { config: Arc::new(config), log, appender, oauth, blobstore, proxy };
    let oauth_nonces = axum::middleware::from_fn_with_state(state.clone(), crate::routes::oauth::server::nonce_layer);
    let methods = crate::routes::methods(firehose);
    crate::xrpc::router(&state, methods, crate::proxy::handle)
        .merge(crate::routes::other())
        .merge(crate::routes::plc_directory::routes(&state.config))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::xrpc::plain_rejections_as_xrpc))
        .layer(oauth_nonces)
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

/// Binds and serves until ctrl-c / SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let log = open_log(&config).await?;
    // One task per catch-up projector, for the life of the process.
    let runners = projections::runner::spawn(&log, &projections::all());
    let blobstore = config.blobstore.open().map_err(|e| anyhow::anyhow!("opening the blob store: {e}"))?;
    let cleaner = crate::blob_cleaner::spawn_temp_blob_cleaner(&config, &log, blobstore.clone())?;
    let crawlers = crate::crawlers::Crawlers::new(&config.hostname, &config.crawlers, config.crawl_interval).spawn(log.clone());
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
    let app = router(config, log, blobstore).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    for r in runners {
        r.abort();
    }
    cleaner.abort();
    if let Some(c) = crawlers {
        c.abort();
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
