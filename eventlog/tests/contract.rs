//! The log's contract, one body per rule, run against both backends (`sqlite::*` and
//! `postgres::*`). Postgres tests create a fresh database on `PDS_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and fail if it is unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventlog::{
    AppendError, EventLog, ExpectedVersion, NewEvent, Options, PgConnectOptions, StreamAppend, Tx,
};
use futures_util::StreamExt;
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncBufReadExt, BufReader};

// ---------------------------------------------------------------------------------------------
// Harness: a fresh database per test; `open()` = one more node/process on the same database.

#[allow(clippy::large_enum_variant)]
enum Backend {
    Sqlite { dir: tempfile::TempDir },
    Postgres { admin: String, name: String, connect: PgConnectOptions },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn admin_url() -> String {
    std::env::var("PDS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl Backend {
    async fn sqlite() -> Self {
        Backend::Sqlite { dir: tempfile::tempdir().unwrap() }
    }

    async fn postgres() -> Self {
        let admin = admin_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "eventlog_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("Postgres unreachable at {admin} ({e}); run scripts/services or set PDS_TEST_POSTGRES_URL")
        });
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let connect: PgConnectOptions = admin.parse::<PgConnectOptions>().unwrap().database(&name);
        Backend::Postgres { admin, name, connect }
    }

    fn url(&self) -> String {
        match self {
            Backend::Sqlite { dir } => format!("sqlite:{}", dir.path().join("log.sqlite").display()),
            Backend::Postgres { connect, .. } => connect.to_url_lossy().to_string(),
        }
    }

    async fn open(&self) -> EventLog {
        match self {
            Backend::Sqlite { dir } => {
                EventLog::open_sqlite(&dir.path().join("log.sqlite"), Options::default()).await.unwrap()
            }
            Backend::Postgres { connect, .. } => EventLog::open_postgres(
                connect.clone(),
                Options { read_connections: 2, poll_interval: Duration::from_millis(500), ..Options::default() },
            )
            .await
            .unwrap(),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Postgres { admin, name, .. } = self {
            let (admin, name) = (admin.clone(), name.clone());
            // Drop runs inside the test's runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::postgres().await).await
                }
            )*
        }
    };
}

contract!(
    append_read_and_head,
    batch_is_all_or_nothing,
    concurrent_appends_at_same_version_one_wins,
    inline_projection_commits_with_events,
    reader_never_passes_an_uncommitted_position,
    tail_follows_another_instance,
    tail_follows_another_process,
    purge_keeps_tombstone_and_never_reuses_numbers,
    group_commit_batches_concurrent_appends,
    killed_writer_loses_no_acknowledged_event,
    transact_commits_or_rolls_back_without_appending,
    append_parts_is_one_transaction,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn ev(kind: &str, n: u8) -> NewEvent {
    NewEvent::new(kind, 1, vec![0xa1, 0x61, 0x6e, n])
}

fn one(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Vec<StreamAppend> {
    vec![StreamAppend::new(stream, expected, events)]
}

async fn next_within(
    tail: &mut (impl futures_util::Stream<Item = Result<eventlog::Envelope, eventlog::LogError>> + Unpin),
    within: Duration,
) -> Option<eventlog::Envelope> {
    match tokio::time::timeout(within, tail.next()).await {
        Ok(Some(r)) => Some(r.unwrap()),
        Ok(None) => panic!("tail ended"),
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Contract bodies

async fn append_read_and_head(b: Backend) {
    let log = b.open().await;
    assert_eq!(log.head().await.unwrap(), eventlog::Head { position: 0, seq: 0 });
    let envs = log
        .append(vec![
            StreamAppend::new("repo/did:plc:a", ExpectedVersion::NoStream, vec![ev("repo.committed", 1).public(), ev("repo.note", 2)]),
            StreamAppend::new("account/did:plc:a", ExpectedVersion::Any, vec![ev("account.created", 3).public()]),
        ])
        .await
        .unwrap();
    let got: Vec<(i64, Option<i64>, &str, i64)> =
        envs.iter().map(|e| (e.position, e.seq, e.stream.as_str(), e.stream_version)).collect();
    assert_eq!(
        got,
        vec![
            (1, Some(1), "repo/did:plc:a", 1),
            (2, None, "repo/did:plc:a", 2),
            (3, Some(2), "account/did:plc:a", 1)
        ]
    );
    let more = log
        .append(one("repo/did:plc:a", ExpectedVersion::Exact(2), vec![ev("repo.committed", 4).public()]))
        .await
        .unwrap();
    assert_eq!((more[0].position, more[0].seq, more[0].stream_version), (4, Some(3), 3));

    let all = log.read_all(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(all[..3], envs[..], "read back equals what append returned");
    assert_eq!(log.read_all(2, 1).await.unwrap()[0].position, 3);
    let stream = log.read_stream("repo/did:plc:a").await.unwrap();
    assert_eq!(stream.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2, 3]);
    let public = log.read_public(1, 10).await.unwrap();
    assert_eq!(public.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![Some(2), Some(3)]);
    assert_eq!(log.head().await.unwrap(), eventlog::Head { position: 4, seq: 3 });
    assert_eq!(log.stream_version("repo/did:plc:a").await.unwrap(), 3);
    assert_eq!(log.stream_version("repo/nobody").await.unwrap(), 0);

    // Same numbers after reopening (counters live in the database).
    drop(log);
    let log = b.open().await;
    assert_eq!(log.head().await.unwrap(), eventlog::Head { position: 4, seq: 3 });
}

async fn batch_is_all_or_nothing(b: Backend) {
    let log = b.open().await;
    log.append(one("s/1", ExpectedVersion::Any, vec![ev("t", 1)])).await.unwrap();
    let err = log
        .append(vec![
            StreamAppend::new("s/2", ExpectedVersion::NoStream, vec![ev("t", 2).public()]),
            StreamAppend::new("s/1", ExpectedVersion::Exact(5), vec![ev("t", 3)]),
        ])
        .await
        .unwrap_err();
    match err {
        AppendError::Conflict { stream, expected, actual } => {
            assert_eq!((stream.as_str(), expected, actual), ("s/1", ExpectedVersion::Exact(5), 1))
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(log.read_all(0, 100).await.unwrap().len(), 1, "nothing of the failed batch stored");
    assert_eq!(log.stream_version("s/2").await.unwrap(), 0);
    let next = log.append(one("s/2", ExpectedVersion::NoStream, vec![ev("t", 4).public()])).await.unwrap();
    assert_eq!((next[0].position, next[0].seq), (2, Some(1)), "failed batch burned no number");

    // The same inside a group commit: the failing request shares a transaction with others.
    let bad = vec![
        StreamAppend::new("s/3", ExpectedVersion::NoStream, vec![ev("t", 5).public()]),
        StreamAppend::new("s/3", ExpectedVersion::Exact(1), vec![ev("t", 6)]),
        StreamAppend::new("s/1", ExpectedVersion::Exact(9), vec![ev("t", 7)]),
    ];
    let (x, y, z) = tokio::join!(
        log.append(one("s/4", ExpectedVersion::NoStream, vec![ev("t", 8).public()])),
        log.append(bad),
        log.append(one("s/5", ExpectedVersion::NoStream, vec![ev("t", 9).public()])),
    );
    assert!(matches!(y, Err(AppendError::Conflict { .. })), "{y:?}");
    let (x, z) = (x.unwrap(), z.unwrap());
    assert_eq!((x[0].position, z[0].position), (3, 4));
    assert_eq!((x[0].seq, z[0].seq), (Some(2), Some(3)));
    assert_eq!(log.stream_version("s/3").await.unwrap(), 0);
    let streams: Vec<String> = log.read_all(0, 100).await.unwrap().into_iter().map(|e| e.stream).collect();
    assert_eq!(streams, vec!["s/1", "s/2", "s/4", "s/5"]);
}

async fn concurrent_appends_at_same_version_one_wins(b: Backend) {
    let a = b.open().await;
    let other = b.open().await;
    a.append(one("repo/x", ExpectedVersion::NoStream, vec![ev("t", 0)])).await.unwrap();
    // 8 writers through the same instance (grouped into one transaction, savepoint per request)
    // and 8 through another instance (another node), all at expected version 1.
    let mut handles = Vec::new();
    for i in 0..16u8 {
        let log = if i % 2 == 0 { a.clone() } else { other.clone() };
        handles.push(tokio::spawn(async move {
            log.append(one("repo/x", ExpectedVersion::Exact(1), vec![ev("t", i)])).await
        }));
    }
    let mut wins = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => wins += 1,
            Err(AppendError::Conflict { actual, .. }) => assert_eq!(actual, 2),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(a.read_stream("repo/x").await.unwrap().len(), 2);
    assert_eq!(a.head().await.unwrap().position, 2);
}

async fn inline_projection_commits_with_events(b: Backend) {
    let log = b.open().await;
    fn project(fail: bool) -> eventlog::Inline {
        eventlog::inline(move |mut tx, events| {
            Box::pin(async move {
                for e in events {
                    match tx {
                        Tx::Sqlite(ref mut c) => {
                            sqlx::query("CREATE TABLE IF NOT EXISTS read_model (position BIGINT NOT NULL)")
                                .execute(&mut **c)
                                .await?;
                            sqlx::query("INSERT INTO read_model (position) VALUES (?)")
                                .bind(e.position)
                                .execute(&mut **c)
                                .await?;
                        }
                        Tx::Postgres(ref mut c) => {
                            sqlx::query("CREATE TABLE IF NOT EXISTS read_model (position BIGINT NOT NULL)")
                                .execute(&mut **c)
                                .await?;
                            sqlx::query("INSERT INTO read_model (position) VALUES ($1)")
                                .bind(e.position)
                                .execute(&mut **c)
                                .await?;
                        }
                    }
                }
                if fail {
                    return Err("projection refused".into());
                }
                Ok(())
            })
        })
    }
    let ok = log.append_with(one("r/1", ExpectedVersion::Any, vec![ev("t", 1), ev("t", 2)]), project(false));
    assert_eq!(ok.await.unwrap().len(), 2);
    let err = log
        .append_with(one("r/1", ExpectedVersion::Any, vec![ev("t", 3)]), project(true))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Inline(_)), "{err:?}");
    // A failing projection among concurrent (grouped) appends fails only its own request.
    let (x, y) = tokio::join!(
        log.append_with(one("r/2", ExpectedVersion::Any, vec![ev("t", 4)]), project(true)),
        log.append_with(one("r/3", ExpectedVersion::Any, vec![ev("t", 5)]), project(false)),
    );
    assert!(x.is_err());
    let y = y.unwrap();

    let positions: Vec<i64> = match b.url() {
        u if u.starts_with("sqlite:") => {
            let mut c = sqlx::SqliteConnection::connect(&u).await.unwrap();
            sqlx::query_scalar("SELECT position FROM read_model ORDER BY position").fetch_all(&mut c).await.unwrap()
        }
        u => {
            let mut c = sqlx::PgConnection::connect(&u).await.unwrap();
            sqlx::query_scalar("SELECT position FROM read_model ORDER BY position").fetch_all(&mut c).await.unwrap()
        }
    };
    assert_eq!(positions, vec![1, 2, y[0].position]);
    let logged: Vec<i64> = log.read_all(0, 100).await.unwrap().iter().map(|e| e.position).collect();
    assert_eq!(logged, positions, "events and read model rows committed together, or neither");
    assert_eq!(y[0].position, 3, "the failed requests burned no position");
}

/// Design invariant 1: transaction A appends and holds; B (another node) appends; a tailing
/// reader must not pass A's position; A commits; the reader sees A before B, no gap, no dup.
async fn reader_never_passes_an_uncommitted_position(b: Backend) {
    let node_a = b.open().await;
    let node_b = b.open().await;
    let reader = b.open().await;
    node_a.append(one("s/0", ExpectedVersion::Any, vec![ev("t", 0)])).await.unwrap();
    let mut tail = Box::pin(reader.tail(0));
    assert_eq!(next_within(&mut tail, Duration::from_secs(5)).await.unwrap().position, 1);

    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let hold = eventlog::inline(move |_tx, _events| {
        Box::pin(async move {
            let _ = entered_tx.send(());
            let _ = release_rx.await;
            Ok(())
        })
    });
    let a = tokio::spawn({
        let node_a = node_a.clone();
        async move { node_a.append_with(one("s/a", ExpectedVersion::Any, vec![ev("t", 1).public()]), hold).await }
    });
    entered_rx.await.unwrap(); // A has its numbers and is holding its transaction open.
    let b_task = tokio::spawn({
        let node_b = node_b.clone();
        async move { node_b.append(one("s/b", ExpectedVersion::Any, vec![ev("t", 2).public()])).await }
    });
    // While A holds: the reader yields nothing (it must not pass A's position), and B cannot
    // commit ahead of A.
    assert!(next_within(&mut tail, Duration::from_millis(700)).await.is_none());
    assert!(!b_task.is_finished(), "B committed while A held lower numbers");
    release_tx.send(()).unwrap();
    let a_env = a.await.unwrap().unwrap();
    let b_env = b_task.await.unwrap().unwrap();
    assert!(a_env[0].position < b_env[0].position && a_env[0].seq < b_env[0].seq);
    let first = next_within(&mut tail, Duration::from_secs(5)).await.unwrap();
    let second = next_within(&mut tail, Duration::from_secs(5)).await.unwrap();
    assert_eq!((first.position, second.position), (2, 3));
    assert_eq!((first.stream.as_str(), second.stream.as_str()), ("s/a", "s/b"));
    assert!(next_within(&mut tail, Duration::from_millis(200)).await.is_none(), "no duplicate");
}

async fn tail_follows_another_instance(b: Backend) {
    let writer = b.open().await;
    let reader = b.open().await;
    for i in 0..5u8 {
        writer.append(one("s/backlog", ExpectedVersion::Any, vec![ev("t", i)])).await.unwrap();
    }
    let mut tail = Box::pin(reader.tail(2));
    let writing = tokio::spawn(async move {
        for i in 0..200u8 {
            writer
                .append(one(&format!("s/{}", i % 7), ExpectedVersion::Any, vec![ev("t", i), ev("t", i)]))
                .await
                .unwrap();
        }
    });
    let mut expect = 3;
    while expect <= 405 {
        let e = next_within(&mut tail, Duration::from_secs(10)).await.expect("tail stalled");
        assert_eq!(e.position, expect, "gap or duplicate");
        expect += 1;
    }
    writing.await.unwrap();
}

/// Cross-process: a real second process (the stress binary) appends; this process tails.
async fn tail_follows_another_process(b: Backend) {
    let reader = b.open().await; // also creates the schema before the child opens
    let mut tail = Box::pin(reader.tail(0));
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventlog-stress"))
        .args([b.url().as_str(), "4", "100"])
        .stdout(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let mut expect = 1;
    while expect <= 300 {
        let e = next_within(&mut tail, Duration::from_secs(10)).await.expect("tail stalled");
        assert_eq!(e.position, expect);
        expect += 1;
    }
}

async fn purge_keeps_tombstone_and_never_reuses_numbers(b: Backend) {
    let log = b.open().await;
    let did = "did:plc:gone";
    log.append(one(&format!("repo/{did}"), ExpectedVersion::Any, vec![ev("c", 1).public(), ev("c", 2).public()]))
        .await
        .unwrap();
    log.append(one("repo/did:plc:stays", ExpectedVersion::Any, vec![ev("c", 3).public()])).await.unwrap();
    log.append(one("repo/did:plc:gone2", ExpectedVersion::Any, vec![ev("c", 3).public()])).await.unwrap();
    let tomb = log
        .append(vec![
            StreamAppend::new(format!("repo/{did}"), ExpectedVersion::Any, vec![ev("c", 4).public()]),
            StreamAppend::new(format!("account/{did}"), ExpectedVersion::Any, vec![ev("account.status", 5).public()]),
        ])
        .await
        .unwrap();
    let before = log.head().await.unwrap();
    assert_eq!(before, eventlog::Head { position: 6, seq: 6 });
    let deleted = log.purge_did(did, &[tomb[1].position]).await.unwrap();
    assert_eq!(deleted, 3);
    let left: Vec<(i64, String)> =
        log.read_all(0, 100).await.unwrap().into_iter().map(|e| (e.position, e.stream)).collect();
    assert_eq!(
        left,
        vec![(3, "repo/did:plc:stays".to_owned()), (4, "repo/did:plc:gone2".to_owned()), (6, format!("account/{did}"))]
    );
    assert_eq!(log.head().await.unwrap(), before, "purge does not move the counters");
    assert_eq!(log.stream_version(&format!("repo/{did}")).await.unwrap(), 3, "versions never restart");

    // Purge the very last event too, then reopen: numbers still continue above the old maximum.
    log.purge_did(did, &[]).await.unwrap();
    drop(log);
    let log = b.open().await;
    let next = log.append(one("repo/did:plc:new", ExpectedVersion::Any, vec![ev("c", 6).public()])).await.unwrap();
    assert_eq!((next[0].position, next[0].seq), (7, Some(7)));
    // A tail from 0 steps over the purged positions.
    let mut tail = Box::pin(log.tail(0));
    let got: Vec<i64> = vec![
        next_within(&mut tail, Duration::from_secs(5)).await.unwrap().position,
        next_within(&mut tail, Duration::from_secs(5)).await.unwrap().position,
        next_within(&mut tail, Duration::from_secs(5)).await.unwrap().position,
    ];
    assert_eq!(got, vec![3, 4, 7]);
}

async fn group_commit_batches_concurrent_appends(b: Backend) {
    let log = b.open().await;
    let n = 200;
    let mut handles = Vec::new();
    for i in 0..n {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            log.append(one(&format!("g/{i}"), ExpectedVersion::NoStream, vec![ev("t", 1).public()])).await.unwrap()
        }));
    }
    let mut positions = Vec::new();
    for h in handles {
        positions.push(h.await.unwrap()[0].position);
    }
    positions.sort();
    assert_eq!(positions, (1..=n as i64).collect::<Vec<_>>());
    let stats = log.stats();
    assert_eq!((stats.appends, stats.events), (n as u64, n as u64));
    assert!(stats.transactions < n as u64, "no group commit: {stats:?}");
    eprintln!("group commit: {} appends in {} transactions", n, stats.transactions);
}

/// kill -9 a writer process mid-storm: every acknowledged event survives, no request is half
/// stored, and numbers continue above the old maximum.
async fn killed_writer_loses_no_acknowledged_event(b: Backend) {
    drop(b.open().await); // schema first
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventlog-stress"))
        .args([b.url().as_str(), "8", "0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<(String, i64, i64)> = Vec::new();
    while acked.len() < 300 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("stress writer too slow")
            .unwrap()
            .expect("stress writer exited");
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("ack"));
        let stream = parts.next().unwrap().to_owned();
        let version: i64 = parts.next().unwrap().parse().unwrap();
        let seq: i64 = parts.next().unwrap().parse().unwrap();
        acked.push((stream, version, seq));
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();

    let log = b.open().await;
    let max_acked_seq = acked.iter().map(|a| a.2).max().unwrap();
    for (stream, version, _) in &acked {
        assert!(log.stream_version(stream).await.unwrap() >= *version, "acknowledged {stream}@{version} lost");
    }
    let all = log.read_all(0, 1_000_000).await.unwrap();
    let mut per_stream = std::collections::HashMap::<String, i64>::new();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as i64 + 1, "gap in positions");
        *per_stream.entry(e.stream.clone()).or_default() += 1;
    }
    for (stream, count) in per_stream {
        assert_eq!(count % 3, 0, "{stream}: partial request stored ({count} events)");
    }
    let head = log.head().await.unwrap();
    assert!(head.seq >= max_acked_seq);
    let next = log.append(one("after/crash", ExpectedVersion::Any, vec![ev("t", 1).public()])).await.unwrap();
    assert_eq!(next[0].seq, Some(head.seq + 1));
    assert!(next[0].seq > Some(max_acked_seq));
}

/// Callers spawn these (axum handlers, background tasks): every future must be `Send`.
#[allow(dead_code)]
fn futures_are_send(log: EventLog) {
    fn send<T: Send + 'static>(_: T) {}
    send(async { EventLog::open("sqlite:x").await });
    send(async move {
        let _ = log.append(vec![]).await;
        let _ = log.purge_did("did:plc:x", &[]).await;
        let _ = log.read_all(0, 1).await;
        let _ = log.head().await;
        log.tail(0)
    });
}

/// Postgres only: the server drops every connection (restart, failover); the log recovers
/// without being reopened, and numbering continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writer_reconnects_after_connections_are_killed() {
    let b = Backend::postgres().await;
    let log = b.open().await;
    log.append(one("s/1", ExpectedVersion::Any, vec![ev("t", 1).public()])).await.unwrap();
    let Backend::Postgres { admin, name, .. } = &b else { unreachable!() };
    let mut admin_conn = sqlx::PgConnection::connect(admin).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .fetch_all(&mut admin_conn)
    .await
    .unwrap();
    assert!(!killed.is_empty());
    let mut tail = Box::pin(log.tail(1));
    let mut appended = None;
    for _ in 0..5 {
        // The first attempt may fail on the dead connection; the writer then reconnects.
        if let Ok(e) = log.append(one("s/1", ExpectedVersion::Any, vec![ev("t", 2).public()])).await {
            appended = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = appended.expect("writer never recovered");
    assert_eq!((e[0].position, e[0].seq), (2, Some(2)));
    assert_eq!(next_within(&mut tail, Duration::from_secs(5)).await.unwrap().position, 2);
}

/// `transact` runs caller work in a writer transaction: it commits with the work's `Ok` (and hands
/// back its value), rolls everything back on `Err`, appends nothing, and sees the log it runs beside.
async fn transact_commits_or_rolls_back_without_appending(b: Backend) {
    let log = b.open().await;
    log.append(one("s/1", ExpectedVersion::Any, vec![ev("t", 1), ev("t", 2)])).await.unwrap();
    assert_eq!(log.transact(|tx| insert_work(tx, "kept", 2, false)).await.unwrap(), 2, "work reads the log in its transaction");
    let err = log.transact(|tx| insert_work(tx, "dropped", 7, true)).await.unwrap_err();
    assert!(matches!(err, eventlog::TransactError::Work(_)), "{err}");
    let rows: Vec<(String, i64)> = match log.read_pool() {
        eventlog::ReadPool::Sqlite(p) => sqlx::query_as("SELECT name, position FROM projection_checkpoints ORDER BY name")
            .fetch_all(p)
            .await
            .unwrap(),
        eventlog::ReadPool::Postgres(p) => {
            sqlx::query_as("SELECT name, position FROM projection_checkpoints ORDER BY name")
                .fetch_all(p)
                .await
                .unwrap()
        }
    };
    assert_eq!(rows, vec![("kept".to_owned(), 2)], "the failed work left nothing");
    assert_eq!(log.head().await.unwrap().position, 2, "transact appends nothing");
    // The writer is still healthy and numbering continues.
    let e = log.append(one("s/1", ExpectedVersion::Exact(2), vec![ev("t", 3)])).await.unwrap();
    assert_eq!(e[0].position, 3);
    assert!(log.wait_past(2, Duration::from_secs(5)).await);
}

fn insert_work<'a>(
    mut tx: Tx<'a>,
    name: &'static str,
    position: i64,
    fail: bool,
) -> futures_util::future::BoxFuture<'a, Result<usize, eventlog::InlineError>> {
    Box::pin(async move {
        let seen = tx.read_all(0, 100).await?.len();
        match &mut tx {
            Tx::Sqlite(c) => {
                sqlx::query("INSERT INTO projection_checkpoints (name, position) VALUES (?, ?)")
                    .bind(name)
                    .bind(position)
                    .execute(&mut **c)
                    .await?;
            }
            Tx::Postgres(c) => {
                sqlx::query("INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2)")
                    .bind(name)
                    .bind(position)
                    .execute(&mut **c)
                    .await?;
            }
        }
        if fail {
            return Err("work failed after writing".into());
        }
        Ok(seen)
    })
}

/// `append_parts`: many parts, one transaction — committed on `Commit` (numbers contiguous, stream
/// versions checked across parts, public events get seqs); a producer that stops early, a
/// conflict in a later part or a failing inline work rolls back every part; the writer carries on.
async fn append_parts_is_one_transaction(b: Backend) {
    use eventlog::Part;
    let log = b.open().await;
    log.append(one("s/1", ExpectedVersion::Any, vec![ev("t", 1)])).await.unwrap();
    let send = |parts: Vec<Option<Vec<StreamAppend>>>, fail_last_inline: bool| {
        let log = log.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let producer = async move {
                let n = parts.len();
                for (i, p) in parts.into_iter().enumerate() {
                    let msg = match p {
                        None => Part::Commit,
                        Some(batch) if fail_last_inline && i + 2 == n => Part::Events(
                            batch,
                            Some(eventlog::inline(|_tx, _e| Box::pin(async { Err("inline failed".into()) }))),
                        ),
                        Some(batch) => Part::Events(batch, None),
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
            };
            let (r, ()) = tokio::join!(log.append_parts(rx), producer);
            r
        }
    };
    // Committed: three parts on two streams, the last one public.
    let ok = send(
        vec![
            Some(one("s/1", ExpectedVersion::Exact(1), vec![ev("t", 2), ev("t", 3)])),
            Some(one("s/1", ExpectedVersion::Exact(3), vec![ev("t", 4)])),
            Some(one("s/2", ExpectedVersion::NoStream, vec![ev("t", 5).public()])),
            None,
        ],
        false,
    )
    .await
    .unwrap();
    assert_eq!(ok.len(), 1, "the last part's envelopes");
    assert_eq!((ok[0].position, ok[0].seq, ok[0].stream_version), (5, Some(1), 1));
    assert_eq!(log.stream_version("s/1").await.unwrap(), 4);
    // The producer stops before Commit: nothing stays.
    let err = send(vec![Some(one("s/1", ExpectedVersion::Exact(4), vec![ev("t", 6)]))], false).await.unwrap_err();
    assert!(matches!(err, eventlog::AppendError::Aborted(_)), "{err}");
    // A conflict in a later part: the earlier parts go too.
    let err = send(
        vec![
            Some(one("s/1", ExpectedVersion::Exact(4), vec![ev("t", 6)])),
            Some(one("s/2", ExpectedVersion::Exact(7), vec![ev("t", 7)])),
            None,
        ],
        false,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, eventlog::AppendError::Conflict { .. }), "{err}");
    // A failing inline work in a part: everything rolls back.
    let err = send(
        vec![Some(one("s/1", ExpectedVersion::Exact(4), vec![ev("t", 6)])), Some(one("s/1", ExpectedVersion::Any, vec![ev("t", 7)])), None],
        true,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, eventlog::AppendError::Inline(_)), "{err}");
    assert_eq!(log.head().await.unwrap().position, 5, "no failed run left an event");
    assert_eq!(log.read_all(0, 100).await.unwrap().len(), 5);
    // The writer carries on, numbering without gaps.
    let e = log.append(one("s/1", ExpectedVersion::Exact(4), vec![ev("t", 8).public()])).await.unwrap();
    assert_eq!((e[0].position, e[0].seq), (6, Some(2)));
}
