//! Notification channels through the real binary: Discord and Telegram against a local HTTP
//! server that records each request (path, content type, JSON body) and checks them against the
//! APIs' formats; Signal against a stand-in `signal-cli` that records its argument vector. An
//! account verifies a channel with the code sent there, prefers it, and then its password-reset
//! code arrives there and works; a Discord 429 is retried; bad addresses and unverified channels
//! are refused; the history lists what was sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::harness::Server;
use crate::invites::{assert_error, get, post as xrpc_post, signup, ADMIN};
use crate::plc::PlcServer;

#[derive(Clone, Default)]
struct Recorded {
    requests: Arc<Mutex<Vec<(String, String, Value)>>>,
    discord_calls: Arc<Mutex<u32>>,
}

async fn discord(State(r): State<Recorded>, AxPath((id, token)): AxPath<(String, String)>, headers: HeaderMap, Json(body): Json<Value>) -> impl IntoResponse {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    r.requests.lock().unwrap().push((format!("discord/{id}/{token}"), ct, body));
    let mut calls = r.discord_calls.lock().unwrap();
    *calls += 1;
    if *calls == 1 {
        // Discord's rate limit answer.
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], Json(json!({ "message": "You are being rate limited.", "retry_after": 0.3, "global": false }))).into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn telegram(State(r): State<Recorded>, AxPath(bot): AxPath<String>, headers: HeaderMap, Json(body): Json<Value>) -> impl IntoResponse {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    r.requests.lock().unwrap().push((format!("telegram/{bot}"), ct, body));
    Json(json!({ "ok": true, "result": { "message_id": 1 } }))
}

async fn wait_request(r: &Recorded, prefix: &str, n: usize) -> (String, String, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mine: Vec<_> = r.requests.lock().unwrap().iter().filter(|(p, _, _)| p.starts_with(prefix)).cloned().collect();
        if mine.len() >= n {
            return mine[n - 1].clone();
        }
        assert!(Instant::now() < deadline, "no request #{n} to {prefix}: {:?}", r.requests.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn token_in(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix("Token: ")).unwrap_or_else(|| panic!("no token in {text:?}")).trim().to_owned()
}

#[tokio::test]
async fn channels_sqlite() {
    channels_flow(None).await;
}

#[tokio::test]
async fn channels_postgres() {
    let db = crate::harness::PgDatabase::create().await;
    channels_flow(Some(&db)).await;
    db.drop_now().await;
}

async fn channels_flow(pg: Option<&crate::harness::PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The chat APIs.
    let recorded = Recorded::default();
    let app = Router::new()
        .route("/discord/webhooks/{id}/{token}", post(discord))
        .route("/telegram/{bot}/sendMessage", post(telegram))
        .with_state(recorded.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The stand-in signal-cli: one file per run, its arguments NUL-separated.
    let argv_dir = dir.path().join("signal-argv");
    std::fs::create_dir_all(&argv_dir).unwrap();
    let script = dir.path().join("signal-cli");
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s\\0' \"$@\" > \"{}/$(date +%s%N)\"\n", argv_dir.display())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut env = vec![
        ("PDS_DID_PLC_URL", plc.url.clone()),
        ("PDS_INVITE_REQUIRED", "false".to_owned()),
        ("PDS_ADMIN_PASSWORD", ADMIN.to_owned()),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test".to_owned()),
        ("PDS_NOTIFY_RETRY_BASE_MS", "300".to_owned()),
        ("PDS_DISCORD_API_URL", format!("{api}/discord")),
        ("PDS_TELEGRAM_API_URL", format!("{api}/telegram")),
        ("PDS_TELEGRAM_BOT_TOKEN", "123456:ABC-def".to_owned()),
        ("PDS_SIGNAL_CLI_PATH", script.display().to_string()),
        ("PDS_SIGNAL_SENDER_NUMBER", "+15550000000".to_owned()),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.clone()));
    }
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir.path(), &borrowed).await;
    let s = &server;
    let grace = xrpc_post(s, "com.atproto.server.createAccount", None, signup("grace.test", "grace@example.com", None)).await;
    assert_eq!(grace.0, 200, "{grace:?}");
    let access = grace.1["accessJwt"].as_str().unwrap().to_owned();
    let a = Some(access.as_str());

    let prefs = get(s, "org.eventpds.account.getNotificationPrefs", a).await;
    assert_eq!(prefs.1, json!({ "preferredChannel": "email", "email": "grace@example.com", "channels": [], "availableChannels": ["email", "discord", "telegram", "signal"] }));

    // Refusals: bad addresses (shell metacharacters, not a chat id), email here, unknown channel,
    // preferring an unverified channel.
    let start = "org.eventpds.account.startChannelVerification";
    for (body, name) in [
        (json!({ "channel": "signal", "address": "+1555$(reboot)" }), "InvalidRequest"),
        (json!({ "channel": "signal", "address": "15551234567" }), "InvalidRequest"),
        (json!({ "channel": "telegram", "address": "12; rm -rf /" }), "InvalidRequest"),
        (json!({ "channel": "discord", "address": "https://evil.example/x" }), "InvalidRequest"),
        (json!({ "channel": "email", "address": "grace@example.com" }), "InvalidRequest"),
        (json!({ "channel": "pigeon", "address": "x" }), "InvalidRequest"),
    ] {
        assert_error(&xrpc_post(s, start, a, body).await, 400, name);
    }
    assert_error(&xrpc_post(s, "org.eventpds.account.updateNotificationPrefs", a, json!({ "preferredChannel": "telegram" })).await, 400, "ChannelNotVerified");

    // Telegram: the code arrives in the bot's sendMessage, exactly in the API's shape.
    assert_eq!(xrpc_post(s, start, a, json!({ "channel": "telegram", "address": "-1001234567890" })).await.0, 200);
    let (path, ct, body) = wait_request(&recorded, "telegram/", 1).await;
    assert_eq!(path, "telegram/bot123456:ABC-def");
    assert_eq!(ct, "application/json");
    assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), ["chat_id", "disable_web_page_preview", "text"]);
    assert_eq!((body["chat_id"].clone(), body["disable_web_page_preview"].clone()), (json!(-1001234567890i64), json!(true)));
    let code = token_in(body["text"].as_str().unwrap());
    let confirm = "org.eventpds.account.confirmChannelVerification";
    assert_error(&xrpc_post(s, confirm, a, json!({ "channel": "telegram", "code": "AAAAA-AAAAA" })).await, 400, "InvalidToken");
    assert_eq!(xrpc_post(s, confirm, a, json!({ "channel": "telegram", "code": code })).await.0, 200);
    assert_eq!(xrpc_post(s, "org.eventpds.account.updateNotificationPrefs", a, json!({ "preferredChannel": "telegram" })).await.0, 200);

    // Now the password-reset code goes to Telegram, and works.
    assert_eq!(xrpc_post(s, "com.atproto.server.requestPasswordReset", None, json!({ "email": "grace@example.com" })).await.0, 200);
    let (_, _, body) = wait_request(&recorded, "telegram/", 2).await;
    let reset = token_in(body["text"].as_str().unwrap());
    assert_eq!(xrpc_post(s, "com.atproto.server.resetPassword", None, json!({ "token": reset, "password": "telegram-pw" })).await.0, 200);
    let relog = xrpc_post(s, "com.atproto.server.createSession", None, json!({ "identifier": "grace.test", "password": "telegram-pw" })).await;
    assert_eq!(relog.0, 200);
    let access = relog.1["accessJwt"].as_str().unwrap().to_owned();
    let a = Some(access.as_str());

    // Discord: answers 429 first; the outbox retries; the body is the webhook's shape.
    assert_eq!(xrpc_post(s, start, a, json!({ "channel": "discord", "address": "112233445566778899/tok_EN-1" })).await.0, 200);
    let (path, ct, body) = wait_request(&recorded, "discord/", 2).await;
    assert_eq!((path.as_str(), ct.as_str()), ("discord/112233445566778899/tok_EN-1", "application/json"));
    assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    let code = token_in(body["content"].as_str().unwrap());
    assert_eq!(xrpc_post(s, confirm, a, json!({ "channel": "discord", "code": code })).await.0, 200);

    // Signal: the stand-in records the exact argument vector.
    assert_eq!(xrpc_post(s, start, a, json!({ "channel": "signal", "address": "+15551234567" })).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let argv = loop {
        if let Some(f) = std::fs::read_dir(&argv_dir).unwrap().next() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            break std::fs::read_to_string(f.unwrap().path()).unwrap();
        }
        assert!(Instant::now() < deadline, "signal-cli never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let args: Vec<&str> = argv.trim_end_matches('\0').split('\0').collect();
    assert_eq!(args.len(), 6, "{args:?}");
    assert_eq!([args[0], args[1], args[2], args[3], args[5]], ["-a", "+15550000000", "send", "-m", "+15551234567"]);
    let code = token_in(args[4]);
    assert_eq!(xrpc_post(s, confirm, a, json!({ "channel": "signal", "code": code })).await.0, 200);

    let prefs = get(s, "org.eventpds.account.getNotificationPrefs", a).await.1;
    assert_eq!(prefs["preferredChannel"], "telegram");
    let verified: Vec<(String, bool)> =
        prefs["channels"].as_array().unwrap().iter().map(|c| (c["channel"].as_str().unwrap().to_owned(), c["verified"].as_bool().unwrap())).collect();
    assert_eq!(verified, [("discord".into(), true), ("signal".into(), true), ("telegram".into(), true)]);

    // The history: newest first, what and where, never the content.
    let deadline = Instant::now() + Duration::from_secs(10);
    let hist = loop {
        let h = get(s, "org.eventpds.account.listNotificationHistory?limit=10", a).await.1;
        if h["notifications"].as_array().unwrap().iter().all(|n| n["status"] == "sent") {
            break h;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows: Vec<(String, String, i64)> = hist["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["channel"].as_str().unwrap().to_owned(), n["template"].as_str().unwrap().to_owned(), n["attempts"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            ("signal".to_owned(), "channel_verification".to_owned(), 1),
            ("discord".into(), "channel_verification".into(), 2),
            ("telegram".into(), "reset_password".into(), 1),
            ("telegram".into(), "channel_verification".into(), 1),
        ]
    );
    assert!(!hist.to_string().contains(&reset), "no code in the history");
    let page = get(s, "org.eventpds.account.listNotificationHistory?limit=3", a).await.1;
    let rest = get(s, &format!("org.eventpds.account.listNotificationHistory?limit=3&cursor={}", page["cursor"].as_str().unwrap()), a).await.1;
    assert_eq!(rest["notifications"].as_array().unwrap().len(), 1);
    assert!(rest.get("cursor").is_none());
    drop(server);
    let env: Vec<(&str, String)> = env.into_iter().collect();
    crate::invites::replay_and_verify(dir.path(), &env);
}
