//! Resolving other people's identities, with a cache: handles (DNS TXT `_atproto.<handle>` —
//! exactly one `did=` value — then `https://<handle>/.well-known/atproto-did`, then the
//! reference's backup nameservers) and DID documents (did:plc from `PDS_DID_PLC_URL` through the
//! directory's circuit breaker; did:web from `https://<host>/.well-known/did.json`).
//!
//! Every fetch goes through `safe_fetch` (public addresses only outside dev mode, no redirects,
//! bounded time and size). The cache (`PDS_DID_CACHE_STALE_TTL`, 1 h; `PDS_DID_CACHE_MAX_TTL`,
//! 1 day) lives in the Redis scratch store when configured, else in memory: a fresh entry is
//! served, a stale one is served and refreshed in the background, an expired one is resolved
//! again before answering. Only successes are cached.
//!
//! Never decides whether an identity may do something; `domain::did_doc` reads documents.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::safe_fetch::{self, Limits};
use crate::scratch::Scratch;

/// Largest `.well-known/atproto-did` answer read (a DID is at most 2 KiB).
pub const WELL_KNOWN_MAX_BYTES: usize = 4096;
/// Largest DID document read.
pub const DID_DOC_MAX_BYTES: usize = 64 * 1024;
const MEMORY_CACHE_MAX: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    InvalidHandle(String),
    #[error("{0}")]
    HandleNotFound(String),
    #[error("{0}")]
    InvalidDid(String),
    #[error("{0}")]
    DidNotFound(String),
    /// The host answered something that is not a usable DID document.
    #[error("{0}")]
    BadDidDocument(String),
    /// The directory's or host's failure (breaker open, 5xx, unreachable).
    #[error("{0}")]
    Unavailable(String),
}

/// Settings (from `PDS_*`; see the README).
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub plc_url: String,
    /// `PDS_HANDLE_RESOLVER_NAMESERVERS` (ours): `ip[:port]`s that replace the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// `PDS_HANDLE_BACKUP_NAMESERVERS` (reference): asked when DNS and HTTPS found nothing.
    pub backup_nameservers: Vec<SocketAddr>,
    /// `PDS_ID_RESOLVER_TIMEOUT` (ms; 3 s): the bound of each lookup or fetch.
    pub timeout: Duration,
    pub stale_ttl: Duration,
    pub max_ttl: Duration,
    /// Dev mode: `http://` and private addresses allowed for `.well-known` and did:web.
    pub dev_mode: bool,
}

impl IdentitySettings {
    pub fn new(plc_url: &str) -> IdentitySettings {
        IdentitySettings {
            plc_url: plc_url.trim_end_matches('/').to_owned(),
            nameservers: Vec::new(),
            backup_nameservers: Vec::new(),
            timeout: Duration::from_secs(3),
            stale_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86_400),
            dev_mode: false,
        }
    }
}

/// `ip` or `ip:port` (port 53 by default), comma-separated.
pub fn parse_nameservers(v: &str) -> Result<Vec<SocketAddr>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| s.to_owned())
        })
        .collect()
}

fn resolver(servers: &[SocketAddr], timeout: Duration) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("reading the system's DNS configuration: {e}"))?
    } else {
        let mut config = ResolverConfig::default();
        for s in servers {
            let mut udp = ConnectionConfig::udp();
            udp.port = s.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = s.port();
            config.name_servers.push(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
        }
        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = timeout;
    opts.attempts = 1;
    builder.build().map_err(|e| e.to_string())
}

enum Store {
    Memory(Mutex<HashMap<String, (u64, String)>>),
    Redis(Scratch),
}

struct Inner {
    settings: IdentitySettings,
    dns: TokioResolver,
    backup: Option<TokioResolver>,
    store: Store,
}

/// The resolver and its cache; clones share both.
#[derive(Clone)]
pub struct Identity(Arc<Inner>);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// A valid, lowercased handle, or why not (odd Unicode, bad labels, too long…).
pub fn normalize_handle(handle: &str) -> Result<String, IdentityError> {
    let h = handle.trim().to_ascii_lowercase();
    if !h.is_ascii() {
        return Err(IdentityError::InvalidHandle(format!(
            "{handle:?} is not a valid handle: handles are ASCII (a Unicode domain must be given in its xn-- form)"
        )));
    }
    if !domain::syntax::is_valid_handle(&h) {
        return Err(IdentityError::InvalidHandle(format!("{handle:?} is not a valid handle")));
    }
    Ok(h)
}

/// The DID in a set of TXT records (each a list of character-strings, joined): exactly one
/// `did=` value, a valid DID.
pub fn did_from_txt(records: &[Vec<Vec<u8>>], handle: &str) -> Result<Option<String>, IdentityError> {
    let values: Vec<String> = records
        .iter()
        .map(|chunks| chunks.iter().flat_map(|c| c.iter().copied()).collect::<Vec<u8>>())
        .filter_map(|bytes| String::from_utf8(bytes).ok())
        .filter_map(|v| v.strip_prefix("did=").map(str::to_owned))
        .collect();
    match values.as_slice() {
        [] => Ok(None),
        [did] => {
            let did = did.trim();
            if domain::syntax::is_valid_did(did) {
                Ok(Some(did.to_owned()))
            } else {
                Err(IdentityError::HandleNotFound(format!("_atproto.{handle} TXT names an invalid DID: {did:?}")))
            }
        }
        many => Err(IdentityError::HandleNotFound(format!(
            "_atproto.{handle} has {} did= TXT values; exactly one is allowed",
            many.len()
        ))),
    }
}

impl Identity {
    pub fn new(settings: IdentitySettings, scratch: Option<Scratch>) -> Result<Identity, String> {
        let dns = resolver(&settings.nameservers, settings.timeout)?;
        let backup = if settings.backup_nameservers.is_empty() {
            None
        } else {
            Some(resolver(&settings.backup_nameservers, settings.timeout)?)
        };
        let store = match scratch {
            Some(s) => Store::Redis(s),
            None => Store::Memory(Mutex::default()),
        };
        Ok(Identity(Arc::new(Inner { settings, dns, backup, store })))
    }

    pub fn settings(&self) -> &IdentitySettings {
        &self.0.settings
    }

    fn limits(&self, max_bytes: usize) -> Limits {
        Limits { timeout: self.0.settings.timeout, max_bytes, allow_private: self.0.settings.dev_mode }
    }

    async fn txt(&self, dns: &TokioResolver, handle: &str) -> Result<Option<String>, IdentityError> {
        let name = format!("_atproto.{handle}.");
        let lookup = match tokio::time::timeout(self.0.settings.timeout, dns.txt_lookup(name.as_str())).await {
            Ok(Ok(l)) => l,
            // NXDOMAIN, no TXT, unreachable server or timeout: DNS has no answer; HTTPS may.
            Ok(Err(e)) => {
                tracing::debug!(%handle, error = %e, "no _atproto TXT record");
                return Ok(None);
            }
            Err(_) => return Ok(None),
        };
        let records: Vec<Vec<Vec<u8>>> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.txt_data.iter().map(|c| c.to_vec()).collect()),
                _ => None,
            })
            .collect();
        did_from_txt(&records, handle)
    }

    async fn well_known(&self, handle: &str) -> Result<Option<String>, IdentityError> {
        let scheme = if self.0.settings.dev_mode { "http" } else { "https" };
        let Ok(url) = url::Url::parse(&format!("{scheme}://{handle}/.well-known/atproto-did")) else { return Ok(None) };
        let dns = (!self.0.settings.nameservers.is_empty()).then_some(&self.0.dns);
        let got = safe_fetch::get(&url, "text/plain", &self.limits(WELL_KNOWN_MAX_BYTES), dns)
            .await
            .map_err(|e| IdentityError::HandleNotFound(e.0))?;
        if got.status != 200 {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&got.body);
        let did = text.lines().next().unwrap_or_default().trim();
        if domain::syntax::is_valid_did(did) {
            Ok(Some(did.to_owned()))
        } else {
            Err(IdentityError::HandleNotFound(format!("{url} does not answer a DID")))
        }
    }

    /// A handle's DID from the network (no cache): DNS, then `.well-known`, then the backup
    /// nameservers.
    pub async fn resolve_handle_fresh(&self, handle: &str) -> Result<String, IdentityError> {
        let handle = normalize_handle(handle)?;
        if let Some(did) = self.txt(&self.0.dns, &handle).await? {
            return Ok(did);
        }
        let http = self.well_known(&handle).await;
        if let Ok(Some(did)) = http {
            return Ok(did);
        }
        if let Some(backup) = &self.0.backup {
            if let Some(did) = self.txt(backup, &handle).await? {
                return Ok(did);
            }
        }
        Err(match http {
            Err(e) => e,
            _ => IdentityError::HandleNotFound(format!(
                "{handle} has no _atproto TXT record and no /.well-known/atproto-did"
            )),
        })
    }

    /// A DID document from the directory or the did:web host (no cache). Its `id` must be the DID.
    pub async fn resolve_did_fresh(&self, did: &str) -> Result<serde_json::Value, IdentityError> {
        let parsed = domain::syntax::Did::parse(did).map_err(|_| IdentityError::InvalidDid(format!("invalid DID: {did:?}")))?;
        let (status, body) = match parsed.method() {
            "plc" => {
                let url = format!("{}/{did}", self.0.settings.plc_url);
                let client = crate::plc_client::client().map_err(|e| IdentityError::Unavailable(e.to_string()))?;
                let resp = crate::plc_client::send_to(&self.0.settings.plc_url, client.get(&url))
                    .await
                    .map_err(|open| IdentityError::Unavailable(open.to_string()))?
                    .map_err(|e| IdentityError::Unavailable(format!("GET {url}: {e}")))?;
                let status = resp.status().as_u16();
                if resp.content_length().is_some_and(|n| n > DID_DOC_MAX_BYTES as u64) {
                    return Err(IdentityError::BadDidDocument(format!("{url}: document larger than {DID_DOC_MAX_BYTES} bytes")));
                }
                let body = resp.bytes().await.map_err(|e| IdentityError::Unavailable(format!("GET {url}: {e}")))?;
                if body.len() > DID_DOC_MAX_BYTES {
                    return Err(IdentityError::BadDidDocument(format!("{url}: document larger than {DID_DOC_MAX_BYTES} bytes")));
                }
                (status, body.to_vec())
            }
            "web" => {
                let host = did.strip_prefix("did:web:").unwrap_or_default().replace("%3A", ":");
                if host.contains(':') && !(self.0.settings.dev_mode || host.starts_with("localhost:")) {
                    return Err(IdentityError::InvalidDid(format!("{did}: did:web with a port is only for localhost")));
                }
                if host.contains('/') || host.contains("%2F") {
                    return Err(IdentityError::InvalidDid(format!("{did}: did:web paths are not supported")));
                }
                let local = host == "localhost" || host.starts_with("localhost:");
                let scheme = if local || self.0.settings.dev_mode { "http" } else { "https" };
                let url = url::Url::parse(&format!("{scheme}://{host}/.well-known/did.json"))
                    .map_err(|_| IdentityError::InvalidDid(format!("{did}: not a usable host")))?;
                let mut limits = self.limits(DID_DOC_MAX_BYTES);
                limits.allow_private |= local;
                let dns = (!self.0.settings.nameservers.is_empty()).then_some(&self.0.dns);
                let got = safe_fetch::get(&url, "application/json", &limits, dns)
                    .await
                    .map_err(|e| IdentityError::DidNotFound(e.0))?;
                (got.status, got.body)
            }
            other => return Err(IdentityError::InvalidDid(format!("unsupported DID method: did:{other}"))),
        };
        match status {
            200 => {}
            404 | 410 => return Err(IdentityError::DidNotFound(format!("DID not found: {did}"))),
            s if s >= 500 => return Err(IdentityError::Unavailable(format!("resolving {did}: HTTP {s}"))),
            s => return Err(IdentityError::DidNotFound(format!("resolving {did}: HTTP {s}"))),
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| IdentityError::BadDidDocument(format!("{did}: the DID document is not JSON: {e}")))?;
        if doc.get("id").and_then(|v| v.as_str()) != Some(did) {
            return Err(IdentityError::BadDidDocument(format!("{did}: the DID document's id is not the DID")));
        }
        Ok(doc)
    }

    async fn cache_get(&self, key: &str) -> Option<(u64, String)> {
        match &self.0.store {
            Store::Memory(m) => m.lock().ok()?.get(key).cloned(),
            Store::Redis(r) => {
                let raw = r.get(key).await.map_err(|e| tracing::warn!(error = %e, "identity cache read failed")).ok()??;
                let s = String::from_utf8(raw).ok()?;
                let (t, v) = s.split_once('\n')?;
                Some((t.parse().ok()?, v.to_owned()))
            }
        }
    }

    async fn cache_put(&self, key: &str, value: &str) {
        let now = now_ms();
        match &self.0.store {
            Store::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    if m.len() >= MEMORY_CACHE_MAX {
                        m.clear();
                    }
                    m.insert(key.to_owned(), (now, value.to_owned()));
                }
            }
            Store::Redis(r) => {
                let raw = format!("{now}\n{value}");
                if let Err(e) = r.set_px(key, raw.as_bytes(), self.0.settings.max_ttl).await {
                    tracing::warn!(error = %e, "identity cache write failed");
                }
            }
        }
    }

    /// Drops a cached entry (after a refresh that failed, or an account's own change).
    pub async fn forget(&self, key: &str) {
        match &self.0.store {
            Store::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    m.remove(key);
                }
            }
            Store::Redis(r) => {
                let _ = r.del(key).await;
            }
        }
    }

    /// The cache around a resolution: fresh → cached; stale → cached, refreshed in the
    /// background; expired, missing or `force` → resolved now.
    async fn cached<F, Fut>(&self, key: String, force: bool, resolve: F) -> Result<String, IdentityError>
    where
        F: Fn(Identity) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<String, IdentityError>> + Send + 'static,
    {
        if !force {
            if let Some((at, value)) = self.cache_get(&key).await {
                let age = Duration::from_millis(now_ms().saturating_sub(at));
                if age < self.0.settings.stale_ttl {
                    return Ok(value);
                }
                if age < self.0.settings.max_ttl {
                    let me = self.clone();
                    tokio::spawn(async move {
                        match resolve(me.clone()).await {
                            Ok(v) => me.cache_put(&key, &v).await,
                            Err(e) => tracing::debug!(%key, error = %e, "background identity refresh failed; keeping the stale entry"),
                        }
                    });
                    return Ok(value);
                }
            }
        }
        let value = resolve(self.clone()).await?;
        self.cache_put(&key, &value).await;
        Ok(value)
    }

    /// A handle's DID, through the cache.
    pub async fn resolve_handle(&self, handle: &str, force: bool) -> Result<String, IdentityError> {
        let handle = normalize_handle(handle)?;
        let h = handle.clone();
        self.cached(format!("id:handle:{handle}"), force, move |me| {
            let h = h.clone();
            async move { me.resolve_handle_fresh(&h).await }
        })
        .await
    }

    /// A DID document, through the cache.
    pub async fn resolve_did(&self, did: &str, force: bool) -> Result<serde_json::Value, IdentityError> {
        let d = did.to_owned();
        let raw = self
            .cached(format!("id:did:{did}"), force, move |me| {
                let d = d.clone();
                async move { me.resolve_did_fresh(&d).await.map(|doc| doc.to_string()) }
            })
            .await?;
        serde_json::from_str(&raw).map_err(|e| IdentityError::BadDidDocument(format!("cached document of {did}: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn txt_values() {
        let rec = |parts: &[&str]| parts.iter().map(|p| p.as_bytes().to_vec()).collect::<Vec<_>>();
        let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        assert_eq!(did_from_txt(&[rec(&["did=", did])], "a.test").unwrap().as_deref(), Some(did), "chunks join");
        assert_eq!(did_from_txt(&[rec(&["v=spf1 -all"]), rec(&[&format!("did={did}")])], "a.test").unwrap().as_deref(), Some(did));
        assert_eq!(did_from_txt(&[rec(&["unrelated"])], "a.test").unwrap(), None);
        let two = did_from_txt(&[rec(&[&format!("did={did}")]), rec(&["did=did:plc:other"])], "a.test").unwrap_err();
        assert!(two.to_string().contains("2 did= TXT values"), "{two}");
        assert!(did_from_txt(&[rec(&["did=not a did"])], "a.test").is_err());
    }

    #[test]
    fn handles() {
        assert_eq!(normalize_handle(" Alice.Example.COM ").unwrap(), "alice.example.com");
        for bad in ["аlice.example.com", "alice..example.com", "ALICE", "-a.example.com", "a.example.com\u{200b}", ""] {
            let e = normalize_handle(bad).unwrap_err();
            assert!(matches!(e, IdentityError::InvalidHandle(_)), "{bad:?}: {e:?}");
        }
        assert_eq!(parse_nameservers("127.0.0.1:5353, 10.0.0.1").unwrap(), vec![
            "127.0.0.1:5353".parse().unwrap(),
            "10.0.0.1:53".parse().unwrap()
        ]);
        assert!(parse_nameservers("dns.example").is_err());
    }
}
