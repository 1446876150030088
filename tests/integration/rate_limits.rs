//! Rate limits through the real binary (`PDS_RATE_LIMITS_ENABLED=true`): two nodes share one
//! limit through a password-protected Redis started by the test, and keep serving (counting in
//! memory) when that Redis is killed; the `RateLimit-*` headers and 429 `RateLimitExceeded`; the
//! global per-IP bucket (getRepo exempt); bypass by key; `X-Forwarded-For` believed only from a
//! trusted proxy; repo-write points per account; the OAuth endpoints' per-IP buckets.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, PgDatabase, Server};
use crate::plc::PlcServer;

const REDIS_PASSWORD: &str = "limits-redis-password";

/// A private `redis-server` with a password on a free port, killed on drop.
pub struct PasswordRedis {
    child: Option<Child>,
    pub port: u16,
}

impl PasswordRedis {
    pub fn start() -> PasswordRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--requirepass", REDIS_PASSWORD])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/services installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        PasswordRedis { child: Some(child), port }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn login(s: &Server, identifier: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let body = json!({ "identifier": identifier, "password": "wrong password" });
    send(reqwest::Client::new().post(s.xrpc("com.atproto.server.createSession")).json(&body)).await
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[track_caller]
fn assert_limited(got: &(u16, reqwest::header::HeaderMap, Value)) {
    assert_eq!(got.0, 429, "{:?}", got.2);
    assert_eq!(got.2["error"], "RateLimitExceeded", "{:?}", got.2);
    assert_eq!(header(&got.1, "ratelimit-remaining"), "0");
    assert!(header(&got.1, "retry-after").parse::<u64>().unwrap() >= 1, "{:?}", got.1);
}

async fn shared_limit(pg: Option<&PgDatabase>) {
    let mut redis = PasswordRedis::start();
    let address = redis.address();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut env: Vec<(&str, &str)> = vec![
        ("PDS_RATE_LIMITS_ENABLED", "true"),
        ("PDS_REDIS_SCRATCH_ADDRESS", &address),
        ("PDS_REDIS_SCRATCH_PASSWORD", REDIS_PASSWORD),
        ("PDS_JWT_SECRET", "limits-jwt-secret"),
        // The identifier+IP bucket is the one under test; the per-IP login bucket out of the way.
        ("PDS_RATE_LIMIT_BUCKETS", "create-session-5min=7/300,login-ip=1000/60"),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.as_str()));
    }
    let a = Server::start_in(d1.path(), &env).await;
    let b = Server::start_in(d2.path(), &env).await;

    // 7 failures alternating between the nodes: all answered; the 8th (on either) is refused.
    let who = format!("nobody{}.test", free_port());
    for i in 0..7 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = login(node, &who).await;
        assert_eq!(r.0, 401, "attempt {}: {:?}", i + 1, r.2);
        assert_eq!(header(&r.1, "ratelimit-limit"), "7", "{:?}", r.1);
        assert_eq!(header(&r.1, "ratelimit-remaining"), (6 - i).to_string());
        assert_eq!(header(&r.1, "ratelimit-policy"), "7;w=300");
    }
    assert_limited(&login(&b, &who).await);
    assert_limited(&login(&a, &who).await);
    // The bucket is per identifier (and IP): someone else may still try.
    assert_eq!(login(&a, &format!("other{who}")).await.0, 401);

    // Redis goes away mid-test: every request is still served, and limits count in memory.
    redis.kill();
    let r = send(reqwest::Client::new().get(a.xrpc("com.atproto.server.describeServer"))).await;
    assert_eq!(r.0, 200, "{:?}", r.2);
    let who2 = format!("later{who}");
    for i in 0..7 {
        let r = login(&a, &who2).await;
        assert_eq!(r.0, 401, "attempt {} without Redis: {:?}", i + 1, r.2);
    }
    assert_limited(&login(&a, &who2).await);
    assert_eq!(send(reqwest::Client::new().get(b.xrpc("_health"))).await.0, 200);
}

#[tokio::test]
async fn two_nodes_share_a_limit_through_redis_and_survive_its_loss_sqlite() {
    shared_limit(None).await;
}

#[tokio::test]
async fn two_nodes_share_a_limit_through_redis_and_survive_its_loss_postgres() {
    let db = PgDatabase::create().await;
    shared_limit(Some(&db)).await;
    db.drop_now().await;
}

async fn create_account(s: &Server, handle: &str) -> (String, String) {
    let body = json!({ "handle": handle, "email": format!("{}@example.com", handle.replace('.', "-")), "password": "pw-pw-pw-pw" });
    let r = send(reqwest::Client::new().post(s.xrpc("com.atproto.server.createAccount")).json(&body)).await;
    assert_eq!(r.0, 200, "{:?}", r.2);
    (r.2["did"].as_str().unwrap().to_owned(), r.2["accessJwt"].as_str().unwrap().to_owned())
}

async fn create_record(s: &Server, did: &str, jwt: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let body = json!({
        "repo": did,
        "collection": "app.bsky.feed.post",
        "record": { "$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2024-01-01T00:00:00.000Z" },
    });
    send(reqwest::Client::new().post(s.xrpc("com.atproto.repo.createRecord")).bearer_auth(jwt).json(&body)).await
}

#[tokio::test]
async fn buckets_headers_bypass_and_forwarded_for() {
    let plc = PlcServer::start();
    let env: Vec<(&str, &str)> = vec![
        ("PDS_RATE_LIMITS_ENABLED", "true"),
        ("PDS_RATE_LIMIT_BYPASS_KEY", "let-me-through"),
        ("PDS_DID_PLC_URL", plc.url.as_str()),
        ("PDS_INVITE_REQUIRED", "false"),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test"),
        ("PDS_RATE_LIMIT_BUCKETS", "global-ip=6/300,repo-write-hour=7/3600,oauth-par-ip=2/60"),
    ];
    let s = Server::start(&env).await;
    let http = reqwest::Client::new();
    let describe = || http.get(s.xrpc("com.atproto.server.describeServer"));

    // Accounts from two "clients" (loopback is a trusted proxy by default).
    let as_client = |ip: &str, r: reqwest::RequestBuilder| r.header("x-forwarded-for", ip.to_owned());
    let (alice, alice_jwt) = create_account(&s, "alice.test").await;
    let (bob, bob_jwt) = create_account(&s, "bob.test").await;

    // Repo writes cost points per account: 3 + 3 fit in 7, the third create does not.
    assert_eq!(create_record(&s, &alice, &alice_jwt).await.0, 200);
    let second = create_record(&s, &alice, &alice_jwt).await;
    assert_eq!(second.0, 200, "{:?}", second.2);
    assert_limited(&create_record(&s, &alice, &alice_jwt).await);

    // The global per-IP bucket (6 per window): createAccount ×2 and createRecord ×3 above came
    // from 127.0.0.1; one more passes, then 429 — except getRepo, which has its own bucket.
    let r = send(describe()).await;
    assert_eq!(r.0, 200, "{:?}", r.2);
    assert_eq!(header(&r.1, "ratelimit-remaining"), "0");
    assert_limited(&send(describe()).await);
    let repo = send(http.get(s.xrpc(&format!("com.atproto.sync.getRepo?did={bob}")))).await;
    assert_eq!(repo.0, 200, "getRepo is not in the global bucket");
    // Bob's writes are his own account's points — but his IP is out of global points.
    assert_limited(&create_record(&s, &bob, &bob_jwt).await);

    // The bypass key skips every limit.
    let r = send(describe().header("x-ratelimit-bypass", "let-me-through")).await;
    assert_eq!(r.0, 200);
    assert!(r.1.get("ratelimit-limit").is_none());
    assert_limited(&send(describe().header("x-ratelimit-bypass", "wrong")).await);

    // Another client behind the (trusted, loopback) proxy has its own budget.
    let r = send(as_client("198.51.100.7", describe())).await;
    assert_eq!(r.0, 200, "{:?}", r.2);
    assert_eq!(header(&r.1, "ratelimit-remaining"), "5");
    // Bob from another address: his account still has write points.
    let r = send(
        as_client("198.51.100.8", http.post(s.xrpc("com.atproto.repo.createRecord"))).bearer_auth(&bob_jwt).json(&json!({
            "repo": bob, "collection": "app.bsky.feed.post",
            "record": { "$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2024-01-01T00:00:00.000Z" },
        })),
    )
    .await;
    assert_eq!(r.0, 200, "{:?} {:?}", r.2, r.1);

    // OAuth PAR: 2 per minute per IP, then the OAuth-shaped 429.
    for _ in 0..2 {
        let r = send(as_client("198.51.100.9", http.post(format!("{}/oauth/par", s.url))).form(&[("client_id", "x")])).await;
        assert_ne!(r.0, 429, "{:?}", r.2);
    }
    let r = send(as_client("198.51.100.9", http.post(format!("{}/oauth/par", s.url))).form(&[("client_id", "x")])).await;
    assert_eq!(r.0, 429, "{:?}", r.2);
    assert_eq!(r.2["error"], "rate_limited");

    // Without trusted proxies, X-Forwarded-For is ignored: the socket's budget is spent.
    let strict = Server::start(&[
        ("PDS_RATE_LIMITS_ENABLED", "true"),
        ("PDS_TRUSTED_PROXIES", "none"),
        ("PDS_RATE_LIMIT_BUCKETS", "global-ip=1/300"),
    ])
    .await;
    let strict_describe = || http.get(strict.xrpc("com.atproto.server.describeServer"));
    assert_eq!(send(as_client("198.51.100.1", strict_describe())).await.0, 200);
    assert_limited(&send(as_client("198.51.100.2", strict_describe())).await);
}

#[tokio::test]
async fn limits_are_off_unless_enabled() {
    let s = Server::start(&[("PDS_RATE_LIMIT_BUCKETS", "global-ip=1/300")]).await;
    for _ in 0..3 {
        let r = send(reqwest::Client::new().get(s.xrpc("com.atproto.server.describeServer"))).await;
        assert_eq!(r.0, 200);
        assert!(r.1.get("ratelimit-limit").is_none());
    }
}

/// A private CA and a certificate for 127.0.0.1, by the `openssl` command line.
fn tls_files(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=limits-test-ca"]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "redis.key", "-out", "redis.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509", "-req", "-in", "redis.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "redis.pem", "-days", "1",
        "-extfile", "san.ext",
    ]);
}

#[tokio::test]
async fn two_nodes_share_a_limit_through_redis_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    tls_files(certs.path());
    let port = free_port();
    let f = |name: &str| certs.path().join(name).display().to_string();
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", &port.to_string(), "--requirepass", REDIS_PASSWORD])
        .args(["--tls-cert-file", &f("redis.pem"), "--tls-key-file", &f("redis.key"), "--tls-ca-cert-file", &f("ca.pem")])
        .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS redis-server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let address = format!("rediss://127.0.0.1:{port}");
    let ca = f("ca.pem");
    let env: Vec<(&str, &str)> = vec![
        ("PDS_RATE_LIMITS_ENABLED", "true"),
        ("PDS_REDIS_SCRATCH_ADDRESS", &address),
        ("PDS_REDIS_SCRATCH_PASSWORD", REDIS_PASSWORD),
        ("PDS_REDIS_SCRATCH_TLS_CA_FILE", &ca),
        ("PDS_RATE_LIMIT_BUCKETS", "create-session-5min=3/300,login-ip=1000/60"),
    ];
    let a = Server::start(&env).await;
    let b = Server::start(&env).await;
    let who = format!("tls{}.test", free_port());
    for i in 0..3 {
        let r = login(if i % 2 == 0 { &a } else { &b }, &who).await;
        assert_eq!(r.0, 401, "{:?}", r.2);
        assert_eq!(header(&r.1, "ratelimit-remaining"), (2 - i).to_string());
    }
    assert_limited(&login(&b, &who).await);
    let _ = child.kill();
    let _ = child.wait();
}

/// The PLC directory's circuit breaker: 5 failed calls (nothing listens at the directory's
/// address) open it, and the next createAccount fails fast with 503 `UpstreamFailure`.
#[tokio::test]
async fn an_unreachable_plc_directory_opens_its_breaker() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let s = Server::start(&[("PDS_DID_PLC_URL", dead.as_str()), ("PDS_INVITE_REQUIRED", "false"), ("PDS_SERVICE_HANDLE_DOMAINS", ".test")]).await;
    let http = reqwest::Client::new();
    let signup = |i: usize| json!({ "handle": format!("b{i}x.test"), "email": format!("b{i}@example.com"), "password": "pw-pw-pw-pw" });
    for i in 0..5 {
        let r = send(http.post(s.xrpc("com.atproto.server.createAccount")).json(&signup(i))).await;
        assert_eq!(r.0, 502, "attempt {}: {:?}", i + 1, r.2);
    }
    let started = Instant::now();
    let r = send(http.post(s.xrpc("com.atproto.server.createAccount")).json(&signup(9))).await;
    assert_eq!(r.0, 503, "{:?}", r.2);
    assert_eq!(r.2["error"], "UpstreamFailure");
    let message = r.2["message"].as_str().unwrap();
    assert!(message.contains("PLC directory") && message.contains("5 consecutive failures"), "{message}");
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast");
}
