//! DPoP proof checking shared by the OAuth authorization server (`routes/oauth/`) and the
//! resource-server layer (`xrpc/oauth.rs`), and the request facts both need (time, client IP).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, Method};
use domain::oauth::dpop::{self, DpopError, Proof};

use crate::server::AppState;

/// Checks the request's DPoP proof (if `required`, a missing one is an error): signature,
/// claims, nonce (→ `use_dpop_nonce`), then `jti` replay.
pub async fn check_dpop(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    access_token: Option<&str>,
    required: bool,
) -> Result<Option<Proof>, DpopError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(value) = values.next() else {
        return if required { Err(DpopError::Invalid("DPoP proof required".into())) } else { Ok(None) };
    };
    if values.next().is_some() {
        return Err(DpopError::Invalid("Only one DPoP header is allowed".into()));
    }
    let proof = value.to_str().map_err(|_| DpopError::Invalid("Malformed DPoP header".into()))?;
    if proof.is_empty() {
        return Err(DpopError::Invalid("Empty DPoP header".into()));
    }
    let url = format!("{}{path}", state.config.public_url);
    let expect = dpop::Expect {
        method: method.as_str(),
        url: &url,
        access_token,
        now_ms: now_ms(),
        nonces: Some(&state.oauth.nonces),
    };
    let p = dpop::verify(proof, &expect)?;
    let fresh = state
        .oauth
        .replay
        .unique("DPoP", &p.jti, Duration::from_secs(dpop::JTI_TTL_SECS as u64))
        .await
        .map_err(|e| {
            tracing::error!(cause = %e, "DPoP replay store unavailable");
            DpopError::Invalid("DPoP replay store unavailable".into())
        })?;
    if !fresh {
        return Err(DpopError::Invalid("DPoP proof replayed".into()));
    }
    Ok(Some(p))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}
