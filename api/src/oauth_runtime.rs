//! The OAuth server's process state, shared by every OAuth route and the resource-server layer:
//! the stateless DPoP nonce key (`PDS_DPOP_SECRET`, so every node agrees), the replay store for
//! DPoP and client-assertion `jti`s (in-process, or the Redis scratch store when
//! `PDS_REDIS_SCRATCH_ADDRESS` is set, so nodes share it), and the client-metadata fetcher with its
//! 10-minute cache and SSRF protection (public addresses only, pinned to the checked address,
//! no redirects, 10 s, 64 KiB).
//!
//! Holds no OAuth session state: that lives in the log and the `oauth` read model.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::oauth::client::{self, ClientIdKind, ClientMetadata};
use domain::oauth::nonce::{NonceKey, ROTATION_MS};
use crate::config::Config;
use crate::redis_scratch::Scratch;

pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(600);
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
pub const FETCH_MAX_BYTES: usize = 64 * 1024;

pub struct OAuthRuntime {
    pub nonces: NonceKey,
    pub replay: ReplayStore,
    clients: Mutex<HashMap<String, (Instant, ClientMetadata)>>,
}

impl OAuthRuntime {
    /// `scratch`: the shared store (`server::open_scratch`); `None` keeps replay state in memory.
    pub fn new(config: &Config, scratch: Option<Scratch>) -> OAuthRuntime {
        let replay = match scratch {
            Some(s) => ReplayStore::Redis(s),
            None => ReplayStore::Memory(Mutex::new(HashMap::new())),
        };
        OAuthRuntime {
            nonces: NonceKey::new(&config.secrets.dpop_secret, ROTATION_MS),
            replay,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client's metadata: synthesised for loopback clients, else fetched (cached).
    pub async fn client(&self, client_id: &str) -> Result<ClientMetadata, client::ClientError> {
        match client::classify(client_id)? {
            ClientIdKind::Loopback => client::loopback_metadata(client_id),
            ClientIdKind::Discoverable(url) => {
                if let Ok(cache) = self.clients.lock() {
                    if let Some((at, m)) = cache.get(client_id) {
                        if at.elapsed() < CLIENT_CACHE_TTL {
                            return Ok(m.clone());
                        }
                    }
                }
                let fetched = fetch_json(&url).await;
                crate::metrics::get().outbound("client-metadata", if fetched.is_ok() { "ok" } else { "failed" });
                let doc = fetched.map_err(client::ClientError::InvalidMetadata)?;
                let meta = client::validate_metadata(client_id, &doc)?;
                if let Ok(mut cache) = self.clients.lock() {
                    if cache.len() > 10_000 {
                        cache.clear();
                    }
                    cache.insert(client_id.to_owned(), (Instant::now(), meta.clone()));
                }
                Ok(meta)
            }
        }
    }
}

pub use commands::safe_fetch::is_public;

/// The SSRF guard (also the proxy's, `proxy/ssrf.rs`): the addresses of `host`, all of them
/// public unicast, or why not. Callers connect only to the addresses returned.
pub async fn public_addresses(host: &str, port: u16) -> Result<Vec<std::net::SocketAddr>, String> {
    let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(FETCH_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("resolving {host} timed out"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!("host {host} resolves to a private or loopback address ({})", bad.ip()));
    }
    Ok(addrs)
}

/// GET a JSON document from a public address (`commands::safe_fetch`: every resolved address
/// public, pinned, no redirects), 200 + `application/json` required, at most
/// [`FETCH_MAX_BYTES`] within [`FETCH_TIMEOUT`].
pub async fn fetch_json(url: &url::Url) -> Result<serde_json::Value, String> {
    let limits = commands::safe_fetch::Limits { timeout: FETCH_TIMEOUT, max_bytes: FETCH_MAX_BYTES, allow_private: false };
    let host = url.host_str().unwrap_or_default();
    let got = commands::safe_fetch::get(url, "application/json", &limits, None).await.map_err(|e| {
        if e.0.starts_with(&format!("{host} resolves")) {
            format!("client metadata host {}", e.0)
        } else {
            e.0
        }
    })?;
    if got.status != 200 {
        return Err(format!("fetching {url}: HTTP {} (redirects are not followed)", got.status));
    }
    let json_type = got
        .content_type
        .as_deref()
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json_type {
        return Err(format!("fetching {url}: Content-Type must be application/json"));
    }
    serde_json::from_slice(&got.body).map_err(|e| format!("{url}: invalid JSON: {e}"))
}

/// `unique(namespace, value, ttl)`: true the first time a value is seen within its TTL.
pub enum ReplayStore {
    Memory(Mutex<HashMap<String, Instant>>),
    Redis(Scratch),
}

impl ReplayStore {
    pub async fn unique(&self, namespace: &str, value: &str, ttl: Duration) -> Result<bool, String> {
        let key = format!("nonces:{namespace}:{value}");
        match self {
            ReplayStore::Memory(m) => {
                let mut m = m.lock().map_err(|_| "replay store poisoned".to_owned())?;
                let now = Instant::now();
                if m.len() > 100_000 {
                    m.retain(|_, exp| *exp > now);
                }
                match m.get(&key) {
                    Some(exp) if *exp > now => Ok(false),
                    _ => {
                        m.insert(key, now + ttl);
                        Ok(true)
                    }
                }
            }
            ReplayStore::Redis(r) => {
                let result = r.set_nx_px(&key, ttl).await.map_err(|e| e.to_string());
                crate::metrics::get().outbound("redis", if result.is_ok() { "ok" } else { "failed" });
                result
            }
        }
    }
}
