//! Server configuration from `PDS_*` environment variables (same names and meanings as the
//! reference PDS, so an existing `pds.env` works), with zero-setup localhost defaults.
//!
//! Secrets that are not given in the environment are generated once and kept in
//! `<data directory>/secrets.env` (mode 0600); see `secrets.rs`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::secrets::Secrets;

/// Default port of the reference PDS.
pub const DEFAULT_PORT: u16 = 2583;
/// Reference default for `PDS_DID_PLC_URL`.
pub const DEFAULT_DID_PLC_URL: &str = "https://plc.directory";
/// Reference default for `PDS_BLOB_UPLOAD_LIMIT` (5 MiB).
pub const DEFAULT_BLOB_UPLOAD_LIMIT: u64 = 5 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be {expected}, found {found:?}")]
    Invalid { name: &'static str, expected: &'static str, found: String },
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub hostname: String,
    pub port: u16,
    pub bind: SocketAddr,
    pub public_url: String,
    pub service_did: String,
    pub data_directory: PathBuf,
    /// `PDS_DATABASE_URL`: `postgres://…` for many nodes on one database; default
    /// `sqlite:<data directory>/pds.sqlite`.
    pub database_url: String,
    pub service_handle_domains: Vec<String>,
    pub invite_required: bool,
    pub blob_upload_limit: u64,
    /// `PDS_MAX_REPO_IMPORT_SIZE` (default: the blob upload limit, as the reference).
    pub max_repo_import_size: u64,
    /// `PDS_ACCEPTING_REPO_IMPORTS` (default true).
    pub accepting_repo_imports: bool,
    pub privacy_policy_url: Option<String>,
    pub terms_of_service_url: Option<String>,
    pub contact_email_address: Option<String>,
    pub dev_mode: bool,
    /// `PDS_DID_PLC_URL`: the PLC directory new did:plc identities are submitted to (default
    /// `https://plc.directory`, as the reference). With [`Config::embedded_plc`], this server's
    /// public URL.
    pub did_plc_url: String,
    /// Serve and use the embedded PLC directory (this database): `PDS_DID_PLC_URL` unset and a
    /// hostname no one else can reach ([`is_private_hostname`]), so a local server never
    /// registers DIDs pointing at itself in the public directory.
    pub embedded_plc: bool,
    /// `PDS_MAX_SUBSCRIPTION_BUFFER`: firehose frames a live subscriber may lag behind (500).
    pub max_subscription_buffer: usize,
    /// `PDS_REPO_BACKFILL_LIMIT_MS`: how far back a firehose cursor may reach (24 h).
    pub repo_backfill_limit: std::time::Duration,
    /// `PDS_REDIS_SCRATCH_ADDRESS` (`host:port`): shared DPoP/client-assertion replay store; unset
    /// = in-process.
    pub redis_scratch_address: Option<String>,
    /// `PDS_REDIS_SCRATCH_PASSWORD`: AUTH password of the scratch store (as the reference).
    pub redis_scratch_password: Option<String>,
    /// `PDS_REDIS_SCRATCH_TLS_CA_FILE` (ours): PEM roots for a `rediss://` address.
    pub redis_scratch_tls_ca_file: Option<String>,
    /// `PDS_RATE_LIMITS_ENABLED` and the limiter's other settings (`rate_limit.rs`).
    pub rate_limits: crate::rate_limit::RateLimitConfig,
    /// Handle and DID resolution and its cache (`PDS_HANDLE_RESOLVER_NAMESERVERS`,
    /// `PDS_HANDLE_BACKUP_NAMESERVERS`, `PDS_ID_RESOLVER_TIMEOUT`, `PDS_DID_CACHE_STALE_TTL`,
    /// `PDS_DID_CACHE_MAX_TTL`; `commands::identity`).
    pub identity: commands::identity::IdentitySettings,
    /// `PDS_EMAIL_FROM_ADDRESS` (default `noreply@<hostname>`).
    pub email_from_address: String,
    /// Mail and notification delivery: `PDS_EMAIL_SMTP_URL` (unset = the dev mail sink
    /// `<data directory>/mail/`), retries, chat channels (`outbox/mod.rs`).
    pub outbox: crate::outbox::OutboxSettings,
    /// Where blob bytes live: `PDS_BLOBSTORE_DISK_LOCATION` (default `<data>/blobs`) or an
    /// S3-compatible bucket (`PDS_BLOBSTORE_S3_*`); setting both is an error, as in the reference.
    pub blobstore: BlobstoreConfig,
    /// `PDS_BLOB_TEMP_GRACE_SECONDS`: how long an uploaded blob may stay unreferenced (1 h).
    pub blob_temp_grace: std::time::Duration,
    /// `PDS_CRAWLERS`: relays asked to crawl us (comma-separated URLs; none by default).
    pub crawlers: Vec<String>,
    /// `PDS_CRAWL_INTERVAL_MS` (ours): least time between two requestCrawls to one crawler
    /// (20 minutes, the reference's threshold).
    pub crawl_interval: std::time::Duration,
    /// `PDS_METRICS_BIND` (ours, `host:port`): also serve `/metrics` there, without auth (for a
    /// scraper on a private address); unset = only on the main listener, behind the admin password.
    pub metrics_bind: Option<SocketAddr>,
    /// Where XRPC calls not served here are proxied, and the proxy's limits (`proxy/`).
    pub proxy: ProxyConfig,
    /// `PDS_BSKY_APP_VIEW_CDN_URL_PATTERN`: image URLs in read-after-write views
    /// (`util.format`-style: three `%s` = preset, DID, CID); unset → our `getBlob` URL.
    pub bsky_cdn_url_pattern: Option<String>,
    pub secrets: Secrets,
}

/// A service calls are proxied to by default: its URL and its DID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    pub url: String,
    pub did: String,
}

/// The proxy's settings, with the reference's names and defaults.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// `PDS_BSKY_APP_VIEW_URL` + `PDS_BSKY_APP_VIEW_DID`: every NSID without a more specific
    /// service (`app.bsky.*`, `chat.bsky.*`, …).
    pub bsky_app_view: Option<ServiceTarget>,
    /// `PDS_MOD_SERVICE_URL` + `PDS_MOD_SERVICE_DID`: the `tools.ozone.*` methods.
    pub mod_service: Option<ServiceTarget>,
    /// `PDS_REPORT_SERVICE_URL` + `PDS_REPORT_SERVICE_DID`: `com.atproto.moderation.createReport`
    /// (default: the mod service, as the reference).
    pub report_service: Option<ServiceTarget>,
    /// `PDS_DISABLE_SSRF_PROTECTION` (default: `PDS_DEV_MODE`): endpoints found in DID documents may
    /// then be plain HTTP and private addresses.
    pub disable_ssrf_protection: bool,
    /// `PDS_PROXY_HEADERS_TIMEOUT` (ms, 10 s): from the request sent to the response headers.
    pub headers_timeout: std::time::Duration,
    /// `PDS_PROXY_BODY_TIMEOUT` (ms, 30 s): longest silence between two chunks of a response body.
    pub body_timeout: std::time::Duration,
    /// `PDS_PROXY_MAX_RESPONSE_SIZE` (bytes, 10 MiB).
    pub max_response_size: u64,
    /// `PDS_DID_CACHE_STALE_TTL` (ms, 1 h): a resolved service DID document is used as is; after
    /// that it is used once more while it is resolved again.
    pub did_cache_stale_ttl: std::time::Duration,
    /// `PDS_DID_CACHE_MAX_TTL` (ms, 1 day): never used older than this.
    pub did_cache_max_ttl: std::time::Duration,
}

fn service_target(env: &dyn Env, url_name: &'static str, did_name: &'static str) -> Result<Option<ServiceTarget>, ConfigError> {
    let Some(url) = env.get(url_name) else { return Ok(None) };
    let parsed = url::Url::parse(url.trim()).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if parsed.is_none() {
        return Err(ConfigError::Invalid { name: url_name, expected: "an http(s) URL", found: url });
    }
    let did = env.get(did_name).ok_or(ConfigError::Invalid {
        name: did_name,
        expected: "set (a DID) when its service URL is set",
        found: String::new(),
    })?;
    if !domain::syntax::is_valid_did(did.trim()) {
        return Err(ConfigError::Invalid { name: did_name, expected: "a DID", found: did });
    }
    Ok(Some(ServiceTarget { url: url.trim().trim_end_matches('/').to_owned(), did: did.trim().to_owned() }))
}

fn proxy_config(env: &dyn Env, dev_mode: bool) -> Result<ProxyConfig, ConfigError> {
    let ms = |name: &'static str, default: u64| -> Result<std::time::Duration, ConfigError> {
        Ok(std::time::Duration::from_millis(match env.get(name) {
            Some(v) => parse_num(name, &v)?,
            None => default,
        }))
    };
    let mod_service = service_target(env, "PDS_MOD_SERVICE_URL", "PDS_MOD_SERVICE_DID")?;
    let report_service = service_target(env, "PDS_REPORT_SERVICE_URL", "PDS_REPORT_SERVICE_DID")?.or_else(|| mod_service.clone());
    Ok(ProxyConfig {
        bsky_app_view: service_target(env, "PDS_BSKY_APP_VIEW_URL", "PDS_BSKY_APP_VIEW_DID")?,
        mod_service,
        report_service,
        disable_ssrf_protection: match env.get("PDS_DISABLE_SSRF_PROTECTION") {
            Some(v) => parse_bool("PDS_DISABLE_SSRF_PROTECTION", &v)?,
            None => dev_mode,
        },
        headers_timeout: ms("PDS_PROXY_HEADERS_TIMEOUT", 10_000)?,
        body_timeout: ms("PDS_PROXY_BODY_TIMEOUT", 30_000)?,
        max_response_size: match env.get("PDS_PROXY_MAX_RESPONSE_SIZE") {
            Some(v) => parse_num("PDS_PROXY_MAX_RESPONSE_SIZE", &v)?,
            None => 10 * 1024 * 1024,
        },
        did_cache_stale_ttl: ms("PDS_DID_CACHE_STALE_TTL", 60 * 60 * 1000)?,
        did_cache_max_ttl: ms("PDS_DID_CACHE_MAX_TTL", 24 * 60 * 60 * 1000)?,
    })
}

#[derive(Debug, Clone)]
pub enum BlobstoreConfig {
    Disk { location: PathBuf },
    /// `spool`: `PDS_BLOBSTORE_DISK_TMP_LOCATION`, default `<data>/blob-spool`.
    S3 { s3: blobstore::S3Config, spool: PathBuf },
}

fn blobstore_config(env: &dyn Env, data_directory: &std::path::Path) -> Result<BlobstoreConfig, ConfigError> {
    let disk = env.get("PDS_BLOBSTORE_DISK_LOCATION");
    let Some(bucket) = env.get("PDS_BLOBSTORE_S3_BUCKET") else {
        let location = disk.map(PathBuf::from).unwrap_or_else(|| data_directory.join("blobs"));
        return Ok(BlobstoreConfig::Disk { location });
    };
    if disk.is_some() {
        return Err(ConfigError::Invalid {
            name: "PDS_BLOBSTORE_DISK_LOCATION",
            expected: "unset when PDS_BLOBSTORE_S3_BUCKET is set (one blob store)",
            found: disk.unwrap_or_default(),
        });
    }
    let need = |name: &'static str| {
        env.get(name).ok_or(ConfigError::Invalid { name, expected: "set with PDS_BLOBSTORE_S3_BUCKET", found: String::new() })
    };
    let force_path_style = match env.get("PDS_BLOBSTORE_S3_FORCE_PATH_STYLE") {
        Some(v) => parse_bool("PDS_BLOBSTORE_S3_FORCE_PATH_STYLE", &v)?,
        None => false,
    };
    let upload_timeout = std::time::Duration::from_millis(match env.get("PDS_BLOBSTORE_S3_UPLOAD_TIMEOUT_MS") {
        Some(v) => parse_num("PDS_BLOBSTORE_S3_UPLOAD_TIMEOUT_MS", &v)?,
        None => 20_000,
    });
    let s3 = blobstore::S3Config {
        bucket,
        endpoint: env.get("PDS_BLOBSTORE_S3_ENDPOINT"),
        region: env.get("PDS_BLOBSTORE_S3_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
        access_key_id: need("PDS_BLOBSTORE_S3_ACCESS_KEY_ID")?,
        secret_access_key: need("PDS_BLOBSTORE_S3_SECRET_ACCESS_KEY")?,
        force_path_style,
        upload_timeout,
    };
    let spool = env
        .get("PDS_BLOBSTORE_DISK_TMP_LOCATION")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_directory.join("blob-spool"));
    Ok(BlobstoreConfig::S3 { s3, spool })
}

impl BlobstoreConfig {
    /// Opens the configured store (creating local directories).
    pub fn open(&self) -> Result<std::sync::Arc<dyn blobstore::BlobStore>, blobstore::BlobStoreError> {
        Ok(match self {
            BlobstoreConfig::Disk { location } => std::sync::Arc::new(blobstore::DiskStore::open(location)?),
            BlobstoreConfig::S3 { s3, spool } => std::sync::Arc::new(blobstore::S3Store::new(s3.clone(), spool)?),
        })
    }
}

fn identity_settings(env: &dyn Env, plc_url: &str, dev_mode: bool) -> Result<commands::identity::IdentitySettings, ConfigError> {
    let mut s = commands::identity::IdentitySettings::new(plc_url);
    s.dev_mode = dev_mode;
    let servers = |name: &'static str| -> Result<Vec<std::net::SocketAddr>, ConfigError> {
        match env.get(name) {
            Some(v) => commands::identity::parse_nameservers(&v)
                .map_err(|found| ConfigError::Invalid { name, expected: "comma-separated ip or ip:port", found }),
            None => Ok(Vec::new()),
        }
    };
    s.nameservers = servers("PDS_HANDLE_RESOLVER_NAMESERVERS")?;
    s.backup_nameservers = servers("PDS_HANDLE_BACKUP_NAMESERVERS")?;
    let ms = |name: &'static str, default: u64| -> Result<std::time::Duration, ConfigError> {
        Ok(std::time::Duration::from_millis(match env.get(name) {
            Some(v) => parse_num(name, &v)?,
            None => default,
        }))
    };
    s.timeout = ms("PDS_ID_RESOLVER_TIMEOUT", 3000)?;
    s.stale_ttl = ms("PDS_DID_CACHE_STALE_TTL", 3_600_000)?;
    s.max_ttl = ms("PDS_DID_CACHE_MAX_TTL", 86_400_000)?;
    Ok(s)
}

/// Where configuration values come from: the process environment, or a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;
impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned().filter(|v| !v.trim().is_empty())
    }
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::Invalid { name, expected: "true or false", found: v.to_string() }),
    }
}

fn parse_num<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| ConfigError::Invalid { name, expected: "a non-negative integer", found: v.to_string() })
}

fn is_local(hostname: &str) -> bool {
    hostname == "localhost" || hostname.ends_with(".localhost") || hostname.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Special-use and private-use top-level domains (RFC 6761, RFC 6762, RFC 8375, ICANN's
/// `.internal`): names under them never resolve on the public internet.
const PRIVATE_TLDS: &[&str] = &["localhost", "test", "local", "internal", "invalid", "example", "home.arpa"];

/// A hostname no one outside this machine or network can reach: `localhost` or a name under
/// `.localhost`, `.test`, `.local`, `.internal`, `.invalid`, `.example` or `.home.arpa`, or an IP
/// address that is not globally routable (loopback, private, link-local, unspecified; IPv6
/// unique-local and link-local). On such a hostname, with `PDS_DID_PLC_URL` unset, the server
/// runs the embedded PLC directory instead of registering its DIDs at `https://plc.directory`.
pub fn is_private_hostname(hostname: &str) -> bool {
    let h = hostname.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
            IpAddr::V6(v6) => {
                let first = v6.segments()[0];
                v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
        };
    }
    PRIVATE_TLDS.iter().any(|tld| h == *tld || h.ends_with(&format!(".{tld}")))
}

impl Config {
    /// Where the shared scratch store is, if configured.
    pub fn scratch(&self) -> Option<crate::redis_scratch::ScratchConfig> {
        self.redis_scratch_address.as_ref().map(|address| crate::redis_scratch::ScratchConfig {
            address: address.clone(),
            password: self.redis_scratch_password.clone(),
            tls_ca_file: self.redis_scratch_tls_ca_file.clone(),
        })
    }

    /// Reads the configuration, creating the data directory and generating missing secrets.
    pub fn load(env: &dyn Env) -> Result<Config, ConfigError> {
        let hostname = env.get("PDS_HOSTNAME").unwrap_or_else(|| "localhost".to_string());
        let port = match env.get("PDS_PORT") {
            Some(v) => parse_num("PDS_PORT", &v)?,
            None => DEFAULT_PORT,
        };
        let local = is_local(&hostname);
        // The reference PDS listens on every interface; a localhost-only server should not.
        let bind_ip = match env.get("PDS_BIND_ADDRESS") {
            Some(v) => v.trim().parse::<IpAddr>().map_err(|_| ConfigError::Invalid {
                name: "PDS_BIND_ADDRESS",
                expected: "an IP address",
                found: v.clone(),
            })?,
            None if local => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let dev_mode = match env.get("PDS_DEV_MODE") {
            Some(v) => parse_bool("PDS_DEV_MODE", &v)?,
            None => local,
        };
        let public_url = if local {
            format!("http://{hostname}:{port}")
        } else {
            format!("https://{hostname}")
        };
        let service_did = env.get("PDS_SERVICE_DID").unwrap_or_else(|| {
            if local {
                format!("did:web:{hostname}%3A{port}")
            } else {
                format!("did:web:{hostname}")
            }
        });
        if !domain::syntax::is_valid_did(&service_did) {
            return Err(ConfigError::Invalid { name: "PDS_SERVICE_DID", expected: "a DID", found: service_did });
        }
        let data_directory =
            PathBuf::from(env.get("PDS_DATA_DIRECTORY").unwrap_or_else(|| "./pds-data".to_string()));
        let existed = data_directory.exists();
        std::fs::create_dir_all(&data_directory).map_err(|source| ConfigError::DataDir {
            path: data_directory.display().to_string(),
            source,
        })?;
        // The database holds password hashes and encrypted keys: a directory we create is ours
        // alone. An operator's existing directory keeps the permissions they chose.
        #[cfg(unix)]
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data_directory, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
                ConfigError::DataDir { path: data_directory.display().to_string(), source }
            })?;
        }
        let database_url = env.get("PDS_DATABASE_URL").unwrap_or_else(|| {
            format!("sqlite:{}", data_directory.join("pds.sqlite").display())
        });
        let service_handle_domains = match env.get("PDS_SERVICE_HANDLE_DOMAINS") {
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| if d.starts_with('.') { d.to_string() } else { format!(".{d}") })
                .collect(),
            None if local => vec![".test".to_string()],
            None => vec![format!(".{hostname}")],
        };
        let invite_required = match env.get("PDS_INVITE_REQUIRED") {
            Some(v) => parse_bool("PDS_INVITE_REQUIRED", &v)?,
            None => true,
        };
        let blob_upload_limit = match env.get("PDS_BLOB_UPLOAD_LIMIT") {
            Some(v) => parse_num("PDS_BLOB_UPLOAD_LIMIT", &v)?,
            None => DEFAULT_BLOB_UPLOAD_LIMIT,
        };
        let max_repo_import_size = match env.get("PDS_MAX_REPO_IMPORT_SIZE") {
            Some(v) => parse_num("PDS_MAX_REPO_IMPORT_SIZE", &v)?,
            None => blob_upload_limit,
        };
        let accepting_repo_imports = match env.get("PDS_ACCEPTING_REPO_IMPORTS") {
            Some(v) => parse_bool("PDS_ACCEPTING_REPO_IMPORTS", &v)?,
            None => true,
        };
        let max_subscription_buffer = match env.get("PDS_MAX_SUBSCRIPTION_BUFFER") {
            Some(v) => parse_num::<usize>("PDS_MAX_SUBSCRIPTION_BUFFER", &v)?.max(1),
            None => 500,
        };
        let repo_backfill_limit = std::time::Duration::from_millis(match env.get("PDS_REPO_BACKFILL_LIMIT_MS") {
            Some(v) => parse_num("PDS_REPO_BACKFILL_LIMIT_MS", &v)?,
            None => 24 * 60 * 60 * 1000,
        });
        let outbox = crate::outbox::OutboxSettings::from_env(env)?;
        let email_from_address = env.get("PDS_EMAIL_FROM_ADDRESS").unwrap_or_else(|| format!("noreply@{hostname}"));
        let blobstore = blobstore_config(env, &data_directory)?;
        let blob_temp_grace = std::time::Duration::from_secs(match env.get("PDS_BLOB_TEMP_GRACE_SECONDS") {
            Some(v) => parse_num("PDS_BLOB_TEMP_GRACE_SECONDS", &v)?,
            None => 3600,
        });
        let crawlers = env
            .get("PDS_CRAWLERS")
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let crawl_interval = match env.get("PDS_CRAWL_INTERVAL_MS") {
            Some(v) => std::time::Duration::from_millis(parse_num("PDS_CRAWL_INTERVAL_MS", &v)?),
            None => crate::crawlers::DEFAULT_INTERVAL,
        };
        let metrics_bind = match env.get("PDS_METRICS_BIND") {
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                name: "PDS_METRICS_BIND",
                expected: "an address and port, e.g. 127.0.0.1:9464",
                found: v.clone(),
            })?),
            None => None,
        };
        let proxy = proxy_config(env, dev_mode)?;
        let rate_limits = crate::rate_limit::RateLimitConfig::load(env)?;
        if let Some(a) = env.get("PDS_REDIS_SCRATCH_ADDRESS") {
            crate::redis_scratch::check_address(&a)
                .map_err(|why| ConfigError::Invalid { name: "PDS_REDIS_SCRATCH_ADDRESS", expected: "host:port or a redis:// / rediss:// URL", found: why })?;
        }
        let secrets = Secrets::load_or_generate(env, &data_directory)?;
        let plc_url = env.get("PDS_DID_PLC_URL");
        let embedded_plc = plc_url.is_none() && is_private_hostname(&hostname);
        let did_plc_url = match plc_url {
            Some(url) => url,
            None if embedded_plc => public_url.clone(),
            None => DEFAULT_DID_PLC_URL.to_string(),
        };
        let identity = identity_settings(env, &did_plc_url, dev_mode)?;
        Ok(Config {
            bind: SocketAddr::new(bind_ip, port),
            hostname,
            port,
            public_url,
            service_did,
            data_directory,
            database_url,
            service_handle_domains,
            invite_required,
            blob_upload_limit,
            max_repo_import_size,
            accepting_repo_imports,
            privacy_policy_url: env.get("PDS_PRIVACY_POLICY_URL"),
            terms_of_service_url: env.get("PDS_TERMS_OF_SERVICE_URL"),
            contact_email_address: env.get("PDS_CONTACT_EMAIL_ADDRESS"),
            dev_mode,
            did_plc_url,
            embedded_plc,
            max_subscription_buffer,
            repo_backfill_limit,
            redis_scratch_address: env.get("PDS_REDIS_SCRATCH_ADDRESS"),
            redis_scratch_password: env.get("PDS_REDIS_SCRATCH_PASSWORD"),
            redis_scratch_tls_ca_file: env.get("PDS_REDIS_SCRATCH_TLS_CA_FILE"),
            rate_limits,
            identity,
            email_from_address,
            outbox,
            blobstore,
            blob_temp_grace,
            crawlers,
            crawl_interval,
            metrics_bind,
            proxy,
            bsky_cdn_url_pattern: env.get("PDS_BSKY_APP_VIEW_CDN_URL_PATTERN").filter(|v| !v.trim().is_empty()),
            secrets,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn private_hostnames() {
        for h in [
            "localhost", "pds.localhost", "127.0.0.1", "::1", "[::1]", "10.1.2.3", "192.168.0.7", "172.16.5.4",
            "169.254.1.1", "0.0.0.0", "fd00::1", "fe80::1", "pds.test", "alice.test", "box.local", "pds.internal",
            "x.invalid", "pds.example", "nas.home.arpa", "PDS.TEST.",
        ] {
            assert!(is_private_hostname(h), "{h} is private");
        }
        for h in ["pds.example.com", "bsky.social", "8.8.8.8", "2001:4860::8888", "test.com", "localhost.com", "mytest"] {
            assert!(!is_private_hostname(h), "{h} is public");
        }
    }

    fn load(vars: &[(&str, &str)]) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let mut env: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.insert("PDS_DATA_DIRECTORY".into(), dir.path().join("data").display().to_string());
        Config::load(&env).unwrap()
    }

    #[test]
    fn embedded_plc_only_on_a_private_hostname_without_a_directory() {
        let local = load(&[]);
        assert!(local.embedded_plc);
        assert_eq!(local.did_plc_url, "http://localhost:2583");
        let test_tld = load(&[("PDS_HOSTNAME", "pds.test")]);
        assert!(test_tld.embedded_plc);
        assert_eq!(test_tld.did_plc_url, "https://pds.test");
        let given = load(&[("PDS_DID_PLC_URL", "http://127.0.0.1:9999")]);
        assert!(!given.embedded_plc);
        assert_eq!(given.did_plc_url, "http://127.0.0.1:9999");
        let public = load(&[("PDS_HOSTNAME", "pds.example.com")]);
        assert!(!public.embedded_plc);
        assert_eq!(public.did_plc_url, DEFAULT_DID_PLC_URL);
    }
}
