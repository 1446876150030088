//! The projection engine against both backends: inline projectors commit with the append,
//! catch-up projectors apply each event once (also with two nodes), a failing apply moves no
//! checkpoint, and replay rebuilds exactly what verify compares.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventlog::{Envelope, EventLog, ExpectedVersion, NewEvent, Options, PgConnectOptions, ReadPool, StreamAppend, Tx};
use futures_util::future::BoxFuture;
use projections::{checkpoints, event_stats, runner, stream_index, Appender, Kind, ProjectionError, Projector};
use sqlx::{ConnectOptions, Connection};

#[allow(clippy::large_enum_variant)]
enum Backend {
    Sqlite { dir: tempfile::TempDir },
    Postgres { admin: String, name: String, connect: PgConnectOptions },
}

/// The engine's own projectors: the production ones that accept any payload. (The account and
/// repo projectors decode their events' payloads, which these tests do not build.)
fn engine_projectors() -> Vec<Projector> {
    vec![stream_index::PROJECTOR, event_stats::PROJECTOR]
}

fn engine_appender(log: &EventLog) -> Appender {
    Appender::with_projectors(log.clone(), vec![stream_index::PROJECTOR])
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Backend {
    async fn sqlite() -> Self {
        Backend::Sqlite { dir: tempfile::tempdir().unwrap() }
    }

    async fn postgres() -> Self {
        let admin = std::env::var("PDS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("projections_test_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("Postgres unreachable at {admin} ({e}); run scripts/services"));
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
                Options { read_connections: 2, poll_interval: Duration::from_millis(100), ..Options::default() },
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
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

macro_rules! both {
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

both!(
    inline_projector_commits_with_the_append,
    catch_up_applies_each_event_once_and_checkpoints,
    failing_apply_leaves_the_checkpoint_where_it_was,
    two_nodes_never_double_apply,
    replay_rebuilds_what_verify_compares,
);

fn ev(kind: &str) -> NewEvent {
    NewEvent::new(kind, 1, vec![0xa1, 0x61, 0x6e, 0x01])
}

fn to(stream: &str, events: Vec<NewEvent>) -> Vec<StreamAppend> {
    vec![StreamAppend::new(stream, ExpectedVersion::Any, events)]
}

async fn exec(log: &EventLog, sql: &str) {
    match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop).unwrap(),
        ReadPool::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop).unwrap(),
    }
}

async fn event_stats_counts(log: &EventLog) -> Vec<(String, i64)> {
    event_stats::list(log).await.unwrap().into_iter().map(|s| (s.event_type, s.count)).collect()
}

async fn inline_projector_commits_with_the_append(b: Backend) {
    let log = b.open().await;
    let appender = engine_appender(&log);
    appender.append(to("repo/did:plc:a", vec![ev("repo.committed"), ev("repo.committed")])).await.unwrap();
    appender.append(to("account/did:plc:a", vec![ev("account.created")])).await.unwrap();
    // Read your writes: no waiting.
    let all = stream_index::list(&log, None, None, 100).await.unwrap();
    let got: Vec<(&str, &str, i64, i64)> =
        all.iter().map(|s| (s.stream.as_str(), s.kind.as_str(), s.version, s.last_position)).collect();
    assert_eq!(got, vec![("account/did:plc:a", "account", 1, 3), ("repo/did:plc:a", "repo", 2, 2)]);
    let repos = stream_index::list(&log, Some("repo"), None, 100).await.unwrap();
    assert_eq!(repos.len(), 1);
    let page = stream_index::list(&log, None, Some("account/did:plc:a"), 100).await.unwrap();
    assert_eq!(page[0].stream, "repo/did:plc:a", "cursor is strictly after");
    // A conflicting append stores neither events nor rows.
    let err = appender
        .append(vec![StreamAppend::new("repo/did:plc:b", ExpectedVersion::Exact(5), vec![ev("repo.committed")])])
        .await;
    assert!(err.is_err());
    assert_eq!(stream_index::list(&log, None, None, 100).await.unwrap().len(), 2);
}

async fn catch_up_applies_each_event_once_and_checkpoints(b: Backend) {
    let log = b.open().await;
    let appender = engine_appender(&log);
    appender.append(to("repo/did:plc:a", vec![ev("repo.committed"), ev("repo.committed")])).await.unwrap();
    appender.append(to("account/did:plc:a", vec![ev("account.created")])).await.unwrap();
    assert_eq!(runner::catch_up(&log, event_stats::PROJECTOR).await.unwrap(), 3);
    assert_eq!(runner::catch_up(&log, event_stats::PROJECTOR).await.unwrap(), 3, "nothing applied twice");
    assert_eq!(event_stats_counts(&log).await, vec![("account.created".into(), 1), ("repo.committed".into(), 2)]);
    appender.append(to("repo/did:plc:a", vec![ev("repo.committed")])).await.unwrap();
    let s = runner::step(&log, event_stats::PROJECTOR, 10).await.unwrap();
    assert_eq!((s.read, s.checkpoint, s.busy), (1, 4, false));
    let stats = event_stats::list(&log).await.unwrap();
    let repo = stats.iter().find(|s| s.event_type == "repo.committed").unwrap();
    assert_eq!((repo.count, repo.first_position, repo.last_position), (3, 1, 4));
    assert_eq!(checkpoints::get(&log, event_stats::NAME).await.unwrap(), 4);
}

const FLAKY: Projector = Projector {
    name: "flaky",
    kind: Kind::CatchUp,
    handles: &[],
    tables: event_stats::PROJECTOR.tables,
    apply: flaky,
};

/// event_stats, except that it fails on a `boom` event — after writing the events before it.
fn flaky<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        let good = events.iter().take_while(|e| e.event_type != "boom").count();
        if good > 0 {
            (event_stats::PROJECTOR.apply)(tx.reborrow(), &events[..good]).await?;
        }
        match events.get(good) {
            Some(e) => Err(ProjectionError::Apply { projector: "flaky", position: e.position, message: "boom".into() }),
            None => Ok(()),
        }
    })
}

async fn failing_apply_leaves_the_checkpoint_where_it_was(b: Backend) {
    let log = b.open().await;
    log.append(to("s/1", vec![ev("a"), ev("b")])).await.unwrap();
    runner::catch_up(&log, FLAKY).await.unwrap();
    assert_eq!(checkpoints::get(&log, "flaky").await.unwrap(), 2);
    // A batch whose third event fails: the two before it were applied inside the transaction.
    log.append(to("s/1", vec![ev("a"), ev("b"), ev("boom"), ev("a")])).await.unwrap();
    let err = runner::step(&log, FLAKY, 10).await.unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    assert_eq!(checkpoints::get(&log, "flaky").await.unwrap(), 2, "checkpoint did not move");
    assert_eq!(
        event_stats_counts(&log).await,
        vec![("a".into(), 1), ("b".into(), 1)],
        "no row of the failed batch was kept"
    );
    // Retrying fails the same way, never skipping the event.
    assert!(runner::step(&log, FLAKY, 10).await.is_err());
    assert_eq!(checkpoints::get(&log, "flaky").await.unwrap(), 2);
    // A batch that stops before the bad event goes through.
    let s = runner::step(&log, FLAKY, 2).await.unwrap();
    assert_eq!(s.checkpoint, 4);
    assert_eq!(event_stats_counts(&log).await, vec![("a".into(), 2), ("b".into(), 2)]);
}

async fn two_nodes_never_double_apply(b: Backend) {
    let node_a = b.open().await;
    let node_b = b.open().await;
    let tasks: Vec<_> = [&node_a, &node_b]
        .iter()
        .flat_map(|log| runner::spawn(log, &[event_stats::PROJECTOR]))
        .collect();
    let mut writers = Vec::new();
    for (i, log) in [node_a.clone(), node_b.clone()].into_iter().enumerate() {
        writers.push(tokio::spawn(async move {
            let appender = engine_appender(&log);
            for n in 0..50 {
                appender.append(to(&format!("node/{i}"), vec![ev("tick"), ev(&format!("n{}", n % 3))])).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let head = node_a.head().await.unwrap().position;
    assert_eq!(head, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while checkpoints::get(&node_a, event_stats::NAME).await.unwrap() < head {
        assert!(std::time::Instant::now() < deadline, "catch-up runners did not reach the head");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.abort();
    }
    let total: i64 = event_stats::list(&node_a).await.unwrap().iter().map(|s| s.count).sum();
    assert_eq!(total, 200, "every event counted exactly once");
    let report = projections::verify::verify(&node_a, &b.url(), engine_projectors()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn replay_rebuilds_what_verify_compares(b: Backend) {
    let log = b.open().await;
    let appender = engine_appender(&log);
    for i in 0..30 {
        appender
            .append(to(&format!("repo/did:plc:{}", i % 7), vec![ev("repo.committed"), ev(&format!("t{}", i % 4))]))
            .await
            .unwrap();
    }
    runner::catch_up(&log, event_stats::PROJECTOR).await.unwrap();
    let report = projections::verify::verify(&log, &b.url(), engine_projectors()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.events, 60);
    assert_eq!(report.tables.len(), 2);

    exec(&log, "UPDATE event_stats SET count = 99 WHERE event_type = 't1'").await;
    exec(&log, "DELETE FROM stream_index WHERE stream = 'repo/did:plc:3'").await;
    let report = projections::verify::verify(&log, &b.url(), engine_projectors()).await.unwrap();
    assert!(!report.is_clean());
    let by_table = |t: &str| report.tables.iter().find(|d| d.table == t).unwrap().clone();
    let stats = by_table("event_stats");
    assert_eq!((stats.only_live, stats.only_rebuilt), (1, 1), "{stats:?}");
    assert!(stats.samples_only_live[0].contains("count=99"), "{stats:?}");
    let streams = by_table("stream_index");
    assert_eq!((streams.only_live, streams.only_rebuilt), (0, 1), "{streams:?}");
    assert!(streams.samples_only_rebuilt[0].contains("stream=repo/did:plc:3"), "{streams:?}");

    // Only one projection: the other stays as it is.
    let one = projections::select(Some("stream_index")).unwrap();
    let progress = Arc::new(|_: projections::replay::Progress| {});
    let done = projections::replay::replay(&log, one, progress.clone()).await.unwrap();
    assert_eq!((done.events, done.position), (60, 60));
    let report = projections::verify::verify(&log, &b.url(), engine_projectors()).await.unwrap();
    assert!(report.tables.iter().find(|d| d.table == "stream_index").unwrap().is_clean());
    assert!(!report.is_clean());

    projections::replay::replay(&log, engine_projectors(), progress).await.unwrap();
    let report = projections::verify::verify(&log, &b.url(), engine_projectors()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(checkpoints::get(&log, event_stats::NAME).await.unwrap(), 60);
    assert!(projections::select(Some("nope")).unwrap_err().to_string().contains("event_stats"));
}
