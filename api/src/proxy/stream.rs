//! One exchange with the upstream, streamed both ways (reference `pipethroughStream` and the
//! proxy agent's limits).
//!
//! - The request body goes out as it arrives (no buffering; a 50 MB upload holds a few chunks).
//! - Headers must arrive within `PDS_PROXY_HEADERS_TIMEOUT` of the request being sent (timed from
//!   the end of the request body) → else 504 `UpstreamTimeout`.
//! - A success (< 400) is passed on as it arrives: status, the listed headers, the body with at
//!   most `PDS_PROXY_BODY_TIMEOUT` of silence between chunks and at most
//!   `PDS_PROXY_MAX_RESPONSE_SIZE` bytes (a declared larger `content-length` → 502
//!   `UpstreamFailure` before anything is sent; past either limit mid-body the response is cut,
//!   as the reference's agent does).
//! - An error (≥ 400): its JSON `{error, message}` (read within the same limits) is passed on
//!   with its status, except that an upstream 500 becomes 502 `UpstreamFailure`; a body that is
//!   not such JSON gets the status's standard name and text.
//! - No answer (refused, reset, not HTTP) → 502 `UpstreamFailure` "Upstream service unreachable".

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::Value;

use super::{headers, upstream_failure, upstream_timeout};
use crate::config::ProxyConfig;
use crate::xrpc::XrpcError;

/// Forwards one request and returns what the caller gets.
pub async fn exchange(
    client: &reqwest::Client,
    config: &ProxyConfig,
    method: Method,
    url: url::Url,
    outbound: HeaderMap,
    body: Option<Body>,
) -> Result<Response, XrpcError> {
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    let mut request = client.request(method.clone(), url).headers(outbound);
    match body {
        Some(body) => {
            // The end of the body (or its failure) starts the headers timer.
            let mut sent_tx = Some(sent_tx);
            let data = body.into_data_stream().chain(futures_util::stream::poll_fn(move |_| {
                if let Some(tx) = sent_tx.take() {
                    let _ = tx.send(());
                }
                std::task::Poll::Ready(None::<Result<Bytes, axum::Error>>)
            }));
            request = request.body(reqwest::Body::wrap_stream(data));
        }
        None => {
            let _ = sent_tx.send(());
        }
    }
    let headers_timeout = config.headers_timeout;
    let timer = async move {
        let _ = sent_rx.await;
        tokio::time::sleep(headers_timeout).await;
    };
    let upstream = tokio::select! {
        r = request.send() => r.map_err(|e| {
            tracing::warn!(error = %error_chain(&e), "proxy: upstream request failed");
            upstream_failure("Upstream service unreachable")
        })?,
        () = timer => return Err(upstream_timeout(format!("Upstream service did not answer within {} ms", headers_timeout.as_millis()))),
    };
    let status = upstream.status();
    if status.as_u16() >= 400 {
        return Ok(error_response(upstream, config).await);
    }
    let too_large = method != Method::HEAD && upstream.content_length().is_some_and(|n| n > config.max_response_size);
    if too_large {
        return Err(upstream_failure("Upstream response too large"));
    }
    let mut response = Response::builder().status(status);
    if let Some(h) = response.headers_mut() {
        *h = headers::response_headers(upstream.headers(), true);
    }
    let body = if method == Method::HEAD { Body::empty() } else { Body::from_stream(limited(upstream, config)) };
    response.body(body).map_err(|e| XrpcError::internal(&e))
}

/// The upstream body as a stream that ends in an error past the size limit or after too long a
/// silence (the caller's connection is then cut: its status line has already gone).
fn limited(upstream: reqwest::Response, config: &ProxyConfig) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let (idle, max) = (config.body_timeout, config.max_response_size);
    futures_util::stream::unfold(Some((upstream, 0u64)), move |state| async move {
        let (mut upstream, seen) = state?;
        let failed = |why: String| {
            tracing::warn!(%why, "proxy: upstream response body cut");
            Some((Err(std::io::Error::other(why)), None))
        };
        match tokio::time::timeout(idle, upstream.chunk()).await {
            Err(_) => failed(format!("no body data for {} ms", idle.as_millis())),
            Ok(Err(e)) => failed(format!("reading the body: {}", error_chain(&e))),
            Ok(Ok(None)) => None,
            Ok(Ok(Some(chunk))) => {
                let seen = seen + chunk.len() as u64;
                if seen > max {
                    return failed(format!("body over {max} bytes"));
                }
                Some((Ok(chunk), Some((upstream, seen))))
            }
        }
    })
}

/// An upstream error passed on: its status (500 → 502 `UpstreamFailure`), its `{error,
/// message}` when it sent one, the non-content headers of the list.
async fn error_response(upstream: reqwest::Response, config: &ProxyConfig) -> Response {
    let status = upstream.status();
    let forwarded = headers::response_headers(upstream.headers(), false);
    let json = upstream
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_content_type);
    let encoded = upstream.headers().get(reqwest::header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity");
    let (error, message) = if json && !encoded { read_error(upstream, config).await } else { (None, None) };
    let status = if status == StatusCode::INTERNAL_SERVER_ERROR { StatusCode::BAD_GATEWAY } else { status };
    let (default_name, default_text) = standard_error(status);
    let error = XrpcError::new(
        status,
        error.unwrap_or_else(|| default_name.to_owned()),
        message.unwrap_or_else(|| default_text.to_owned()),
    );
    let mut response = error.into_response();
    response.headers_mut().extend(forwarded);
    response
}

/// `application/json` or `application/<x>+json` (reference `isJsonContentType`).
fn is_json_content_type(v: &str) -> bool {
    let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `error` and `message` strings of an upstream error body, when it has them.
async fn read_error(upstream: reqwest::Response, config: &ProxyConfig) -> (Option<String>, Option<String>) {
    let mut body = Vec::new();
    let mut stream = std::pin::pin!(limited(upstream, config));
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => body.extend_from_slice(&c),
            Err(_) => return (None, None),
        }
    }
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body) else { return (None, None) };
    let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    (text("error"), text("message"))
}

/// The XRPC name and text of a status (`@atproto/xrpc` `ResponseType` and its strings).
fn standard_error(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("InvalidRequest", "Invalid Request"),
        401 => ("AuthenticationRequired", "Authentication Required"),
        403 => ("Forbidden", "Forbidden"),
        404 => ("XRPCNotSupported", "XRPC Not Supported"),
        406 => ("NotAcceptable", "Not Acceptable"),
        413 => ("PayloadTooLarge", "Payload Too Large"),
        415 => ("UnsupportedMediaType", "Unsupported Media Type"),
        429 => ("RateLimitExceeded", "Rate Limit Exceeded"),
        501 => ("MethodNotImplemented", "Method Not Implemented"),
        502 => ("UpstreamFailure", "Upstream Failure"),
        503 => ("NotEnoughResources", "Not Enough Resources"),
        504 => ("UpstreamTimeout", "Upstream Timeout"),
        s if s < 500 => ("InvalidRequest", "Invalid Request"),
        _ => ("InternalServerError", "Internal Server Error"),
    }
}

/// An error with its causes, for the log (reqwest's top-level text hides the reason).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/problem+json"));
        assert!(!is_json_content_type("text/html"));
        assert!(!is_json_content_type("application/jsonx"));
    }

    #[test]
    fn standard_names() {
        assert_eq!(standard_error(StatusCode::BAD_GATEWAY).0, "UpstreamFailure");
        assert_eq!(standard_error(StatusCode::IM_A_TEAPOT).0, "InvalidRequest");
        assert_eq!(standard_error(StatusCode::from_u16(599).unwrap_or(StatusCode::BAD_GATEWAY)).0, "InternalServerError");
    }
}
