//! The OAuth server's process state, shared by every OAuth route and the resource-server layer:
//! the stateless DPoP nonce key (`PDS_DPOP_SECRET`, so every node agrees), the replay store for
//! DPoP and client-assertion `jti`s (in-process, or the Redis scratch store when
//! `PDS_REDIS_SCRATCH_ADDRESS` is set, so nodes share it), and the client-metadata fetcher with its
//! 10-minute cache and SSRF protection (public addresses only, pinned to the checked address,
//! no redirects, 10 s, 64 KiB).
//!
//! Holds no OAuth session state: that lives in the log and the `oauth` read model.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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
                let doc = fetch_json(&url).await.map_err(client::ClientError::InvalidMetadata)?;
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

/// Whether an address may be fetched: public unicast only.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0xdb8)
        }
    }
}

/// GET a JSON document from a public address: every resolved address must be public, the
/// connection is pinned to the checked one, redirects are refused, 200 + `application/json`
/// required, at most [`FETCH_MAX_BYTES`] within [`FETCH_TIMEOUT`].
pub async fn fetch_json(url: &url::Url) -> Result<serde_json::Value, String> {
    let host = url.host_str().ok_or("no host")?.to_owned();
    let port = url.port_or_known_default().ok_or("no port")?;
    let addrs: Vec<SocketAddr> = tokio::time::timeout(FETCH_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
        .await
        .map_err(|_| format!("resolving {host} timed out"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let Some(first) = addrs.first().copied() else { return Err(format!("{host} has no address")) };
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!("client metadata host {host} resolves to a private or loopback address ({})", bad.ip()));
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .resolve(&host, first)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = http
        .get(url.as_str())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("fetching {url}: {e}"))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("fetching {url}: HTTP {} (redirects are not followed)", resp.status().as_u16()));
    }
    let json_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json_type {
        return Err(format!("fetching {url}: Content-Type must be application/json"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading {url}: {e}"))? {
        if body.len() + chunk.len() > FETCH_MAX_BYTES {
            return Err(format!("{url}: document larger than {FETCH_MAX_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: invalid JSON: {e}"))
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
            ReplayStore::Redis(r) => r.set_nx_px(&key, ttl).await.map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for (ip, public) in [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("8.8.8.8", true),
            ("2606:4700::1111", true),
        ] {
            assert_eq!(is_public(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))), public, "{ip}");
        }
    }
}
