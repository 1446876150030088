//! Admin `com.atproto.admin.sendEmail` (reference semantics): the recipient account in any status
//! (`Recipient not found` otherwise), its address required; the operator's subject (default
//! "Message via your PDS", no line breaks) and HTML content are sealed into a queued
//! notification (`queue_notification.rs`); the outbox sends it (through
//! `PDS_MODERATION_EMAIL_SMTP_URL` when set). Queued is what `{sent: true}` means here.

use domain::notification::{Content, Template};

use crate::queue_notification::{queue_notification, Message};
use crate::{load_account, CommandError, Ctx};

/// The longest content accepted (the reference sets none; this keeps one event small).
pub const MAX_CONTENT: usize = 100_000;

pub async fn admin_send_email(ctx: &Ctx, recipient_did: &str, subject: Option<&str>, content: &str) -> Result<String, CommandError> {
    let (state, _) = load_account(ctx.log(), recipient_did).await?;
    let account = state.live().ok_or_else(|| CommandError::InvalidRequest("Recipient not found".into()))?;
    if account.email.is_empty() {
        return Err(CommandError::InvalidRequest("account does not have an email address".into()));
    }
    if content.len() > MAX_CONTENT {
        return Err(CommandError::InvalidRequest(format!("content is longer than {MAX_CONTENT} bytes")));
    }
    let subject = subject.unwrap_or(Template::AdminMessage.default_subject());
    let content = Content { subject: Some(subject.to_owned()), body: Some(content.to_owned()), ..Content::default() };
    queue_notification(ctx, &Message::email(recipient_did, &account.email, Template::AdminMessage, content)).await
}
