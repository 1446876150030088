//! Append throughput and tail latency for both backends:
//! `cargo bench -p eventlog --bench append` (Postgres from `PDS_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; a fresh database is created and dropped).
//! `EVENTLOG_BENCH_SCALE=0.1` shrinks every run for a smoke test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use eventlog::{EventLog, ExpectedVersion, NewEvent, Options, PgConnectOptions, StreamAppend};
use futures_util::StreamExt;
use sqlx::Connection;

const CONCURRENCY: usize = 64;

fn scale(n: usize) -> usize {
    let s: f64 = std::env::var("EVENTLOG_BENCH_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    ((n as f64 * s) as usize).max(1)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

/// `appends` appends of `batch` events each, over `streams` streams, from `concurrency` tasks.
async fn throughput(log: &EventLog, label: &str, streams: usize, batch: usize, appends: usize, concurrency: usize) {
    let before = log.stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let log = log.clone();
        let label = label.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            let mut lat = Vec::new();
            while i < appends {
                let stream = format!("bench/{label}/{}", i % streams);
                let events = (0..batch).map(|k| {
                    let e = NewEvent::new("bench.event", 1, payload(256));
                    if k == 0 { e.public() } else { e }
                });
                let t0 = Instant::now();
                log.append(vec![StreamAppend::new(stream, ExpectedVersion::Any, events.collect())]).await.unwrap();
                lat.push(t0.elapsed());
                i += concurrency;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    let after = log.stats();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "{:<8} append streams={streams:<5} batch={batch:<3} conc={concurrency:<2} appends={appends:<5} \
         {:>9.0} appends/s {:>9.0} events/s  txns={:<5} append p50={:.2}ms p99={:.2}ms",
        log.backend(),
        appends as f64 / secs,
        (appends * batch) as f64 / secs,
        after.transactions - before.transactions,
        p(0.5),
        p(0.99),
    );
}

/// One append every `gap`; latency from calling append to the tailer receiving it.
async fn tail_latency(writer: &EventLog, reader: &EventLog, label: &str, n: usize) {
    let base = Instant::now();
    let from = reader.head().await.unwrap().position;
    let mut tail = Box::pin(reader.tail(from));
    let w = writer.clone();
    let label_owned = label.to_owned();
    let writing = tokio::spawn(async move {
        for _ in 0..n {
            let sent = base.elapsed().as_nanos() as u64;
            let e = NewEvent::new("bench.tail", 1, sent.to_be_bytes().to_vec()).public();
            w.append(vec![StreamAppend::new(format!("tail/{label_owned}"), ExpectedVersion::Any, vec![e])])
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        let e = tail.next().await.unwrap().unwrap();
        let sent = u64::from_be_bytes(e.payload[..8].try_into().unwrap());
        lat.push(base.elapsed().as_nanos() as u64 - sent);
    }
    writing.await.unwrap();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize] as f64 / 1e6;
    println!(
        "{:<8} tail   {label:<38} n={n:<5} p50={:.2}ms p99={:.2}ms",
        writer.backend(),
        p(0.5),
        p(0.99)
    );
}

async fn run(open: impl Fn() -> futures_util::future::BoxFuture<'static, EventLog>) {
    let log = open().await;
    throughput(&log, "s1b1c1", 1, 1, scale(1000), 1).await;
    throughput(&log, "s1b1", 1, 1, scale(20_000), CONCURRENCY).await;
    throughput(&log, "s1b100", 1, 100, scale(1_000), CONCURRENCY).await;
    throughput(&log, "s10kb1", 10_000, 1, scale(20_000), CONCURRENCY).await;
    throughput(&log, "s10kb100", 10_000, 100, scale(1_000), CONCURRENCY).await;
    tail_latency(&log, &log, "same instance (in-process notify)", scale(500)).await;
    let other = open().await;
    tail_latency(&log, &other, "other instance (poll / LISTEN-NOTIFY)", scale(500)).await;
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.sqlite");
    println!("# eventlog bench: 256-byte payloads, first event of each append public");
    run(move || {
        let path = path.clone();
        Box::pin(async move { EventLog::open_sqlite(&path, Options::default()).await.unwrap() })
    })
    .await;

    let admin = std::env::var("PDS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("eventlog_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("Postgres unreachable");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let connect: PgConnectOptions = admin.parse::<PgConnectOptions>().unwrap().database(&name);
    run(move || {
        let connect = connect.clone();
        Box::pin(async move {
            EventLog::open_postgres(connect, Options { poll_interval: Duration::from_millis(500), ..Options::default() })
                .await
                .unwrap()
        })
    })
    .await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
}
