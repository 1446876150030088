//! Requests checked against the method's lexicon before the handler runs, and outputs checked
//! after it, as the reference's `@atproto/xrpc-server` does (`createLexiconParamsVerifier`,
//! `createLexiconInputVerifier`, `createLexiconOutputVerifier`), with its error texts:
//!
//! - params: query-string values decoded as the reference decodes them (an empty value is
//!   absent; integers as `parseInt(v, 10) || 0`; booleans `v === "true"`), then validated (types,
//!   required, min/max, lengths, formats, enums; `knownValues` stay open) → 400 `InvalidRequest`
//!   "Error: Params must have the property \"repo\""; a value with U+0000 is refused (no
//!   database text can hold it);
//! - input: a query or input-less procedure must not carry a body ("A request body was provided
//!   when none was expected"); a procedure with input needs one ("A request body is expected but
//!   none was provided"), a `Content-Type` ("Request encoding (Content-Type) required but not
//!   provided") among the lexicon's encodings ("Wrong request encoding (Content-Type): …"); a JSON
//!   body must parse and match the input schema ("Input must have the property \"collection\"");
//! - output (debug builds, so the test suite): a JSON reply that does not match the output schema
//!   is logged at error level and marked with the [`OUTPUT_PROBLEM`] header, which the tests fail
//!   on; release builds do not buffer replies to check them.
//!
//! The validated values travel to the handler in the request's extensions: [`Params`] and
//! [`Input`] extract them as typed serde structs.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::cbor::Ipld;
use domain::lexicon::{Body as LexBody, Def, FieldType, ParamsDef};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::XrpcError;

/// The validated query parameters of a request (a JSON object; defaults filled in).
#[derive(Debug, Clone)]
pub struct ValidParams(pub Value);

/// The validated JSON input of a request.
#[derive(Debug, Clone)]
pub struct ValidInput(pub Value);

/// Typed, validated query parameters.
pub struct Params<T>(pub T);

/// A typed, validated JSON body.
pub struct Input<T>(pub T);

fn typed<T: DeserializeOwned>(v: &Value, what: &str) -> Result<T, XrpcError> {
    serde_json::from_value(v.clone()).map_err(|e| XrpcError::invalid_request(format!("Invalid {what}: {e}")))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = XrpcError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ValidParams>() {
            Some(ValidParams(v)) => typed(v, "params").map(Params),
            // A method without a lexicon: read the query string as it is.
            None => {
                let q = parts.uri.query().unwrap_or("");
                serde_urlencoded_map(q).and_then(|v| typed(&v, "params")).map(Params)
            }
        }
    }
}

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Input<T> {
    type Rejection = XrpcError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(ValidInput(v)) = req.extensions().get::<ValidInput>() {
            return typed(v, "request body").map(Input);
        }
        let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map_err(|e| XrpcError::invalid_request(format!("Unreadable request body: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(Input)
            .map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))
    }
}

fn serde_urlencoded_map(q: &str) -> Result<Value, XrpcError> {
    let mut m = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        m.entry(k.into_owned()).or_insert(Value::String(v.into_owned()));
    }
    Ok(Value::Object(m))
}

fn error(message: impl Into<String>) -> XrpcError {
    XrpcError::invalid_request(message)
}

/// The query-string pairs decoded as the reference's `decodeQueryParams`.
fn decode_pairs(params: &ParamsDef, query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let Some(prop) = params.properties.iter().find(|p| p.name == k) else { continue };
        if v.is_empty() {
            continue;
        }
        let ty = match &prop.schema {
            FieldType::Array(a) => &*a.items,
            other => other,
        };
        let v = match ty {
            FieldType::Integer(_) => parse_int(&v).to_string(),
            FieldType::Boolean(_) => (v == "true").to_string(),
            _ => v.into_owned(),
        };
        out.push((k.into_owned(), v));
    }
    out
}

/// JavaScript's `parseInt(v, 10) || 0`: optional sign and leading digits, else 0.
fn parse_int(v: &str) -> i64 {
    let t = v.trim_start();
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<i64>().map(|n| sign * n).unwrap_or(if digits.is_empty() { 0 } else { sign * i64::MAX })
}

/// Checks the query string against the method's `parameters`.
pub fn check_params(nsid: &str, query: &str) -> Result<ValidParams, XrpcError> {
    let catalog = commands::lexicon_catalog();
    let empty = ParamsDef::default();
    let def = catalog.params(nsid).unwrap_or(&empty);
    let pairs = decode_pairs(def, query);
    // No text column (Postgres) can hold U+0000: refused here, not as a database error.
    if let Some((k, _)) = pairs.iter().find(|(_, v)| v.contains('\0')) {
        return Err(error(format!("Error: Params/{k} must not contain a NUL character")));
    }
    let parsed = catalog.parse_params(nsid, &pairs).map_err(|e| error(format!("Error: {e}")))?;
    Ok(ValidParams(params_json(&parsed)))
}

fn params_json(m: &BTreeMap<String, Ipld>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), domain::json::ipld_to_json(v))).collect())
}

/// The lexicon's input body of `nsid` (`None`: a query, or a procedure without input).
fn input_def(nsid: &str) -> Option<&'static LexBody> {
    match commands::lexicon_catalog().get(nsid)?.main()? {
        Def::Procedure(x) => x.input.as_ref(),
        _ => None,
    }
}

enum Presence {
    Missing,
    Empty,
    Present,
}

fn presence(h: &HeaderMap) -> Presence {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return Presence::Present;
    }
    match h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
        Some("0") => Presence::Empty,
        Some(_) => Presence::Present,
        None => Presence::Missing,
    }
}

fn mime(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let short = v.split(';').next()?.trim().to_ascii_lowercase();
    (!short.is_empty()).then_some(short)
}

/// Checks the body against the method's `input`; a JSON body is read (at most `limit` bytes),
/// validated, and put back for the handler with its value in the extensions.
pub async fn check_input(nsid: &str, req: Request, limit: Option<usize>) -> Result<Request, Response> {
    let Some(input) = input_def(nsid) else {
        return no_body(req).await;
    };
    if matches!(presence(req.headers()), Presence::Missing) {
        return Err(error("A request body is expected but none was provided").into_response());
    }
    let allowed: Vec<&str> = input.encoding.split(',').map(str::trim).collect();
    let Some(encoding) = mime(req.headers()) else {
        return Err(error("Request encoding (Content-Type) required but not provided").into_response());
    };
    if !allowed.contains(&"*/*") && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&encoding)) {
        return Err(error(format!("Wrong request encoding (Content-Type): {encoding}")).into_response());
    }
    if encoding != "application/json" || input.schema.is_none() && allowed.contains(&"*/*") {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, limit).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| error(format!("Invalid JSON body: {e}")).into_response())?;
    if let Some(schema) = &input.schema {
        // Top-level properties with a `default` take it when absent (as `@atproto/lexicon`
        // fills them), so `{"useCount": 1}` is a whole createInviteCodes input.
        let mut value = value.clone();
        fill_defaults(schema, &mut value);
        let ipld = domain::json::json_to_ipld(&value).map_err(|e| error(format!("Input {e}")).into_response())?;
        commands::lexicon_catalog().validate_input(nsid, &ipld).map_err(|e| error(e.to_string()).into_response())?;
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(ValidInput(value));
    Ok(req)
}

fn fill_defaults(schema: &FieldType, value: &mut Value) {
    let catalog = commands::lexicon_catalog();
    let object = match schema {
        FieldType::Object(o) => o,
        FieldType::Ref(r) => match catalog.resolve(r) {
            Some(Def::Field(FieldType::Object(o))) => o,
            _ => return,
        },
        _ => return,
    };
    let Value::Object(m) = value else { return };
    for p in &object.properties {
        if m.contains_key(&p.name) {
            continue;
        }
        let default = match &p.schema {
            FieldType::Boolean(b) => b.default.map(Value::from),
            FieldType::Integer(i) => i.default.map(Value::from),
            FieldType::String(s) => s.default.clone().map(Value::from),
            _ => None,
        };
        if let Some(d) = default {
            m.insert(p.name.clone(), d);
        }
    }
}

async fn read_limited(body: Body, limit: Option<usize>) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit.unwrap_or(usize::MAX)).await.map_err(|e| {
        // http-body-util's `LengthLimitError` ("length limit exceeded"), wrapped by axum.
        let too_large = format!("{e} {:?}", std::error::Error::source(&e)).contains("length limit");
        if too_large {
            XrpcError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", "request entity too large").into_response()
        } else {
            error(format!("Unreadable request body: {e}")).into_response()
        }
    })
}

/// A query or an input-less procedure: an empty body (or none) only.
async fn no_body(req: Request) -> Result<Request, Response> {
    match presence(req.headers()) {
        Presence::Missing | Presence::Empty => Ok(req),
        Presence::Present => {
            let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
            if !chunked {
                return Err(error("A request body was provided when none was expected").into_response());
            }
            let (parts, body) = req.into_parts();
            let bytes = read_limited(body, Some(super::JSON_LIMIT)).await?;
            if !bytes.is_empty() {
                return Err(error("A request body was provided when none was expected").into_response());
            }
            Ok(Request::from_parts(parts, Body::empty()))
        }
    }
}

/// The largest reply checked against the output schema.
const OUTPUT_CHECK_MAX: usize = 16 << 20;

/// The header a debug build adds to a reply that does not match its lexicon (the problem, as
/// text); the test suite fails on it.
pub const OUTPUT_PROBLEM: &str = "x-debug-lexicon-output-problem";

/// Whether replies are checked against the lexicon: debug builds (and so the test suite).
pub const CHECK_OUTPUT: bool = cfg!(debug_assertions);

/// Checks a 200 JSON reply against the method's output schema (see the module doc).
pub async fn check_output(nsid: &'static str, resp: Response) -> Response {
    if !CHECK_OUTPUT {
        return resp;
    }
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if resp.status() != StatusCode::OK || !json || !has_output_schema(nsid) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, OUTPUT_CHECK_MAX).await else {
        tracing::error!(nsid, "output not checked: reply unreadable or too large");
        return XrpcError::internal(&"reply unreadable").into_response();
    };
    let problem = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => match domain::json::json_to_ipld(&v) {
            Ok(ipld) => commands::lexicon_catalog().validate_output(nsid, &ipld).err().map(|e| e.to_string()),
            Err(e) => Some(format!("Output {e}")),
        },
        Err(e) => Some(format!("Output is not JSON: {e}")),
    };
    match problem {
        Some(p) => {
            tracing::error!(nsid, problem = %p, "reply does not match the lexicon");
            let mut resp = Response::from_parts(parts, Body::from(bytes));
            let p: String = p.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(300).collect();
            if let Ok(v) = axum::http::HeaderValue::from_str(&p) {
                resp.headers_mut().insert(OUTPUT_PROBLEM, v);
            }
            resp
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

fn has_output_schema(nsid: &str) -> bool {
    match commands::lexicon_catalog().get(nsid).and_then(|d| d.main()) {
        Some(Def::Query(x) | Def::Procedure(x)) => x.output.as_ref().is_some_and(|o| o.schema.is_some()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_int;

    #[test]
    fn parse_int_is_javascripts() {
        for (v, want) in [("12", 12), ("12abc", 12), ("abc", 0), ("-3", -3), ("", 0), (" 7", 7), ("1.5", 1), ("+4", 4)] {
            assert_eq!(parse_int(v), want, "{v:?}");
        }
    }
}
