//! `/oauth/authorize`: the sign-in + consent page (GET) and its form (POST). Everything shown is
//! HTML-escaped (client name/id, login hint, scopes); the form carries a CSRF token that is an
//! HMAC of the device cookie and the request id under `PDS_JWT_SECRET`, so only the browser that
//! loaded the page can submit it; a cross-origin `Origin` is refused. On approval the browser is
//! sent (303) to the client's `redirect_uri` with `iss`, `state` and `code` (query, fragment or
//! form_post); on denial with `error=access_denied`. The user may uncheck scopes but not add any
//! (`invalid_scope`), and `atproto` always stays. The first browser to open a request's page
//! binds it (`oauth.device_bound`); another browser is refused.
//!
//! Not built: remembered sign-in per device (every authorization asks for the password), the
//! reference's account chooser, remembered consent and `prompt` handling.

use std::collections::HashMap;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use domain::oauth::aggregate::{Request as AuthRequest, REQUEST_URI_PREFIX};
use domain::oauth::{b64url, ct_eq, random_id};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::xrpc::dpop::client_ip;
use crate::xrpc::prelude::*;

pub const DEVICE_COOKIE: &str = "oauth-device";

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn csrf_token(secret: &str, device: &str, request_id: &str) -> String {
    #[allow(clippy::expect_used)]
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(b"oauth-csrf\0");
    m.update(device.as_bytes());
    m.update(b"\0");
    m.update(request_id.as_bytes());
    b64url(&m.finalize().into_bytes())
}

fn device_of(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == DEVICE_COOKIE && v.starts_with("dev-") && v.len() == 68 && v[4..].bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| v.to_owned())
    })
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p id=\"error\">{m}</p></body></html>",
        t = escape(title),
        m = escape(message)
    );
    let mut r = (status, Html(body)).into_response();
    secure_headers(r.headers_mut());
    r
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'"),
    );
}

/// The consent page for `req` (pure: tested for escaping).
pub fn render(req: &AuthRequest, client_name: &str, csrf: &str, error: Option<&str>) -> String {
    let mut scopes = String::new();
    for s in req.scope.split(' ').filter(|s| !s.is_empty()) {
        if s == "atproto" {
            scopes.push_str("<li><input type=\"hidden\" name=\"scope\" value=\"atproto\">atproto (required)</li>");
        } else {
            scopes.push_str(&format!(
                "<li><label><input type=\"checkbox\" name=\"scope\" value=\"{v}\" checked> {v}</label></li>",
                v = escape(s)
            ));
        }
    }
    let err = error.map(|e| format!("<p id=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head><body>\
         <h1>Sign in to authorize <span id=\"client\">{client}</span></h1>{err}\
         <form method=\"post\" action=\"/oauth/authorize\">\
         <input type=\"hidden\" name=\"request_uri\" value=\"{uri}\">\
         <input type=\"hidden\" name=\"client_id\" value=\"{cid}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label>Handle, DID or email <input name=\"identifier\" value=\"{hint}\" autocomplete=\"username\"></label></p>\
         <p><label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label></p>\
         <p>This app asks for:</p><ul>{scopes}</ul>\
         <button name=\"action\" value=\"approve\">Authorize</button> <button name=\"action\" value=\"deny\">Deny</button>\
         </form></body></html>",
        client = escape(client_name),
        uri = escape(&format!("{REQUEST_URI_PREFIX}{}", req.request_id)),
        cid = escape(&req.client_id),
        csrf = escape(csrf),
        hint = escape(&req.login_hint),
    )
}

fn request_id_of(request_uri: &str) -> Option<&str> {
    request_uri.strip_prefix(REQUEST_URI_PREFIX)
}

pub async fn page(State(state): State<AppState>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let (Some(client_id), Some(request_uri)) = (q.get("client_id"), q.get("request_uri")) else {
        return error_page(StatusCode::BAD_REQUEST, "Invalid request", "client_id and request_uri are required");
    };
    let Some(request_id) = request_id_of(request_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "Invalid request", "Unknown request_uri");
    };
    let ctx = match ctx(&state) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let req = match commands::oauth_authorize::pending_request(&ctx, request_id, client_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error_page(StatusCode::BAD_REQUEST, "Invalid request", "This authorization request is unknown, expired or already used")
        }
        Err(e) => return command_error(e).into_response(),
    };
    let client_name = match state.oauth.client(client_id).await {
        Ok(m) => m.client_name.unwrap_or_else(|| client_id.clone()),
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Invalid client", &e.to_string()),
    };
    let (device, new_device) = match device_of(&headers) {
        Some(d) => (d, false),
        None => (random_id("dev-"), true),
    };
    match commands::oauth_authorize::bind_device(&ctx, request_id, client_id, &device).await {
        Ok(()) => {}
        Err(commands::oauth_flow::OAuthCommandError::OAuth { description, .. }) => {
            return error_page(StatusCode::FORBIDDEN, "Invalid request", &description)
        }
        Err(commands::oauth_flow::OAuthCommandError::Command(e)) => {
            return command_error(e).into_response()
        }
    }
    let csrf = csrf_token(&state.config.secrets.jwt_secret, &device, request_id);
    let mut r = Html(render(&req, &client_name, &csrf, None)).into_response();
    secure_headers(r.headers_mut());
    if new_device {
        let secure = if state.config.public_url.starts_with("https://") { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!("{DEVICE_COOKIE}={device}; Path=/oauth; HttpOnly; SameSite=Lax{secure}")) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    r
}

/// Where to send the browser: `redirect_uri` with `params` per the response mode.
fn redirect(redirect_uri: &str, response_mode: &str, params: &[(&str, &str)]) -> Response {
    let encoded: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    if response_mode == "form_post" {
        let inputs: String = params
            .iter()
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)))
            .collect();
        let body = format!(
            "<!doctype html><html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{inputs}<noscript><button>Continue</button></noscript></form></body></html>",
            escape(redirect_uri)
        );
        return Html(body).into_response();
    }
    let sep = if response_mode == "fragment" {
        '#'
    } else if redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{redirect_uri}{sep}{encoded}");
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "Invalid request", "Invalid redirect_uri"),
    }
}

pub async fn submit(State(state): State<AppState>, req: Request) -> Response {
    if !state.oauth.limits.allow("authorize", client_ip(&req)) {
        return error_page(StatusCode::TOO_MANY_REQUESTS, "Too many attempts", "Too many requests; try again later");
    }
    let headers = req.headers().clone();
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if origin != state.config.public_url {
            return error_page(StatusCode::FORBIDDEN, "Forbidden", "Cross-origin form submission refused");
        }
    }
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return error_page(StatusCode::BAD_REQUEST, "Invalid request", "Unreadable form");
    };
    let mut form: HashMap<String, String> = HashMap::new();
    let mut scopes: Vec<String> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(&bytes) {
        if k == "scope" {
            scopes.push(v.into_owned());
        } else {
            form.insert(k.into_owned(), v.into_owned());
        }
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let Some(request_id) = request_id_of(field("request_uri")).map(str::to_owned) else {
        return error_page(StatusCode::BAD_REQUEST, "Invalid request", "Unknown request_uri");
    };
    let Some(device) = device_of(&headers) else {
        return error_page(StatusCode::FORBIDDEN, "Forbidden", "Missing device cookie: reload the page");
    };
    if !ct_eq(field("csrf"), &csrf_token(&state.config.secrets.jwt_secret, &device, &request_id)) {
        return error_page(StatusCode::FORBIDDEN, "Forbidden", "Invalid CSRF token: reload the page");
    }
    let client_id = field("client_id").to_owned();
    let ctx = match ctx(&state) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let pending = match commands::oauth_authorize::pending_request(&ctx, &request_id, &client_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error_page(StatusCode::BAD_REQUEST, "Invalid request", "This authorization request is unknown, expired or already used")
        }
        Err(e) => return command_error(e).into_response(),
    };
    let iss = state.config.public_url.clone();
    if field("action") == "deny" {
        return redirect(
            &pending.redirect_uri,
            &pending.response_mode,
            &[("iss", &iss), ("state", &pending.state), ("error", "access_denied"), ("error_description", "The user denied access")],
        );
    }
    if !scopes.iter().any(|s| s == "atproto") {
        scopes.insert(0, "atproto".to_owned());
    }
    let approved = scopes.join(" ");
    let result = commands::oauth_authorize::oauth_authorize(
        &ctx,
        &request_id,
        &client_id,
        field("identifier"),
        field("password").to_owned(),
        &approved,
        &device,
    )
    .await;
    match result {
        Ok(a) => redirect(&a.redirect_uri, &a.response_mode, &[("iss", &iss), ("state", &a.state), ("code", &a.code)]),
        Err(commands::oauth_flow::OAuthCommandError::OAuth { error: "access_denied", description }) => {
            let client_name = state.oauth.client(&client_id).await.ok().and_then(|m| m.client_name).unwrap_or(client_id.clone());
            let csrf = csrf_token(&state.config.secrets.jwt_secret, &device, &request_id);
            let mut r = (StatusCode::UNAUTHORIZED, Html(render(&pending, &client_name, &csrf, Some(&description)))).into_response();
            secure_headers(r.headers_mut());
            r
        }
        Err(commands::oauth_flow::OAuthCommandError::OAuth { error, description }) => {
            error_page(StatusCode::BAD_REQUEST, error, &description)
        }
        Err(commands::oauth_flow::OAuthCommandError::Command(e)) => command_error(e).into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn xss_payloads_are_escaped() {
        let req = AuthRequest {
            request_id: "req-1".into(),
            client_id: "http://localhost?scope=atproto\"><script>alert(1)</script>".into(),
            auth_method: "none".into(),
            redirect_uri: "http://127.0.0.1/".into(),
            scope: "atproto transition:generic".into(),
            state: "s".into(),
            code_challenge: "c".into(),
            dpop_jkt: String::new(),
            login_hint: "\"><img src=x onerror=alert(2)>".into(),
            response_mode: "query".into(),
            expires_at: 0,
            at: 0,
        };
        let html = render(&req, "<script>alert('name')</script>", "t", Some("<b>x</b>"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>x"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"), "{html}");
    }
}
