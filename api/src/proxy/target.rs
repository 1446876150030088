//! Where a proxied call goes (reference `parseProxyInfo`, `parseProxyHeader`, `defaultService`):
//! the `atproto-proxy: <did>#<serviceId>` header — exactly one `#`, a DID before it, an id after
//! it, no spaces — resolved through the DID document (did:plc from `PDS_DID_PLC_URL`, did:web over
//! HTTPS) to the endpoint of the service entry `#<serviceId>`; `<AppView DID>#bsky_appview` is the
//! configured AppView URL without a lookup. Without the header: `tools.ozone.*` (the reference's
//! list) to the mod service, `com.atproto.moderation.createReport` to the report service,
//! anything else to the AppView; none configured → `InvalidRequest` "No service configured for
//! <nsid>".
//!
//! Resolved documents are cached (`PDS_DID_CACHE_STALE_TTL` / `_MAX_TTL`, as the reference's DID
//! cache); a failed resolution is never cached. With SSRF protection on, a did:web document is
//! read only from a public HTTPS host (the guarded client of `ssrf.rs`), as the reference's
//! resolver does.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{HeaderMap, Uri};
use serde_json::Value;

use crate::config::{ProxyConfig, ServiceTarget};
use crate::server::AppState;
use crate::xrpc::XrpcError;

/// The reference's `tools.ozone.*` methods that go to the mod service by default.
const OZONE_METHODS: [&str; 27] = [
    "tools.ozone.communication.createTemplate",
    "tools.ozone.communication.deleteTemplate",
    "tools.ozone.communication.listTemplates",
    "tools.ozone.communication.updateTemplate",
    "tools.ozone.moderation.cancelScheduledActions",
    "tools.ozone.moderation.emitEvent",
    "tools.ozone.moderation.getAccountTimeline",
    "tools.ozone.moderation.getEvent",
    "tools.ozone.moderation.getRecord",
    "tools.ozone.moderation.getRepo",
    "tools.ozone.moderation.listScheduledActions",
    "tools.ozone.moderation.queryEvents",
    "tools.ozone.moderation.queryStatuses",
    "tools.ozone.moderation.scheduleAction",
    "tools.ozone.moderation.searchRepos",
    "tools.ozone.safelink.addRule",
    "tools.ozone.safelink.queryEvents",
    "tools.ozone.safelink.queryRules",
    "tools.ozone.safelink.removeRule",
    "tools.ozone.safelink.updateRule",
    "tools.ozone.team.addMember",
    "tools.ozone.team.deleteMember",
    "tools.ozone.team.listMembers",
    "tools.ozone.team.updateMember",
    "tools.ozone.verification.grantVerifications",
    "tools.ozone.verification.listVerifications",
    "tools.ozone.verification.revokeVerifications",
];

const REPORT_METHOD: &str = "com.atproto.moderation.createReport";

/// A resolved destination.
#[derive(Debug, Clone)]
pub struct Target {
    /// The service's DID (the JWT audience).
    pub did: String,
    pub service_id: String,
    /// The endpoint (an http(s) URL).
    pub endpoint: url::Url,
    /// Whether the endpoint is one the operator configured (exempt from the SSRF guard).
    pub configured: bool,
}

impl Target {
    /// The audience the OAuth `rpc:` scope names: `<did>#<serviceId>`.
    pub fn scope_aud(&self) -> String {
        format!("{}#{}", self.did, self.service_id)
    }

    /// The upstream URL: the endpoint's origin, then the original path and query.
    pub fn url_for(&self, uri: &Uri) -> Result<url::Url, XrpcError> {
        let origin = self.endpoint.origin().ascii_serialization();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        url::Url::parse(&format!("{origin}{path}"))
            .map_err(|_| XrpcError::invalid_request("could not resolve proxy did service url"))
    }
}

/// The configured service for an NSID with no `atproto-proxy` header: (service id, service).
fn default_service<'a>(config: &'a ProxyConfig, nsid: &str) -> (&'static str, Option<&'a ServiceTarget>) {
    if OZONE_METHODS.contains(&nsid) {
        ("atproto_labeler", config.mod_service.as_ref())
    } else if nsid == REPORT_METHOD {
        ("atproto_labeler", config.report_service.as_ref())
    } else {
        ("bsky_appview", config.bsky_app_view.as_ref())
    }
}

fn configured(service: &ServiceTarget, service_id: &str) -> Result<Target, XrpcError> {
    let endpoint = url::Url::parse(&service.url)
        .map_err(|_| XrpcError::invalid_request("could not resolve proxy did service url"))?;
    Ok(Target { did: service.did.clone(), service_id: service_id.to_owned(), endpoint, configured: true })
}

/// The `atproto-proxy` header split into (DID, service id), with the reference's messages.
pub fn parse_header(value: &str) -> Result<(&str, &str), XrpcError> {
    let Some(hash) = value.find('#') else {
        return Err(XrpcError::invalid_request("no service id specified in proxy header"));
    };
    if hash == 0 {
        return Err(XrpcError::invalid_request("no did specified in proxy header"));
    }
    if hash == value.len() - 1 {
        return Err(XrpcError::invalid_request("no service id specified in proxy header"));
    }
    if value[hash + 1..].contains('#') {
        return Err(XrpcError::invalid_request("invalid proxy header format"));
    }
    if value.contains(' ') {
        return Err(XrpcError::invalid_request("proxy header cannot contain spaces"));
    }
    Ok((&value[..hash], &value[hash + 1..]))
}

/// Where `nsid` goes for this request.
pub async fn resolve(
    state: &AppState,
    config: &ProxyConfig,
    cache: &DidCache,
    headers: &HeaderMap,
    nsid: &str,
) -> Result<Target, XrpcError> {
    let Some(header) = headers.get("atproto-proxy") else {
        let (service_id, service) = default_service(config, nsid);
        let service = service.ok_or_else(|| XrpcError::invalid_request(format!("No service configured for {nsid}")))?;
        return configured(service, service_id);
    };
    let header = header.to_str().map_err(|_| XrpcError::invalid_request("invalid proxy header format"))?;
    let (did, service_id) = parse_header(header)?;
    if let Some(app_view) = &config.bsky_app_view {
        if did == app_view.did && service_id == "bsky_appview" {
            return configured(app_view, service_id);
        }
    }
    if !domain::syntax::is_valid_did(did) {
        return Err(XrpcError::invalid_request("could not resolve proxy did"));
    }
    let doc = cache.document(state, config, did).await?;
    let endpoint = service_endpoint(&doc, did, service_id)
        .ok_or_else(|| XrpcError::invalid_request("could not resolve proxy did service url"))?;
    let configured = [&config.bsky_app_view, &config.mod_service, &config.report_service]
        .into_iter()
        .flatten()
        .filter_map(|s| url::Url::parse(&s.url).ok())
        .any(|u| u.origin() == endpoint.origin());
    Ok(Target { did: did.to_owned(), service_id: service_id.to_owned(), endpoint, configured })
}

/// The `serviceEndpoint` of the entry `#<id>` (or `<did>#<id>`), if it is an http(s) URL
/// (reference `getServiceEndpoint`).
pub fn service_endpoint(doc: &Value, did: &str, id: &str) -> Option<url::Url> {
    let doc_id = doc.get("id").and_then(Value::as_str).unwrap_or(did);
    let short = format!("#{id}");
    let long = format!("{doc_id}#{id}");
    let entry = doc.get("service")?.as_array()?.iter().find(|s| {
        s.get("id").and_then(Value::as_str).is_some_and(|i| if i.starts_with('#') { i == short } else { i == long })
    })?;
    let endpoint = entry.get("serviceEndpoint")?.as_str()?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return None;
    }
    let url = url::Url::parse(endpoint).ok()?;
    url.host().is_some().then_some(url)
}

/// Resolved service DID documents by DID, with when they were fetched.
#[derive(Default)]
pub struct DidCache {
    entries: Mutex<HashMap<String, (Instant, Value)>>,
    /// DIDs being refreshed behind a request (one refresh at a time per DID).
    refreshing: Mutex<HashSet<String>>,
}

/// Most documents kept; past it the cache starts over.
const CACHE_MAX_ENTRIES: usize = 10_000;

impl DidCache {
    async fn document(&self, state: &AppState, config: &ProxyConfig, did: &str) -> Result<Value, XrpcError> {
        let cached = self.entries.lock().ok().and_then(|m| m.get(did).cloned());
        if let Some((at, doc)) = cached {
            let age = at.elapsed();
            if age < config.did_cache_stale_ttl {
                return Ok(doc);
            }
            if age < config.did_cache_max_ttl {
                // Stale: answer with it, refresh it behind the request (once).
                let first = self.refreshing.lock().is_ok_and(|mut r| r.insert(did.to_owned()));
                if first {
                    let (state, did) = (state.clone(), did.to_owned());
                    tokio::spawn(async move {
                        if let Ok(Some(doc)) = fetch(&state, &did).await {
                            state.proxy.dids.put(&did, doc);
                        }
                        if let Ok(mut r) = state.proxy.dids.refreshing.lock() {
                            r.remove(&did);
                        }
                    });
                }
                return Ok(doc);
            }
        }
        match fetch(state, did).await {
            Ok(Some(doc)) => {
                self.put(did, doc.clone());
                Ok(doc)
            }
            Ok(None) => Err(XrpcError::invalid_request("could not resolve proxy did")),
            Err(cause) => {
                tracing::warn!(%did, %cause, "proxy: service DID resolution failed");
                Err(XrpcError::invalid_request("could not resolve proxy did"))
            }
        }
    }

    fn put(&self, did: &str, doc: Value) {
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= CACHE_MAX_ENTRIES {
                m.clear();
            }
            m.insert(did.to_owned(), (Instant::now(), doc));
        }
    }
}

/// The document, `None` when the DID has none; a document whose `id` is another DID is none.
/// did:plc from the configured directory; did:web through the SSRF guard (public HTTPS hosts
/// only) unless protection is off.
async fn fetch(state: &AppState, did: &str) -> Result<Option<Value>, String> {
    let doc = match did.strip_prefix("did:web:") {
        Some(host) if !state.proxy.config.disable_ssrf_protection => {
            let clients = state.proxy.clients.as_ref().map_err(String::clone)?;
            did_web_guarded(clients.guarded(), host).await?
        }
        _ => {
            let ctx = crate::xrpc::ctx(state).map_err(|e| e.message)?;
            commands::resolve_did::resolve_did_document(&ctx, did).await.map_err(|e| e.to_string())?
        }
    };
    Ok(doc.filter(|d| d.get("id").and_then(Value::as_str) == Some(did)))
}

/// Largest DID document read.
const DID_DOC_MAX_BYTES: usize = 64 * 1024;
const DID_WEB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `https://<host>/.well-known/did.json` through the guarded client (a host without path
/// segments: `did:web:host` or `did:web:host%3Aport`).
async fn did_web_guarded(client: &reqwest::Client, host: &str) -> Result<Option<Value>, String> {
    if host.contains(':') {
        return Ok(None);
    }
    let host = host.replace("%3A", ":").replace("%3a", ":");
    let Ok(url) = url::Url::parse(&format!("https://{host}/.well-known/did.json")) else { return Ok(None) };
    super::ssrf::check_url(&url).map_err(|e| e.message)?;
    let mut resp = tokio::time::timeout(DID_WEB_TIMEOUT, client.get(url.clone()).send())
        .await
        .map_err(|_| format!("GET {url}: timed out"))?
        .map_err(|e| format!("GET {url}: {e}"))?;
    if matches!(resp.status().as_u16(), 404 | 410) {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(format!("GET {url}: {}", resp.status()));
    }
    let mut body = Vec::new();
    loop {
        let chunk = tokio::time::timeout(DID_WEB_TIMEOUT, resp.chunk())
            .await
            .map_err(|_| format!("GET {url}: timed out"))?
            .map_err(|e| format!("GET {url}: {e}"))?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > DID_DOC_MAX_BYTES {
            return Err(format!("GET {url}: document over {DID_DOC_MAX_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map(Some).map_err(|e| format!("GET {url}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn header_forms_and_the_reference_messages() {
        type Case<'a> = (&'a str, Result<(&'a str, &'a str), &'a str>);
        let cases: [Case; 8] = [
            ("did:web:api.bsky.app#bsky_appview", Ok(("did:web:api.bsky.app", "bsky_appview"))),
            ("did:plc:abc#atproto_labeler", Ok(("did:plc:abc", "atproto_labeler"))),
            ("#bsky_appview", Err("no did specified in proxy header")),
            ("did:web:x", Err("no service id specified in proxy header")),
            ("did:web:x#", Err("no service id specified in proxy header")),
            ("did:web:x#a#b", Err("invalid proxy header format")),
            ("did:web:x #a", Err("proxy header cannot contain spaces")),
            ("did:web:x#a b", Err("proxy header cannot contain spaces")),
        ];
        for (input, want) in cases {
            let got = parse_header(input).map_err(|e| e.message);
            assert_eq!(got, want.map_err(str::to_owned), "{input}");
        }
    }

    #[test]
    fn service_entries_by_short_or_long_id_http_only() {
        let doc = json!({
            "id": "did:web:svc.test",
            "service": [
                {"id": "#bsky_appview", "type": "BskyAppView", "serviceEndpoint": "https://api.svc.test"},
                {"id": "did:web:svc.test#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": "https://mod.svc.test/"},
                {"id": "#ftp", "serviceEndpoint": "ftp://svc.test"},
                {"id": "#obj", "serviceEndpoint": {"uri": "https://svc.test"}},
            ]
        });
        let ep = |id| service_endpoint(&doc, "did:web:svc.test", id).map(|u| u.to_string());
        assert_eq!(ep("bsky_appview").as_deref(), Some("https://api.svc.test/"));
        assert_eq!(ep("atproto_labeler").as_deref(), Some("https://mod.svc.test/"));
        assert_eq!(ep("ftp"), None);
        assert_eq!(ep("obj"), None);
        assert_eq!(ep("missing"), None);
    }

    #[test]
    fn default_routing_by_nsid() {
        let svc = |n: &str| Some(ServiceTarget { url: format!("https://{n}.test"), did: format!("did:web:{n}.test") });
        let mut config = crate::config::Config::load(&HashMap::from([(
            "PDS_DATA_DIRECTORY".to_owned(),
            std::env::temp_dir().join("proxy-target-test").display().to_string(),
        )]))
        .unwrap()
        .proxy;
        config.bsky_app_view = svc("appview");
        config.mod_service = svc("mod");
        config.report_service = svc("report");
        let to = |nsid| default_service(&config, nsid);
        assert_eq!(to("app.bsky.feed.getTimeline"), ("bsky_appview", config.bsky_app_view.as_ref()));
        assert_eq!(to("chat.bsky.convo.listConvos"), ("bsky_appview", config.bsky_app_view.as_ref()));
        assert_eq!(to("tools.ozone.moderation.emitEvent"), ("atproto_labeler", config.mod_service.as_ref()));
        assert_eq!(to("com.atproto.moderation.createReport"), ("atproto_labeler", config.report_service.as_ref()));
        // An ozone method off the reference's list goes to the AppView, as there.
        assert_eq!(to("tools.ozone.server.getConfig"), ("bsky_appview", config.bsky_app_view.as_ref()));
    }
}
