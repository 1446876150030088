//! The OAuth server's process state, shared by every OAuth route and the resource-server layer:
//! the stateless DPoP nonce key (`PDS_DPOP_SECRET`, so every node agrees), the replay store for
//! DPoP and client-assertion `jti`s (in-process, or Redis when `PDS_REDIS_SCRATCH_ADDRESS` is set,
//! so nodes share it), per-IP rate limits (in-process), and the client-metadata fetcher with its
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;

pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(600);
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
pub const FETCH_MAX_BYTES: usize = 64 * 1024;

pub struct OAuthRuntime {
    pub nonces: NonceKey,
    pub replay: ReplayStore,
    pub limits: RateLimits,
    clients: Mutex<HashMap<String, (Instant, ClientMetadata)>>,
}

impl OAuthRuntime {
    pub fn new(config: &Config) -> OAuthRuntime {
        let replay = match &config.redis_scratch_address {
            Some(addr) => ReplayStore::Redis(Redis::new(addr)),
            None => ReplayStore::Memory(Mutex::new(HashMap::new())),
        };
        OAuthRuntime {
            nonces: NonceKey::new(&config.secrets.dpop_secret, ROTATION_MS),
            replay,
            limits: RateLimits::default(),
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

/// The SSRF guard (also the proxy's, `proxy/ssrf.rs`): the addresses of `host`, all of them
/// public unicast, or why not. Callers connect only to the addresses returned.
pub async fn public_addresses(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::time::timeout(FETCH_TIMEOUT, tokio::net::lookup_host((host, port)))
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

/// GET a JSON document from a public address: every resolved address must be public, the
/// connection is pinned to the checked one, redirects are refused, 200 + `application/json`
/// required, at most [`FETCH_MAX_BYTES`] within [`FETCH_TIMEOUT`].
pub async fn fetch_json(url: &url::Url) -> Result<serde_json::Value, String> {
    let host = url.host_str().ok_or("no host")?.to_owned();
    let port = url.port_or_known_default().ok_or("no port")?;
    let addrs = public_addresses(&host, port).await.map_err(|e| format!("client metadata {e}"))?;
    let Some(first) = addrs.first().copied() else { return Err(format!("{host} has no address")) };
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
    Redis(Redis),
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
            ReplayStore::Redis(r) => r.set_nx_px(&key, ttl).await,
        }
    }
}

/// A minimal Redis client for one command, `SET key 1 PX ttl NX` (RESP2 over TCP; idle
/// connections kept for reuse). Enough for the shared replay store; not a general client.
pub struct Redis {
    addr: String,
    idle: Mutex<Vec<TcpStream>>,
}

fn resp_command(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    out
}

impl Redis {
    pub fn new(address: &str) -> Redis {
        let addr = address.trim().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        Redis { addr, idle: Mutex::new(Vec::new()) }
    }

    async fn connection(&self) -> Result<TcpStream, String> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(c);
        }
        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&self.addr))
            .await
            .map_err(|_| format!("redis {}: connect timed out", self.addr))?
            .map_err(|e| format!("redis {}: {e}", self.addr))
    }

    pub async fn set_nx_px(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        let ms = ttl.as_millis().max(1).to_string();
        let cmd = resp_command(&["SET", key, "1", "PX", &ms, "NX"]);
        // One retry on a fresh connection (an idle one may have been closed by the server).
        for attempt in 0..2 {
            let mut c = self.connection().await?;
            let result = async {
                c.write_all(&cmd).await.map_err(|e| e.to_string())?;
                let mut buf = [0u8; 64];
                let mut got = Vec::new();
                while !got.ends_with(b"\r\n") {
                    let n = c.read(&mut buf).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("connection closed".to_owned());
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                Ok(got)
            };
            match tokio::time::timeout(Duration::from_secs(3), result).await {
                Ok(Ok(reply)) => {
                    if let Ok(mut idle) = self.idle.lock() {
                        if idle.len() < 16 {
                            idle.push(c);
                        }
                    }
                    return match reply.as_slice() {
                        b"+OK\r\n" => Ok(true),
                        b"$-1\r\n" | b"_\r\n" => Ok(false),
                        other => Err(format!("redis: unexpected reply {:?}", String::from_utf8_lossy(other))),
                    };
                }
                Ok(Err(e)) if attempt == 0 => tracing::debug!(%e, "redis connection failed; retrying"),
                Ok(Err(e)) => return Err(format!("redis {}: {e}", self.addr)),
                Err(_) => return Err(format!("redis {}: timed out", self.addr)),
            }
        }
        Err(format!("redis {}: unreachable", self.addr))
    }
}

/// Per-IP fixed-window limits (per minute) of the OAuth endpoints, in-process.
/// (bucket, IP) → (window start, requests in the window).
type Windows = HashMap<(&'static str, IpAddr), (Instant, u32)>;

#[derive(Default)]
pub struct RateLimits {
    windows: Mutex<Windows>,
}

/// Requests per minute per IP (PAR, token, authorize POST, revoke).
pub fn limit_of(bucket: &str) -> u32 {
    match bucket {
        "par" => 60,
        "token" => 300,
        "authorize" => 30,
        _ => 60,
    }
}

impl RateLimits {
    /// Counts one request; false when the IP is over its limit this minute.
    pub fn allow(&self, bucket: &'static str, ip: IpAddr) -> bool {
        let Ok(mut w) = self.windows.lock() else { return true };
        let now = Instant::now();
        if w.len() > 50_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = w.entry((bucket, ip)).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= limit_of(bucket)
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
