//! The one guarded outbound GET (SSRF protection) for documents named by someone else: OAuth
//! client metadata, a handle's `/.well-known/atproto-did`, a did:web document. Every address the
//! host resolves to must be public unicast (unless `allow_private`, the reference's dev mode), the
//! connection is pinned to the checked address (no second lookup to race), redirects are
//! refused, and the whole exchange is bounded in time and in bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;

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

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For everything: lookup, connect, headers and body.
    pub timeout: Duration,
    pub max_bytes: usize,
    /// Private and loopback addresses allowed (dev mode only).
    pub allow_private: bool,
}

#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why a fetch failed; the message names the URL and says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

async fn addresses(host: &str, port: u16, dns: Option<&TokioResolver>) -> Result<Vec<SocketAddr>, FetchError> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match dns {
        Some(r) => r
            .lookup_ip(host)
            .await
            .map(|l| l.iter().map(|ip| SocketAddr::new(ip, port)).collect())
            .map_err(|e| FetchError(format!("cannot resolve {host}: {e}"))),
        None => tokio::net::lookup_host((host, port))
            .await
            .map(|a| a.collect())
            .map_err(|e| FetchError(format!("cannot resolve {host}: {e}"))),
    }
}

/// GET `url` under the guard; any status is returned (a 3xx is an error: redirects are not
/// followed), with at most `limits.max_bytes` of body. `dns`: the resolver for the host's
/// address (the system's when `None`).
pub async fn get(url: &url::Url, accept: &str, limits: &Limits, dns: Option<&TokioResolver>) -> Result<Fetched, FetchError> {
    let fail = |m: String| FetchError(m);
    match url.scheme() {
        "https" => {}
        "http" if limits.allow_private => {}
        other => return Err(fail(format!("{url}: scheme {other} is not allowed"))),
    }
    let host = url.host_str().ok_or_else(|| fail(format!("{url}: no host")))?.to_owned();
    let port = url.port_or_known_default().ok_or_else(|| fail(format!("{url}: no port")))?;
    let exchange = async {
        let addrs = addresses(&host, port, dns).await?;
        let Some(first) = addrs.first().copied() else { return Err(fail(format!("{host} has no address"))) };
        if !limits.allow_private {
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(fail(format!("{host} resolves to a private or loopback address ({})", bad.ip())));
            }
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // The outer timeout below is the bound; this one only backs it up.
            .timeout(limits.timeout + Duration::from_secs(1))
            .resolve(&host, first)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut resp = http.get(url.as_str()).header("accept", accept).send().await.map_err(|e| fail(format!("fetching {url}: {e}")))?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            return Err(fail(format!("fetching {url}: HTTP {status}: redirects are not followed")));
        }
        if resp.content_length().is_some_and(|n| n > limits.max_bytes as u64) {
            return Err(fail(format!("{url}: answer larger than {} bytes", limits.max_bytes)));
        }
        let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(format!("reading {url}: {e}")))? {
            if body.len() + chunk.len() > limits.max_bytes {
                return Err(fail(format!("{url}: answer larger than {} bytes", limits.max_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { status, content_type, body })
    };
    let slow = || fail(format!("fetching {url}: no complete answer within {} ms", limits.timeout.as_millis()));
    match tokio::time::timeout(limits.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(slow()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
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

    #[tokio::test]
    async fn private_hosts_and_plain_http_are_refused_outside_dev_mode() {
        let limits = Limits { timeout: Duration::from_secs(2), max_bytes: 1024, allow_private: false };
        let url = url::Url::parse("https://127.0.0.1:9/x").unwrap();
        let e = get(&url, "*/*", &limits, None).await.unwrap_err();
        assert!(e.0.contains("private or loopback"), "{e}");
        let url = url::Url::parse("http://example.com/x").unwrap();
        assert!(get(&url, "*/*", &limits, None).await.unwrap_err().0.contains("scheme http"));
    }
}
