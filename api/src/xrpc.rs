//! XRPC errors: the one place where failures become `{"error": "...", "message": "..."}` bodies
//! with the lexicon's error names and the reference PDS's status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

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
