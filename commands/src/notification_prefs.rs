//! `org.eventpds.account.*` notification preferences (`domain::notification_prefs`, stream
//! `notification-prefs/<did>`, folded on read: it is a handful of events):
//! - [`route`] — where a token message goes: the account's preferred verified chat channel, or
//!   email;
//! - [`start_channel_verification`] — a new address and the code sent to it, in one append (the
//!   code's hash in the prefs stream, the code sealed in the queued notification);
//! - [`confirm_channel_verification`], [`set_preferred_channel`], [`notification_prefs`].
//!
//! Never stores a code in the clear.

use domain::notification::{Channel, Content, Template};
use domain::notification_prefs::{self as p, Prefs, PrefsError, PrefsEvent};
use eventlog::{AppendError, ExpectedVersion, NewEvent, StreamAppend};

use crate::queue_notification::{notification_append, Message};
use crate::{load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

fn prefs_error(e: PrefsError) -> CommandError {
    match e {
        PrefsError::InvalidToken => CommandError::InvalidToken("Token is invalid".into()),
        PrefsError::ExpiredToken => CommandError::ExpiredToken("Token is expired".into()),
        PrefsError::NotVerified(_) => CommandError::Named { name: "ChannelNotVerified", message: e.to_string() },
        other => CommandError::InvalidRequest(other.to_string()),
    }
}

/// The account's preferences and the stream's version.
pub async fn load_prefs(ctx: &Ctx, did: &str) -> Result<(Prefs, i64), CommandError> {
    let mut prefs = Prefs::default();
    let mut version = 0;
    for e in ctx.log().read_stream(&p::stream_name(did)).await? {
        let event = PrefsEvent::from_payload(&e.event_type, e.event_version, &e.payload)
            .map_err(|err| CommandError::Internal(format!("{} at {}: {err}", e.stream, e.position)))?;
        prefs = p::evolve(prefs, &event);
        version = e.stream_version;
    }
    Ok((prefs, version))
}

/// `message` sent on the account's preferred verified channel instead of email, if it has one.
pub async fn route(ctx: &Ctx, mut message: Message) -> Result<Message, CommandError> {
    let (prefs, _) = load_prefs(ctx, &message.did).await?;
    if let Some((channel, address)) = prefs.route() {
        message.channel = channel;
        message.to = address.to_owned();
    }
    Ok(message)
}

fn append(did: &str, version: i64, events: &[PrefsEvent]) -> StreamAppend {
    let events = events.iter().map(|e| NewEvent::new(e.event_type(), p::EVENT_VERSION, e.to_payload())).collect();
    StreamAppend::new(p::stream_name(did), ExpectedVersion::Exact(version), events)
}

async fn decide_on_prefs(
    ctx: &Ctx,
    did: &str,
    extra: Vec<StreamAppend>,
    decide: impl Fn(&Prefs, i64) -> Result<Vec<PrefsEvent>, PrefsError>,
) -> Result<(), CommandError> {
    for _ in 0..ATTEMPTS {
        let (prefs, version) = load_prefs(ctx, did).await?;
        let events = decide(&prefs, now().0).map_err(prefs_error)?;
        if events.is_empty() {
            return Ok(());
        }
        let mut batch = vec![append(did, version, &events)];
        batch.extend(extra.iter().cloned());
        match ctx.appender.append(batch).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict(p::stream_name(did)))
}

/// The account's preferences (the account must exist).
pub async fn notification_prefs(ctx: &Ctx, did: &str) -> Result<Prefs, CommandError> {
    Ok(load_prefs(ctx, did).await?.0)
}

/// Sets `address` for `channel` (unverified) and queues the code to it.
pub async fn start_channel_verification(ctx: &Ctx, did: &str, channel: Channel, address: &str) -> Result<(), CommandError> {
    let (state, _) = load_account(ctx.log(), did).await?;
    let account = state.live().ok_or(CommandError::AccountNotFound)?;
    let code = domain::email_token::generate();
    let hash = domain::email_token::hash(&ctx.jwt_secret, &code);
    // The address is checked (refused with a clear error) before anything is queued.
    p::decide_start_verification(channel, address, hash.clone(), 0, 0).map_err(prefs_error)?;
    let content = Content { token: Some(code), handle: Some(account.handle.as_str().to_owned()), ..Content::default() };
    let message = Message { did: did.to_owned(), channel, to: address.to_owned(), template: Template::ChannelVerification, content };
    let queued = notification_append(ctx, &message)?;
    decide_on_prefs(ctx, did, vec![queued], |_, now| {
        p::decide_start_verification(channel, address, hash.clone(), now, domain::email_token::LIFETIME_MICROS)
    })
    .await
}

pub async fn confirm_channel_verification(ctx: &Ctx, did: &str, channel: Channel, code: &str) -> Result<(), CommandError> {
    let hash = domain::email_token::hash(&ctx.jwt_secret, code.trim());
    decide_on_prefs(ctx, did, vec![], |prefs, now| p::decide_confirm_verification(prefs, channel, &hash, now)).await
}

pub async fn set_preferred_channel(ctx: &Ctx, did: &str, channel: Channel) -> Result<(), CommandError> {
    decide_on_prefs(ctx, did, vec![], |prefs, now| p::decide_set_preferred(prefs, channel, now)).await
}
