//! The headers that cross the proxy, and only those (reference `proxyHandler` and
//! `responseHeaders`).
//!
//! Out: `accept-encoding` (`identity` when absent: bodies are passed through undecoded),
//! `accept-language`, `atproto-accept-labelers`, `x-bsky-topics`; for `POST` also
//! `content-type`, `content-encoding`, `content-length`; and `authorization: Bearer <service
//! JWT>`. Back: `content-length`, `content-encoding`, `content-type`, `content-language` (not on
//! errors, whose body is rewritten), `atproto-repo-rev`, `atproto-content-labelers`,
//! `retry-after`. Never the caller's `Authorization`, `DPoP` or cookies.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::xrpc::XrpcError;

const REQUEST_ALWAYS: [&str; 3] = ["accept-language", "atproto-accept-labelers", "x-bsky-topics"];
const REQUEST_WITH_BODY: [&str; 3] = ["content-type", "content-encoding", "content-length"];
const RESPONSE_CONTENT: [&str; 4] = ["content-length", "content-encoding", "content-type", "content-language"];
const RESPONSE_ALWAYS: [&str; 3] = ["atproto-repo-rev", "atproto-content-labelers", "retry-after"];

/// The upstream request's headers.
pub fn request_headers(incoming: &HeaderMap, with_body: bool, service_jwt: &str) -> Result<HeaderMap, XrpcError> {
    let mut out = HeaderMap::new();
    let encoding = incoming.get(header::ACCEPT_ENCODING).cloned().unwrap_or(HeaderValue::from_static("identity"));
    out.insert(header::ACCEPT_ENCODING, encoding);
    copy(incoming, &mut out, &REQUEST_ALWAYS);
    if with_body {
        copy(incoming, &mut out, &REQUEST_WITH_BODY);
    }
    let bearer = HeaderValue::from_str(&format!("Bearer {service_jwt}"))
        .map_err(|e| XrpcError::internal(&format!("service JWT is not a header value: {e}")))?;
    out.insert(header::AUTHORIZATION, bearer);
    Ok(out)
}

/// The headers of our response to the caller: on success the content headers too.
pub fn response_headers(upstream: &HeaderMap, content: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    if content {
        copy(upstream, &mut out, &RESPONSE_CONTENT);
    }
    for name in RESPONSE_ALWAYS {
        // Several values are joined with ", " (the reference joins with ",").
        let values: Vec<&str> = upstream.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if values.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(&values.join(",")) {
            out.insert(HeaderName::from_static(name), v);
        }
    }
    out
}

fn copy(from: &HeaderMap, to: &mut HeaderMap, names: &[&'static str]) {
    for name in names {
        if let Some(v) = from.get(*name) {
            to.insert(HeaderName::from_static(name), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn only_the_listed_request_headers_leave_and_our_credentials_never() {
        let incoming = map(&[
            ("authorization", "Bearer our-access-token"),
            ("dpop", "proof"),
            ("cookie", "a=b"),
            ("atproto-proxy", "did:web:x#y"),
            ("accept-language", "fr"),
            ("atproto-accept-labelers", "did:plc:l;redact"),
            ("x-bsky-topics", "t"),
            ("content-type", "video/mp4"),
            ("content-length", "5"),
            ("x-other", "no"),
        ]);
        let get = incoming.clone();
        let out = request_headers(&get, false, "JWT").unwrap();
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept-encoding", "accept-language", "atproto-accept-labelers", "x-bsky-topics", "authorization"]);
        assert_eq!(out["accept-encoding"], "identity");
        assert_eq!(out["authorization"], "Bearer JWT");
        let post = request_headers(&incoming, true, "JWT").unwrap();
        assert_eq!(post["content-type"], "video/mp4");
        assert_eq!(post["content-length"], "5");
        assert!(post.get("cookie").is_none() && post.get("dpop").is_none() && post.get("x-other").is_none());
    }

    #[test]
    fn response_headers_on_success_and_on_error() {
        let upstream = map(&[
            ("content-type", "application/json"),
            ("content-length", "10"),
            ("content-language", "en"),
            ("atproto-repo-rev", "3abc"),
            ("atproto-content-labelers", "did:plc:l"),
            ("retry-after", "5"),
            ("set-cookie", "x=y"),
            ("x-upstream", "no"),
        ]);
        let ok = response_headers(&upstream, true);
        assert_eq!(ok.len(), 6);
        assert!(ok.get("set-cookie").is_none() && ok.get("x-upstream").is_none());
        let err = response_headers(&upstream, false);
        let names: Vec<&str> = err.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["atproto-repo-rev", "atproto-content-labelers", "retry-after"]);
    }
}
