//! Log output of `pds serve`: human-readable lines by default, JSON lines (one object per line:
//! `timestamp`, `level`, `fields.message`, the fields, `target`, and `span`/`spans` — so every line
//! of a request carries its `request_id`) with `PDS_LOG_FORMAT=json`. Level filter:
//! `PDS_LOG_LEVEL` (`RUST_LOG` syntax), else `RUST_LOG`, else `info`.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// `PDS_LOG_FORMAT`: unset, `human` or `text` → human; `json` → JSON lines.
pub fn format_from(value: Option<&str>) -> anyhow::Result<Format> {
    match value.map(str::trim) {
        None | Some("") | Some("human") | Some("text") | Some("pretty") => Ok(Format::Human),
        Some("json") => Ok(Format::Json),
        Some(other) => anyhow::bail!("PDS_LOG_FORMAT must be json or human, found {other:?}"),
    }
}

pub fn init() -> anyhow::Result<()> {
    let format = format_from(std::env::var("PDS_LOG_FORMAT").ok().as_deref())?;
    let filter = EnvFilter::try_from_env("PDS_LOG_LEVEL")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let done = match format {
        Format::Human => builder.try_init(),
        Format::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    done.map_err(|e| anyhow::anyhow!("starting the logger: {e}"))
}
