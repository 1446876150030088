//! The outbox's commands (`domain::notification`, stream `notification/<id>`):
//! - [`notification_append`] — the `notification.queued` append of a message, for a command to
//!   put in the same append as the events that caused it (a token's hash and the mail carrying
//!   it commit together or not at all); its secret part sealed under `PDS_KEY_ENCRYPTION_KEY`.
//! - [`queue_notification`] — the same, appended alone (`admin.sendEmail`).
//! - [`claim_notification`] — a node takes the next attempt, appended at the stream version it
//!   read: two nodes racing for one message, one wins (the other sees a conflict: `None`).
//! - [`record_notification_outcome`] — `sent`, `attempt_failed` (retry at a back-off) or `failed`.
//!
//! Never sends anything itself (`api`'s outbox does) and never appends a token in the clear.

use domain::notification::{self as n, Channel, Content, Notification, NotificationEvent, Outcome, RetryPolicy, Template};
use eventlog::{AppendError, ExpectedVersion, NewEvent, StreamAppend};

use crate::{now, CommandError, Ctx};

/// A message to queue for an account.
#[derive(Debug, Clone)]
pub struct Message {
    pub did: String,
    pub channel: Channel,
    /// The channel address (an email address for [`Channel::Email`]).
    pub to: String,
    pub template: Template,
    pub content: Content,
}

impl Message {
    /// An email to `to` about `did`'s account.
    pub fn email(did: &str, to: &str, template: Template, content: Content) -> Message {
        Message { did: did.to_owned(), channel: Channel::Email, to: to.to_owned(), template, content }
    }
}

fn events(stream_events: &[NotificationEvent]) -> Vec<NewEvent> {
    stream_events.iter().map(|e| NewEvent::new(e.event_type(), n::EVENT_VERSION, e.to_payload())).collect()
}

pub(crate) fn refused(e: n::NotificationError) -> CommandError {
    CommandError::InvalidRequest(e.to_string())
}

/// The append that queues `message` (a new stream); refuses a recipient or subject that could
/// inject a header, or an invalid channel address.
pub fn notification_append(ctx: &Ctx, message: &Message) -> Result<StreamAppend, CommandError> {
    if let Some(s) = &message.content.subject {
        n::check_subject(s).map_err(refused)?;
    }
    let id = n::generate_id();
    let sealed = message.content.seal(&ctx.kek, &id).map_err(|e| CommandError::Internal(e.to_string()))?;
    let (now_micros, _) = now();
    let queued = n::decide_queue(&id, &message.did, message.channel, &message.to, message.template, sealed, now_micros)
        .map_err(refused)?;
    Ok(StreamAppend::new(n::stream_name(&id), ExpectedVersion::NoStream, events(&queued)))
}

/// Queues `message` on its own; returns its id.
pub async fn queue_notification(ctx: &Ctx, message: &Message) -> Result<String, CommandError> {
    let append = notification_append(ctx, message)?;
    let id = append.stream.trim_start_matches("notification/").to_owned();
    ctx.appender.append(vec![append]).await.map_err(|e| CommandError::Internal(e.to_string()))?;
    Ok(id)
}

/// The message `id` folded from its stream, and the stream's version.
pub async fn load_notification(ctx: &Ctx, id: &str) -> Result<(Option<Notification>, i64), CommandError> {
    let envelopes = ctx.log().read_stream(&n::stream_name(id)).await?;
    let mut state = None;
    let mut version = 0;
    for e in &envelopes {
        let event = NotificationEvent::from_payload(&e.event_type, e.event_version, &e.payload)
            .map_err(|err| CommandError::Internal(format!("notification/{id} at {}: {err}", e.position)))?;
        state = n::evolve(state, &event);
        version = e.stream_version;
    }
    Ok((state, version))
}

/// A claimed attempt.
#[derive(Debug, Clone)]
pub struct Claim {
    pub attempt: i64,
    pub notification: Notification,
}

/// Claims the next attempt of `id` for `node` (lease `lease_micros`). `None`: not due, finished,
/// or another node claimed it first.
pub async fn claim_notification(ctx: &Ctx, id: &str, node: &str, lease_micros: i64) -> Result<Option<Claim>, CommandError> {
    let (state, version) = load_notification(ctx, id).await?;
    let (now_micros, _) = now();
    let claimed = match n::decide_claim(state.as_ref(), node, now_micros, lease_micros) {
        Ok(events) => events,
        Err(n::NotificationError::NotDue | n::NotificationError::Finished | n::NotificationError::NotFound) => return Ok(None),
        Err(e) => return Err(CommandError::Internal(e.to_string())),
    };
    let attempt = match claimed.first() {
        Some(NotificationEvent::Claimed { attempt, .. }) => *attempt,
        _ => return Ok(None),
    };
    let append = StreamAppend::new(n::stream_name(id), ExpectedVersion::Exact(version), events(&claimed));
    match ctx.appender.append(vec![append]).await {
        Ok(_) => {}
        Err(AppendError::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(CommandError::Internal(e.to_string())),
    }
    let notification = claimed.iter().fold(state, n::evolve).ok_or_else(|| CommandError::Internal("claim lost its state".into()))?;
    Ok(Some(Claim { attempt, notification }))
}

/// Records how `attempt` of `id` ended. A stale attempt (the lease lapsed and another node
/// claimed) is refused with `Conflict`.
pub async fn record_notification_outcome(
    ctx: &Ctx,
    id: &str,
    attempt: i64,
    outcome: &Outcome,
    policy: RetryPolicy,
) -> Result<NotificationEvent, CommandError> {
    let (state, version) = load_notification(ctx, id).await?;
    let (now_micros, _) = now();
    let mut decided = n::decide_outcome(state.as_ref(), attempt, outcome, policy, now_micros)
        .map_err(|_| CommandError::Conflict(n::stream_name(id)))?;
    let append = StreamAppend::new(n::stream_name(id), ExpectedVersion::Exact(version), events(&decided));
    ctx.appender.append(vec![append]).await.map_err(|e| crate::append_error(e, "", ""))?;
    decided.pop().ok_or_else(|| CommandError::Internal("no outcome event".into()))
}
