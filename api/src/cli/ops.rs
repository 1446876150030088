//! Operator jobs over the log and its read models: `pds replay`, `pds verify`, `pds events tail`.
//! Each opens the database named by the configuration (as `pds serve` would, migrations included),
//! writes results to `out` and progress to `err`, and ends with a summary line.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::config::Config;
use crate::event_json::envelope_json;

/// `12345678` → `12,345,678`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let head = digits.len() % 3;
    let mut out = digits[..head].to_owned();
    for group in digits.as_bytes()[head..].chunks(3) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(std::str::from_utf8(group).unwrap_or_default());
    }
    out
}

fn rate(done: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (done as f64 / secs) as u64
    } else {
        done
    }
}

/// `pds replay [--projection NAME]`: empties the read models and rebuilds them from position 0.
pub async fn replay(config: &Config, projection: Option<&str>, err: &mut dyn Write) -> anyhow::Result<()> {
    let selected = projections::select(projection)?;
    let log = crate::server::open_log(config).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let progress: Arc<dyn Fn(projections::replay::Progress) + Send + Sync> = Arc::new(move |p| {
        let _ = tx.send(p);
    });
    let job = projections::replay::replay(&log, selected, progress);
    tokio::pin!(job);
    let report = loop {
        tokio::select! {
            done = &mut job => break done?,
            Some(p) = rx.recv() => {
                let _ = writeln!(
                    err,
                    "replay: {}/{} events ({} ev/s)",
                    thousands(p.done),
                    thousands(p.total),
                    thousands(rate(p.done, p.elapsed))
                );
            }
        }
    };
    let _ = writeln!(
        err,
        "replay: done: rebuilt {} from {} events (up to position {}) in {:.1} s ({} ev/s)",
        report.projections.join(", "),
        thousands(report.events),
        report.position,
        report.elapsed.as_secs_f64(),
        thousands(rate(report.events, report.elapsed))
    );
    Ok(())
}

/// `pds verify [--projection NAME]`: rebuilds into scratch tables and reports differences.
/// Returns whether the live read models equal the rebuilt ones.
pub async fn verify(config: &Config, projection: Option<&str>, out: &mut dyn Write) -> anyhow::Result<bool> {
    let selected = projections::select(projection)?;
    let log = crate::server::open_log(config).await?;
    let report = projections::verify::verify(&log, &config.database_url, selected).await?;
    let (mut only_live, mut only_rebuilt, mut differ) = (0, 0, 0);
    for t in &report.tables {
        let state = if t.is_clean() { "ok" } else { "DIFFERS" };
        writeln!(
            out,
            "verify: {} ({}, up to position {}) table {}: {state}: {} rows live, {} rebuilt, {} only live, {} only rebuilt",
            t.projector,
            t.kind.as_str(),
            t.rebuilt_to,
            t.table,
            t.live_rows,
            t.rebuilt_rows,
            t.only_live,
            t.only_rebuilt
        )?;
        for row in &t.samples_only_live {
            writeln!(out, "  only live:    {row}")?;
        }
        for row in &t.samples_only_rebuilt {
            writeln!(out, "  only rebuilt: {row}")?;
        }
        only_live += t.only_live;
        only_rebuilt += t.only_rebuilt;
        differ += usize::from(!t.is_clean());
    }
    if report.is_clean() {
        writeln!(
            out,
            "verify: clean: {} tables match a rebuild from the log ({} events, head {})",
            report.tables.len(),
            thousands(report.events),
            report.head
        )?;
    } else {
        writeln!(
            out,
            "verify: FAILED: {differ} of {} tables differ ({only_live} rows only live, {only_rebuilt} only rebuilt); \
             rebuild them with `pds replay` (server stopped)",
            report.tables.len()
        )?;
    }
    Ok(report.is_clean())
}

/// `pds events tail [--from POSITION] [--follow] [--json]`: prints events after `from`; with
/// `follow`, keeps printing new ones until interrupted. A closed output (e.g. `| head`) ends it.
pub async fn events_tail(
    config: &Config,
    from: i64,
    follow: bool,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let log = crate::server::open_log(config).await?;
    let mut print = |e: &eventlog::Envelope| -> std::io::Result<()> {
        if json {
            writeln!(out, "{}", envelope_json(e))?;
        } else {
            let at = crate::event_json::rfc3339(e.recorded_at);
            writeln!(
                out,
                "{}\t{}\t{}\t{}@{}\t{} v{}",
                e.position,
                e.seq.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                at.as_str().unwrap_or("-"),
                e.stream,
                e.stream_version,
                e.event_type,
                e.event_version
            )?;
        }
        out.flush()
    };
    if follow {
        let mut tail = Box::pin(log.tail(from));
        loop {
            tokio::select! {
                next = tail.next() => match next {
                    Some(e) => {
                        if print(&e?).is_err() {
                            return Ok(());
                        }
                    }
                    None => return Ok(()),
                },
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
    let mut cursor = from;
    loop {
        let page = log.read_all(cursor, 1000).await?;
        let Some(last) = page.last().map(|e| e.position) else { return Ok(()) };
        for e in &page {
            if print(e).is_err() {
                return Ok(());
            }
        }
        cursor = last;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        for (n, s) in [(0, "0"), (999, "999"), (1000, "1,000"), (12_345, "12,345"), (100_000, "100,000"), (1_234_567, "1,234,567")] {
            assert_eq!(super::thousands(n), s);
        }
    }
}
