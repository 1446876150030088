//! `pds relay status` and `pds relay crawl`: what each relay of `PDS_CRAWLERS` says about us, and
//! asking them to crawl now. `pds seq raise N`: the fix when a relay's cursor is above our head.
//!
//! Status asks each relay `com.atproto.sync.getHostStatus?hostname=<PDS_HOSTNAME>` and compares its
//! `seq` (the last of ours it has) with our log head (read from the database, as `pds serve`
//! would). A `requestCrawl` is due when the relay does not know us or does not list us `active`.
//! A relay whose seq is ABOVE our head will ignore our next events until our seqs pass it (the
//! reference PDS's "relay desync"): `pds seq raise <its seq>` fixes that.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;

const TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(TIMEOUT).build()?)
}

/// One relay's view of us.
async fn host_status(client: &reqwest::Client, relay: &str, hostname: &str) -> Value {
    let url = format!("{}/xrpc/com.atproto.sync.getHostStatus", relay.trim_end_matches('/'));
    match client.get(&url).query(&[("hostname", hostname)]).send().await {
        Err(e) => json!({ "relay": relay, "reachable": false, "error": e.to_string() }),
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status == 200 {
                json!({ "relay": relay, "reachable": true, "known": true, "status": body["status"], "seq": body["seq"], "accountCount": body["accountCount"] })
            } else {
                json!({ "relay": relay, "reachable": true, "known": false, "httpStatus": status, "error": body["error"], "message": body["message"] })
            }
        }
    }
}

/// Adds `ourSeq`, `behind`, `crawlDue` and a `verdict` sentence.
fn judge(mut v: Value, our_seq: i64) -> Value {
    let relay_seq = v["seq"].as_i64();
    let (due, verdict) = if v["reachable"] == json!(false) {
        (false, format!("unreachable: {}", v["error"].as_str().unwrap_or("?")))
    } else if v["known"] == json!(false) {
        (true, format!("does not know us ({}): a requestCrawl is due", v["error"].as_str().unwrap_or("error")))
    } else {
        let status = v["status"].as_str().unwrap_or("unknown").to_owned();
        match relay_seq {
            Some(s) if s > our_seq => (
                false,
                format!("RELAY IS AHEAD: it has seq {s}, our head is {our_seq}; it ignores our events until our seq passes {s}: run `pds seq raise {s}`"),
            ),
            _ if status == "banned" => (false, "banned by the relay: crawling will not help".to_owned()),
            _ if status != "active" => (true, format!("status {status}: a requestCrawl is due")),
            Some(s) => (false, format!("active, {} behind our head", our_seq - s)),
            None => (false, "active".to_owned()),
        }
    };
    v["ourSeq"] = json!(our_seq);
    if let Some(s) = relay_seq {
        v["behind"] = json!(our_seq - s);
    }
    v["crawlDue"] = json!(due);
    v["verdict"] = json!(verdict);
    v
}

/// `pds relay status [--json]`.
pub async fn status(config: &Config, as_json: bool, out: &mut dyn Write) -> anyhow::Result<bool> {
    if config.crawlers.is_empty() {
        anyhow::bail!("PDS_CRAWLERS is not set: no relay to ask");
    }
    let log = crate::server::open_log(config).await?;
    let head = log.head().await?;
    let client = client()?;
    let mut all_ok = true;
    let mut rows = Vec::new();
    for relay in &config.crawlers {
        let v = judge(host_status(&client, relay, &config.hostname).await, head.seq);
        all_ok &= v["reachable"] == json!(true);
        rows.push(v);
    }
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({ "hostname": config.hostname, "headSeq": head.seq, "relays": rows }))?)?;
    } else {
        writeln!(out, "our head: seq {} (hostname {})", head.seq, config.hostname)?;
        for v in &rows {
            writeln!(out, "{}: {}", v["relay"].as_str().unwrap_or("?"), v["verdict"].as_str().unwrap_or("?"))?;
        }
    }
    Ok(all_ok)
}

/// `pds relay crawl`: POSTs `requestCrawl {hostname}` to every relay now; false if any refused.
pub async fn crawl(config: &Config, out: &mut dyn Write) -> anyhow::Result<bool> {
    if config.crawlers.is_empty() {
        anyhow::bail!("PDS_CRAWLERS is not set: no relay to ask");
    }
    let client = client()?;
    let mut all_ok = true;
    for relay in &config.crawlers {
        let url = format!("{}/xrpc/com.atproto.sync.requestCrawl", relay.trim_end_matches('/'));
        let r = client.post(&url).json(&json!({ "hostname": config.hostname })).send().await;
        let line = match r {
            Ok(r) if r.status().is_success() => "requestCrawl accepted".to_owned(),
            Ok(r) => {
                all_ok = false;
                let status = r.status();
                format!("requestCrawl refused: {status} {}", r.text().await.unwrap_or_default())
            }
            Err(e) => {
                all_ok = false;
                format!("requestCrawl failed: {e}")
            }
        };
        writeln!(out, "{relay}: {line}")?;
    }
    Ok(all_ok)
}

/// `pds seq raise N`: the next firehose seq will be above `n` (log head and `<data>/firehose-seq`).
pub async fn raise_seq(config: &Config, n: i64, out: &mut dyn Write) -> anyhow::Result<()> {
    let log = crate::server::open_log(config).await?;
    let head = log.raise_head(0, n).await.map_err(|e| anyhow::anyhow!("raising the log head: {e}"))?;
    crate::high_water::raise(&config.data_directory, head.seq)?;
    writeln!(out, "seq: head seq is {}; the next firehose seq is {}", head.seq, head.seq + 1)?;
    Ok(())
}
