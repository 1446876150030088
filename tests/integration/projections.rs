//! The projection engine through the real binary, on SQLite and Postgres: `pds verify` is clean
//! after live appends, finds a tampered row (exit 1), `pds replay` fixes it; `pds events tail`
//! prints the log; the admin endpoints (`org.eventpds.admin.*`) answer only the admin, and the
//! `subscribeEvents` WebSocket backfills then follows.
//! Events are appended by the test itself (nothing in the server appends yet), through
//! `projections::Appender` so inline projectors run as they will in the server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use domain::cbor::Ipld;
use eventlog::{EventLog, ExpectedVersion, NewEvent, ReadPool, StreamAppend};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{pds_env, PgDatabase, Server};

const PASSWORD: &str = "hunter2-admin";

/// A DAG-CBOR payload with a link and bytes, so the JSON shows `$link` and `$bytes`.
fn payload(n: i64) -> Vec<u8> {
    let link = domain::cbor::cid_cbor(format!("block {n}").as_bytes());
    let mut m = BTreeMap::new();
    m.insert("n".to_owned(), Ipld::Integer(n.into()));
    m.insert("cid".to_owned(), Ipld::Link(link));
    m.insert("raw".to_owned(), Ipld::Bytes(vec![1, 2, 3]));
    domain::cbor::encode(&Ipld::Map(m)).unwrap()
}

/// Appends `n` events over a few streams (plus one non-CBOR payload), returning the head.
async fn append_events(log: &EventLog, n: i64) -> i64 {
    let appender = projections::Appender::new(log.clone());
    for i in 0..n {
        let kind = ["repo", "account", "oauth"][(i % 3) as usize];
        let ev = NewEvent::new(format!("{kind}.changed"), 1, payload(i));
        let ev = if i % 2 == 0 { ev.public() } else { ev };
        appender
            .append(vec![StreamAppend::new(format!("{kind}/did:plc:{}", i % 4), ExpectedVersion::Any, vec![ev])])
            .await
            .unwrap();
    }
    let junk = NewEvent::new("test.opaque", 1, vec![0xff, 0x00]);
    let e = appender.append(vec![StreamAppend::new("test/x", ExpectedVersion::Any, vec![junk])]).await.unwrap();
    e[0].position
}

async fn exec(log: &EventLog, sql: &str) {
    match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop).unwrap(),
        ReadPool::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop).unwrap(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn cli_replay_verify_and_tail(url: &str) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().display().to_string();
    let env = [("PDS_DATA_DIRECTORY", dir.as_str()), ("PDS_DATABASE_URL", url)];
    let log = EventLog::open(url).await.unwrap();
    let head = append_events(&log, 20).await;
    projections::runner::catch_up(&log, projections::event_stats::PROJECTOR).await.unwrap();

    let out = pds_env(&["verify"], &env);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("verify: clean: 20 tables"), "{stdout}");
    assert!(stdout.contains(&format!("head {head}")), "{stdout}");

    exec(&log, "UPDATE event_stats SET count = 1000 WHERE event_type = 'repo.changed'").await;
    exec(&log, "DELETE FROM stream_index WHERE stream = 'account/did:plc:1'").await;
    let out = pds_env(&["verify"], &env);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("only live:    event_type=repo.changed count=1000"), "{stdout}");
    assert!(stdout.contains("only rebuilt: stream=account/did:plc:1"), "{stdout}");
    assert!(stdout.contains("verify: FAILED: 2 of 20 tables differ"), "{stdout}");

    let out = pds_env(&["verify", "--projection", "stream_index"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("1 of 1 tables differ"), "{}", text(&out.stdout));

    let out = pds_env(&["replay"], &env);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("replay: done: rebuilt stream_index, accounts, invites, notifications, repo_blocks, records, blobs, oauth, plc_operations, preferences, event_stats from 21 events"), "{stderr}");
    let out = pds_env(&["verify"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let out = pds_env(&["replay", "--projection", "nope"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no projection named \"nope\""), "{}", text(&out.stderr));

    // events tail: NDJSON, one envelope per line, payload as atproto JSON.
    let out = pds_env(&["events", "tail", "--json"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 21);
    let first = &lines[0];
    assert_eq!(first["position"], 1);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["stream"], "repo/did:plc:0");
    assert_eq!(first["streamVersion"], 1);
    assert_eq!(first["type"], "repo.changed");
    assert_eq!(first["version"], 1);
    assert!(first["recordedAt"].as_str().unwrap().ends_with('Z'), "{first}");
    assert_eq!(first["payload"]["n"], 0);
    assert_eq!(first["payload"]["raw"]["$bytes"], "AQID");
    assert!(first["payload"]["cid"]["$link"].as_str().unwrap().starts_with("bafyrei"), "{first}");
    assert!(lines[1].get("seq").is_none(), "private events have no seq");
    let opaque = &lines[20];
    assert_eq!(opaque["payload"]["$bytes"], base64::engine::general_purpose::STANDARD_NO_PAD.encode([0xff, 0]));

    let out = pds_env(&["events", "tail", "--from", "18"], &env);
    let plain = text(&out.stdout);
    assert_eq!(plain.lines().count(), 3, "{plain}");
    assert!(plain.lines().next().unwrap().starts_with("19\t"), "{plain}");

    // --follow: the backlog, then events appended afterwards by another process.
    let mut cmd = std::process::Command::new(crate::harness::pds_bin());
    cmd.args(["events", "tail", "--follow", "--json", "--from", &(head - 1).to_string()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let line = |rx: &std::sync::mpsc::Receiver<String>| -> Value {
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(10)).expect("no line from --follow")).unwrap()
    };
    assert_eq!(line(&rx)["position"], head);
    projections::Appender::new(log.clone())
        .append(vec![StreamAppend::new("repo/did:plc:new", ExpectedVersion::NoStream, vec![NewEvent::new("repo.new", 1, payload(7))])])
        .await
        .unwrap();
    let live = line(&rx);
    assert_eq!((live["position"].as_i64(), live["type"].as_str()), (Some(head + 1), Some("repo.new")));
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn replay_verify_and_events_tail_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    cli_replay_verify_and_tail(&format!("sqlite:{}", dir.path().join("pds.sqlite").display())).await;
}

#[tokio::test]
async fn replay_verify_and_events_tail_on_postgres() {
    let db = PgDatabase::create().await;
    cli_replay_verify_and_tail(&db.url).await;
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

async fn admin_endpoints(server: &Server, url: &str) {
    let log = EventLog::open(url).await.unwrap();
    let head = append_events(&log, 12).await;
    let client = reqwest::Client::new();
    let get = |nsid: &str, query: &str, auth: Option<String>| {
        let mut r = client.get(format!("{}?{query}", server.xrpc(nsid)));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let admin = || Some(basic("admin", PASSWORD));

    for auth in [None, Some(basic("admin", "wrong")), Some(basic("root", PASSWORD)), Some("Bearer x".to_owned())] {
        let r = get("org.eventpds.admin.listEvents", "", auth.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "AuthRequired");
        assert!(body["message"].is_string());
    }
    for query in ["limit=0", "limit=1001", "limit=x", "cursor=-1", "cursor=abc"] {
        let r = get("org.eventpds.admin.listEvents", query, admin()).await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "InvalidRequest", "{query}");
    }

    let page: Value = get("org.eventpds.admin.listEvents", "limit=5", admin()).await.unwrap().json().await.unwrap();
    let positions: Vec<i64> = page["events"].as_array().unwrap().iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert_eq!(positions, vec![1, 2, 3, 4, 5]);
    assert_eq!(page["cursor"], "5");
    assert!(page["events"][0]["payload"]["cid"]["$link"].is_string(), "{page}");
    let rest: Value = get("org.eventpds.admin.listEvents", "cursor=5&limit=1000", admin()).await.unwrap().json().await.unwrap();
    assert_eq!(rest["events"].as_array().unwrap().len() as i64, head - 5);

    let streams: Value =
        get("org.eventpds.admin.listStreams", "kind=account", admin()).await.unwrap().json().await.unwrap();
    let names: Vec<&str> = streams["streams"].as_array().unwrap().iter().map(|s| s["stream"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["account/did:plc:0", "account/did:plc:1", "account/did:plc:2", "account/did:plc:3"]);
    assert_eq!(streams["streams"][0]["kind"], "account");
    let paged: Value = get("org.eventpds.admin.listStreams", "limit=2", admin()).await.unwrap().json().await.unwrap();
    assert_eq!(paged["cursor"], "account/did:plc:1");
    assert_eq!(get("org.eventpds.admin.listStreams", "", None).await.unwrap().status(), 401);

    // event_stats is caught up by the server's runner.
    let deadline = Instant::now() + Duration::from_secs(15);
    let stats = loop {
        let s: Value = get("org.eventpds.admin.getEventStats", "", admin()).await.unwrap().json().await.unwrap();
        if s["checkpoint"] == head {
            break s;
        }
        assert!(Instant::now() < deadline, "event_stats never caught up: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stats["head"], head);
    let repo = stats["eventTypes"].as_array().unwrap().iter().find(|t| t["type"] == "repo.changed").unwrap();
    assert_eq!((repo["count"].as_i64(), repo["firstPosition"].as_i64()), (Some(4), Some(1)), "{stats}");
    assert!(repo["lastRecordedAt"].as_str().unwrap().ends_with('Z'));

    // The WebSocket: refused without the password, then backfill after the cursor and live events.
    let ws_url = format!("{}?cursor={}", server.xrpc("org.eventpds.admin.subscribeEvents"), head - 2).replace("http://", "ws://");
    let denied = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    match denied {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("authorization", basic("admin", PASSWORD).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(next(&mut socket).await["position"], head - 1);
    assert_eq!(next(&mut socket).await["position"], head);
    let appender = projections::Appender::new(log.clone());
    appender
        .append(vec![StreamAppend::new("repo/did:plc:live", ExpectedVersion::Any, vec![NewEvent::new("repo.live", 1, payload(99))])])
        .await
        .unwrap();
    let live = next(&mut socket).await;
    assert_eq!((live["position"].as_i64(), live["type"].as_str()), (Some(head + 1), Some("repo.live")));
    assert_eq!(live["payload"]["n"], 99);

    let future = format!("{}?cursor={}", server.xrpc("org.eventpds.admin.subscribeEvents"), head + 100);
    let r = client.get(future).header("authorization", basic("admin", PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

async fn next<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("no message in time") {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn admin_event_endpoints_on_sqlite() {
    let server = Server::start(&[("PDS_ADMIN_PASSWORD", PASSWORD)]).await;
    let url = format!("sqlite:{}", server.data_dir.join("pds.sqlite").display());
    admin_endpoints(&server, &url).await;
}

#[tokio::test]
async fn admin_event_endpoints_on_postgres() {
    let db = PgDatabase::create().await;
    let server = Server::start(&[("PDS_ADMIN_PASSWORD", PASSWORD), ("PDS_DATABASE_URL", &db.url)]).await;
    admin_endpoints(&server, &db.url).await;
}
