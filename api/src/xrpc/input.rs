//! Request parsing shared by every route module: JSON bodies and query parameters, with
//! `InvalidRequest` for anything malformed (never a 500).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use serde::de::DeserializeOwned;

use super::XrpcError;

/// A JSON body; anything malformed is `InvalidRequest`.
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, XrpcError> {
    serde_json::from_slice(bytes).map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))
}

pub fn params(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<HashMap<String, String>, XrpcError> {
    q.map(|Query(m)| m).map_err(|e| XrpcError::invalid_request(format!("invalid query string: {e}")))
}

pub fn required<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, XrpcError> {
    p.get(name)
        .map(String::as_str)
        .ok_or_else(|| XrpcError::invalid_request(format!("Error: Params must have the property \"{name}\"")))
}

/// The reference's default JSON body limit.
pub const JSON_LIMIT: usize = 150 * 1024;
