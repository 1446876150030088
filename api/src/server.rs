//! The HTTP server: router, state and the basic routes (`/`, `/robots.txt`, `/xrpc/_health`,
//! `com.atproto.server.describeServer`), the admin routes (`admin.rs`), and the catch-up projection
//! runners. Unknown XRPC methods answer `MethodNotImplemented`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use eventlog::EventLog;

use crate::config::Config;
use crate::xrpc::XrpcError;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long `_health` waits for the database before answering 503.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub log: EventLog,
    /// Every append of the server goes through this (inline projectors in the same transaction).
    pub appender: projections::Appender,
    /// OAuth nonces, replay store, rate limits, client metadata cache (`oauth_runtime.rs`).
    pub oauth: Arc<crate::oauth_runtime::OAuthRuntime>,
    /// Where blob bytes live (`blob_routes.rs`).
    pub blobstore: Arc<dyn blobstore::BlobStore>,
}

pub fn router(config: Config, log: EventLog, blobstore: Arc<dyn blobstore::BlobStore>) -> Router {
    let appender = projections::Appender::new(log.clone());
    let firehose = crate::firehose::Settings::from_config(&config);
    let oauth = Arc::new(crate::oauth_runtime::OAuthRuntime::new(&config));
    let state = AppState { config: Arc::new(config), log, appender, oauth, blobstore };
    let oauth_resource = axum::middleware::from_fn_with_state(state.clone(), crate::oauth_resource::layer);
    let oauth_nonces = axum::middleware::from_fn_with_state(state.clone(), crate::oauth_routes::nonce_layer);
    Router::new()
        .merge(crate::oauth_routes::routes())
        .merge(crate::oauth_authorize_page::routes())
        .merge(crate::admin::routes())
        .merge(crate::admin_accounts::routes())
        .merge(crate::firehose::routes_with(firehose))
        .merge(crate::server_accounts::routes())
        .merge(crate::repo_routes::routes())
        .merge(crate::server_invites::routes())
        .merge(crate::server_app_passwords::routes())
        .merge(crate::server_account_status::routes())
        .merge(crate::server_identity::routes())
        .merge(crate::server_email::routes())
        .merge(crate::sync_routes::routes())
        .merge(crate::blob_routes::routes())
        .merge(crate::import_routes::routes())
        .route("/", get(banner))
        .route("/robots.txt", get(robots))
        .route("/xrpc/_health", get(health))
        .route("/xrpc/com.atproto.server.describeServer", get(describe_server))
        .route("/xrpc/{nsid}", axum::routing::any(unknown_method))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::xrpc::plain_rejections_as_xrpc))
        .layer(oauth_resource)
        .layer(oauth_nonces)
        .with_state(state)
}

async fn banner() -> &'static str {
    "This is an AT Protocol Personal Data Server (PDS)\n\nMost API routes are under /xrpc/\n"
}

async fn robots() -> &'static str {
    "# Hello!\n\n# Crawling the public API is allowed\nUser-agent: *\nAllow: /\n"
}

/// `{version}`; 503 when the database does not answer (as the reference does).
async fn health(State(state): State<AppState>) -> Response {
    let head = tokio::time::timeout(HEALTH_TIMEOUT, state.log.head()).await;
    match head {
        Ok(Ok(_)) => Json(json!({ "version": VERSION })).into_response(),
        failed => {
            let cause = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {HEALTH_TIMEOUT:?}"),
            };
            tracing::error!(%cause, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "version": VERSION, "error": "Service Unavailable" })))
                .into_response()
        }
    }
}

async fn describe_server(State(state): State<AppState>) -> Json<serde_json::Value> {
    let c = &state.config;
    let mut links = serde_json::Map::new();
    if let Some(u) = &c.privacy_policy_url {
        links.insert("privacyPolicy".into(), json!(u));
    }
    if let Some(u) = &c.terms_of_service_url {
        links.insert("termsOfService".into(), json!(u));
    }
    let mut contact = serde_json::Map::new();
    if let Some(e) = &c.contact_email_address {
        contact.insert("email".into(), json!(e));
    }
    Json(json!({
        "did": c.service_did,
        "availableUserDomains": c.service_handle_domains,
        "inviteCodeRequired": c.invite_required,
        "phoneVerificationRequired": false,
        "links": links,
        "contact": contact,
    }))
}

async fn unknown_method(method: Method, req: Request) -> Response {
    let nsid = req.uri().path().trim_start_matches("/xrpc/");
    if !domain::syntax::is_valid_nsid(nsid) {
        return XrpcError::invalid_request(format!("invalid xrpc path: {nsid} is not an NSID")).into_response();
    }
    if method != Method::GET && method != Method::POST && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, POST")]).into_response();
    }
    XrpcError::method_not_implemented().into_response()
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
    let cleaner = crate::blob_routes::spawn_temp_blob_cleaner(&config, &log, blobstore.clone())?;
    let crawlers = crate::crawlers::Crawlers::new(&config.hostname, &config.crawlers, config.crawl_interval).spawn(log.clone());
    let bind = config.bind;
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let local = listener.local_addr()?;
    tracing::info!(
        "pds {VERSION} listening on http://{local} (public URL {}, {} database {}, data directory {}, secrets in {})",
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
