//! eventlog-stress URL WRITERS MAX_REQUESTS: WRITERS tasks append requests of 3 events (first one
//! public) to their own stream `stress/<pid>-<n>` at the exact expected version, until
//! MAX_REQUESTS requests in total (0 = forever). After each acknowledged append it prints
//! `ack <stream> <stream_version> <seq>`. Used by the crash (kill -9) and cross-process tail tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use eventlog::{EventLog, ExpectedVersion, NewEvent, StreamAppend};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, writers, max] = args.as_slice() else {
        return Err("usage: eventlog-stress URL WRITERS MAX_REQUESTS (0 = forever)".into());
    };
    let writers: u32 = writers.parse()?;
    let max: u64 = max.parse()?;
    let log = EventLog::open(url).await?;
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("stress/{}-{w}", std::process::id());
            let mut version = 0i64;
            loop {
                if max > 0 && issued.fetch_add(1, Ordering::Relaxed) >= max {
                    return Ok::<(), BoxError>(());
                }
                let payload = version.to_be_bytes().to_vec();
                let events = vec![
                    NewEvent::new("stress.commit", 1, payload.clone()).public(),
                    NewEvent::new("stress.detail", 1, payload.clone()),
                    NewEvent::new("stress.detail", 1, payload),
                ];
                let expected = if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                };
                let envs = log.append(vec![StreamAppend::new(stream.clone(), expected, events)]).await?;
                version += 3;
                let seq = envs.first().and_then(|e| e.seq).unwrap_or(0);
                println!("ack {stream} {version} {seq}");
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
