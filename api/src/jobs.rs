//! Run-once background jobs: the crawl notifier, the temporary-blob cleaner and each catch-up
//! projector run on exactly ONE node at a time. A node runs a job while it holds the job's lease
//! (`EventLog::lease_claim`: a Postgres advisory lock on a connection of its own; SQLite: always
//! this process); the others retry every [`RETRY`]. When the holder dies its session ends, Postgres
//! releases the lock, and another node takes over within about a second. A holder that loses its
//! lease connection stops the job at once (checked every [`CHECK`]).
//!
//! Who holds what: a log line `job lease taken` / `job lease lost` with the node id, and the gauge
//! `pds_job_leader{job}` (1 on the holder) in `/metrics`.

use std::time::Duration;

use tokio::task::JoinHandle;

use eventlog::EventLog;

/// How often a node without the lease tries again.
pub const RETRY: Duration = Duration::from_secs(1);
/// How often the holder checks that its lease connection is alive.
pub const CHECK: Duration = Duration::from_secs(1);

/// Starts a job's task; called each time this node takes the lease.
pub type Start = Box<dyn Fn() -> anyhow::Result<JoinHandle<()>> + Send + Sync>;

/// This node's name in logs: `<hostname>:<port>/pid <pid>`.
pub fn node_id(config: &crate::config::Config) -> String {
    format!("{}:{}/pid {}", config.hostname, config.port, std::process::id())
}

/// Runs `start`'s task while this node holds the lease `name`, for the life of the process.
pub fn spawn(log: EventLog, name: String, node: String, start: Start) -> JoinHandle<()> {
    tokio::spawn(async move {
        let metrics = crate::metrics::get();
        metrics.set_job_leader(&name, false);
        let mut claim = log.lease_claim(&name);
        loop {
            match claim.try_acquire().await {
                Ok(true) => match start() {
                    Ok(mut task) => {
                        metrics.set_job_leader(&name, true);
                        tracing::info!(job = %name, node = %node, "job lease taken: this node runs {name}");
                        let lost = loop {
                            tokio::select! {
                                _ = &mut task => break false,
                                _ = tokio::time::sleep(CHECK) => {
                                    if !claim.alive().await {
                                        break true;
                                    }
                                }
                            }
                        };
                        task.abort();
                        metrics.set_job_leader(&name, false);
                        if lost {
                            tracing::warn!(job = %name, node = %node, "job lease lost (its database session ended): {name} stopped here");
                        } else {
                            tracing::warn!(job = %name, node = %node, "job {name} ended; releasing its lease");
                        }
                        claim.release().await;
                    }
                    Err(e) => {
                        tracing::error!(job = %name, error = %e, "job could not start");
                        claim.release().await;
                    }
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(job = %name, error = %e, "taking the job lease failed; retrying"),
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}
