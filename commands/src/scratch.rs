//! The shared scratch store, Redis or Valkey at `PDS_REDIS_SCRATCH_ADDRESS`, through the
//! maintained `redis` crate: one lazily connecting, self-reconnecting connection per process
//! (`ConnectionManager`), AUTH with `PDS_REDIS_SCRATCH_PASSWORD` (and an ACL user from the
//! address), TLS for `rediss://` (rustls; the system and webpki roots, or the PEM CA file in
//! `PDS_REDIS_SCRATCH_TLS_CA_FILE`).
//!
//! Users: the OAuth replay store (`api/oauth_runtime.rs`), the rate limiter
//! (`api/rate_limit.rs`), the DID and handle cache (`identity.rs`).
//! Every call is bounded by [`CALL_TIMEOUT`]; callers decide what an unreachable store means
//! (the rate limiter falls back to memory, the replay store refuses). Never logs the password.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo};

/// Longest wait for one command, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("PDS_REDIS_SCRATCH_ADDRESS {address:?}: {why}")]
    Address { address: String, why: String },
    #[error("PDS_REDIS_SCRATCH_TLS_CA_FILE {path}: {source}")]
    CaFile { path: String, source: std::io::Error },
    #[error("redis {target}: {why}")]
    Call { target: String, why: String },
}

/// Where and how to connect (from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchConfig {
    /// `host:port` (as the reference), or a `redis://` / `rediss://` URL (user, password, db).
    pub address: String,
    /// `PDS_REDIS_SCRATCH_PASSWORD`: AUTH password (overrides one in the URL).
    pub password: Option<String>,
    /// `PDS_REDIS_SCRATCH_TLS_CA_FILE` (ours): PEM roots for `rediss://` with a private CA.
    pub tls_ca_file: Option<String>,
}

/// A connection to the scratch store, shared by clones.
#[derive(Clone)]
pub struct Scratch {
    manager: ConnectionManager,
    /// `host:port`, for messages (never the password).
    target: String,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch").field("target", &self.target).finish()
    }
}

/// The URL form of a configured address: `host:port` → `redis://host:port`.
fn as_url(address: &str) -> String {
    let a = address.trim();
    if a.contains("://") {
        a.to_owned()
    } else {
        format!("redis://{a}")
    }
}

/// Whether an address parses (at configuration time; no connection). The error never carries
/// the password.
pub fn check_address(address: &str) -> Result<(), String> {
    as_url(address).as_str().into_connection_info().map(|_| ()).map_err(|e| format!("{} ({e})", address.split('@').next_back().unwrap_or_default()))
}

impl Scratch {
    /// Prepares the connection; nothing is dialled until the first command, so a server that is
    /// down at start does not stop the PDS.
    pub fn open(config: &ScratchConfig) -> Result<Scratch, ScratchError> {
        let bad = |why: String| ScratchError::Address { address: config.address.clone(), why };
        let mut info = as_url(&config.address).as_str().into_connection_info().map_err(|e| bad(e.to_string()))?;
        if let Some(pw) = &config.password {
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        let target = match info.addr() {
            ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
            ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
            other => format!("{other:?}"),
        };
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let client = match (&config.tls_ca_file, tls) {
            (Some(path), true) => {
                let pem = std::fs::read(path).map_err(|source| ScratchError::CaFile { path: path.clone(), source })?;
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                redis::Client::build_with_tls(info, certs).map_err(|e| bad(e.to_string()))?
            }
            _ => redis::Client::open(info).map_err(|e| bad(e.to_string()))?,
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(1000)))
            .set_response_timeout(Some(Duration::from_millis(1000)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config).map_err(|e| bad(e.to_string()))?;
        Ok(Scratch { manager, target })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    fn call_error(&self, why: impl std::fmt::Display) -> ScratchError {
        ScratchError::Call { target: self.target.clone(), why: why.to_string() }
    }

    /// Runs one command or script invocation within [`CALL_TIMEOUT`].
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, ScratchError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(CALL_TIMEOUT, f(self.manager.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.call_error(e)),
            Err(_) => Err(self.call_error(format!("no answer within {CALL_TIMEOUT:?}"))),
        }
    }

    /// `SET key 1 PX ttl NX`: true when the key was not there (first use within the TTL).
    pub async fn set_nx_px(&self, key: &str, ttl: Duration) -> Result<bool, ScratchError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = key.to_owned();
        let reply: Option<String> = self
            .run(|mut c| async move {
                redis::cmd("SET").arg(&key).arg(1).arg("PX").arg(ms).arg("NX").query_async(&mut c).await
            })
            .await?;
        Ok(reply.is_some())
    }

    /// Runs a Lua script (EVALSHA, loading it on first use) with keys and arguments.
    pub async fn eval<T: redis::FromRedisValue + Send + 'static>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[u64],
    ) -> Result<T, ScratchError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ScratchError> {
        let key = key.to_owned();
        self.run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await }).await
    }

    /// `SET key value PX ttl`.
    pub async fn set_px(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), ScratchError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(|mut c| async move {
            redis::cmd("SET").arg(&key).arg(&value).arg("PX").arg(ms).query_async::<()>(&mut c).await
        })
        .await
    }

    /// `DEL key`.
    pub async fn del(&self, key: &str) -> Result<(), ScratchError> {
        let key = key.to_owned();
        self.run(|mut c| async move { redis::cmd("DEL").arg(&key).query_async::<()>(&mut c).await }).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(as_url("127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(as_url(" rediss://u:p@h:6380/2 "), "rediss://u:p@h:6380/2");
    }

    #[tokio::test]
    async fn targets_never_show_the_password() {
        let c = ScratchConfig { address: "redis://app:secret@127.0.0.1:1".into(), password: Some("pw".into()), tls_ca_file: None };
        let s = Scratch::open(&c).unwrap();
        assert_eq!(s.target(), "127.0.0.1:1");
        let err = s.set_nx_px("k", Duration::from_secs(1)).await.unwrap_err().to_string();
        assert!(!err.contains("secret") && !err.contains("pw"), "{err}");
        let tls = ScratchConfig { address: "rediss://127.0.0.1:1".into(), password: None, tls_ca_file: None };
        assert_eq!(Scratch::open(&tls).unwrap().target(), "127.0.0.1:1 (TLS)");
    }
}
