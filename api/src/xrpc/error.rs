//! XRPC errors: the one place where failures become `{"error": "...", "message": "..."}` bodies
//! with the lexicon's error names and the reference PDS's status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::CommandError;

#[derive(Debug)]
pub struct XrpcError {
    pub status: StatusCode,
    pub error: String,
    pub message: String,
}

impl XrpcError {
    pub fn new(status: StatusCode, error: impl Into<String>, message: impl Into<String>) -> Self {
        XrpcError { status, error: error.into(), message: message.into() }
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }
    pub fn method_not_implemented() -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "MethodNotImplemented", "Method Not Implemented")
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", "Not Found")
    }
    /// An internal failure: the cause is logged, never sent to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "Internal Server Error")
    }
}

impl IntoResponse for XrpcError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.error, "message": self.message }))).into_response()
    }
}

/// Longest rejection text carried into an XRPC `message`.
const REJECTION_MESSAGE_MAX: usize = 300;

/// Middleware over every route: on `/xrpc/…`, an error that axum itself answered in plain text
/// (an extractor's rejection — body over the size limit, wrong content type, unreadable body)
/// becomes an XRPC error body like every other, with the same status. Handlers' own errors are
/// already `XrpcError`s and pass through untouched.
pub async fn plain_rejections_as_xrpc(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let xrpc = req.uri().path().starts_with("/xrpc/");
    let res = next.run(req).await;
    let status = res.status();
    let plain = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !xrpc || !plain || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
        StatusCode::UNAUTHORIZED => "AuthRequired",
        s if s.is_server_error() => "InternalServerError",
        _ => "InvalidRequest",
    };
    let text = match axum::body::to_bytes(res.into_body(), REJECTION_MESSAGE_MAX * 4).await {
        Ok(b) => String::from_utf8_lossy(&b).chars().take(REJECTION_MESSAGE_MAX).collect(),
        Err(_) => String::new(),
    };
    let message = if text.trim().is_empty() { status.canonical_reason().unwrap_or("Error").to_owned() } else { text };
    XrpcError::new(status, error, message).into_response()
}

/// Every command failure as the lexicon names it, with the reference's status.
pub fn command_error(e: CommandError) -> XrpcError {
    let bad = |name: &str, m: String| XrpcError::new(StatusCode::BAD_REQUEST, name, m);
    match e {
        CommandError::InvalidHandle(m) => bad("InvalidHandle", m),
        CommandError::UnsupportedDomain(m) => bad("UnsupportedDomain", m),
        CommandError::HandleNotAvailable(m) => bad("HandleNotAvailable", m),
        e @ CommandError::EmailTaken(_) => bad("InvalidRequest", e.to_string()),
        CommandError::InvalidRequest(m) => bad("InvalidRequest", m),
        CommandError::InvalidInviteCode(m) => bad("InvalidInviteCode", m),
        e @ CommandError::AuthenticationRequired => {
            XrpcError::new(StatusCode::UNAUTHORIZED, "AuthenticationRequired", e.to_string())
        }
        e @ CommandError::AccountTakedown => XrpcError::new(StatusCode::UNAUTHORIZED, "AccountTakedown", e.to_string()),
        CommandError::ExpiredToken(m) => bad("ExpiredToken", m),
        CommandError::InvalidToken(m) => bad("InvalidToken", m),
        e @ CommandError::AccountNotFound => bad("AccountNotFound", e.to_string()),
        CommandError::InvalidSwap(m) => bad("InvalidSwap", m),
        CommandError::RecordNotFound(m) => bad("RecordNotFound", m),
        CommandError::RepoNotFound(m) => bad("RepoNotFound", m),
        CommandError::ServiceAuth { name, message } => XrpcError::new(StatusCode::UNAUTHORIZED, name, message),
        CommandError::BadExpiration(m) => bad("BadExpiration", m),
        CommandError::Named { name, message } => bad(name, message),
        e @ CommandError::AuthFactorTokenRequired => {
            XrpcError::new(StatusCode::UNAUTHORIZED, "AuthFactorTokenRequired", e.to_string())
        }
        CommandError::BlobNotFound(m) => bad("BlobNotFound", m),
        CommandError::BlobTooLarge(m) => XrpcError::new(StatusCode::PAYLOAD_TOO_LARGE, "BlobTooLarge", m),
        CommandError::PayloadTooLarge(m) => XrpcError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", m),
        CommandError::InvalidMimeType(m) => bad("InvalidMimeType", m),
        CommandError::InvalidBlob(m) => bad("InvalidBlob", m),
        // The PLC directory failed us: named, and not a 500 (nothing was changed).
        CommandError::Unavailable(m) => XrpcError::new(StatusCode::SERVICE_UNAVAILABLE, "UpstreamFailure", m),
        e @ CommandError::PlcUnreachable { timeout: true, .. } => {
            tracing::warn!(cause = %e, "PLC directory");
            XrpcError::new(StatusCode::GATEWAY_TIMEOUT, "UpstreamTimeout", e.to_string())
        }
        e @ (CommandError::PlcUnreachable { .. } | CommandError::PlcRefused { .. } | CommandError::Plc(_)) => {
            tracing::warn!(cause = %e, "PLC directory");
            XrpcError::new(StatusCode::BAD_GATEWAY, "UpstreamFailure", e.to_string())
        }
        e @ (CommandError::Conflict(_) | CommandError::Internal(_)) => XrpcError::internal(&e),
    }
}
