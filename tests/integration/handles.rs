//! Handles on other people's domains, against a real DNS server (Debian's `dnsmasq`, started by
//! the test on a loopback port; `scripts/services` installs it) and a small HTTP server on
//! 127.0.0.77:80 (127.0.0.78 for Postgres) that the DNS names for the `.well-known` cases (dev mode: plain HTTP, private
//! addresses allowed). The PDS is pointed at the DNS server by `PDS_HANDLE_RESOLVER_NAMESERVERS`.
//!
//! updateHandle to a domain whose `_atproto` TXT names the account (then resolveHandle,
//! resolveIdentity, the PLC document); refusals: a TXT naming someone else, two `did=` values,
//! odd Unicode; `.well-known` that works, is huge, slow, or redirects; and outside dev mode the
//! SSRF guard refusing a handle whose host is loopback.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{free_port, PgDatabase, Server};
use crate::plc::PlcServer;

struct Dnsmasq(Child);

impl Dnsmasq {
    fn start(port: u16, records: &[String]) -> Dnsmasq {
        let mut cmd = Command::new("dnsmasq");
        cmd.args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--bind-interfaces"])
            .args(["--listen-address=127.0.0.1", &format!("--port={port}"), "--pid-file=", "--log-facility=-"])
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("dnsmasq (scripts/services installs Debian's dnsmasq-base)");
        // Ready when its TCP port answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Dnsmasq(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A raw HTTP/1.1 server on `ip`:80 (a loopback address of its own per test) answering `/.well-known/atproto-did` per Host:
/// `wk.example.com` → the DID, `big.example.com` → 1 MB, `slow.example.com` → after 10 s,
/// `redir.example.com` → 302 to `wk.example.com`.
async fn well_known_server(ip: &str, did: String) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind((ip, 80)).await.expect("bind <loopback ip>:80 (needs root)");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let did = did.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let host = req.lines().find_map(|l| l.strip_prefix("host:")).unwrap_or_default().trim().to_owned();
                let reply = match host.as_str() {
                    h if h.starts_with("wk") => format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{did}\n", did.len() + 1),
                    "big.example.com" => {
                        let body = "x".repeat(1 << 20);
                        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n{body}")
                    }
                    "slow.example.com" => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{did}", did.len())
                    }
                    "redir.example.com" => "HTTP/1.1 302 Found\r\nlocation: http://wk.example.com/.well-known/atproto-did\r\ncontent-length: 0\r\n\r\n".to_owned(),
                    _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_owned(),
                };
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    })
}

async fn call(method: reqwest::Method, url: String, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn update_handle(s: &Server, jwt: &str, handle: &str) -> (u16, Value) {
    call(reqwest::Method::POST, s.xrpc("com.atproto.identity.updateHandle"), Some(jwt), Some(json!({ "handle": handle }))).await
}

async fn resolve(s: &Server, handle: &str) -> (u16, Value) {
    call(reqwest::Method::GET, s.xrpc(&format!("com.atproto.identity.resolveHandle?handle={handle}")), None, None).await
}

#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, name: &str, contains: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1["error"], name, "{got:?}");
    assert!(got.1["message"].as_str().unwrap_or_default().contains(contains), "{got:?} should say {contains:?}");
}

async fn external_handles(pg: Option<&PgDatabase>, ip: &str) {
    let plc = PlcServer::start();
    let dns_port = free_port();
    let nameserver = format!("127.0.0.1:{dns_port}");
    let mut env: Vec<(&str, &str)> = vec![
        ("PDS_DID_PLC_URL", plc.url.as_str()),
        ("PDS_INVITE_REQUIRED", "false"),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test"),
        ("PDS_HANDLE_RESOLVER_NAMESERVERS", &nameserver),
        ("PDS_ID_RESOLVER_TIMEOUT", "1500"),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.as_str()));
    }
    let s = Server::start(&env).await;
    let signup = json!({ "handle": "alice.test", "email": "alice@example.com", "password": "pw-pw-pw-pw" });
    let created = call(reqwest::Method::POST, s.xrpc("com.atproto.server.createAccount"), None, Some(signup)).await;
    assert_eq!(created.0, 200, "{created:?}");
    let did = created.1["did"].as_str().unwrap().to_owned();
    let jwt = created.1["accessJwt"].as_str().unwrap().to_owned();

    let _dns = Dnsmasq::start(dns_port, &[
        format!("--txt-record=_atproto.alice.example.com,did={did}"),
        "--txt-record=_atproto.someone.example.com,did=did:plc:ewvi7nxzyoun6zhxrhs64oiz".to_owned(),
        format!("--txt-record=_atproto.two.example.com,did={did}"),
        "--txt-record=_atproto.two.example.com,did=did:plc:ewvi7nxzyoun6zhxrhs64oiz".to_owned(),
        format!("--address=/wk.example.com/{ip}"),
        format!("--address=/wk2.example.com/{ip}"),
        format!("--address=/big.example.com/{ip}"),
        format!("--address=/slow.example.com/{ip}"),
        format!("--address=/redir.example.com/{ip}"),
    ]);
    let http = well_known_server(ip, did.clone()).await;

    // DNS TXT names the account: the handle is taken, announced to PLC, resolvable.
    let r = update_handle(&s, &jwt, "Alice.Example.com").await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(resolve(&s, "alice.example.com").await.1["did"], did.as_str());
    let doc: Value = reqwest::get(plc.at(&did)).await.unwrap().json().await.unwrap();
    assert!(doc["alsoKnownAs"].as_array().unwrap().contains(&json!("at://alice.example.com")), "{doc}");
    let id = call(reqwest::Method::GET, s.xrpc("com.atproto.identity.resolveIdentity?identifier=alice.example.com"), None, None).await;
    assert_eq!(id.0, 200, "{id:?}");
    assert_eq!((id.1["did"].as_str(), id.1["handle"].as_str()), (Some(did.as_str()), Some("alice.example.com")));
    let by_did = call(reqwest::Method::GET, s.xrpc(&format!("com.atproto.identity.resolveIdentity?identifier={did}")), None, None).await;
    assert_eq!(by_did.1["handle"], "alice.example.com", "{by_did:?}");
    let doc = call(reqwest::Method::GET, s.xrpc(&format!("com.atproto.identity.resolveDid?did={did}")), None, None).await;
    assert_eq!(doc.1["didDoc"]["id"], did.as_str(), "{doc:?}");
    let refreshed = call(reqwest::Method::POST, s.xrpc("com.atproto.identity.refreshIdentity"), None, Some(json!({ "identifier": "alice.example.com" }))).await;
    assert_eq!(refreshed.1["handle"], "alice.example.com", "{refreshed:?}");

    // Refusals, each with a reason.
    assert_error(&update_handle(&s, &jwt, "someone.example.com").await, 400, "InvalidRequest", "External handle did not resolve to DID");
    assert_error(&update_handle(&s, &jwt, "two.example.com").await, 400, "InvalidRequest", "2 did= TXT values");
    assert_error(&update_handle(&s, &jwt, "nothing.example.com").await, 400, "InvalidRequest", "External handle did not resolve to DID");
    assert_error(&update_handle(&s, &jwt, "\u{430}lice.example.com").await, 400, "InvalidRequest", "must be a valid handle");
    assert_error(&resolve(&s, "two.example.com").await, 400, "HandleNotFound", "exactly one is allowed");
    assert_error(&resolve(&s, "nobody.test").await, 400, "HandleNotFound", "Unable to resolve handle");

    // `.well-known`: works; too big, too slow or redirecting is refused — quickly.
    let r = update_handle(&s, &jwt, "wk.example.com").await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(resolve(&s, "wk.example.com").await.1["did"], did.as_str());
    assert_error(&resolve(&s, "big.example.com").await, 400, "HandleNotFound", "larger than");
    let started = Instant::now();
    assert_error(&resolve(&s, "slow.example.com").await, 400, "HandleNotFound", "no complete answer within");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by PDS_ID_RESOLVER_TIMEOUT: {:?}", started.elapsed());
    assert_error(&resolve(&s, "redir.example.com").await, 400, "HandleNotFound", "redirects are not followed");

    // Outside dev mode the SSRF guard refuses a handle whose host is loopback.
    let mut strict_env = env.clone();
    strict_env.push(("PDS_DEV_MODE", "false"));
    let strict = Server::start(&strict_env).await;
    assert_eq!(resolve(&s, "wk2.example.com").await.1["did"], did.as_str(), "(dev mode: allowed)");
    assert_error(&resolve(&strict, "wk2.example.com").await, 400, "HandleNotFound", "private or loopback");
    http.abort();
}

#[tokio::test]
async fn external_handles_by_dns_and_well_known_sqlite() {
    external_handles(None, "127.0.0.77").await;
}

#[tokio::test]
async fn external_handles_by_dns_and_well_known_postgres() {
    let db = PgDatabase::create().await;
    external_handles(Some(&db), "127.0.0.78").await;
    db.drop_now().await;
}
