//! Postgres backend: a read pool plus one dedicated writer connection (owned by the writer task).
//! Every append transaction first locks the single `log_head` row (`SELECT ... FOR UPDATE`) and
//! assigns positions/seqs from it, so append transactions of all nodes are serialized on that row:
//! a transaction that got lower numbers has committed (and is visible) before the next one can
//! even read the head. A whole group's rows go in with one `UNNEST` insert (plus one for stream
//! heads), after one prefetch of the group's stream versions: about six round trips per group
//! commit, however many requests and events it holds. `pg_notify('eventlog', <head>)` inside the
//! transaction wakes tailers on every node at commit. Never writes outside the writer connection.

use std::borrow::Cow;
use std::collections::HashMap;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};

use crate::writer::{
    commit_group_body, envelope_from_row, GroupOutcome, GroupState, EVENT_COLUMNS,
};
use crate::{Envelope, Head, Inline, LogError, Options, StreamAppend, TransactError, Tx, Work};

pub(crate) const CHANNEL: &str = "eventlog";

/// Embedded with `include_str!` (see the SQLite backend for why).
fn migrator() -> Migrator {
    Migrator {
        migrations: Cow::Owned(vec![Migration::new(
            1,
            Cow::Borrowed("event log"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0001_event_log.sql")),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("projections"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0002_projections.sql")),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("accounts repo blocks"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0003_accounts_repo_blocks.sql")),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("invite codes"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0004_invite_codes.sql")),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("records"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0006_records.sql")),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("blobs"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0007_blobs.sql")),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("oauth"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0008_oauth.sql")),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("account email tokens"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0009_account_email_tokens.sql")),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("repo block revs"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0010_repo_block_revs.sql")),
            false,
        ),
        Migration::new(
            11,
            Cow::Borrowed("plc directory"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0011_plc_directory.sql")),
            false,
        ),
        Migration::new(
            14,
            Cow::Borrowed("bsky app: account preferences, records by rev"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0014_bsky_app.sql")),
            false,
        ),
        Migration::new(
            15,
            Cow::Borrowed("notifications"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0015_notifications.sql")),
            false,
        ),
        Migration::new(
            16,
            Cow::Borrowed("invites disabled"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/postgres/0016_invites_disabled.sql")),
            false,
        )]),
        ..Migrator::DEFAULT
    }
}

pub(crate) async fn open(
    connect: PgConnectOptions,
    options: &Options,
) -> Result<(PgConnection, PgConnectOptions, PgPool), LogError> {
    let mut writer = connect.connect().await?;
    // run_direct, not run: run(&mut conn) makes this future not provably Send (sqlx's
    // "Acquire is not general enough"), which would stop callers from spawning open().
    migrator().run_direct(&mut writer).await?;
    let pool = PgPoolOptions::new()
        // + 1: the LISTEN connection lives in the pool.
        .max_connections(options.read_connections.max(1) + 1)
        // A database that went away must surface as an error, not a request that waits forever.
        .acquire_timeout(options.busy_timeout)
        .connect_with(connect.clone())
        .await?;
    Ok((writer, connect, pool))
}

pub(crate) async fn commit_group(
    conn: &mut PgConnection,
    work: Vec<(Vec<StreamAppend>, Option<Inline>)>,
) -> GroupOutcome {
    commit_group_body!(
        conn,
        work,
        "BEGIN",
        "SELECT position, seq FROM log_head WHERE id = 1 FOR UPDATE",
        prefetch,
        GroupState::number_async,
        flush,
        finish,
        Tx::Postgres
    )
}

/// One transaction fed part by part (`EventLog::append_parts`).
pub(crate) async fn append_parts(
    conn: &mut PgConnection,
    parts: tokio::sync::mpsc::Receiver<crate::Part>,
) -> Result<(Option<i64>, Vec<Envelope>), crate::AppendError> {
    crate::writer::append_parts_body!(conn, parts, "BEGIN", "SELECT position, seq FROM log_head WHERE id = 1 FOR UPDATE", prefetch, flush, finish, Tx::Postgres)
}

/// Current versions of every stream the group names, in one query.
async fn prefetch(
    conn: &mut PgConnection,
    names: Vec<&str>,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    Ok(sqlx::query_as::<_, (String, i64)>("SELECT stream, version FROM streams WHERE stream = ANY($1)")
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect())
}

/// Inserts all pending rows with one `UNNEST` and the stream heads with another.
async fn flush(conn: &mut PgConnection, st: &mut GroupState) -> Result<(), sqlx::Error> {
    if st.pending.is_empty() {
        return Ok(());
    }
    let rows = st.pending.take();
    sqlx::query(
        "INSERT INTO events (position, seq, stream, stream_version, event_type, event_version, \
         payload, recorded_at, actor, correlation) \
         SELECT p, s, st, sv, et, ev, pl, $10, a, c FROM UNNEST($1::bigint[], $2::bigint[], \
         $3::text[], $4::bigint[], $5::text[], $6::int[], $7::bytea[], $8::text[], $9::text[]) \
         AS t(p, s, st, sv, et, ev, pl, a, c)",
    )
    .bind(&rows.position)
    .bind(&rows.seq)
    .bind(&rows.stream)
    .bind(&rows.stream_version)
    .bind(&rows.event_type)
    .bind(&rows.event_version)
    .bind(&rows.payload)
    .bind(&rows.actor)
    .bind(&rows.correlation)
    .bind(rows.recorded_at)
    .execute(&mut *conn)
    .await?;
    let (streams, versions) = rows.stream_heads();
    sqlx::query(
        "INSERT INTO streams (stream, version) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
         ON CONFLICT (stream) DO UPDATE SET version = GREATEST(streams.version, excluded.version)",
    )
    .bind(&streams)
    .bind(&versions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn finish(conn: &mut PgConnection, position: i64, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE log_head SET position = $1, seq = $2 WHERE id = 1")
        .bind(position)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(position.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn purge(
    conn: &mut PgConnection,
    did: &str,
    streams: &[String],
    keep: &[i64],
) -> Result<u64, LogError> {
    let done = sqlx::query(
        "DELETE FROM events WHERE (strpos(stream, '/') > 0 \
         AND substr(stream, strpos(stream, '/') + 1) = $1 OR stream = ANY($3::text[])) \
         AND position <> ALL($2::bigint[])",
    )
    .bind(did)
    .bind(keep)
    .bind(streams)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn head(pool: &PgPool) -> Result<Head, LogError> {
    let (position, seq) =
        sqlx::query_as::<_, (i64, i64)>("SELECT position, seq FROM log_head WHERE id = 1")
            .fetch_one(pool)
            .await?;
    Ok(Head { position, seq })
}

/// Runs caller work in one writer transaction (no append).
pub(crate) async fn transact(conn: &mut PgConnection, work: Work) -> Result<(), TransactError> {
    use sqlx::Connection as _;
    let mut tx = conn.begin_with("BEGIN").await?;
    match work(Tx::Postgres(&mut tx)).await {
        Ok(()) => Ok(tx.commit().await?),
        Err(e) => {
            let _ = tx.rollback().await;
            Err(TransactError::Work(e))
        }
    }
}

pub(crate) async fn read_all_conn(
    conn: &mut PgConnection,
    after: i64,
    limit: u32,
) -> Result<Vec<Envelope>, LogError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM (SELECT {EVENT_COLUMNS}, SUM(LENGTH(payload)) OVER (ORDER BY position) AS acc, \
         LENGTH(payload) AS len FROM events WHERE position > $1 ORDER BY position LIMIT $2) AS page \
         WHERE acc - len < $3 ORDER BY position"
    );
    let rows = sqlx::query(&sql).bind(after).bind(i64::from(limit)).bind(crate::PAGE_BYTES).fetch_all(conn).await?;
    Ok(rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?)
}

pub(crate) async fn read_all(pool: &PgPool, after: i64, limit: u32) -> Result<Vec<Envelope>, LogError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM (SELECT {EVENT_COLUMNS}, SUM(LENGTH(payload)) OVER (ORDER BY position) AS acc, \
         LENGTH(payload) AS len FROM events WHERE position > $1 ORDER BY position LIMIT $2) AS page \
         WHERE acc - len < $3 ORDER BY position"
    );
    let rows = sqlx::query(&sql).bind(after).bind(i64::from(limit)).bind(crate::PAGE_BYTES).fetch_all(pool).await?;
    Ok(rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?)
}

pub(crate) async fn read_public(pool: &PgPool, after_seq: i64, limit: u32) -> Result<Vec<Envelope>, LogError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
    let rows = sqlx::query(&sql).bind(after_seq).bind(i64::from(limit)).fetch_all(pool).await?;
    Ok(rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?)
}

pub(crate) async fn read_stream(pool: &PgPool, stream: &str) -> Result<Vec<Envelope>, LogError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream = $1 ORDER BY stream_version");
    let rows = sqlx::query(&sql).bind(stream).fetch_all(pool).await?;
    Ok(rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?)
}

pub(crate) async fn read_stream_last(pool: &PgPool, stream: &str) -> Result<Option<Envelope>, LogError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream = $1 ORDER BY stream_version DESC LIMIT 1");
    let row = sqlx::query(&sql).bind(stream).fetch_optional(pool).await?;
    Ok(match row {
        Some(r) => Some(envelope_from_row!(r)?),
        None => None,
    })
}

pub(crate) async fn stream_version(pool: &PgPool, stream: &str) -> Result<i64, LogError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream = $1")
        .bind(stream)
        .fetch_optional(pool)
        .await?;
    Ok(v.unwrap_or(0))
}
