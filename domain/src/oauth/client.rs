//! Client identification and metadata (the reference `client-manager.ts` / `oauth-types` rules):
//! loopback development clients (`http://localhost[/]?redirect_uri=…&scope=…`, metadata
//! synthesised), discoverable clients (an https `client_id` URL whose JSON document is the
//! metadata; fetching it is the caller's), the generic metadata checks, redirect-URI rules and
//! matching (loopback IPs ignore the port when the registered URI has none).

use serde_json::Value;
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// `invalid_client` / `invalid_client_metadata`.
    #[error("{0}")]
    InvalidClientId(String),
    #[error("{0}")]
    InvalidMetadata(String),
}

fn id_err(m: impl Into<String>) -> ClientError {
    ClientError::InvalidClientId(m.into())
}
fn meta_err(m: impl Into<String>) -> ClientError {
    ClientError::InvalidMetadata(m.into())
}

/// What kind of client a `client_id` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdKind {
    Loopback,
    /// The URL to fetch the metadata document from.
    Discoverable(Url),
}

/// The validated metadata of a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMetadata {
    pub client_id: String,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub redirect_uris: Vec<String>,
    pub scope: String,
    pub token_endpoint_auth_method: String,
    pub token_endpoint_auth_signing_alg: Option<String>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub application_type: String,
}

fn is_loopback_ip(h: &Host<&str>) -> bool {
    match h {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(_) => false,
    }
}

pub fn classify(client_id: &str) -> Result<ClientIdKind, ClientError> {
    if let Some(rest) = client_id.strip_prefix("http://localhost") {
        if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
            return Err(id_err("Loopback client_id must be http://localhost with no port"));
        }
        let u = Url::parse(client_id).map_err(|_| id_err("Invalid loopback client_id"))?;
        if u.port().is_some() || u.path() != "/" || u.fragment().is_some() || !u.username().is_empty() {
            return Err(id_err("Loopback client_id must be http://localhost with no port, path or fragment"));
        }
        let mut scopes = 0;
        for (k, _) in u.query_pairs() {
            match k.as_ref() {
                "scope" => scopes += 1,
                "redirect_uri" => {}
                other => return Err(id_err(format!("Loopback client_id has an unexpected parameter {other:?}"))),
            }
        }
        if scopes > 1 {
            return Err(id_err("Loopback client_id may name scope at most once"));
        }
        return Ok(ClientIdKind::Loopback);
    }
    let u = Url::parse(client_id).map_err(|_| id_err("client_id must be a URL"))?;
    if u.scheme() != "https" {
        return Err(id_err("Discoverable client_id must be an https URL"));
    }
    if u.as_str() != client_id {
        return Err(id_err("client_id must be in canonical form"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(id_err("client_id must not contain credentials"));
    }
    if u.fragment().is_some() {
        return Err(id_err("client_id must not contain a fragment"));
    }
    if u.path() == "/" || u.path().ends_with('/') {
        return Err(id_err("client_id must have a path that is not / and does not end with /"));
    }
    match u.host() {
        Some(Host::Domain(_)) => {}
        _ => return Err(id_err("client_id hostname must be a domain name, not an IP address")),
    }
    Ok(ClientIdKind::Discoverable(u))
}

/// The metadata the server synthesises for a loopback client.
pub fn loopback_metadata(client_id: &str) -> Result<ClientMetadata, ClientError> {
    let u = Url::parse(client_id).map_err(|_| id_err("Invalid loopback client_id"))?;
    let mut redirect_uris = Vec::new();
    let mut scope = None;
    for (k, v) in u.query_pairs() {
        if k == "scope" {
            scope = Some(v.into_owned());
        } else {
            let r = Url::parse(&v).map_err(|_| id_err("Loopback redirect_uri must be a URL"))?;
            if r.scheme() != "http" || !r.host().is_some_and(|h| is_loopback_ip(&h)) {
                return Err(id_err("Loopback redirect_uri must be http://127.0.0.1 or http://[::1]"));
            }
            redirect_uris.push(v.into_owned());
        }
    }
    if redirect_uris.is_empty() {
        redirect_uris = vec!["http://127.0.0.1/".to_owned(), "http://[::1]/".to_owned()];
    }
    let scope = scope.unwrap_or_else(|| "atproto".to_owned());
    if !scope.split(' ').any(|s| s == "atproto") {
        return Err(id_err("Loopback client scope must include atproto"));
    }
    Ok(ClientMetadata {
        client_id: client_id.to_owned(),
        client_name: None,
        client_uri: None,
        logo_uri: None,
        redirect_uris,
        scope,
        token_endpoint_auth_method: "none".to_owned(),
        token_endpoint_auth_signing_alg: None,
        jwks: None,
        jwks_uri: None,
        application_type: "native".to_owned(),
    })
}

fn strings(doc: &Value, key: &str) -> Result<Option<Vec<String>>, ClientError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| meta_err(format!("{key} must be an array of strings"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(meta_err(format!("{key} must be an array of strings"))),
    }
}

fn string(doc: &Value, key: &str) -> Result<Option<String>, ClientError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(meta_err(format!("{key} must be a string"))),
    }
}

/// Checks a redirect URI a client registers (`application_type` decides whether loopback IPs
/// are allowed) — and, for discoverable clients, that a private-use scheme is the reversed
/// client hostname.
pub fn check_redirect_uri(uri: &str, native: bool, client_host: Option<&str>) -> Result<(), ClientError> {
    let u = Url::parse(uri).map_err(|_| meta_err(format!("redirect_uri {uri:?} is not a URL")))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(meta_err("redirect_uri must not contain credentials"));
    }
    match u.scheme() {
        "https" => {
            let host = u.host_str().unwrap_or("");
            if host == "localhost" || host.ends_with(".localhost") || u.host().is_some_and(|h| is_loopback_ip(&h)) {
                return Err(meta_err("https redirect_uri must not point at a local host"));
            }
            Ok(())
        }
        "http" => {
            if u.host_str() == Some("localhost") {
                return Err(meta_err("Use 127.0.0.1 or [::1] instead of localhost in redirect_uri"));
            }
            if !u.host().is_some_and(|h| is_loopback_ip(&h)) {
                return Err(meta_err("http redirect_uri is only allowed for loopback IPs"));
            }
            if !native {
                return Err(meta_err("Loopback redirect_uri is only allowed for native clients"));
            }
            Ok(())
        }
        scheme => {
            if !scheme.contains('.') {
                return Err(meta_err(format!("Unsupported redirect_uri scheme {scheme:?}")));
            }
            if let Some(host) = client_host {
                let reversed: Vec<&str> = host.split('.').rev().collect();
                if scheme != reversed.join(".") {
                    return Err(meta_err("Private-use redirect_uri scheme must be the reversed client_id hostname"));
                }
            }
            Ok(())
        }
    }
}

/// Validates a discoverable client's metadata document fetched from `client_id`.
pub fn validate_metadata(client_id: &str, doc: &Value) -> Result<ClientMetadata, ClientError> {
    let ClientIdKind::Discoverable(url) = classify(client_id)? else {
        return loopback_metadata(client_id);
    };
    if !doc.is_object() {
        return Err(meta_err("client metadata must be a JSON object"));
    }
    if doc.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(meta_err("client metadata client_id does not match the URL it was fetched from"));
    }
    for oidc in ["id_token_signed_response_alg", "userinfo_signed_response_alg", "require_auth_time", "default_max_age"] {
        if doc.get(oidc).is_some() {
            return Err(meta_err(format!("Unsupported OIDC field {oidc}")));
        }
    }
    for enc in ["authorization_encrypted_response_alg", "tls_client_certificate_bound_access_tokens"] {
        if doc.get(enc).is_some_and(|v| !v.is_null() && v != &Value::Bool(false)) {
            return Err(meta_err(format!("Unsupported field {enc}")));
        }
    }
    if doc.get("dpop_bound_access_tokens") != Some(&Value::Bool(true)) {
        return Err(meta_err("dpop_bound_access_tokens must be true"));
    }
    let scope = string(doc, "scope")?.ok_or_else(|| meta_err("scope is required"))?;
    let tokens: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if !tokens.contains(&"atproto") {
        return Err(meta_err("scope must include atproto"));
    }
    if tokens.iter().enumerate().any(|(i, t)| tokens[..i].contains(t)) {
        return Err(meta_err("scope must not contain duplicates"));
    }
    let grants = strings(doc, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if !grants.iter().any(|g| g == "authorization_code")
        || grants.iter().any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err(meta_err("grant_types must be authorization_code and optionally refresh_token"));
    }
    let responses = strings(doc, "response_types")?.unwrap_or_else(|| vec!["code".into()]);
    if !responses.iter().any(|r| r == "code") {
        return Err(meta_err("response_types must include code"));
    }
    let application_type = string(doc, "application_type")?.unwrap_or_else(|| "web".into());
    if application_type != "web" && application_type != "native" {
        return Err(meta_err("application_type must be web or native"));
    }
    let method = string(doc, "token_endpoint_auth_method")?.unwrap_or_else(|| "client_secret_basic".into());
    let alg = string(doc, "token_endpoint_auth_signing_alg")?;
    let jwks = doc.get("jwks").filter(|v| !v.is_null()).cloned();
    let jwks_uri = string(doc, "jwks_uri")?;
    if jwks.is_some() && jwks_uri.is_some() {
        return Err(meta_err("jwks and jwks_uri are mutually exclusive"));
    }
    match method.as_str() {
        "none" => {
            if alg.is_some() {
                return Err(meta_err("token_endpoint_auth_signing_alg must be absent with auth method none"));
            }
        }
        "private_key_jwt" => {
            if jwks.is_none() && jwks_uri.is_none() {
                return Err(meta_err("private_key_jwt requires jwks or jwks_uri"));
            }
            if alg.is_none() {
                return Err(meta_err("private_key_jwt requires token_endpoint_auth_signing_alg"));
            }
        }
        other => return Err(meta_err(format!("Unsupported token_endpoint_auth_method {other:?}"))),
    }
    if application_type == "native" && method != "none" {
        return Err(meta_err("Native clients must use token_endpoint_auth_method none"));
    }
    let redirect_uris = strings(doc, "redirect_uris")?.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(meta_err("At least one redirect_uri is required"));
    }
    for r in &redirect_uris {
        check_redirect_uri(r, application_type == "native", url.host_str())?;
    }
    let client_uri = string(doc, "client_uri")?;
    if let Some(cu) = &client_uri {
        let c = Url::parse(cu).map_err(|_| meta_err("client_uri must be a URL"))?;
        if c.origin() != url.origin() || !url.path().starts_with(c.path().trim_end_matches('/')) {
            return Err(meta_err("client_uri must be a parent of client_id on the same origin"));
        }
    }
    Ok(ClientMetadata {
        client_id: client_id.to_owned(),
        client_name: string(doc, "client_name")?,
        client_uri,
        logo_uri: string(doc, "logo_uri")?,
        redirect_uris,
        scope,
        token_endpoint_auth_method: method,
        token_endpoint_auth_signing_alg: alg,
        jwks,
        jwks_uri,
        application_type,
    })
}

/// Whether `requested` is one of the registered `redirect_uris` (exact, except that a loopback
/// IP registered without a port matches any port).
pub fn redirect_uri_matches(meta: &ClientMetadata, requested: &str) -> bool {
    meta.redirect_uris.iter().any(|reg| {
        if reg == requested {
            return true;
        }
        let (Ok(r), Ok(q)) = (Url::parse(reg), Url::parse(requested)) else { return false };
        r.host().is_some_and(|h| is_loopback_ip(&h))
            && r.port().is_none()
            && r.scheme() == q.scheme()
            && r.host() == q.host()
            && r.path() == q.path()
            && r.query() == q.query()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn check_id(id: &str, ok: bool) {
        assert_eq!(classify(id).is_ok(), ok, "{id}: {:?}", classify(id));
    }

    #[test]
    fn client_ids() {
        check_id("http://localhost", true);
        check_id("http://localhost/", true);
        check_id("http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb&scope=atproto", true);
        check_id("http://localhost:8080", false);
        check_id("http://localhost/path", false);
        check_id("http://localhost?foo=bar", false);
        check_id("http://localhost?scope=atproto&scope=atproto", false);
        check_id("https://app.example.com/client-metadata.json", true);
        check_id("https://app.example.com/", false);
        check_id("https://app.example.com/x/", false);
        check_id("https://10.0.0.1/client.json", false);
        check_id("https://user:pw@app.example.com/c.json", false);
        check_id("http://app.example.com/c.json", false);
        check_id("https://app.example.com/c.json#f", false);
    }

    #[test]
    fn loopback_clients() {
        let m = loopback_metadata("http://localhost").unwrap();
        assert_eq!(m.redirect_uris, ["http://127.0.0.1/", "http://[::1]/"]);
        assert_eq!(m.scope, "atproto");
        assert!(redirect_uri_matches(&m, "http://127.0.0.1:5555/"));
        assert!(!redirect_uri_matches(&m, "http://127.0.0.1:5555/other"));
        let m = loopback_metadata("http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb&scope=atproto%20transition%3Ageneric").unwrap();
        assert_eq!(m.scope, "atproto transition:generic");
        assert!(redirect_uri_matches(&m, "http://127.0.0.1:8080/cb"));
        assert!(!redirect_uri_matches(&m, "http://127.0.0.1:8081/cb"));
        assert!(loopback_metadata("http://localhost?redirect_uri=https%3A%2F%2Fevil.example%2Fcb").is_err());
    }

    fn doc() -> Value {
        json!({
            "client_id": "https://app.example.com/client-metadata.json",
            "client_name": "App",
            "redirect_uris": ["https://app.example.com/cb"],
            "scope": "atproto transition:generic",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "web",
            "dpop_bound_access_tokens": true
        })
    }

    #[track_caller]
    fn check_doc(edit: impl FnOnce(&mut Value), expected: Result<(), &str>) {
        let mut d = doc();
        edit(&mut d);
        let got = validate_metadata("https://app.example.com/client-metadata.json", &d).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned));
    }

    #[test]
    fn metadata_documents() {
        check_doc(|_| {}, Ok(()));
        check_doc(|d| d["client_id"] = json!("https://other.example.com/c.json"), Err("client metadata client_id does not match the URL it was fetched from"));
        check_doc(|d| d["dpop_bound_access_tokens"] = json!(false), Err("dpop_bound_access_tokens must be true"));
        check_doc(|d| d["scope"] = json!("transition:generic"), Err("scope must include atproto"));
        check_doc(|d| d["grant_types"] = json!(["implicit"]), Err("grant_types must be authorization_code and optionally refresh_token"));
        check_doc(|d| d["redirect_uris"] = json!([]), Err("At least one redirect_uri is required"));
        check_doc(|d| d["redirect_uris"] = json!(["http://example.com/cb"]), Err("http redirect_uri is only allowed for loopback IPs"));
        check_doc(|d| d["redirect_uris"] = json!(["http://127.0.0.1/cb"]), Err("Loopback redirect_uri is only allowed for native clients"));
        check_doc(|d| d["redirect_uris"] = json!(["https://localhost/cb"]), Err("https redirect_uri must not point at a local host"));
        check_doc(|d| d["redirect_uris"] = json!(["com.example.app:/cb"]), Ok(()));
        check_doc(|d| d["redirect_uris"] = json!(["com.evil.app:/cb"]), Err("Private-use redirect_uri scheme must be the reversed client_id hostname"));
        check_doc(|d| d["token_endpoint_auth_method"] = json!("private_key_jwt"), Err("private_key_jwt requires jwks or jwks_uri"));
        check_doc(|d| d["client_uri"] = json!("https://evil.example.com"), Err("client_uri must be a parent of client_id on the same origin"));
    }
}
