//! The firehose (`com.atproto.sync.subscribeRepos`) over real WebSockets, on SQLite and Postgres.
//!
//! The test process appends real public events — genesis commits with `#identity`/`#account`/
//! `#sync`, record creates/updates/deletes — into the running server's database through
//! `projections::Appender`, so every frame a subscriber gets was written by another process.
//! Each frame must equal, byte for byte, the frame `domain::repo::firehose` builds from the event
//! the test decided, with the envelope's `seq` and `recorded_at`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use domain::account::{AccountEvent, AccountStatus};
use domain::car::read_car;
use domain::cbor::{Cid, Ipld};
use domain::commit::Commit;
use domain::crypto::{KeyType, Keypair, PublicKey};
use domain::mst::{verify_inversion, BlockMap, Mst, RecordOp};
use domain::repo::firehose::{self, Frame};
use domain::repo::{decide_apply_writes, decide_genesis, RepoEvent, RepoState, Write};
use domain::syntax::{Datetime, Did, Handle};
use domain::tid::TidClock;
use eventlog::{Envelope, EventLog, ExpectedVersion, NewEvent, StreamAppend};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::harness::{PgDatabase, Server};

const NSID: &str = "com.atproto.sync.subscribeRepos";
/// The last event of a scenario: collectors read until they see its `#identity`.
const END_DID: &str = "did:plc:endendendendendendendenden";
const COLLECTION: &str = "app.bsky.feed.post";

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An event to append, as the test decided it.
#[allow(clippy::large_enum_variant)]
enum Pub {
    Repo(RepoEvent),
    Account(AccountEvent),
    /// A public event the firehose has no frame for: it must be skipped, not end the stream.
    Junk,
    /// A private event: no seq, no frame.
    Private,
}

/// A repo as `commands` will keep it: state, tree, blocks, key, clock, stream version.
struct Repo {
    did: Did,
    key: Keypair,
    clock: TidClock,
    state: RepoState,
    mst: Mst,
    store: BlockMap,
    version: i64,
    rkeys: Vec<String>,
}

/// Appends events and remembers, per seq, the frame each must become.
struct Writer {
    appender: projections::Appender,
    expected: BTreeMap<i64, Vec<u8>>,
    keys: HashMap<String, PublicKey>,
    n: u64,
}

fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

fn post(text: &str) -> Ipld {
    let mut m = BTreeMap::new();
    m.insert("$type".to_owned(), Ipld::String(COLLECTION.to_owned()));
    m.insert("text".to_owned(), Ipld::String(text.to_owned()));
    m.insert("createdAt".to_owned(), Ipld::String("2024-01-01T00:00:00.000Z".to_owned()));
    Ipld::Map(m)
}

fn new_event(p: &Pub) -> NewEvent {
    match p {
        Pub::Repo(e) => NewEvent::new(e.event_type(), e.event_version() as i32, e.to_payload().unwrap()).public(),
        Pub::Account(e) => NewEvent::new(e.event_type(), e.event_version(), e.to_payload()).public(),
        Pub::Junk => NewEvent::new("test.unrenderable", 1, vec![0xff, 0x00]).public(),
        Pub::Private => NewEvent::new("test.private", 1, vec![0xa0]),
    }
}

/// The frame `p` must become with this envelope's seq and time (`None`: no frame).
fn expected_frame(p: &Pub, env: &Envelope) -> Option<Vec<u8>> {
    let seq = env.seq?;
    let time = Datetime::from_unix_micros(env.recorded_at).unwrap();
    let time = time.as_str();
    match p {
        Pub::Repo(e) => Some(firehose::repo_event_frame(e, seq, time).unwrap()),
        Pub::Account(AccountEvent::Identity { did, handle }) => {
            Some(firehose::identity_frame(did.as_str(), handle.as_ref().map(|h| h.as_str()), seq, time).unwrap())
        }
        Pub::Account(AccountEvent::Status { did, active, status }) => {
            Some(firehose::account_frame(did.as_str(), *active, status.map(|s| s.as_str()), seq, time).unwrap())
        }
        Pub::Account(_) | Pub::Junk | Pub::Private => None,
    }
}

impl Writer {
    fn new(log: &EventLog) -> Writer {
        Writer {
            appender: projections::Appender::new(log.clone()),
            expected: BTreeMap::new(),
            keys: HashMap::new(),
            n: 0,
        }
    }

    /// One atomic append of several streams; returns the envelopes.
    async fn append(&mut self, batch: Vec<(String, ExpectedVersion, Vec<Pub>)>) -> Vec<Envelope> {
        let appends = batch
            .iter()
            .map(|(stream, expected, events)| StreamAppend::new(stream.clone(), *expected, events.iter().map(new_event).collect()))
            .collect();
        let envelopes = self.appender.append(appends).await.unwrap();
        let events: Vec<&Pub> = batch.iter().flat_map(|(_, _, events)| events).collect();
        assert_eq!(envelopes.len(), events.len());
        for (p, env) in events.into_iter().zip(&envelopes) {
            if let Some(frame) = expected_frame(p, env) {
                self.expected.insert(env.seq.unwrap(), frame);
            }
        }
        envelopes
    }

    /// An account as the reference creates one: `#identity`, `#account`, `#commit`, `#sync` at once.
    async fn create_account(&mut self, name: &str) -> Repo {
        let did = Did::parse(&format!("did:plc:{name:a<24}")).unwrap();
        let key = Keypair::generate(KeyType::K256);
        let mut clock = TidClock::with_random_clock_id();
        let genesis = decide_genesis(did.clone(), &key, &mut clock, now_micros()).unwrap();
        let state = RepoState::from_events(did.clone(), &genesis.events);
        let handle = Handle::parse(&format!("{name}.test")).unwrap();
        let account = vec![
            Pub::Account(AccountEvent::Identity { did: did.clone(), handle: Some(handle) }),
            Pub::Account(AccountEvent::Status { did: did.clone(), active: true, status: None }),
        ];
        let repo_events: Vec<Pub> = genesis.events.iter().cloned().map(Pub::Repo).collect();
        let version = repo_events.len() as i64;
        self.append(vec![
            (format!("account/{did}"), ExpectedVersion::NoStream, account),
            (format!("repo/{did}"), ExpectedVersion::NoStream, repo_events),
        ])
        .await;
        self.keys.insert(did.to_string(), key.public_key());
        Repo { did, key, clock, state, mst: genesis.mst, store: genesis.new_blocks, version, rkeys: Vec::new() }
    }

    /// One commit of `writes` on `repo`.
    async fn write(&mut self, repo: &mut Repo, writes: Vec<Write>) {
        let out = decide_apply_writes(
            &repo.state,
            &repo.mst,
            &repo.store,
            &writes,
            None,
            &repo.key,
            &mut repo.clock,
            now_micros(),
        )
        .unwrap();
        let commit = out.commit.expect("a commit");
        for (w, r) in writes.iter().zip(&out.results) {
            match w {
                Write::Create { .. } => repo.rkeys.push(r.rkey.clone()),
                Write::Delete { rkey, .. } => repo.rkeys.retain(|k| k != rkey),
                Write::Update { .. } => {}
            }
        }
        let events = commit.events();
        for e in &events {
            repo.state.apply(e);
        }
        repo.mst = commit.mst;
        repo.store.extend(commit.new_blocks);
        let stream = format!("repo/{}", repo.did);
        let expected = ExpectedVersion::Exact(repo.version);
        repo.version += events.len() as i64;
        self.append(vec![(stream, expected, events.into_iter().map(Pub::Repo).collect())]).await;
    }

    /// The i-th write of a scenario: mostly creates, some updates and deletes (so ops carry
    /// `prev` and inversion has work to do).
    async fn nth_write(&mut self, repo: &mut Repo, i: usize) {
        self.n += 1;
        let text = format!("post {}", self.n);
        let w = match (i % 6, repo.rkeys.first().cloned()) {
            (3, Some(rkey)) => Write::Update { collection: COLLECTION.into(), rkey, value: post(&text), swap_record: None },
            (5, Some(rkey)) => Write::Delete { collection: COLLECTION.into(), rkey, swap_record: None },
            _ => Write::Create { collection: COLLECTION.into(), rkey: None, value: post(&text) },
        };
        self.write(repo, vec![w]).await;
    }

    /// `#account`: deactivated (`Some`) or active again (`None`).
    async fn status(&mut self, did: &Did, status: Option<AccountStatus>) {
        let e = Pub::Account(AccountEvent::Status { did: did.clone(), active: status.is_none(), status });
        self.append(vec![(format!("account/{did}"), ExpectedVersion::Any, vec![e])]).await;
    }

    async fn other_events(&mut self) {
        self.append(vec![("test/x".into(), ExpectedVersion::Any, vec![Pub::Private, Pub::Junk, Pub::Private])]).await;
    }

    /// The end marker every collector waits for.
    async fn end(&mut self) {
        let did = Did::parse(END_DID).unwrap();
        let e = Pub::Account(AccountEvent::Identity { did: did.clone(), handle: None });
        self.append(vec![(format!("account/{did}"), ExpectedVersion::Any, vec![e])]).await;
    }

    fn last_seq(&self) -> i64 {
        *self.expected.keys().next_back().unwrap()
    }
}

fn ws_url(server: &Server, query: &str) -> String {
    format!("{}?{query}", server.xrpc(NSID)).replace("http://", "ws://")
}

async fn connect(server: &Server, query: &str) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(ws_url(server, query)).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Connects over a socket with a tiny receive buffer (a consumer that can fall behind quickly).
async fn connect_small_buffer(server: &Server, query: &str) -> Ws {
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(ws_url(server, query), tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    ws
}

/// The next message, within 30 s.
pub(crate) async fn next_message(ws: &mut Ws) -> Message {
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("no message in time") {
        Some(Ok(m)) => m,
        other => panic!("stream ended: {other:?}"),
    }
}

pub(crate) fn decode(bytes: &[u8]) -> (String, BTreeMap<String, Ipld>) {
    match firehose::decode_frame(bytes).unwrap() {
        Frame::Message { t, body } => (t, body),
        Frame::Error { error, message } => panic!("error frame {error}: {message:?}"),
    }
}

pub(crate) fn int(body: &BTreeMap<String, Ipld>, k: &str) -> i64 {
    match body.get(k) {
        Some(Ipld::Integer(i)) => *i as i64,
        other => panic!("{k}: {other:?}"),
    }
}

pub(crate) fn string<'a>(body: &'a BTreeMap<String, Ipld>, k: &str) -> &'a str {
    match body.get(k) {
        Some(Ipld::String(s)) => s,
        other => panic!("{k}: {other:?}"),
    }
}

/// Binary frames until the end marker; checks seqs strictly increase.
async fn collect(mut ws: Ws) -> Vec<(i64, Vec<u8>)> {
    let mut got: Vec<(i64, Vec<u8>)> = Vec::new();
    loop {
        let bytes = match next_message(&mut ws).await {
            Message::Binary(b) => b.to_vec(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?} after {} frames", got.len()),
        };
        let (t, body) = decode(&bytes);
        let seq = int(&body, "seq");
        if let Some((last, _)) = got.last() {
            assert!(seq > *last, "seq {seq} after {last}: out of order or duplicate");
        }
        let time = string(&body, "time");
        assert!(Datetime::parse(time).is_ok() && time.len() == 24 && time.ends_with('Z'), "time {time}");
        let end = t == "#identity" && string(&body, "did") == END_DID;
        got.push((seq, bytes));
        if end {
            return got;
        }
    }
}

/// `got` is exactly the expected frames with `seq > after`, in order, byte for byte.
#[track_caller]
fn check_frames(name: &str, got: &[(i64, Vec<u8>)], expected: &BTreeMap<i64, Vec<u8>>, after: i64) {
    let want: Vec<i64> = expected.range(after + 1..).map(|(s, _)| *s).collect();
    let seqs: Vec<i64> = got.iter().map(|(s, _)| *s).collect();
    assert!(!want.is_empty());
    assert_eq!(seqs, want, "{name}: seqs after {after}");
    for (seq, bytes) in got {
        assert!(bytes == &expected[seq], "{name}: frame {seq} differs from the event appended");
    }
}

/// What a Sync v1.1 consumer does with `#commit` frames alone: the CAR's root is the commit, the
/// signature verifies, `since`/`prevData` chain per repo, and the ops invert to `prevData`.
pub(crate) fn check_sync_v11(frames: &[(i64, Vec<u8>)], keys: &HashMap<String, PublicKey>) -> usize {
    let mut heads: HashMap<String, (String, Cid)> = HashMap::new();
    let mut inverted = 0;
    for (seq, bytes) in frames {
        let (t, body) = decode(bytes);
        if t != "#commit" {
            continue;
        }
        let did = string(&body, "repo").to_owned();
        let Some(Ipld::Link(commit_cid)) = body.get("commit") else { panic!("commit") };
        let Some(Ipld::Bytes(car)) = body.get("blocks") else { panic!("blocks") };
        let (roots, blocks) = read_car(car).unwrap();
        assert_eq!(roots, vec![*commit_cid], "seq {seq}: CAR root");
        let slice: BlockMap = blocks.into_iter().collect();
        let commit = Commit::decode(slice.get(commit_cid).expect("commit block in the slice")).unwrap();
        commit.verify(&keys[&did]).unwrap();
        assert_eq!(commit.rev.to_string(), string(&body, "rev"));
        let ops: Vec<RecordOp> = match body.get("ops") {
            Some(Ipld::List(ops)) => ops
                .iter()
                .map(|op| {
                    let Ipld::Map(op) = op else { panic!("op") };
                    let link = |k: &str| match op.get(k) {
                        Some(Ipld::Link(c)) => Some(*c),
                        None | Some(Ipld::Null) => None,
                        other => panic!("{k}: {other:?}"),
                    };
                    RecordOp { path: string(op, "path").to_owned(), old: link("prev"), new: link("cid") }
                })
                .collect(),
            other => panic!("ops: {other:?}"),
        };
        match (heads.get(&did), body.get("prevData"), body.get("since")) {
            (None, None, Some(Ipld::Null)) => assert!(ops.is_empty(), "genesis has no ops"),
            (Some((rev, data)), Some(Ipld::Link(prev_data)), Some(Ipld::String(since))) => {
                assert_eq!((since, prev_data), (rev, data), "seq {seq}: since/prevData chain");
                verify_inversion(&slice, commit.data, &ops, *prev_data).unwrap_or_else(|e| panic!("seq {seq}: {e}"));
                inverted += 1;
            }
            other => panic!("seq {seq}: unexpected chain {other:?}"),
        }
        heads.insert(did, (commit.rev.to_string(), commit.data));
    }
    inverted
}

/// Appends `#account` markers until the live subscriber shows it is following (the server
/// subscribes after the handshake, so a frame appended right after connecting may predate it);
/// returns the seq of the first frame it got: every later one must follow without a gap.
async fn first_live_seq(w: &mut Writer, ws: &mut Ws, did: &Did) -> i64 {
    loop {
        w.status(did, None).await;
        if let Ok(Some(Ok(Message::Binary(b)))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
            return int(&decode(&b).1, "seq");
        }
    }
}

async fn expect_http_error(server: &Server, query: &str) {
    let r = reqwest::Client::new().get(format!("{}?{query}", server.xrpc(NSID))).send().await.unwrap();
    assert_eq!(r.status(), 400, "{query}");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "InvalidRequest", "{query}");
}

/// Reads the error frame and the 1008 close that must follow it.
async fn expect_error_then_close(ws: &mut Ws, error: &str) {
    loop {
        match next_message(ws).await {
            Message::Binary(b) => match firehose::decode_frame(&b).unwrap() {
                Frame::Error { error: e, .. } => {
                    assert_eq!(e, error);
                    break;
                }
                Frame::Message { .. } => continue,
            },
            other => panic!("expected the {error} error frame, got {other:?}"),
        }
    }
    match next_message(ws).await {
        Message::Close(Some(c)) => {
            assert_eq!(u16::from(c.code), 1008);
            assert_eq!(c.reason.as_str(), error);
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
}

/// Live, cursor replay with a concurrent writer, FutureCursor, malformed cursors.
async fn replay_and_live(server: &Server, url: &str) {
    let log = EventLog::open(url).await.unwrap();
    let mut w = Writer::new(&log);

    // Not a WebSocket, or a malformed cursor: an XRPC error, no stream; not a GET: 400
    // `InvalidRequest` (the reference's "Incorrect HTTP method"), never an empty 405.
    expect_http_error(server, "").await;
    let post = reqwest::Client::new().post(server.xrpc(NSID)).send().await.unwrap();
    assert_eq!(post.status(), 400);
    let body: serde_json::Value = post.json().await.unwrap();
    assert_eq!(body["error"], "InvalidRequest", "{body}");
    assert_eq!(body["message"], "Incorrect HTTP method (POST) expected GET", "{body}");
    for query in ["cursor=abc", "cursor=-1", "cursor=1.5"] {
        expect_http_error(server, query).await;
        match tokio_tungstenite::connect_async(ws_url(server, query)).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400, "{query}"),
            other => panic!("{query}: expected 400, got {other:?}"),
        }
    }

    // A backlog longer than one backfill page (500), with unrenderable and private events.
    let mut repos = Vec::new();
    for name in ["alice", "bob", "carol"] {
        repos.push(w.create_account(name).await);
    }
    w.other_events().await;
    for i in 0..520 {
        let repo = &mut repos[i % 3];
        w.nth_write(repo, i / 3).await;
    }
    w.other_events().await;
    w.status(&repos[1].did, Some(AccountStatus::Deactivated)).await;
    w.status(&repos[1].did, None).await;
    let backlog_seq = w.last_seq();

    let mut future = connect(server, &format!("cursor={}", log.head().await.unwrap().seq + 1000)).await;
    expect_error_then_close(&mut future, "FutureCursor").await;

    // A live subscriber: only what comes after its connection.
    let mut live = connect(server, "").await;
    let live_after = first_live_seq(&mut w, &mut live, &repos[0].did).await;
    let live = tokio::spawn(collect(live));
    // Replays: everything, from the middle, from the head.
    let head = log.head().await.unwrap().seq;
    let from_zero = tokio::spawn(collect(connect(server, "cursor=0").await));
    let from_middle = tokio::spawn(collect(connect(server, "cursor=300").await));
    let from_head = tokio::spawn(collect(connect(server, &format!("cursor={head}")).await));

    // A concurrent writer while more subscribers connect mid-stream.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let writer = tokio::spawn(async move {
        for i in 0..150 {
            let repo = &mut repos[i % 3];
            w.nth_write(repo, 200 + i / 3).await;
            let _ = progress_tx.send(i + 1);
        }
        w
    });
    progress.wait_for(|n| *n >= 40).await.unwrap();
    let late_zero = tokio::spawn(collect(connect(server, "cursor=0").await));
    let late_after = log.head().await.unwrap().seq;
    let late_recent = tokio::spawn(collect(connect(server, &format!("cursor={}", late_after - 5)).await));
    let mut w = writer.await.unwrap();
    w.end().await;

    let expected = w.expected.clone();
    let all = from_zero.await.unwrap();
    check_frames("cursor=0", &all, &expected, 0);
    check_frames("cursor=300", &from_middle.await.unwrap(), &expected, 300);
    check_frames("cursor=head", &from_head.await.unwrap(), &expected, head);
    check_frames("live", &live.await.unwrap(), &expected, live_after);
    check_frames("late cursor=0", &late_zero.await.unwrap(), &expected, 0);
    check_frames("late recent cursor", &late_recent.await.unwrap(), &expected, late_after - 5);
    assert!(live_after >= backlog_seq && expected.len() > 670, "{} frames", expected.len());

    let inverted = check_sync_v11(&all, &w.keys);
    assert_eq!(inverted, 670, "every non-genesis #commit inverts to prevData");
}

#[tokio::test]
async fn subscribe_repos_replay_and_live_on_sqlite() {
    let server = Server::start(&[]).await;
    let url = format!("sqlite:{}", server.data_dir.join("pds.sqlite").display());
    replay_and_live(&server, &url).await;
}

#[tokio::test]
async fn subscribe_repos_replay_and_live_on_postgres() {
    let db = PgDatabase::create().await;
    let server = Server::start(&[("PDS_DATABASE_URL", &db.url)]).await;
    replay_and_live(&server, &db.url).await;
}

/// A consumer that stops reading is dropped with `ConsumerTooSlow`; one that reads gets everything.
async fn too_slow(server: &Server, url: &str) {
    let log = EventLog::open(url).await.unwrap();
    let mut w = Writer::new(&log);
    let mut repo = w.create_account("slow").await;
    let mut slow = connect_small_buffer(server, "").await;
    let mut healthy = connect(server, "").await;
    let after = first_live_seq(&mut w, &mut healthy, &repo.did).await;
    let healthy = tokio::spawn(collect(healthy));

    // ~12 MB of commits: more than the socket buffers hold, far more than 8 frames.
    let big = "x".repeat(150_000);
    for i in 0..80 {
        let value = post(&format!("{i} {big}"));
        w.write(&mut repo, vec![Write::Create { collection: COLLECTION.into(), rkey: None, value }]).await;
    }
    w.end().await;
    check_frames("healthy", &healthy.await.unwrap(), &w.expected, after);

    let mut frames = 0;
    loop {
        match next_message(&mut slow).await {
            Message::Binary(b) => match firehose::decode_frame(&b).unwrap() {
                Frame::Message { .. } => frames += 1,
                Frame::Error { error, .. } => {
                    assert_eq!(error, "ConsumerTooSlow");
                    break;
                }
            },
            other => panic!("expected frames then ConsumerTooSlow, got {other:?} after {frames} frames"),
        }
    }
    assert!(frames < 80, "the slow consumer got {frames} frames before being dropped");
    match next_message(&mut slow).await {
        Message::Close(Some(c)) => assert_eq!((u16::from(c.code), c.reason.as_str()), (1008, "ConsumerTooSlow")),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

#[tokio::test]
async fn subscribe_repos_consumer_too_slow_on_sqlite() {
    let server = Server::start(&[("PDS_MAX_SUBSCRIPTION_BUFFER", "8")]).await;
    let url = format!("sqlite:{}", server.data_dir.join("pds.sqlite").display());
    too_slow(&server, &url).await;
}

#[tokio::test]
async fn subscribe_repos_consumer_too_slow_on_postgres() {
    let db = PgDatabase::create().await;
    let server = Server::start(&[("PDS_MAX_SUBSCRIPTION_BUFFER", "8"), ("PDS_DATABASE_URL", &db.url)]).await;
    too_slow(&server, &db.url).await;
}

/// A cursor older than `PDS_REPO_BACKFILL_LIMIT_MS`: `#info OutdatedCursor`, then the window.
async fn outdated_cursor(server: &Server, url: &str) {
    let log = EventLog::open(url).await.unwrap();
    let mut w = Writer::new(&log);
    let mut old = w.create_account("old").await;
    for i in 0..6 {
        w.nth_write(&mut old, i).await;
    }
    let old_seq = w.last_seq();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut recent = w.create_account("recent").await;
    w.nth_write(&mut recent, 0).await;
    w.end().await;

    for cursor in [0, 3, old_seq - 1] {
        let mut ws = connect(server, &format!("cursor={cursor}")).await;
        let Message::Binary(info) = next_message(&mut ws).await else { panic!("expected #info") };
        let (t, body) = decode(&info);
        assert_eq!((t.as_str(), string(&body, "name")), ("#info", "OutdatedCursor"), "cursor {cursor}");
        check_frames("outdated", &collect(ws).await, &w.expected, old_seq);
    }
    // Inside the window: no info.
    check_frames("in window", &collect(connect(server, &format!("cursor={old_seq}")).await).await, &w.expected, old_seq);
}

#[tokio::test]
async fn subscribe_repos_outdated_cursor_on_sqlite() {
    let server = Server::start(&[("PDS_REPO_BACKFILL_LIMIT_MS", "3000")]).await;
    let url = format!("sqlite:{}", server.data_dir.join("pds.sqlite").display());
    outdated_cursor(&server, &url).await;
}

#[tokio::test]
async fn subscribe_repos_outdated_cursor_on_postgres() {
    let db = PgDatabase::create().await;
    let server = Server::start(&[("PDS_REPO_BACKFILL_LIMIT_MS", "3000"), ("PDS_DATABASE_URL", &db.url)]).await;
    outdated_cursor(&server, &db.url).await;
}
