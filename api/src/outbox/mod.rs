//! The outbox sender: one task per process sends the messages the log has queued
//! (`notification.queued`, `domain::notification`), on every node of a cluster, and exactly one
//! node sends each attempt:
//!
//! 1. the work list is the `notifications` read model (inline, so a message is listed the moment
//!    its append commits): rows queued and due, or claimed with a lapsed lease;
//! 2. a node claims the next attempt by appending `notification.claimed` at the stream version it
//!    read (`commands::claim_notification`); the log's compare-and-swap lets one node win, the
//!    others see a conflict and skip the message;
//! 3. the winner opens the sealed content (AES-256-GCM under `PDS_KEY_ENCRYPTION_KEY`), renders
//!    the templates (`templates.rs`), sends (SMTP `smtp.rs`, the dev mail sink `mail.rs`, or a
//!    chat channel `channels.rs`) and appends `sent`, `attempt_failed` (retried after
//!    `PDS_NOTIFY_RETRY_BASE_MS × 2^(attempt−1)`, at most 6 h) or `failed` (after
//!    `PDS_NOTIFY_MAX_ATTEMPTS`, or when it can never be sent).
//!
//! Everything that decides is in the log, so retries survive a restart. A node that dies between
//! its claim and its outcome leaves the message to be claimed again when the lease
//! ([`LEASE`]) lapses: that is the one case in which a message can be sent twice.
//! The request that queued a message never waits for it: an unreachable server fails the
//! attempt, not the request. Never logs a message's content.

pub mod channels;
pub mod smtp;
pub mod templates;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use domain::notification::{self as n, Channel, Content, Notification, Outcome, RetryPolicy, Template};
use eventlog::EventLog;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, Env};

/// How long a claim holds a message (SMTP's own timeout is 30 s, Signal's 60 s).
pub const LEASE: Duration = Duration::from_secs(120);
/// Messages sent at once by one node.
const CONCURRENCY: usize = 4;
/// Longest wait between two looks at the work list (claims lapse; other nodes append).
const MAX_IDLE: Duration = Duration::from_secs(1);

/// The outbox's settings (`PDS_EMAIL_*`, `PDS_MODERATION_EMAIL_*`, `PDS_NOTIFY_*`, and the
/// channels' `PDS_DISCORD_*`, `PDS_TELEGRAM_*`, `PDS_SIGNAL_*`).
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `PDS_EMAIL_SMTP_URL`; unset = the dev mail sink `<data>/mail/`.
    pub smtp: Option<smtp::SmtpUrl>,
    /// `PDS_EMAIL_SMTP_CA_FILE` (ours): extra PEM roots for the SMTP server's certificate.
    pub smtp_ca_file: Option<PathBuf>,
    /// `PDS_MODERATION_EMAIL_SMTP_URL` / `PDS_MODERATION_EMAIL_ADDRESS`: `admin.sendEmail`'s
    /// relay and sender (default: the main ones).
    pub moderation_smtp: Option<smtp::SmtpUrl>,
    pub moderation_from: Option<String>,
    /// `PDS_EMAIL_DISABLE_CONFIRMATION_LINK`.
    pub disable_confirmation_link: bool,
    pub retry: RetryPolicy,
    pub channels: channels::ChannelSettings,
}

fn smtp_url(env: &dyn Env, name: &'static str) -> Result<Option<smtp::SmtpUrl>, ConfigError> {
    match env.get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => smtp::SmtpUrl::parse(&v).map(Some).map_err(|reason| ConfigError::Invalid {
            name,
            expected: "smtp://[user:password@]host[:port] or smtps://… (user and password percent-encoded)",
            found: format!("a value that does not parse: {reason}"),
        }),
    }
}

fn millis(env: &dyn Env, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match env.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid { name, expected: "a non-negative integer", found: v }),
    }
}

impl OutboxSettings {
    pub fn from_env(env: &dyn Env) -> Result<OutboxSettings, ConfigError> {
        let disable_confirmation_link = match env.get("PDS_EMAIL_DISABLE_CONFIRMATION_LINK") {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "PDS_EMAIL_DISABLE_CONFIRMATION_LINK",
                        expected: "true or false",
                        found: v,
                    })
                }
            },
        };
        let base = millis(env, "PDS_NOTIFY_RETRY_BASE_MS", 30_000)?;
        let max_attempts = millis(env, "PDS_NOTIFY_MAX_ATTEMPTS", 10)?.max(1);
        let micros = |ms: u64| i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX);
        Ok(OutboxSettings {
            smtp: smtp_url(env, "PDS_EMAIL_SMTP_URL")?,
            smtp_ca_file: env.get("PDS_EMAIL_SMTP_CA_FILE").filter(|v| !v.is_empty()).map(PathBuf::from),
            moderation_smtp: smtp_url(env, "PDS_MODERATION_EMAIL_SMTP_URL")?,
            moderation_from: env.get("PDS_MODERATION_EMAIL_ADDRESS").filter(|v| !v.is_empty()),
            disable_confirmation_link,
            retry: RetryPolicy {
                base: micros(base),
                max_delay: micros(6 * 60 * 60 * 1000),
                max_attempts: i64::try_from(max_attempts).unwrap_or(i64::MAX),
            },
            channels: channels::ChannelSettings {
                discord_api_url: env.get("PDS_DISCORD_API_URL").unwrap_or_else(|| "https://discord.com/api".into()),
                telegram_api_url: env.get("PDS_TELEGRAM_API_URL").unwrap_or_else(|| "https://api.telegram.org".into()),
                telegram_bot_token: env.get("PDS_TELEGRAM_BOT_TOKEN").filter(|v| !v.is_empty()),
                signal_cli_path: env.get("PDS_SIGNAL_CLI_PATH").unwrap_or_else(|| "signal-cli".into()),
                signal_sender: env.get("PDS_SIGNAL_SENDER_NUMBER").filter(|v| !v.is_empty()),
            },
        })
    }

    /// Which channels this server can send on (email always: SMTP or the sink).
    pub fn available(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email | Channel::Discord => true,
            Channel::Telegram => self.channels.telegram_bot_token.is_some(),
            Channel::Signal => self.channels.signal_sender.is_some(),
        }
    }
}

enum Email {
    Smtp(Box<smtp::Smtp>),
    /// The dev mail sink: `<data directory>/mail/`.
    Sink { data_directory: PathBuf, from: String },
}

struct Sender {
    log: EventLog,
    ctx: commands::Ctx,
    node: String,
    settings: OutboxSettings,
    branding: templates::Branding,
    email: Email,
    moderation: Option<smtp::Smtp>,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The command context of the outbox (the same secrets as the server's requests).
fn command_ctx(config: &Config, appender: projections::Appender) -> anyhow::Result<commands::Ctx> {
    commands::Ctx::new(
        appender,
        commands::Settings {
            jwt_secret: &config.secrets.jwt_secret,
            service_did: &config.service_did,
            public_url: &config.public_url,
            handle_domains: &config.service_handle_domains,
            invite_required: config.invite_required,
            plc_url: &config.did_plc_url,
            plc_embedded: config.embedded_plc,
            plc_rotation_key_hex: &config.secrets.plc_rotation_key_hex,
            key_encryption_key_hex: &config.secrets.key_encryption_key_hex,
        },
    )
    .map_err(|e| anyhow::anyhow!("outbox: {e}"))
}

/// Starts the sender task of this process.
pub fn spawn(config: &Config, log: &EventLog) -> anyhow::Result<JoinHandle<()>> {
    let settings = config.outbox.clone();
    let ca = match &settings.smtp_ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| anyhow::anyhow!("PDS_EMAIL_SMTP_CA_FILE {}: {e}", p.display()))?),
        None => None,
    };
    let email = match &settings.smtp {
        Some(url) => {
            if let Some(w) = url.warning() {
                tracing::warn!("{w}");
            }
            let s = smtp::Smtp::new(url, &config.email_from_address, &config.hostname, ca.as_deref())
                .map_err(|e| anyhow::anyhow!("PDS_EMAIL_SMTP_URL: {e}"))?;
            tracing::info!(relay = %url, from = %config.email_from_address, "mail goes out over SMTP");
            Email::Smtp(Box::new(s))
        }
        None => {
            tracing::info!(sink = %config.data_directory.join("mail").display(), "PDS_EMAIL_SMTP_URL unset: mail goes to the dev mail sink");
            Email::Sink { data_directory: config.data_directory.clone(), from: config.email_from_address.clone() }
        }
    };
    let moderation = match &settings.moderation_smtp {
        Some(url) => {
            let from = settings.moderation_from.clone().unwrap_or_else(|| config.email_from_address.clone());
            Some(smtp::Smtp::new(url, &from, &config.hostname, ca.as_deref()).map_err(|e| anyhow::anyhow!("PDS_MODERATION_EMAIL_SMTP_URL: {e}"))?)
        }
        None => None,
    };
    let node = format!("{}-{}-{}", config.hostname, std::process::id(), &n::generate_id()[..8]);
    let sender = Sender {
        log: log.clone(),
        ctx: command_ctx(config, projections::Appender::new(log.clone()))?,
        node,
        branding: templates::Branding { service: config.hostname.clone(), confirmation_link: !settings.disable_confirmation_link },
        settings,
        email,
        moderation,
    };
    Ok(tokio::spawn(Arc::new(sender).run()))
}

impl Sender {
    async fn run(self: Arc<Self>) {
        loop {
            let head = self.log.head().await.map(|h| h.position).unwrap_or(0);
            match projections::notifications::due(&self.log, now_micros(), 64).await {
                Ok(rows) => {
                    futures_util::stream::iter(rows)
                        .for_each_concurrent(CONCURRENCY, |row| {
                            let me = self.clone();
                            async move { me.attempt(&row.id).await }
                        })
                        .await;
                }
                Err(e) => tracing::error!(error = %e, "outbox: reading the due messages failed"),
            }
            let wait = match projections::notifications::next_due(&self.log).await {
                Ok(Some(at)) => {
                    let until = at.saturating_sub(now_micros()).max(0);
                    Duration::from_micros(u64::try_from(until).unwrap_or(0)).clamp(Duration::from_millis(50), MAX_IDLE)
                }
                _ => MAX_IDLE,
            };
            // A new append (a queued message) ends the wait early.
            self.log.wait_past(head, wait).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn attempt(&self, id: &str) {
        let lease = i64::try_from(LEASE.as_micros()).unwrap_or(i64::MAX);
        let claim = match commands::claim_notification(&self.ctx, id, &self.node, lease).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(notification = id, error = %e, "outbox: claiming failed");
                return;
            }
        };
        let n = &claim.notification;
        let outcome = match tokio::time::timeout(LEASE / 2, self.deliver(n)).await {
            Ok(o) => o,
            Err(_) => Outcome::Retryable(format!("no answer within {:?}", LEASE / 2)),
        };
        match &outcome {
            Outcome::Sent => {
                tracing::info!(notification = id, channel = n.channel.as_str(), template = n.template.as_str(), attempt = claim.attempt, "notification sent")
            }
            Outcome::Retryable(e) | Outcome::Permanent(e) => tracing::warn!(
                notification = id,
                channel = n.channel.as_str(),
                template = n.template.as_str(),
                attempt = claim.attempt,
                error = %e,
                "notification not sent"
            ),
        }
        match commands::record_notification_outcome(&self.ctx, id, claim.attempt, &outcome, self.settings.retry).await {
            Ok(n::NotificationEvent::Failed { error, .. }) => {
                tracing::error!(notification = id, attempts = claim.attempt, %error, "notification failed for good")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(notification = id, error = %e, "outbox: recording the outcome failed"),
        }
    }

    async fn deliver(&self, n: &Notification) -> Outcome {
        let content = match Content::open(&self.ctx.kek, &n.id, &n.sealed) {
            Ok(c) => c,
            Err(e) => return Outcome::Permanent(e.to_string()),
        };
        let r = templates::render(n.template, &content, &self.branding);
        if let Err(e) = n::check_address(n.channel, &n.to).and_then(|()| n::check_subject(&r.subject)) {
            return Outcome::Permanent(e.to_string());
        }
        let sent = match n.channel {
            Channel::Email => {
                let moderation = if n.template == Template::AdminMessage { self.moderation.as_ref() } else { None };
                match (moderation, &self.email) {
                    (Some(m), _) => m.send(&n.to, &r.subject, &r.text, &r.html, None).await,
                    (None, Email::Smtp(s)) => s.send(&n.to, &r.subject, &r.text, &r.html, None).await,
                    (None, Email::Sink { data_directory, from }) => {
                        crate::mail::deliver(data_directory, from, &n.to, n.template.as_str(), &r.subject, &r.text)
                            .map_err(|e| format!("dev mail sink: {e}"))
                    }
                }
            }
            Channel::Discord => channels::discord(&self.settings.channels, &n.to, &r.text).await,
            Channel::Telegram => channels::telegram(&self.settings.channels, &n.to, &r.text).await,
            Channel::Signal => channels::signal(&self.settings.channels, &n.to, &r.text).await,
        };
        match sent {
            Ok(()) => Outcome::Sent,
            Err(e) => Outcome::Retryable(e),
        }
    }
}
