//! SQLite backend: one file in WAL mode, one writer connection (owned by the writer task) and a
//! small read pool. `synchronous = FULL`: every commit fsyncs the WAL before the append is
//! acknowledged, so an acknowledged event survives power loss too; group commit amortises that
//! fsync over every request merged into the transaction. `BEGIN IMMEDIATE` takes the file's write
//! lock up front, so writers in other processes queue on `busy_timeout` instead of failing on a
//! lock upgrade. Never writes outside the writer connection.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqliteConnection};

use crate::writer::{
    commit_group_body, envelope_from_row, GroupOutcome, GroupState, EVENT_COLUMNS,
};
use crate::{Envelope, Head, Inline, LogError, Options, StreamAppend, TransactError, Tx, Work};

/// Migrations are embedded with `include_str!` (no sqlx macros feature, no files needed at run
/// time); versions and checksums are what `sqlx migrate` would compute for the same files.
fn migrator() -> Migrator {
    Migrator {
        migrations: Cow::Owned(vec![Migration::new(
            1,
            Cow::Borrowed("event log"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0001_event_log.sql")),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("projections"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0002_projections.sql")),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("accounts repo blocks"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0003_accounts_repo_blocks.sql")),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("invite codes"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0004_invite_codes.sql")),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("records"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0006_records.sql")),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("blobs"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0007_blobs.sql")),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("oauth"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0008_oauth.sql")),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("account email tokens"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0009_account_email_tokens.sql")),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("repo block revs"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0010_repo_block_revs.sql")),
            false,
        ),
        Migration::new(
            11,
            Cow::Borrowed("plc directory"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0011_plc_directory.sql")),
            false,
        ),
        Migration::new(
            14,
            Cow::Borrowed("bsky app: account preferences, records by rev"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0014_bsky_app.sql")),
            false,
        ),
        Migration::new(
            15,
            Cow::Borrowed("notifications"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0015_notifications.sql")),
            false,
        ),
        Migration::new(
            16,
            Cow::Borrowed("invites disabled"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/sqlite/0016_invites_disabled.sql")),
            false,
        )]),
        ..Migrator::DEFAULT
    }
}

fn connect_options(path: &Path, options: &Options) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(options.busy_timeout)
}

pub(crate) async fn open(
    path: &Path,
    options: &Options,
) -> Result<(SqliteConnection, SqliteConnectOptions, SqlitePool), LogError> {
    let mut writer = connect_options(path, options)
        .create_if_missing(true)
        .connect()
        .await?;
    // run_direct, not run: run(&mut conn) makes this future not provably Send (sqlx's
    // "Acquire is not general enough"), which would stop callers from spawning open().
    migrator().run_direct(&mut writer).await?;
    let pool = SqlitePoolOptions::new()
        .max_connections(options.read_connections.max(1))
        .connect_with(connect_options(path, options))
        .await?;
    Ok((writer, connect_options(path, options), pool))
}

pub(crate) async fn commit_group(
    conn: &mut SqliteConnection,
    work: Vec<(Vec<StreamAppend>, Option<Inline>)>,
) -> GroupOutcome {
    commit_group_body!(
        conn,
        work,
        "BEGIN IMMEDIATE",
        "SELECT position, seq FROM log_head WHERE id = 1",
        prefetch,
        GroupState::number_async,
        flush,
        finish,
        Tx::Sqlite
    )
}

/// Current versions of every stream the group names (one query per 500 names).
/// One transaction fed part by part (`EventLog::append_parts`).
pub(crate) async fn append_parts(
    conn: &mut SqliteConnection,
    parts: tokio::sync::mpsc::Receiver<crate::Part>,
) -> Result<(Option<i64>, Vec<Envelope>), crate::AppendError> {
    crate::writer::append_parts_body!(conn, parts, "BEGIN IMMEDIATE", "SELECT position, seq FROM log_head WHERE id = 1", prefetch, flush, finish, Tx::Sqlite)
}

async fn prefetch(
    conn: &mut SqliteConnection,
    names: Vec<&str>,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut versions = HashMap::new();
    for chunk in names.chunks(500) {
        let sql = format!(
            "SELECT stream, version FROM streams WHERE stream IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query_as::<_, (String, i64)>(&sql);
        for name in chunk {
            q = q.bind(*name);
        }
        versions.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(versions)
}

/// Inserts the pending rows (prepared statement per row: cheap in-process) and stream heads.
async fn flush(conn: &mut SqliteConnection, st: &mut GroupState) -> Result<(), sqlx::Error> {
    if st.pending.is_empty() {
        return Ok(());
    }
    let rows = st.pending.take();
    for i in 0..rows.position.len() {
        sqlx::query(
            "INSERT INTO events (position, seq, stream, stream_version, event_type, \
             event_version, payload, recorded_at, actor, correlation) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(rows.position[i])
        .bind(rows.seq[i])
        .bind(&rows.stream[i])
        .bind(rows.stream_version[i])
        .bind(&rows.event_type[i])
        .bind(rows.event_version[i])
        .bind(rows.payload[i].as_slice())
        .bind(rows.recorded_at)
        .bind(rows.actor[i].as_deref())
        .bind(rows.correlation[i].as_deref())
        .execute(&mut *conn)
        .await?;
    }
    let (streams, versions) = rows.stream_heads();
    for (stream, version) in streams.iter().zip(versions) {
        sqlx::query(
            "INSERT INTO streams (stream, version) VALUES (?, ?) \
             ON CONFLICT (stream) DO UPDATE SET version = max(version, excluded.version)",
        )
        .bind(stream)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn finish(conn: &mut SqliteConnection, position: i64, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE log_head SET position = ?, seq = ? WHERE id = 1")
        .bind(position)
        .bind(seq)
        .execute(conn)
        .await
        .map(|_| ())
}

pub(crate) async fn purge(
    conn: &mut SqliteConnection,
    did: &str,
    streams: &[String],
    keep: &[i64],
) -> Result<u64, LogError> {
    use sqlx::Connection as _;
    let keep_json = format!(
        "[{}]",
        keep.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    );
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut deleted = sqlx::query(
        "DELETE FROM events WHERE substr(stream, instr(stream, '/') + 1) = ? \
         AND instr(stream, '/') > 0 \
         AND position NOT IN (SELECT value FROM json_each(?))",
    )
    .bind(did)
    .bind(&keep_json)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    for stream in streams {
        deleted += sqlx::query("DELETE FROM events WHERE stream = ? AND position NOT IN (SELECT value FROM json_each(?))")
            .bind(stream)
            .bind(&keep_json)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(deleted)
}

pub(crate) async fn head(pool: &SqlitePool) -> Result<Head, LogError> {
    let (position, seq) = sqlx::query_as::<_, (i64, i64)>("SELECT position, seq FROM log_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok(Head { position, seq })
}

/// Runs caller work in one writer transaction (no append).
pub(crate) async fn transact(conn: &mut SqliteConnection, work: Work) -> Result<(), TransactError> {
    use sqlx::Connection as _;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    match work(Tx::Sqlite(&mut tx)).await {
        Ok(()) => Ok(tx.commit().await?),
        Err(e) => {
            let _ = tx.rollback().await;
            Err(TransactError::Work(e))
        }
    }
}

pub(crate) async fn read_all_conn(
    conn: &mut SqliteConnection,
    after: i64,
    limit: u32,
) -> Result<Vec<Envelope>, LogError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM (SELECT {EVENT_COLUMNS}, SUM(LENGTH(payload)) OVER (ORDER BY position) AS acc, \
         LENGTH(payload) AS len FROM events WHERE position > ? ORDER BY position LIMIT ?) AS page \
         WHERE acc - len < ? ORDER BY position"
    );
    let rows = sqlx::query(&sql).bind(after).bind(i64::from(limit)).bind(crate::PAGE_BYTES).fetch_all(conn).await?;
    Ok(rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?)
}

pub(crate) async fn read_all(pool: &SqlitePool, after: i64, limit: u32) -> Result<Vec<Envelope>, LogError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM (SELECT {EVENT_COLUMNS}, SUM(LENGTH(payload)) OVER (ORDER BY position) AS acc, \
         LENGTH(payload) AS len FROM events WHERE position > ? ORDER BY position LIMIT ?) AS page \
         WHERE acc - len < ? ORDER BY position"
    );
    let rows = sqlx::query(&sql).bind(after).bind(i64::from(limit)).bind(crate::PAGE_BYTES).fetch_all(pool).await?;
    Ok(rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?)
}

pub(crate) async fn read_public(
    pool: &SqlitePool,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<Envelope>, LogError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?");
    let rows = sqlx::query(&sql).bind(after_seq).bind(i64::from(limit)).fetch_all(pool).await?;
    Ok(rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?)
}

pub(crate) async fn read_stream(pool: &SqlitePool, stream: &str) -> Result<Vec<Envelope>, LogError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream = ? ORDER BY stream_version");
    let rows = sqlx::query(&sql).bind(stream).fetch_all(pool).await?;
    Ok(rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?)
}

pub(crate) async fn read_stream_last(pool: &SqlitePool, stream: &str) -> Result<Option<Envelope>, LogError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream = ? ORDER BY stream_version DESC LIMIT 1");
    let row = sqlx::query(&sql).bind(stream).fetch_optional(pool).await?;
    Ok(match row {
        Some(r) => Some(envelope_from_row!(r)?),
        None => None,
    })
}

pub(crate) async fn stream_version(pool: &SqlitePool, stream: &str) -> Result<i64, LogError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream = ?")
        .bind(stream)
        .fetch_optional(pool)
        .await?;
    Ok(v.unwrap_or(0))
}
