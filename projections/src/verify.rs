//! `pds verify`: rebuilds the chosen projectors into a scratch location with the same table names
//! — SQLite: a temporary database file with the live tables' own DDL; Postgres: a scratch schema
//! with `CREATE TABLE ... (LIKE live INCLUDING ALL)` — from the live log, then compares every table
//! with `EXCEPT` both ways. Inline projectors are rebuilt up to the log head, catch-up projectors up
//! to their live checkpoint, both read at the start (and read again at the end: see [`verify`]). It
//! never writes to the live database (the Postgres scratch schema aside, dropped at the end).

use std::path::{Path, PathBuf};

use eventlog::{EventLog, Tx};
use sqlx::{ConnectOptions, Connection, PgConnection, Row, SqliteConnection};

use crate::{checkpoints, Kind, ProjectionError, Projector, Table};

const PAGE: u32 = 1000;
/// Differing rows shown per table and direction.
const SAMPLES: i64 = 5;

/// The comparison of one table.
#[derive(Debug, Clone)]
pub struct TableDiff {
    pub projector: &'static str,
    pub kind: Kind,
    pub table: &'static str,
    /// The position the scratch copy was rebuilt up to.
    pub rebuilt_to: i64,
    pub live_rows: u64,
    pub rebuilt_rows: u64,
    pub only_live: u64,
    pub only_rebuilt: u64,
    /// A few differing rows, as `column=value` lists.
    pub samples_only_live: Vec<String>,
    pub samples_only_rebuilt: Vec<String>,
}

impl TableDiff {
    pub fn is_clean(&self) -> bool {
        self.only_live == 0 && self.only_rebuilt == 0
    }
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub tables: Vec<TableDiff>,
    /// Events replayed into the scratch copy.
    pub events: u64,
    pub head: i64,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.tables.iter().all(TableDiff::is_clean)
    }
}

enum Scratch {
    Sqlite { conn: SqliteConnection, _dir: tempfile::TempDir },
    Postgres { conn: PgConnection, schema: String, live: String },
}

/// Rebuilds `projectors` from `log` (opened from `url`) into scratch tables and compares them
/// with the live ones.
///
/// On a live server the log and the catch-up checkpoints move while this runs, so the live tables
/// can be ahead of the positions the scratch copy was rebuilt to. A difference only counts if the
/// live state stood still during the comparison: when the head or a checkpoint moved, the
/// comparison is made again (at most `ATTEMPTS` times) before it is reported.
pub async fn verify(log: &EventLog, url: &str, projectors: Vec<Projector>) -> Result<VerifyReport, ProjectionError> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        let (head, targets) = targets(log, &projectors).await?;
        let report = verify_at(log, url, &projectors, head, &targets).await?;
        if report.is_clean() || attempt >= ATTEMPTS || (head, targets) == self::targets(log, &projectors).await? {
            return Ok(report);
        }
        attempt += 1;
    }
}

/// The position each projector is rebuilt to: the log head for inline ones, the live checkpoint
/// for catch-up ones.
async fn targets(log: &EventLog, projectors: &[Projector]) -> Result<(i64, Vec<i64>), ProjectionError> {
    let head = log.head().await?.position;
    let mut targets = Vec::with_capacity(projectors.len());
    for p in projectors {
        targets.push(match p.kind {
            Kind::Inline => head,
            Kind::CatchUp => checkpoints::get(log, p.name).await?.min(head),
        });
    }
    Ok((head, targets))
}

async fn verify_at(
    log: &EventLog,
    url: &str,
    projectors: &[Projector],
    head: i64,
    targets: &[i64],
) -> Result<VerifyReport, ProjectionError> {
    let mut scratch = Scratch::open(url, projectors).await?;
    let result = async {
        let events = scratch.rebuild(log, projectors, targets).await?;
        let mut tables = Vec::new();
        for (p, target) in projectors.iter().zip(targets) {
            for t in p.tables {
                tables.push(scratch.compare(p, *target, t).await?);
            }
        }
        Ok(VerifyReport { tables, events, head })
    }
    .await;
    scratch.close().await;
    result
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).map(PathBuf::from)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Scratch {
    async fn open(url: &str, projectors: &[Projector]) -> Result<Scratch, ProjectionError> {
        if let Some(live) = sqlite_path(url) {
            Self::open_sqlite(&live, projectors).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url, projectors).await
        } else {
            Err(ProjectionError::UnsupportedUrl(url.to_owned()))
        }
    }

    async fn open_sqlite(live: &Path, projectors: &[Projector]) -> Result<Scratch, ProjectionError> {
        let dir = tempfile::Builder::new().prefix("pds-verify-").tempdir()?;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("scratch.sqlite"))
            .create_if_missing(true)
            .connect()
            .await?;
        sqlx::query("ATTACH DATABASE ? AS live")
            .bind(live.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await?;
        for t in projectors.iter().flat_map(|p| p.tables) {
            // The live table's own DDL (and its indexes), so both copies are alike to the byte.
            let ddl: Vec<String> = sqlx::query_scalar(
                "SELECT sql FROM live.sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL \
                 ORDER BY type = 'index', name",
            )
            .bind(t.name)
            .fetch_all(&mut conn)
            .await?;
            for statement in ddl {
                sqlx::query(&statement).execute(&mut conn).await?;
            }
        }
        Ok(Scratch::Sqlite { conn, _dir: dir })
    }

    async fn open_postgres(url: &str, projectors: &[Projector]) -> Result<Scratch, ProjectionError> {
        let mut conn = PgConnection::connect(url).await?;
        let live: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&mut conn).await?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!("verify_{}_{nanos}", std::process::id());
        sqlx::query(&format!("CREATE SCHEMA {}", quote(&schema))).execute(&mut conn).await?;
        let mut scratch = Scratch::Postgres { conn, schema: schema.clone(), live: live.clone() };
        if let Scratch::Postgres { conn, .. } = &mut scratch {
            let made: Result<(), sqlx::Error> = async {
                for t in projectors.iter().flat_map(|p| p.tables) {
                    let sql = format!(
                        "CREATE TABLE {s}.{t} (LIKE {l}.{t} INCLUDING ALL)",
                        s = quote(&schema),
                        l = quote(&live),
                        t = quote(t.name)
                    );
                    sqlx::query(&sql).execute(&mut *conn).await?;
                }
                sqlx::query(&format!("SET search_path TO {}", quote(&schema))).execute(&mut *conn).await?;
                Ok(())
            }
            .await;
            if let Err(e) = made {
                scratch.close().await;
                return Err(e.into());
            }
        }
        Ok(scratch)
    }

    /// Replays the live log into the scratch tables, each projector up to its target.
    async fn rebuild(
        &mut self,
        log: &EventLog,
        projectors: &[Projector],
        targets: &[i64],
    ) -> Result<u64, ProjectionError> {
        let end = targets.iter().copied().max().unwrap_or(0);
        let mut cursor = 0;
        let mut events = 0u64;
        match self {
            Scratch::Sqlite { conn, .. } => {
                let mut tx = conn.begin().await?;
                while cursor < end {
                    let page = log.read_all(cursor, PAGE).await?;
                    let Some(last) = page.last().map(|e| e.position) else { break };
                    events += page.iter().filter(|e| e.position <= end).count() as u64;
                    for (p, target) in projectors.iter().zip(targets) {
                        p.apply_handled(Tx::Sqlite(&mut tx), &page, *target).await?;
                    }
                    cursor = last;
                }
                tx.commit().await?;
            }
            Scratch::Postgres { conn, .. } => {
                let mut tx = conn.begin().await?;
                while cursor < end {
                    let page = log.read_all(cursor, PAGE).await?;
                    let Some(last) = page.last().map(|e| e.position) else { break };
                    events += page.iter().filter(|e| e.position <= end).count() as u64;
                    for (p, target) in projectors.iter().zip(targets) {
                        p.apply_handled(Tx::Postgres(&mut tx), &page, *target).await?;
                    }
                    cursor = last;
                }
                tx.commit().await?;
            }
        }
        Ok(events)
    }

    async fn compare(&mut self, p: &Projector, rebuilt_to: i64, t: &Table) -> Result<TableDiff, ProjectionError> {
        let cols = t.columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let (live, scratch, cast): (String, String, fn(&str) -> String) = match self {
            Scratch::Sqlite { .. } => (
                format!("live.{}", quote(t.name)),
                format!("main.{}", quote(t.name)),
                |c| format!("CAST({} AS TEXT)", quote(c)),
            ),
            Scratch::Postgres { schema, live, .. } => (
                format!("{}.{}", quote(live), quote(t.name)),
                format!("{}.{}", quote(schema), quote(t.name)),
                |c| format!("{}::text", quote(c)),
            ),
        };
        let casts = t.columns.iter().map(|c| cast(c)).collect::<Vec<_>>().join(", ");
        let diff = |a: &str, b: &str| format!("SELECT {cols} FROM {a} EXCEPT SELECT {cols} FROM {b}");
        let count = |from: String| format!("SELECT count(*) FROM ({from}) AS d");
        let sample = |from: String| format!("SELECT {casts} FROM ({from}) AS d ORDER BY 1 LIMIT {SAMPLES}");
        let queries = [
            count(format!("SELECT * FROM {live}")),
            count(format!("SELECT * FROM {scratch}")),
            count(diff(&live, &scratch)),
            count(diff(&scratch, &live)),
        ];
        let mut counts = [0u64; 4];
        for (n, q) in counts.iter_mut().zip(&queries) {
            *n = u64::try_from(self.scalar(q).await?).unwrap_or(0);
        }
        let render = |row: Vec<Option<String>>| {
            t.columns
                .iter()
                .zip(row)
                .map(|(c, v)| format!("{c}={}", v.unwrap_or_else(|| "NULL".into())))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let samples_only_live = self.rows(&sample(diff(&live, &scratch)), t.columns.len()).await?;
        let samples_only_rebuilt = self.rows(&sample(diff(&scratch, &live)), t.columns.len()).await?;
        Ok(TableDiff {
            projector: p.name,
            kind: p.kind,
            table: t.name,
            rebuilt_to,
            live_rows: counts[0],
            rebuilt_rows: counts[1],
            only_live: counts[2],
            only_rebuilt: counts[3],
            samples_only_live: samples_only_live.into_iter().map(render).collect(),
            samples_only_rebuilt: samples_only_rebuilt.into_iter().map(render).collect(),
        })
    }

    async fn scalar(&mut self, sql: &str) -> Result<i64, sqlx::Error> {
        match self {
            Scratch::Sqlite { conn, .. } => sqlx::query_scalar(sql).fetch_one(conn).await,
            Scratch::Postgres { conn, .. } => sqlx::query_scalar(sql).fetch_one(conn).await,
        }
    }

    async fn rows(&mut self, sql: &str, width: usize) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        match self {
            Scratch::Sqlite { conn, .. } => {
                let rows = sqlx::query(sql).fetch_all(conn).await?;
                rows.iter().map(|r| (0..width).map(|i| r.try_get::<Option<String>, _>(i)).collect()).collect()
            }
            Scratch::Postgres { conn, .. } => {
                let rows = sqlx::query(sql).fetch_all(conn).await?;
                rows.iter().map(|r| (0..width).map(|i| r.try_get::<Option<String>, _>(i)).collect()).collect()
            }
        }
    }

    /// Drops the scratch copy (the SQLite file goes with its temporary directory).
    async fn close(&mut self) {
        if let Scratch::Postgres { conn, schema, .. } = self {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema))).execute(&mut *conn).await;
        }
    }
}
