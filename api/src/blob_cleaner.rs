//! The periodic temporary-blob cleaner (uploaded blobs no record referenced within
//! `PDS_BLOB_TEMP_GRACE`).

use std::sync::Arc;

use crate::config::Config;
use crate::server::AppState;
use crate::xrpc::ctx;

/// Runs `clean_temp_blobs` every `min(grace / 2, 60 s)` (at least every second) for the life of
/// the process.
pub fn spawn_temp_blob_cleaner(
    config: &Config,
    log: &eventlog::EventLog,
    store: Arc<dyn blobstore::BlobStore>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let grace = config.blob_temp_grace;
    let every = (grace / 2).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60));
    let state = AppState {
        config: Arc::new(config.clone()),
        log: log.clone(),
        appender: projections::Appender::new(log.clone()),
        oauth: Arc::new(crate::oauth_runtime::OAuthRuntime::new(config)),
        blobstore: store,
        proxy: Arc::new(crate::proxy::Proxy::new(config)),
    };
    let ctx = ctx(&state).map_err(|e| anyhow::anyhow!("{}: {}", e.error, e.message))?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match commands::clean_temp_blobs::clean_temp_blobs(&ctx, grace).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "temporary blobs past their grace period removed"),
                Err(e) => tracing::warn!(error = %e, "temporary blob cleaning failed"),
            }
        }
    }))
}
