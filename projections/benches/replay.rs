//! Replay and verify throughput on SQLite and Postgres.
//!
//! `cargo bench -p projections --bench replay` (release). `REPLAY_BENCH_EVENTS=N` (default 300,000)
//! events over 1,000 streams and 5 event types are appended in batches of 100 through the
//! `Appender` (so inline projectors run), then every production projector is replayed from
//! position 0 and verified against a scratch rebuild. Postgres: a fresh database on
//! `PDS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use eventlog::{EventLog, ExpectedVersion, NewEvent, StreamAppend};
use projections::Appender;
use sqlx::Connection;

const TYPES: [&str; 5] = ["repo.committed", "repo.synced", "account.created", "account.identity", "account.status"];

async fn fill(log: &EventLog, total: usize) -> f64 {
    let appender = Appender::new(log.clone());
    let started = Instant::now();
    let mut n = 0usize;
    while n < total {
        let batch = 100.min(total - n);
        let events = (0..batch)
            .map(|i| NewEvent::new(TYPES[(n + i) % TYPES.len()], 1, vec![0xa1, 0x61, 0x6e, 0x01]))
            .collect();
        let stream = format!("repo/did:plc:bench{:04}", (n / 100) % 1000);
        appender.append(vec![StreamAppend::new(stream, ExpectedVersion::Any, events)]).await.unwrap();
        n += batch;
    }
    started.elapsed().as_secs_f64()
}

async fn run(name: &str, log: EventLog, url: &str, total: usize) {
    let fill_s = fill(&log, total).await;
    let started = Instant::now();
    let report = projections::replay::replay(&log, projections::all(), Arc::new(|_| {})).await.unwrap();
    let replay_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let verify = projections::verify::verify(&log, url, projections::all()).await.unwrap();
    let verify_s = started.elapsed().as_secs_f64();
    assert!(verify.is_clean(), "verify after replay must be clean");
    println!(
        "| {name} | {total} | {fill_s:.1} s | {replay_s:.1} s ({:.0} ev/s) | {verify_s:.1} s | {:?} |",
        total as f64 / replay_s,
        report.events
    );
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("REPLAY_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    println!("| backend | events | append (batches of 100) | replay | verify | events replayed |");
    println!("|---|---:|---:|---:|---:|---:|");

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("bench.sqlite").display());
    run("sqlite", EventLog::open(&url).await.unwrap(), &url, total).await;

    let admin = std::env::var("PDS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let db = format!("replay_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("Postgres (scripts/services)");
    sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut conn).await.unwrap();
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    let log = EventLog::open(&url).await.unwrap();
    run("postgres", log.clone(), &url, total).await;
    drop(log);
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)")).execute(&mut conn).await.unwrap();
}
