//! The one rate limiter: every bucket of the reference PDS (`rate-limits.ts` and the methods'
//! `rateLimit` declarations) plus our per-IP limits, fixed windows counted in memory or — when
//! `PDS_REDIS_SCRATCH_ADDRESS` is set — in Redis/Valkey by one Lua script (INCRBY + PEXPIRE,
//! atomic), so every node shares every count. A Redis failure falls back to this process's memory
//! with a warning: limits get per-node for a while, requests are never refused because of it.
//!
//! Off unless `PDS_RATE_LIMITS_ENABLED=true` (as the reference). Bypass: header
//! `x-ratelimit-bypass: <PDS_RATE_LIMIT_BYPASS_KEY>` or a client IP in `PDS_RATE_LIMIT_BYPASS_IPS`
//! (IPs or CIDRs). A bucket's size and window can be changed with `PDS_RATE_LIMIT_BUCKETS`
//! (`name=points/seconds,…`). Answers carry `RateLimit-Limit/-Remaining/-Reset/-Policy` of the
//! tightest bucket; over a limit → 429 `RateLimitExceeded` (+ `Retry-After`).
//!
//! The client IP is the socket's, or — when the socket is a trusted proxy (`PDS_TRUSTED_PROXIES`,
//! default `loopback,linklocal,uniquelocal` as the reference's `trust proxy`) — the nearest
//! untrusted address of `X-Forwarded-For`.
//!
//! [`METHODS`] is the table of which XRPC method draws on which buckets; the XRPC kernel's guard
//! calls [`check`] after a local method's auth (so per-account buckets see the verified DID, also
//! for OAuth). The OAuth endpoints call [`RateLimiter::check_ip`] with their bucket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::{ConfigError, Env};
use crate::redis_scratch::Scratch;
use crate::server::AppState;
use crate::xrpc::XrpcError;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// What a bucket counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBy {
    /// The client IP.
    Ip,
    /// The authenticated account (skipped when the request carries no valid credentials: the
    /// method refuses it anyway).
    Did,
    /// The login identifier (lowercased) with the client IP, as the reference's createSession.
    IdentifierAndIp,
}

/// One limit: `points` per fixed `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: &'static str,
    pub points: u64,
    pub window: Duration,
    pub key: KeyBy,
    /// Shared by every method that names it; otherwise each method counts on its own (the
    /// reference's unnamed per-method limits).
    pub shared: bool,
}

const fn b(name: &'static str, points: u64, secs: u64, key: KeyBy, shared: bool) -> Bucket {
    Bucket { name, points, window: Duration::from_secs(secs), key, shared }
}

/// Every bucket with its default size. The first group is the reference's, the second ours
/// (per-IP limits on credential and mail endpoints).
pub const DEFAULT_BUCKETS: &[Bucket] = &[
    b("global-ip", 3000, 5 * MINUTE, KeyBy::Ip, true),
    b("repo-write-hour", 5000, HOUR, KeyBy::Did, true),
    b("repo-write-day", 35000, DAY, KeyBy::Did, true),
    b("create-session-5min", 30, 5 * MINUTE, KeyBy::IdentifierAndIp, true),
    b("create-session-day", 300, DAY, KeyBy::IdentifierAndIp, true),
    b("create-account", 100, 5 * MINUTE, KeyBy::Ip, true),
    b("upload-blob", 1000, DAY, KeyBy::Ip, true),
    b("update-handle-5min", 10, 5 * MINUTE, KeyBy::Did, true),
    b("update-handle-day", 50, DAY, KeyBy::Did, true),
    b("delete-account", 50, 5 * MINUTE, KeyBy::Ip, true),
    b("reset-password", 50, 5 * MINUTE, KeyBy::Ip, true),
    b("request-password-reset-hour", 15, HOUR, KeyBy::Ip, true),
    b("request-password-reset-day", 50, DAY, KeyBy::Ip, true),
    b("email-request-hour", 5, HOUR, KeyBy::Did, false),
    b("email-request-day", 15, DAY, KeyBy::Did, false),
    b("get-repo", 6000, 5 * MINUTE, KeyBy::Ip, true),
    // ours
    b("login-ip", 10, MINUTE, KeyBy::Ip, true),
    b("refresh-session-ip", 60, MINUTE, KeyBy::Ip, true),
    b("create-account-ip", 10, HOUR, KeyBy::Ip, true),
    b("create-app-password-ip", 10, MINUTE, KeyBy::Ip, true),
    b("email-ip", 5, HOUR, KeyBy::Ip, true),
    b("oauth-par-ip", 30, MINUTE, KeyBy::Ip, true),
    b("oauth-token-ip", 30, MINUTE, KeyBy::Ip, true),
    b("oauth-authorize-ip", 10, MINUTE, KeyBy::Ip, true),
    b("oauth-revoke-ip", 30, MINUTE, KeyBy::Ip, true),
];

/// How many points a call costs in its method's buckets (the global bucket always costs 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    One,
    /// Fixed points (createRecord 3, putRecord 2, deleteRecord 1).
    Points(u64),
    /// applyWrites: create 3, update 2, delete 1, read from the body.
    ApplyWrites,
}

/// The method table of limits: NSID → its buckets and what a call costs in them.
pub const METHODS: &[(&str, &[&str], Cost)] = &[
    ("com.atproto.repo.createRecord", &["repo-write-hour", "repo-write-day"], Cost::Points(3)),
    ("com.atproto.repo.putRecord", &["repo-write-hour", "repo-write-day"], Cost::Points(2)),
    ("com.atproto.repo.deleteRecord", &["repo-write-hour", "repo-write-day"], Cost::Points(1)),
    ("com.atproto.repo.applyWrites", &["repo-write-hour", "repo-write-day"], Cost::ApplyWrites),
    ("com.atproto.repo.uploadBlob", &["upload-blob"], Cost::One),
    ("com.atproto.server.createSession", &["create-session-day", "create-session-5min", "login-ip"], Cost::One),
    ("com.atproto.server.createAccount", &["create-account", "create-account-ip"], Cost::One),
    ("com.atproto.server.refreshSession", &["refresh-session-ip"], Cost::One),
    ("com.atproto.server.createAppPassword", &["create-app-password-ip"], Cost::One),
    ("com.atproto.identity.updateHandle", &["update-handle-5min", "update-handle-day"], Cost::One),
    ("com.atproto.server.deleteAccount", &["delete-account"], Cost::One),
    ("com.atproto.server.resetPassword", &["reset-password"], Cost::One),
    (
        "com.atproto.server.requestPasswordReset",
        &["request-password-reset-day", "request-password-reset-hour", "email-ip"],
        Cost::One,
    ),
    ("com.atproto.server.requestEmailConfirmation", &["email-request-day", "email-request-hour", "email-ip"], Cost::One),
    ("com.atproto.server.requestEmailUpdate", &["email-request-day", "email-request-hour", "email-ip"], Cost::One),
    ("com.atproto.server.requestAccountDelete", &["email-request-day", "email-request-hour", "email-ip"], Cost::One),
    ("com.atproto.sync.getRepo", &["get-repo"], Cost::One),
];

/// The method that skips the global per-IP bucket (it has its own, as in the reference).
const GLOBAL_EXEMPT: &str = "com.atproto.sync.getRepo";

/// A network: an address and a prefix length (a bare IP is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let addr = canonical(ip.parse::<IpAddr>().ok()?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A list of networks, with the reference's (express `trust proxy`) names `loopback`,
/// `linklocal` and `uniquelocal`; `none` = empty.
pub fn parse_nets(name: &'static str, v: &str) -> Result<Vec<IpNet>, ConfigError> {
    let mut nets = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let named: &[&str] = match item {
            "none" => &[],
            "loopback" => &["127.0.0.0/8", "::1/128"],
            "linklocal" => &["169.254.0.0/16", "fe80::/10"],
            "uniquelocal" => &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
            other => {
                let net = IpNet::parse(other).ok_or(ConfigError::Invalid {
                    name,
                    expected: "comma-separated IPs or CIDRs (or loopback, linklocal, uniquelocal, none)",
                    found: other.to_owned(),
                })?;
                nets.push(net);
                continue;
            }
        };
        nets.extend(named.iter().filter_map(|n| IpNet::parse(n)));
    }
    Ok(nets)
}

/// The client's IP: the socket peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` address that is not itself trusted (the left-most if all are).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(v) = value.to_str() else { return peer };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => chain.push(canonical(ip)),
                // A garbled hop ends what can be believed.
                Err(_) => return chain.last().copied().unwrap_or(peer),
            }
        }
    }
    let mut client = peer;
    for ip in chain.iter().rev() {
        client = *ip;
        if !is_trusted(*ip) {
            break;
        }
    }
    client
}

/// The socket peer of a request (unspecified when the server was not given connect info).
pub fn peer_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The client's IP of a request (the socket, or `X-Forwarded-For` behind a trusted proxy).
pub fn client_ip_of(state: &AppState, req: &Request) -> IpAddr {
    client_ip(peer_ip(req), req.headers(), &state.config.rate_limits.trusted_proxies)
}

/// The limiter's settings (`PDS_RATE_LIMITS_ENABLED`, `PDS_RATE_LIMIT_BYPASS_KEY`,
/// `PDS_RATE_LIMIT_BYPASS_IPS`, `PDS_RATE_LIMIT_BUCKETS`, `PDS_TRUSTED_PROXIES`).
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub bypass_key: Option<String>,
    pub bypass_ips: Vec<IpNet>,
    pub buckets: Vec<Bucket>,
    pub trusted_proxies: Vec<IpNet>,
}

impl RateLimitConfig {
    pub fn load(env: &dyn Env) -> Result<RateLimitConfig, ConfigError> {
        let enabled = match env.get("PDS_RATE_LIMITS_ENABLED") {
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(ConfigError::Invalid { name: "PDS_RATE_LIMITS_ENABLED", expected: "true or false", found: v }),
            },
            None => false,
        };
        let bypass_ips = parse_nets("PDS_RATE_LIMIT_BYPASS_IPS", &env.get("PDS_RATE_LIMIT_BYPASS_IPS").unwrap_or_default())?;
        let trusted_proxies = parse_nets(
            "PDS_TRUSTED_PROXIES",
            &env.get("PDS_TRUSTED_PROXIES").unwrap_or_else(|| "loopback,linklocal,uniquelocal".to_owned()),
        )?;
        let mut buckets = DEFAULT_BUCKETS.to_vec();
        if let Some(v) = env.get("PDS_RATE_LIMIT_BUCKETS") {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let bad = || ConfigError::Invalid {
                    name: "PDS_RATE_LIMIT_BUCKETS",
                    expected: "name=points/seconds, comma-separated, with names from the README",
                    found: item.to_owned(),
                };
                let (name, size) = item.split_once('=').ok_or_else(bad)?;
                let (points, secs) = size.split_once('/').ok_or_else(bad)?;
                let points: u64 = points.trim().parse().map_err(|_| bad())?;
                let secs: u64 = secs.trim().parse().map_err(|_| bad())?;
                let bucket = buckets.iter_mut().find(|b| b.name == name.trim()).ok_or_else(bad)?;
                if secs == 0 {
                    return Err(bad());
                }
                bucket.points = points;
                bucket.window = Duration::from_secs(secs);
            }
        }
        Ok(RateLimitConfig { enabled, bypass_key: env.get("PDS_RATE_LIMIT_BYPASS_KEY"), bypass_ips, buckets, trusted_proxies })
    }
}

/// Where a bucket stands after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub limit: u64,
    pub window: Duration,
    pub remaining: u64,
    pub reset_in: Duration,
    pub exceeded: bool,
}

/// The counting store: this process's memory, or Redis with memory as the fallback.
pub struct RateLimiter {
    pub config: RateLimitConfig,
    redis: Option<Scratch>,
    memory: Mutex<HashMap<String, (Instant, u64)>>,
    /// Set while Redis is failing: until when it is not asked again, and when we last warned.
    degraded: Mutex<Option<Instant>>,
}

const REDIS_RETRY_AFTER: Duration = Duration::from_secs(2);
const MEMORY_SWEEP_AT: usize = 100_000;

/// INCRBY the window's counter, starting its expiry on first use; returns (count, ms left).
const SCRIPT: &str = r"
local c = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {c, ttl}
";

fn script() -> &'static redis::Script {
    static S: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| redis::Script::new(SCRIPT))
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig, redis: Option<Scratch>) -> RateLimiter {
        RateLimiter { config, redis, memory: Mutex::new(HashMap::new()), degraded: Mutex::new(None) }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn bucket(&self, name: &str) -> Option<&Bucket> {
        self.config.buckets.iter().find(|b| b.name == name)
    }

    /// Whether a request skips every limit.
    pub fn bypassed(&self, ip: IpAddr, headers: &HeaderMap) -> bool {
        if let (Some(key), Some(given)) = (&self.config.bypass_key, headers.get("x-ratelimit-bypass")) {
            let given = given.as_bytes();
            if given.len() == key.len() && given.iter().zip(key.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
                return true;
            }
        }
        self.config.bypass_ips.iter().any(|n| n.contains(ip))
    }

    /// Adds `points` to `bucket`'s counter for `key`.
    pub async fn consume(&self, bucket: &Bucket, key: &str, points: u64) -> Status {
        let window_ms = u64::try_from(bucket.window.as_millis()).unwrap_or(u64::MAX).max(1);
        let full_key = format!("rl:{}:{key}", bucket.name);
        let (count, left_ms) = match self.shared(&full_key, points, window_ms).await {
            Some(v) => v,
            None => self.in_memory(&full_key, points, bucket.window),
        };
        Status {
            limit: bucket.points,
            window: bucket.window,
            remaining: bucket.points.saturating_sub(count),
            reset_in: Duration::from_millis(left_ms),
            exceeded: count > bucket.points,
        }
    }

    async fn shared(&self, key: &str, points: u64, window_ms: u64) -> Option<(u64, u64)> {
        let redis = self.redis.as_ref()?;
        let now = Instant::now();
        let was_degraded = self.degraded.lock().ok().and_then(|d| *d);
        if was_degraded.is_some_and(|until| now < until) {
            return None;
        }
        match redis.eval::<(i64, i64)>(script(), &[key], &[points, window_ms]).await {
            Ok((count, ttl)) => {
                if was_degraded.is_some() {
                    if let Ok(mut d) = self.degraded.lock() {
                        *d = None;
                    }
                    tracing::info!(redis = redis.target(), "rate limits: Redis answers again; counting shared limits there");
                }
                Some((u64::try_from(count).unwrap_or(0), u64::try_from(ttl).unwrap_or(0)))
            }
            Err(e) => {
                if let Ok(mut d) = self.degraded.lock() {
                    if d.is_none() {
                        tracing::warn!(error = %e, "rate limits: Redis unavailable; counting in this process's memory until it answers again");
                    }
                    *d = Some(now + REDIS_RETRY_AFTER);
                }
                None
            }
        }
    }

    fn in_memory(&self, key: &str, points: u64, window: Duration) -> (u64, u64) {
        let Ok(mut m) = self.memory.lock() else { return (0, 0) };
        let now = Instant::now();
        if m.len() >= MEMORY_SWEEP_AT {
            m.retain(|_, (until, _)| *until > now);
        }
        let entry = m.entry(key.to_owned()).or_insert((now + window, 0));
        if entry.0 <= now {
            *entry = (now + window, 0);
        }
        entry.1 = entry.1.saturating_add(points);
        let left = entry.0.saturating_duration_since(now);
        (entry.1, u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }

    /// One per-IP bucket by name (the OAuth endpoints): `Err` with the status when over it.
    /// Always `Ok` when limits are off, the bucket is unknown, or the client is bypassed.
    pub async fn check_ip(&self, bucket: &str, ip: IpAddr, headers: &HeaderMap) -> Result<Option<Status>, Status> {
        if !self.enabled() || self.bypassed(ip, headers) {
            return Ok(None);
        }
        let Some(bucket) = self.bucket(bucket) else { return Ok(None) };
        let status = self.consume(bucket, &ip.to_string(), 1).await;
        if status.exceeded {
            Err(status)
        } else {
            Ok(Some(status))
        }
    }
}

/// `RateLimit-*` headers of a status (and `Retry-After` when exceeded).
pub fn set_headers(headers: &mut HeaderMap, s: &Status) {
    let reset_at = SystemTime::now().checked_add(s.reset_in).unwrap_or(SystemTime::now());
    let reset_at = reset_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut set = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(name, v);
        }
    };
    set("ratelimit-limit", s.limit.to_string());
    set("ratelimit-remaining", s.remaining.to_string());
    set("ratelimit-reset", reset_at.to_string());
    set("ratelimit-policy", format!("{};w={}", s.limit, s.window.as_secs()));
    if s.exceeded {
        set("retry-after", s.reset_in.as_millis().div_ceil(1000).to_string());
        set("access-control-expose-headers", "RateLimit-Limit, RateLimit-Reset, RateLimit-Remaining, RateLimit-Policy, Retry-After".to_owned());
    } else {
        set("access-control-expose-headers", "RateLimit-Limit, RateLimit-Reset, RateLimit-Remaining, RateLimit-Policy".to_owned());
    }
}

/// The 429 of an XRPC method.
pub fn exceeded_response(s: &Status) -> Response {
    let mut r = XrpcError::new(StatusCode::TOO_MANY_REQUESTS, "RateLimitExceeded", "Rate Limit Exceeded").into_response();
    set_headers(r.headers_mut(), s);
    r
}

/// The tightest of several statuses: an exceeded one first, else the fewest points left.
fn tightest(statuses: &[Status]) -> Option<Status> {
    statuses.iter().copied().min_by_key(|s| (!s.exceeded, s.remaining))
}

/// applyWrites' points: create 3, update 2, delete (or anything else) 1.
pub fn apply_writes_points(body: &serde_json::Value) -> u64 {
    let Some(writes) = body.get("writes").and_then(|w| w.as_array()) else { return 1 };
    writes
        .iter()
        .map(|w| match w.get("$type").and_then(|t| t.as_str()) {
            Some("com.atproto.repo.applyWrites#create") => 3,
            Some("com.atproto.repo.applyWrites#update") => 2,
            _ => 1,
        })
        .sum::<u64>()
        .max(1)
}

/// Largest body read to price a call (applyWrites' own limit; createSession's is smaller).
const PRICE_BODY_LIMIT: usize = 1_000_000;

/// The kernel's step for a local method, after its auth (`xrpc::methods::guard`): the global
/// per-IP bucket (getRepo aside) and the method's buckets from [`METHODS`]. Per-account buckets
/// use the verified [`AccessAuth`](crate::xrpc::AccessAuth) the auth step left in the request.
/// `Ok` carries the request back (its body re-readable) and the tightest status for the
/// response's headers; `Err` is the 429.
pub async fn check(state: &AppState, nsid: &str, req: Request) -> Result<(Request, Option<Status>), Response> {
    let limiter = &state.limits;
    if !limiter.enabled() {
        return Ok((req, None));
    }
    let ip = client_ip(peer_ip(&req), req.headers(), &limiter.config.trusted_proxies);
    if limiter.bypassed(ip, req.headers()) {
        return Ok((req, None));
    }
    let method = METHODS.iter().find(|(n, _, _)| *n == nsid);
    let (parts, body) = req.into_parts();
    // Read the body only when the price or the key is in it.
    let needs_body = method.is_some_and(|(_, names, cost)| {
        *cost == Cost::ApplyWrites || names.iter().any(|n| limiter.bucket(n).is_some_and(|b| b.key == KeyBy::IdentifierAndIp))
    });
    let (body, json) = if needs_body {
        match axum::body::to_bytes(body, PRICE_BODY_LIMIT).await {
            Ok(bytes) => {
                let json = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
                (axum::body::Body::from(bytes), json)
            }
            Err(_) => {
                return Err(XrpcError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", "request entity too large")
                    .into_response())
            }
        }
    } else {
        (body, None)
    };
    let mut statuses = Vec::new();
    if nsid != GLOBAL_EXEMPT {
        if let Some(global) = limiter.bucket("global-ip") {
            statuses.push(limiter.consume(global, &ip.to_string(), 1).await);
        }
    }
    if let Some((_, names, cost)) = method {
        let did = parts.extensions.get::<crate::xrpc::AccessAuth>().map(|a| a.did.clone());
        let points = match cost {
            Cost::One => 1,
            Cost::Points(p) => *p,
            Cost::ApplyWrites => json.as_ref().map(apply_writes_points).unwrap_or(1),
        };
        for name in names.iter() {
            let Some(bucket) = limiter.bucket(name) else { continue };
            let key = match bucket.key {
                KeyBy::Ip => Some(ip.to_string()),
                KeyBy::Did => did.clone(),
                KeyBy::IdentifierAndIp => json
                    .as_ref()
                    .and_then(|b| b.get("identifier"))
                    .and_then(|i| i.as_str())
                    .map(|i| format!("{}-{ip}", i.trim().to_lowercase().chars().take(256).collect::<String>())),
            };
            let Some(key) = key else { continue };
            let key = if bucket.shared { key } else { format!("{nsid}:{key}") };
            statuses.push(limiter.consume(bucket, &key, points).await);
        }
    }
    let req = Request::from_parts(parts, body);
    match tightest(&statuses) {
        Some(t) if t.exceeded => Err(exceeded_response(&t)),
        t => Ok((req, t)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        for (net, addr, inside) in [
            ("10.0.0.0/8", "10.200.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("fc00::/7", "fd12::1", true),
            ("fc00::/7", "fe80::1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("0.0.0.0/0", "8.8.8.8", true),
        ] {
            assert_eq!(IpNet::parse(net).unwrap().contains(ip(addr)), inside, "{net} ∋ {addr}");
        }
        for bad in ["10.0.0.0/33", "nonsense", "::1/129", ""] {
            assert!(IpNet::parse(bad).is_none(), "{bad}");
        }
        assert!(parse_nets("X", "loopback, 203.0.113.0/24").is_ok());
        assert!(parse_nets("X", "loopback, bogus").is_err());
        assert!(parse_nets("X", "none").unwrap().is_empty());
    }

    #[test]
    fn client_ip_trusts_forwarded_for_only_from_trusted_proxies() {
        let trusted = parse_nets("X", "loopback,uniquelocal").unwrap();
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            m
        };
        // Untrusted peer: its own address, whatever it claims.
        assert_eq!(client_ip(ip("203.0.113.9"), &h("1.2.3.4"), &trusted), ip("203.0.113.9"));
        // Behind a local proxy: the proxy's view of the client.
        assert_eq!(client_ip(ip("127.0.0.1"), &h("198.51.100.7"), &trusted), ip("198.51.100.7"));
        // A spoofed left-most entry is ignored: the right-most untrusted hop wins.
        assert_eq!(client_ip(ip("127.0.0.1"), &h("6.6.6.6, 198.51.100.7, 10.0.0.2"), &trusted), ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(client_ip(ip("127.0.0.1"), &HeaderMap::new(), &trusted), ip("127.0.0.1"));
        // Garbage after a good hop stops there.
        assert_eq!(client_ip(ip("127.0.0.1"), &h("198.51.100.7, junk"), &trusted), ip("198.51.100.7"));
        // Nothing trusted: the socket.
        assert_eq!(client_ip(ip("127.0.0.1"), &h("198.51.100.7"), &[]), ip("127.0.0.1"));
    }

    #[test]
    fn config_overrides_and_defaults() {
        let env: HashMap<String, String> = [
            ("PDS_RATE_LIMITS_ENABLED", "true"),
            ("PDS_RATE_LIMIT_BUCKETS", "login-ip=3/60, global-ip=7/10"),
            ("PDS_RATE_LIMIT_BYPASS_IPS", "203.0.113.0/24"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let c = RateLimitConfig::load(&env).unwrap();
        assert!(c.enabled);
        let login = c.buckets.iter().find(|b| b.name == "login-ip").unwrap();
        assert_eq!((login.points, login.window), (3, Duration::from_secs(60)));
        let session = c.buckets.iter().find(|b| b.name == "create-session-5min").unwrap();
        assert_eq!((session.points, session.window), (30, Duration::from_secs(300)));
        for bad in ["nope=1/1", "login-ip=1", "login-ip=x/5", "login-ip=1/0"] {
            let env: HashMap<String, String> = [("PDS_RATE_LIMIT_BUCKETS".to_owned(), bad.to_owned())].into_iter().collect();
            assert!(RateLimitConfig::load(&env).is_err(), "{bad}");
        }
        assert!(!RateLimitConfig::load(&HashMap::new()).unwrap().enabled);
        // Every bucket a method names exists.
        for (nsid, names, _) in METHODS {
            for n in names.iter() {
                assert!(DEFAULT_BUCKETS.iter().any(|b| b.name == *n), "{nsid}: {n}");
            }
        }
    }

    #[tokio::test]
    async fn memory_windows_count_and_reset() {
        let mut config = RateLimitConfig::load(&HashMap::new()).unwrap();
        config.enabled = true;
        let limiter = RateLimiter::new(config, None);
        let bucket = Bucket { name: "t", points: 3, window: Duration::from_millis(200), key: KeyBy::Ip, shared: true };
        for i in 1..=3 {
            let s = limiter.consume(&bucket, "k", 1).await;
            assert!(!s.exceeded);
            assert_eq!(s.remaining, 3 - i);
        }
        assert!(limiter.consume(&bucket, "k", 1).await.exceeded);
        assert!(!limiter.consume(&bucket, "other", 1).await.exceeded, "keys count apart");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!limiter.consume(&bucket, "k", 1).await.exceeded, "a new window starts empty");
        assert!(limiter.consume(&bucket, "k", 3).await.exceeded, "points add up");
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_memory() {
        let mut config = RateLimitConfig::load(&HashMap::new()).unwrap();
        config.enabled = true;
        let scratch = Scratch::open(&crate::redis_scratch::ScratchConfig {
            address: "127.0.0.1:1".into(),
            password: None,
            tls_ca_file: None,
        })
        .unwrap();
        let limiter = RateLimiter::new(config, Some(scratch));
        let bucket = Bucket { name: "t", points: 2, window: Duration::from_secs(60), key: KeyBy::Ip, shared: true };
        let started = Instant::now();
        assert!(!limiter.consume(&bucket, "k", 1).await.exceeded);
        assert!(!limiter.consume(&bucket, "k", 1).await.exceeded);
        assert!(limiter.consume(&bucket, "k", 1).await.exceeded, "still counted, in memory");
        assert!(started.elapsed() < Duration::from_secs(3), "no waiting on a dead Redis for every call");
    }

    #[test]
    fn prices_and_tightest() {
        let body = serde_json::json!({"writes": [
            {"$type": "com.atproto.repo.applyWrites#create"},
            {"$type": "com.atproto.repo.applyWrites#update"},
            {"$type": "com.atproto.repo.applyWrites#delete"},
        ]});
        assert_eq!(apply_writes_points(&body), 6);
        assert_eq!(apply_writes_points(&serde_json::json!({})), 1);
        let s = |remaining, exceeded| Status { limit: 10, window: Duration::from_secs(1), remaining, reset_in: Duration::ZERO, exceeded };
        assert_eq!(tightest(&[s(5, false), s(2, false), s(9, false)]).unwrap().remaining, 2);
        assert!(tightest(&[s(1, false), s(0, true)]).unwrap().exceeded);
        assert!(tightest(&[]).is_none());
    }
}
