//! Mail that arrives: the outbox against a real SMTP server (aiosmtpd, `scripts/smtp-install`,
//! started per test on a free port with a trustme CA made at start), through the real binary:
//! - STARTTLS + AUTH (percent-encoded user and password) on SQLite: password reset and email
//!   update from the request to the mail in the server's inbox to the token working; the message
//!   is multipart text + HTML, from `PDS_EMAIL_FROM_ADDRESS`;
//! - implicit TLS (`smtps://`) and a plain server (`smtp://`, no STARTTLS offered);
//! - a TLS mismatch (no CA for the server's certificate): the request succeeds, the message is
//!   retried, then `notification.failed` with the certificate error in the log;
//! - the SMTP server down: `attempt_failed`, the PDS restarted, the server back on its port → the
//!   mail is delivered and its token works;
//! - two `pds` processes on one Postgres database: every queued message is sent exactly once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{assert_error, post, signup, ADMIN, PASSWORD};
use crate::plc::PlcServer;

const FROM: &str = "PDS Mailer <mailer@pds.example>";

/// aiosmtpd on 127.0.0.1 (`tests/interop/smtp/server.py`); killed on drop.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub inbox: PathBuf,
    pub ca: PathBuf,
}

impl SmtpServer {
    pub fn start(dir: &Path, tls: &str, auth: Option<&str>, port: u16) -> SmtpServer {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/smtp");
        let python = root.join(".venv/bin/python");
        assert!(python.exists(), "{} not found: run scripts/smtp-install (scripts/test does)", python.display());
        let inbox = dir.join("inbox");
        let certs = dir.join("smtp-certs");
        let mut cmd = Command::new(python);
        cmd.arg(root.join("server.py"))
            .args(["--inbox", inbox.to_str().unwrap(), "--tls", tls, "--cert-dir", certs.to_str().unwrap()])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(a) = auth {
            cmd.args(["--auth", a]);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port = line.trim().strip_prefix("SMTP_PORT=").unwrap_or_else(|| panic!("smtp server said {line:?}")).parse().unwrap();
        SmtpServer { child, port, inbox, ca: certs.join("ca.pem") }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every message in the inbox, oldest first.
fn inbox(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.unwrap().path()).filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// The `n`-th (from 1) message to `to`, waiting up to `secs`.
fn wait_mail(dir: &Path, to: &str, n: usize, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mine: Vec<String> =
            inbox(dir).into_iter().map(|(_, t)| t).filter(|t| t.contains(&format!("X-Envelope-To: {to}\r\n"))).collect();
        if mine.len() >= n {
            return mine[n - 1].clone();
        }
        assert!(Instant::now() < deadline, "no mail #{n} to {to} within {secs} s; inbox: {:?}", inbox(dir));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The token on the `Token: ` line of a message's text part.
fn token_of(mail: &str) -> String {
    let t = mail.lines().find_map(|l| l.strip_prefix("Token: ")).unwrap_or_else(|| panic!("no token in {mail}")).trim();
    assert_eq!(t.len(), 11, "{t}");
    t.to_owned()
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    mail.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap_or_else(|| panic!("no {name} header in {mail}"))
}

/// A server with the PLC directory and `extra` settings (on `pg` if given); returns it and its env.
async fn start_pds(dir: &Path, plc: &PlcServer, pg: Option<&PgDatabase>, extra: &[(&str, String)]) -> (Server, Vec<(&'static str, String)>) {
    let mut env: Vec<(&'static str, String)> = vec![
        ("PDS_DID_PLC_URL", plc.url.clone()),
        ("PDS_INVITE_REQUIRED", "false".into()),
        ("PDS_JWT_SECRET", "mail-test-jwt-secret".into()),
        ("PDS_ADMIN_PASSWORD", ADMIN.into()),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test".into()),
        ("PDS_SERVICE_DID", format!("did:web:mail-{}.test", dir.file_name().unwrap().to_string_lossy().to_ascii_lowercase().replace(['.', '_'], ""))),
        ("PDS_EMAIL_FROM_ADDRESS", FROM.into()),
        ("PDS_NOTIFY_RETRY_BASE_MS", "300".into()),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.clone()));
    }
    for (k, v) in extra {
        env.retain(|(k2, _)| k2 != k);
        env.push((Box::leak(k.to_string().into_boxed_str()), v.clone()));
    }
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (Server::start_in(dir, &borrowed).await, env)
}

async fn restart(dir: &Path, env: &[(&'static str, String)]) -> Server {
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_in(dir, &borrowed).await
}

/// Every event of the log.
async fn log_events(s: &Server) -> Vec<Value> {
    let mut all = vec![];
    let mut cursor = 0;
    loop {
        let r = reqwest::Client::new()
            .get(s.xrpc(&format!("org.eventpds.admin.listEvents?limit=1000&cursor={cursor}")))
            .basic_auth("admin", Some(ADMIN))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let page = v["events"].as_array().unwrap_or_else(|| panic!("{v}")).clone();
        match page.last() {
            Some(last) => cursor = last["position"].as_i64().unwrap(),
            None => return all,
        }
        all.extend(page);
    }
}

async fn wait_event(s: &Server, event_type: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(e) = log_events(s).await.into_iter().find(|e| e["type"] == event_type) {
            return e;
        }
        assert!(Instant::now() < deadline, "no {event_type} within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(s: &Server, id: &str, pw: &str) -> (u16, Value) {
    post(s, "com.atproto.server.createSession", None, json!({ "identifier": id, "password": pw })).await
}

#[tokio::test]
async fn smtp_starttls_auth_reset_and_update() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), "starttls", Some("pds@example.com:p@ss:w/rd%"), 0);
    let url = format!("smtp://pds%40example.com:p%40ss%3Aw%2Frd%25@localhost:{}?requireTLS=true", smtp.port);
    let (server, _) = start_pds(dir.path(), &plc, None, &[("PDS_EMAIL_SMTP_URL", url), ("PDS_EMAIL_SMTP_CA_FILE", smtp.ca.display().to_string())]).await;
    let s = &server;
    let alice = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(alice.0, 200, "{alice:?}");
    let access = alice.1["accessJwt"].as_str().unwrap().to_owned();

    // Password reset: request → the mail in the server's inbox → the token works.
    assert_eq!(post(s, "com.atproto.server.requestPasswordReset", None, json!({ "email": "alice@example.com" })).await.0, 200);
    let mail = wait_mail(&smtp.inbox, "alice@example.com", 1, 20);
    assert_eq!(header(&mail, "X-Tls"), "yes", "STARTTLS was used");
    assert_eq!(header(&mail, "X-Authenticated"), "yes", "AUTH with the decoded user and password");
    assert_eq!(header(&mail, "X-Envelope-From"), "mailer@pds.example");
    assert_eq!(header(&mail, "Subject"), "Password Reset Requested");
    assert_eq!(header(&mail, "To"), "alice@example.com");
    assert!(header(&mail, "From").contains("<mailer@pds.example>"), "{mail}");
    assert!(mail.contains("multipart/alternative") && mail.contains("text/plain") && mail.contains("text/html"), "{mail}");
    let token = token_of(&mail);
    assert!(mail.contains(&format!(">{token}</code>")), "the HTML part carries the token too: {mail}");
    assert_eq!(post(s, "com.atproto.server.resetPassword", None, json!({ "token": token, "password": "new-password-1" })).await.0, 200);
    assert_error(&login(s, "alice.test", PASSWORD).await, 401, "AuthenticationRequired");
    let relog = login(s, "alice.test", "new-password-1").await;
    assert_eq!(relog.0, 200, "{relog:?}");
    let access2 = relog.1["accessJwt"].as_str().unwrap().to_owned();
    let _ = access;

    // Confirm, then update the address with the mailed token.
    assert_eq!(post(s, "com.atproto.server.requestEmailConfirmation", Some(&access2), Value::Null).await.0, 200);
    let mail = wait_mail(&smtp.inbox, "alice@example.com", 2, 20);
    assert_eq!(header(&mail, "Subject"), "Email Confirmation");
    assert!(mail.contains("https://bsky.app/intent/verify-email?code="), "the confirmation link is on by default");
    let ok = post(s, "com.atproto.server.confirmEmail", Some(&access2), json!({ "email": "alice@example.com", "token": token_of(&mail) })).await;
    assert_eq!(ok.0, 200, "{ok:?}");
    assert_eq!(post(s, "com.atproto.server.requestEmailUpdate", Some(&access2), Value::Null).await, (200, json!({ "tokenRequired": true })));
    let mail = wait_mail(&smtp.inbox, "alice@example.com", 3, 20);
    assert_eq!(header(&mail, "Subject"), "Email Update Requested");
    let up = post(s, "com.atproto.server.updateEmail", Some(&access2), json!({ "email": "alice2@example.com", "token": token_of(&mail) })).await;
    assert_eq!(up.0, 200, "{up:?}");
    let me = crate::invites::get(s, "com.atproto.server.getSession", Some(&access2)).await;
    assert_eq!(me.1["email"], "alice2@example.com");

    // The log has the outbox's events and no token.
    // (The mail is in the inbox before the sender appends `sent`: wait for it.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = log_events(s).await;
        if events.iter().filter(|e| e["type"] == "notification.sent").count() == 3 {
            break events;
        }
        assert!(Instant::now() < deadline, "three notification.sent expected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&token_of(&mail)), "a token in the log");
}

#[tokio::test]
async fn smtp_implicit_tls_and_plain() {
    let plc = PlcServer::start();
    for (tls, scheme, tls_seen) in [("implicit", "smtps", "yes"), ("none", "smtp", "no")] {
        let dir = tempfile::tempdir().unwrap();
        let smtp = SmtpServer::start(dir.path(), tls, None, 0);
        let url = format!("{scheme}://127.0.0.1:{}", smtp.port);
        let mut extra = vec![("PDS_EMAIL_SMTP_URL", url)];
        if tls != "none" {
            extra.push(("PDS_EMAIL_SMTP_CA_FILE", smtp.ca.display().to_string()));
        }
        let (server, _) = start_pds(dir.path(), &plc, None, &extra).await;
        let s = &server;
        assert_eq!(post(s, "com.atproto.server.createAccount", None, signup("bob.test", "bob@example.com", None)).await.0, 200);
        assert_eq!(post(s, "com.atproto.server.requestPasswordReset", None, json!({ "email": "bob@example.com" })).await.0, 200);
        let mail = wait_mail(&smtp.inbox, "bob@example.com", 1, 20);
        assert_eq!(header(&mail, "X-Tls"), tls_seen, "{scheme}");
        let reset = post(s, "com.atproto.server.resetPassword", None, json!({ "token": token_of(&mail), "password": "other-password" })).await;
        assert_eq!(reset.0, 200, "{scheme}: {reset:?}");
    }
}

#[tokio::test]
async fn smtp_tls_mismatch_is_retried_then_failed_with_the_reason() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), "implicit", None, 0);
    // No CA file: the server's certificate is not trusted.
    let url = format!("smtps://127.0.0.1:{}", smtp.port);
    let (server, _) = start_pds(dir.path(), &plc, None, &[("PDS_EMAIL_SMTP_URL", url), ("PDS_NOTIFY_MAX_ATTEMPTS", "2".into())]).await;
    let s = &server;
    assert_eq!(post(s, "com.atproto.server.createAccount", None, signup("carol.test", "carol@example.com", None)).await.0, 200);
    assert_eq!(post(s, "com.atproto.server.requestPasswordReset", None, json!({ "email": "carol@example.com" })).await.0, 200, "the request succeeds");
    let failed = wait_event(s, "notification.failed", 30).await;
    let error = failed["payload"]["error"].as_str().unwrap().to_ascii_lowercase();
    assert!(error.contains("certificate") || error.contains("unknownissuer"), "{error}");
    assert_eq!(failed["payload"]["attempt"], 2);
    let events = log_events(s).await;
    assert_eq!(events.iter().filter(|e| e["type"] == "notification.attempt_failed").count(), 1);
    assert!(inbox(&smtp.inbox).is_empty());
    // The operator sees the reason.
    let (code, out, err) = admin_cli(s, dir.path(), &["notifications", "--status", "failed"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("carol@example.com") && out.contains("reset_password") && out.to_ascii_lowercase().contains("certificate"), "{out}");
}

/// `pds admin …` against the running server: exit code, stdout, stderr.
fn admin_cli(server: &Server, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let data_dir = dir.join("cli-data").display().to_string();
    let mut full = vec!["admin", "--url", server.url.as_str()];
    full.extend_from_slice(args);
    let out = crate::harness::pds_env(&full, &[("PDS_ADMIN_PASSWORD", ADMIN), ("PDS_DATA_DIRECTORY", data_dir.as_str())]);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn admin_post(s: &Server, nsid: &str, body: Value) -> (u16, Value) {
    crate::invites::admin_post(s, nsid, ADMIN, body).await
}

#[tokio::test]
async fn admin_send_email_and_update_account_email() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), "none", None, 0);
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    let (server, _) = start_pds(dir.path(), &plc, None, &[("PDS_EMAIL_SMTP_URL", url)]).await;
    let s = &server;
    let erin = post(s, "com.atproto.server.createAccount", None, signup("erin.test", "erin@example.com", None)).await;
    let did = erin.1["did"].as_str().unwrap().to_owned();
    assert_eq!(post(s, "com.atproto.server.createAccount", None, signup("frank.test", "frank@example.com", None)).await.0, 200);

    // sendEmail: the operator's subject and HTML, a text part made from it.
    let send = "com.atproto.admin.sendEmail";
    let body = json!({ "recipientDid": did, "senderDid": "did:plc:moderator0000000000000000", "subject": "About your account", "content": "<p>Hello <b>Erin</b> &amp; welcome</p>" });
    assert_error(&post(s, send, None, body.clone()).await, 401, "AuthRequired");
    assert_eq!(admin_post(s, send, body.clone()).await, (200, json!({ "sent": true })));
    let mail = wait_mail(&smtp.inbox, "erin@example.com", 1, 20);
    assert_eq!(header(&mail, "Subject"), "About your account");
    assert!(mail.contains("<b>Erin</b>") && mail.contains("Hello Erin & welcome"), "{mail}");
    let mut no_subject = body.clone();
    no_subject.as_object_mut().unwrap().remove("subject");
    assert_eq!(admin_post(s, send, no_subject).await.0, 200);
    assert_eq!(header(&wait_mail(&smtp.inbox, "erin@example.com", 2, 20), "Subject"), "Message via your PDS");
    let cases = [
        (json!({ "recipientDid": "did:plc:unknown00000000000000000", "senderDid": "did:plc:x", "content": "hi" }), "Recipient not found"),
        (json!({ "recipientDid": did, "senderDid": "did:plc:x", "content": "hi", "subject": "Hi\r\nBcc: eve@example.com" }), "subject must not contain line breaks or control characters"),
    ];
    for (b, message) in cases {
        let r = admin_post(s, send, b).await;
        assert_error(&r, 400, "InvalidRequest");
        assert_eq!(r.1["message"], message);
    }
    assert_error(&admin_post(s, send, json!({ "recipientDid": did })).await, 400, "InvalidRequest");

    // updateAccountEmail: by handle or DID, unconfirmed, no token; refusals.
    let update = "com.atproto.admin.updateAccountEmail";
    assert_error(&post(s, update, None, json!({ "account": did, "email": "e@example.com" })).await, 401, "AuthRequired");
    assert_eq!(admin_post(s, update, json!({ "account": "erin.test", "email": "Erin2@Example.com" })).await.0, 200);
    let info = crate::invites::call(reqwest::Method::GET, &s.xrpc(&format!("com.atproto.admin.getAccountInfo?did={did}")), None, Some(ADMIN), None).await;
    assert_eq!(info.1["email"], "erin2@example.com");
    assert!(info.1.get("emailConfirmedAt").is_none());
    for (b, message) in [
        (json!({ "account": "nobody.test", "email": "n@example.com" }), "Account does not exist: nobody.test"),
        (json!({ "account": did, "email": "frank@example.com" }), "This email address is already in use, please use a different email."),
        (json!({ "account": did, "email": "not-an-address" }), "This email address is not supported, please use a different email."),
    ] {
        let r = admin_post(s, update, b).await;
        assert_error(&r, 400, "InvalidRequest");
        assert_eq!(r.1["message"], message);
    }
    // The operator's list shows the two messages as sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let (code, out, err) = admin_cli(s, dir.path(), &["--json", "notifications", "--status", "sent"]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        if v["notifications"].as_array().unwrap().len() == 2 {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(v["notifications"].as_array().unwrap().iter().all(|n| n["template"] == "admin_message" && n["recipient"] == "erin@example.com"));
}

#[tokio::test]
async fn smtp_down_then_back_after_a_restart_delivers() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), "none", None, 0);
    let port = smtp.port;
    drop(smtp);
    let url = format!("smtp://127.0.0.1:{port}");
    let (server, env) = start_pds(dir.path(), &plc, None, &[("PDS_EMAIL_SMTP_URL", url), ("PDS_NOTIFY_RETRY_BASE_MS", "1000".into())]).await;
    assert_eq!(post(&server, "com.atproto.server.createAccount", None, signup("dave.test", "dave@example.com", None)).await.0, 200);
    assert_eq!(post(&server, "com.atproto.server.requestPasswordReset", None, json!({ "email": "dave@example.com" })).await.0, 200);
    let failed = wait_event(&server, "notification.attempt_failed", 20).await;
    assert!(failed["payload"]["error"].as_str().unwrap().to_ascii_lowercase().contains("connect"), "{failed}");
    // The PDS goes down with the message pending; the SMTP server comes back on its port.
    drop(server);
    let smtp = SmtpServer::start(dir.path(), "none", None, port);
    let server = restart(dir.path(), &env).await;
    let mail = wait_mail(&smtp.inbox, "dave@example.com", 1, 30);
    let reset = post(&server, "com.atproto.server.resetPassword", None, json!({ "token": token_of(&mail), "password": "after-restart" })).await;
    assert_eq!(reset.0, 200, "{reset:?}");
    assert_eq!(login(&server, "dave.test", "after-restart").await.0, 200);
}

#[tokio::test]
async fn two_nodes_on_one_postgres_send_each_message_once() {
    let plc = PlcServer::start();
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path(), "none", None, 0);
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    // One data directory: the two nodes share the generated secrets (as a cluster must share
    // PDS_KEY_ENCRYPTION_KEY and PDS_JWT_SECRET).
    let (a, env) = start_pds(dir.path(), &plc, Some(&db), &[("PDS_EMAIL_SMTP_URL", url)]).await;
    let b = restart(dir.path(), &env).await;
    const USERS: usize = 6;
    const ROUNDS: usize = 5;
    for i in 0..USERS {
        let r = post(&a, "com.atproto.server.createAccount", None, signup(&format!("user{i}.test"), &format!("user{i}@example.com"), None)).await;
        assert_eq!(r.0, 200, "{r:?}");
    }
    // Each round: every user's reset at once, on alternating nodes (one account's requests in
    // turn, so they do not race for its stream).
    for round in 0..ROUNDS {
        let mut calls = vec![];
        for i in 0..USERS {
            let node = if (round + i) % 2 == 0 { &a } else { &b };
            calls.push(post(node, "com.atproto.server.requestPasswordReset", None, json!({ "email": format!("user{i}@example.com") })));
        }
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.0, 200, "{r:?}");
        }
    }
    let total = USERS * ROUNDS;
    let deadline = Instant::now() + Duration::from_secs(60);
    while inbox(&smtp.inbox).len() < total {
        assert!(Instant::now() < deadline, "{} of {total} mails arrived", inbox(&smtp.inbox).len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(inbox(&smtp.inbox).len(), total, "a message was sent twice");
    let events = log_events(&a).await;
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!((count("notification.queued"), count("notification.claimed"), count("notification.sent")), (total, total, total));
    let nodes: std::collections::BTreeSet<&str> =
        events.iter().filter(|e| e["type"] == "notification.claimed").map(|e| e["payload"]["node"].as_str().unwrap()).collect();
    eprintln!("claims by node: {nodes:?}");
    drop((a, b));
    db.drop_now().await;
}
