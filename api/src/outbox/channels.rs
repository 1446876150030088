//! The chat channels: a Discord webhook, a Telegram bot, Signal through `signal-cli`. Each takes
//! a validated address (`domain::notification::check_address`) and the rendered text; `Err` is
//! the reason, for the outbox to retry.
//!
//! - Discord: `POST <PDS_DISCORD_API_URL>/webhooks/<id>/<token>` `{"content", "allowed_mentions":
//!   {"parse": []}}` (no pings), 2,000 characters at most; 204/200 = sent.
//! - Telegram: `POST <PDS_TELEGRAM_API_URL>/bot<PDS_TELEGRAM_BOT_TOKEN>/sendMessage`
//!   `{"chat_id", "text", "disable_web_page_preview": true}`; `{"ok": true}` = sent.
//! - Signal: `<PDS_SIGNAL_CLI_PATH> -a <PDS_SIGNAL_SENDER_NUMBER> send -m <text> <number>`, run
//!   with an argument vector (never a shell), stdin closed, killed after 60 s; exit 0 = sent.
//!
//! Never logs the bot token or a webhook token.

use std::time::Duration;

const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(60);
const DISCORD_MAX: usize = 2000;
const TELEGRAM_MAX: usize = 4096;

#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub discord_api_url: String,
    pub telegram_api_url: String,
    pub telegram_bot_token: Option<String>,
    pub signal_cli_path: String,
    pub signal_sender: Option<String>,
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(HTTP_TIMEOUT).redirect(reqwest::redirect::Policy::none()).build().unwrap_or_default()
}

async fn status_error(what: &str, resp: reqwest::Response) -> String {
    let status = resp.status();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(|v| format!(" (retry after {v})")).unwrap_or_default();
    let body = resp.text().await.unwrap_or_default();
    format!("{what} answered {status}{retry}: {}", truncate(body.trim(), 200))
}

pub async fn discord(s: &ChannelSettings, address: &str, text: &str) -> Result<(), String> {
    let (id, token) = address.split_once('/').ok_or("not a webhook address")?;
    let url = format!("{}/webhooks/{id}/{token}", s.discord_api_url.trim_end_matches('/'));
    let body = serde_json::json!({ "content": truncate(text, DISCORD_MAX), "allowed_mentions": { "parse": [] } });
    let resp = http().post(&url).json(&body).send().await.map_err(|e| format!("Discord webhook {id}: {}", without_url(e)))?;
    if resp.status().is_success() {
        return Ok(());
    }
    Err(status_error(&format!("Discord webhook {id}"), resp).await)
}

pub async fn telegram(s: &ChannelSettings, chat_id: &str, text: &str) -> Result<(), String> {
    let token = s.telegram_bot_token.as_deref().ok_or("PDS_TELEGRAM_BOT_TOKEN is not set")?;
    let url = format!("{}/bot{token}/sendMessage", s.telegram_api_url.trim_end_matches('/'));
    let chat: serde_json::Value = chat_id.parse::<i64>().map(Into::into).unwrap_or_else(|_| chat_id.into());
    let body = serde_json::json!({ "chat_id": chat, "text": truncate(text, TELEGRAM_MAX), "disable_web_page_preview": true });
    let resp = http().post(&url).json(&body).send().await.map_err(|e| format!("Telegram: {}", without_url(e)))?;
    if !resp.status().is_success() {
        return Err(status_error("Telegram", resp).await);
    }
    let v: serde_json::Value = resp.json().await.map_err(|e| format!("Telegram: unreadable answer ({e})"))?;
    if v["ok"] == serde_json::Value::Bool(true) {
        Ok(())
    } else {
        Err(format!("Telegram: {}", truncate(&v["description"].to_string(), 200)))
    }
}

pub async fn signal(s: &ChannelSettings, number: &str, text: &str) -> Result<(), String> {
    let sender = s.signal_sender.as_deref().ok_or("PDS_SIGNAL_SENDER_NUMBER is not set")?;
    let mut cmd = tokio::process::Command::new(&s.signal_cli_path);
    cmd.arg("-a")
        .arg(sender)
        .arg("send")
        .arg("-m")
        .arg(text)
        .arg(number)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("running {}: {e}", s.signal_cli_path))?;
    let out = tokio::time::timeout(SIGNAL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("signal-cli took longer than {SIGNAL_TIMEOUT:?}"))?
        .map_err(|e| format!("signal-cli: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!("signal-cli exited with {}: {}", out.status, truncate(String::from_utf8_lossy(&out.stderr).trim(), 300)))
}

/// reqwest's error without the URL (it holds the webhook or bot token).
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
