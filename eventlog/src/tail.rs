//! Tailing: backfill from a position, then follow live appends. A tail never skips: it reads
//! `position > cursor` in order, and positions become visible in order (see README.md). It wakes
//! on a shared `watch` of the highest committed position, fed by this process's writer, by one
//! poller per `EventLog` (reads `log_head`; the cross-process signal on SQLite) and on Postgres by
//! LISTEN/NOTIFY; it also re-reads on its own every max(4 x poll interval, 1 s) in case all of those stall.

use std::time::Duration;

use futures_util::Stream;
use tokio::sync::watch;

use crate::{postgres, sqlite, Envelope, EventLog, LogError, Reader};

const PAGE: u32 = 500;

pub(crate) fn tail(log: EventLog, after: i64) -> impl Stream<Item = Result<Envelope, LogError>> + Send + 'static {
    async_stream::try_stream! {
        let mut cursor = after;
        let mut head = log.inner.head.clone();
        // Only a safety net (the shared poller and NOTIFY do the waking): kept long so that many
        // idle tails do not each hit the database.
        let fallback = (log.inner.poll_interval * 4).max(Duration::from_secs(1));
        loop {
            let page = log.read_all(cursor, PAGE).await?;
            if page.is_empty() {
                // Positions up to the committed head that are absent were purged: step over them
                // (head is read before the events, so everything up to it is already visible).
                let committed = log.head().await?.position;
                if log.read_all(cursor, 1).await?.is_empty() {
                    cursor = cursor.max(committed);
                    let seen = cursor;
                    let _ = tokio::time::timeout(fallback, head.wait_for(|h| *h > seen)).await;
                }
                continue;
            }
            for envelope in page {
                cursor = envelope.position;
                yield envelope;
            }
        }
    }
}

/// Keeps `head` at the highest committed position seen in the database; ends when every
/// receiver is gone.
pub(crate) async fn watch_head(reader: Reader, head: watch::Sender<i64>, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    let bump = |p: i64| {
        head.send_if_modified(|h| {
            if p > *h {
                *h = p;
                true
            } else {
                false
            }
        });
    };
    match reader {
        Reader::Sqlite(pool) => loop {
            tokio::select! {
                _ = head.closed() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Ok(h) = sqlite::head(&pool).await {
                bump(h.position);
            }
        },
        Reader::Postgres(pool) => {
            let mut listener = None;
            loop {
                if listener.is_none() {
                    if let Ok(mut l) = sqlx::postgres::PgListener::connect_with(&pool).await {
                        if l.listen(postgres::CHANNEL).await.is_ok() {
                            listener = Some(l);
                        }
                    }
                }
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.ok().and_then(|n| n.payload().parse::<i64>().ok()),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = head.closed() => return,
                    n = notified => match n {
                        Some(p) => bump(p),
                        None => listener = None,
                    },
                    _ = tokio::time::sleep(every) => {
                        if let Ok(h) = postgres::head(&pool).await {
                            bump(h.position);
                        }
                    }
                }
            }
        }
    }
}
