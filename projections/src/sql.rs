//! One statement, both backends: SQL written with `?` placeholders runs on SQLite as is and on
//! Postgres with `$1, $2, …`, with the same typed arguments. For projectors whose statements are
//! the same on both (per-event upserts and deletes) and for simple lookups.

use eventlog::{ReadPool, Tx};

/// A bound value.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bytes(Vec<u8>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Text(Some(s.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Text(Some(s))
    }
}
impl From<Option<String>> for Arg {
    fn from(s: Option<String>) -> Arg {
        Arg::Text(s)
    }
}
impl From<i64> for Arg {
    fn from(i: i64) -> Arg {
        Arg::Int(Some(i))
    }
}
impl From<Option<i64>> for Arg {
    fn from(i: Option<i64>) -> Arg {
        Arg::Int(i)
    }
}
impl From<Vec<u8>> for Arg {
    fn from(b: Vec<u8>) -> Arg {
        Arg::Bytes(b)
    }
}

/// `?` → `$n`, for Postgres (no statement here has a `?` inside a string literal).
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(v) => q.bind(v.clone()),
                Arg::Int(v) => q.bind(*v),
                Arg::Bytes(v) => q.bind(v.clone()),
            };
        }
        q
    }};
}

/// Rows per statement in [`insert_rows`].
const ROWS_PER_STATEMENT: usize = 100;

/// Inserts many rows with multi-row `VALUES` statements (up to 100 rows each):
/// `{insert} VALUES (?, …), (?, …) {tail}`, where every row has the same number of arguments.
/// One round trip per hundred rows instead of one per row (bulk projections, e.g. an import).
pub async fn insert_rows(tx: &mut Tx<'_>, insert: &str, tail: &str, rows: Vec<Vec<Arg>>) -> Result<u64, sqlx::Error> {
    let mut done = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let batch: Vec<Vec<Arg>> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let width = batch.first().map_or(0, Vec::len);
        let one = format!("({})", vec!["?"; width].join(", "));
        let sql = format!("{insert} VALUES {} {tail}", vec![one.as_str(); batch.len()].join(", "));
        let args: Vec<Arg> = batch.into_iter().flatten().collect();
        done += exec(tx, &sql, &args).await?;
    }
    Ok(done)
}

/// Runs one statement inside the transaction.
pub async fn exec(tx: &mut Tx<'_>, sql: &str, args: &[Arg]) -> Result<u64, sqlx::Error> {
    match tx {
        Tx::Sqlite(c) => Ok(bind_all!(sqlx::query(sql), args).execute(&mut **c).await?.rows_affected()),
        Tx::Postgres(c) => {
            let sql = numbered(sql);
            Ok(bind_all!(sqlx::query(&sql), args).execute(&mut **c).await?.rows_affected())
        }
    }
}

/// The first column of the first row, as text, on the read pool.
pub async fn fetch_text(pool: ReadPool<'_>, sql: &str, args: &[Arg]) -> Result<Option<String>, sqlx::Error> {
    match pool {
        ReadPool::Sqlite(p) => bind_all!(sqlx::query_scalar(sql), args).fetch_optional(p).await,
        ReadPool::Postgres(p) => {
            let sql = numbered(sql);
            bind_all!(sqlx::query_scalar(&sql), args).fetch_optional(p).await
        }
    }
}
