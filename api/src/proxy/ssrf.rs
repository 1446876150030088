//! The SSRF guard on proxied endpoints (reference `buildProxyAgent`: HTTPS only, unicast
//! addresses only, unless `PDS_DISABLE_SSRF_PROTECTION` / dev mode). The address check is the
//! one the OAuth client-metadata fetch uses (`oauth_runtime::public_addresses` / `is_public`),
//! plugged into the HTTP client's DNS resolver so the connection goes only to an address that
//! was checked (no re-resolution between check and connect). Endpoints the operator configured
//! (`PDS_BSKY_APP_VIEW_URL`, …) are trusted as written.
//!
//! Neither client follows redirects (as the reference's agent) or decodes compressed bodies.

use std::net::IpAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::target::Target;
use crate::config::ProxyConfig;
use crate::oauth_runtime::{is_public, public_addresses};
use crate::xrpc::XrpcError;

/// One client for trusted endpoints, one that only reaches public HTTPS addresses.
pub struct Clients {
    trusted: reqwest::Client,
    guarded: reqwest::Client,
}

impl Clients {
    pub fn new() -> Result<Clients, String> {
        let base = || reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_idle_timeout(std::time::Duration::from_secs(60));
        Ok(Clients {
            trusted: base().build().map_err(|e| e.to_string())?,
            guarded: base()
                .https_only(true)
                .dns_resolver(Arc::new(PublicOnly))
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    /// The client for `target`, or the refusal of an endpoint the guard does not allow.
    pub fn for_target(&self, config: &ProxyConfig, target: &Target) -> Result<&reqwest::Client, XrpcError> {
        if target.configured || config.disable_ssrf_protection {
            return Ok(&self.trusted);
        }
        check_url(&target.endpoint)?;
        Ok(&self.guarded)
    }

    /// The client that only reaches public HTTPS addresses.
    pub fn guarded(&self) -> &reqwest::Client {
        &self.guarded
    }
}

/// What the resolver cannot see: the scheme, and hosts written as IP literals.
pub fn check_url(url: &url::Url) -> Result<(), XrpcError> {
    if url.scheme() != "https" {
        return Err(refused(&format!("forbidden protocol \"{}:\"", url.scheme())));
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(|ip| !is_public(ip)) {
        return Err(refused("hostname is a non-unicast address"));
    }
    Ok(())
}

fn refused(why: &str) -> XrpcError {
    tracing::warn!(%why, "proxy: endpoint refused by the SSRF guard");
    super::upstream_failure(format!("Upstream service unreachable: {why}"))
}

/// A DNS resolver that answers only public unicast addresses (all of a name's, or none).
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs = public_addresses(name.as_str(), 0).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scheme_and_literal_addresses() {
        let ok = |u: &str| check_url(&url::Url::parse(u).unwrap()).is_ok();
        assert!(ok("https://api.bsky.app"));
        assert!(ok("https://8.8.8.8"));
        assert!(!ok("http://api.bsky.app"));
        assert!(!ok("https://127.0.0.1:2584"));
        assert!(!ok("https://10.1.2.3"));
        assert!(!ok("https://[::1]"));
        assert!(!ok("https://[::ffff:192.168.0.1]"));
        assert!(!ok("https://169.254.169.254"));
    }

    #[tokio::test]
    async fn the_resolver_refuses_private_names() {
        let r = PublicOnly.resolve("localhost".parse::<Name>().unwrap()).await;
        assert!(r.is_err());
    }
}
