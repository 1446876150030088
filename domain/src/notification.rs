//! The outbox aggregate (stream `notification/<id>`): a message to the outside (an email, a
//! Discord / Telegram / Signal message) is an event first, then one node claims it, sends it and
//! records the outcome. Pure: the caller passes the time in.
//!
//! Events (DAG-CBOR payloads, never public):
//! - `notification.queued {id, did, channel, to, template, sealed, at}` — `sealed` is the
//!   message's secret part ([`Content`]: the emailed token, the handle, an operator's text)
//!   encrypted with AES-256-GCM under a key derived by HKDF from `PDS_KEY_ENCRYPTION_KEY` (info
//!   [`SEAL_INFO`], the notification id as associated data). The log never holds a token or a
//!   link in the clear; the sender opens `sealed` and renders the templates at send time.
//! - `notification.claimed {attempt, node, until, at}` — appended at the expected stream version
//!   the claimer read: of two nodes only one wins an attempt. `until` is the lease: a node that
//!   dies mid-send leaves the message claimable again after it.
//! - `notification.sent {attempt, at}`, `notification.attempt_failed {attempt, error, retryAt,
//!   at}`, `notification.failed {attempt, error, at}` (no attempt left, or not sendable at all).
//!
//! Never decides on I/O results it did not get from the caller; never holds a plaintext token.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use crate::cbor;

pub const QUEUED: &str = "notification.queued";
pub const CLAIMED: &str = "notification.claimed";
pub const SENT: &str = "notification.sent";
pub const ATTEMPT_FAILED: &str = "notification.attempt_failed";
pub const FAILED: &str = "notification.failed";
pub const EVENT_TYPES: [&str; 5] = [QUEUED, CLAIMED, SENT, ATTEMPT_FAILED, FAILED];
pub const EVENT_VERSION: i32 = 1;
/// HKDF info of the sealing key (distinct from the signing-key one).
pub const SEAL_INFO: &[u8] = b"pds notification content v1";
/// Longest error text kept in an event.
pub const MAX_ERROR_LEN: usize = 500;
/// Longest subject accepted.
pub const MAX_SUBJECT_LEN: usize = 500;

/// The stream of notification `id`.
pub fn stream_name(id: &str) -> String {
    format!("notification/{id}")
}

/// A fresh notification id (16 random bytes, lowercase hex).
pub fn generate_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Discord,
    Telegram,
    Signal,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Discord, Channel::Telegram, Channel::Signal];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Discord => "discord",
            Channel::Telegram => "telegram",
            Channel::Signal => "signal",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Which message (one text + one HTML template each, in `api/templates/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    ConfirmEmail,
    UpdateEmail,
    ResetPassword,
    DeleteAccount,
    PlcOperation,
    SignIn,
    /// `com.atproto.admin.sendEmail`: the operator's subject and HTML content.
    AdminMessage,
    /// The code that proves a channel address belongs to the account.
    ChannelVerification,
}

impl Template {
    pub const ALL: [Template; 8] = [
        Template::ConfirmEmail,
        Template::UpdateEmail,
        Template::ResetPassword,
        Template::DeleteAccount,
        Template::PlcOperation,
        Template::SignIn,
        Template::AdminMessage,
        Template::ChannelVerification,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Template::ConfirmEmail => "confirm_email",
            Template::UpdateEmail => "update_email",
            Template::ResetPassword => "reset_password",
            Template::DeleteAccount => "delete_account",
            Template::PlcOperation => "plc_operation",
            Template::SignIn => "sign_in",
            Template::AdminMessage => "admin_message",
            Template::ChannelVerification => "channel_verification",
        }
    }

    pub fn parse(s: &str) -> Option<Template> {
        Template::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The reference's subjects (`packages/pds/src/mailer/index.ts`); ours for the sign-in code
    /// and channel verification.
    pub fn default_subject(self) -> &'static str {
        match self {
            Template::ConfirmEmail => "Email Confirmation",
            Template::UpdateEmail => "Email Update Requested",
            Template::ResetPassword => "Password Reset Requested",
            Template::DeleteAccount => "Account Deletion Requested",
            Template::PlcOperation => "PLC Update Operation Requested",
            Template::SignIn => "Sign in code",
            Template::AdminMessage => "Message via your PDS",
            Template::ChannelVerification => "Verify this notification channel",
        }
    }
}

/// The secret part of a message, sealed in `notification.queued`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub token: Option<String>,
    pub handle: Option<String>,
    pub subject: Option<String>,
    /// Operator-written HTML (`sendEmail`).
    pub body: Option<String>,
}

impl Content {
    fn to_cbor(&self) -> Vec<u8> {
        let mut m = BTreeMap::new();
        for (k, v) in [("token", &self.token), ("handle", &self.handle), ("subject", &self.subject), ("body", &self.body)] {
            if let Some(v) = v {
                m.insert(k.to_owned(), Ipld::String(v.clone()));
            }
        }
        cbor::encode(&Ipld::Map(m)).unwrap_or_default()
    }

    fn from_cbor(bytes: &[u8]) -> Result<Content, NotificationError> {
        let Ipld::Map(m) = cbor::decode(bytes).map_err(|_| NotificationError::Unsealable)? else {
            return Err(NotificationError::Unsealable);
        };
        let get = |k: &str| match m.get(k) {
            Some(Ipld::String(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(Content { token: get("token"), handle: get("handle"), subject: get("subject"), body: get("body") })
    }

    /// Encrypts for notification `id`.
    pub fn seal(&self, kek: &[u8; 32], id: &str) -> Result<Vec<u8>, NotificationError> {
        crate::key_encryption::seal(kek, SEAL_INFO, id.as_bytes(), &self.to_cbor()).map_err(|_| NotificationError::Unsealable)
    }

    /// Decrypts `sealed` of notification `id`.
    pub fn open(kek: &[u8; 32], id: &str, sealed: &[u8]) -> Result<Content, NotificationError> {
        let plain = crate::key_encryption::open(kek, SEAL_INFO, id.as_bytes(), sealed).map_err(|_| NotificationError::Unsealable)?;
        Content::from_cbor(&plain)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationEvent {
    Queued { id: String, did: String, channel: Channel, to: String, template: Template, sealed: Vec<u8>, at: i64 },
    Claimed { attempt: i64, node: String, until: i64, at: i64 },
    Sent { attempt: i64, at: i64 },
    AttemptFailed { attempt: i64, error: String, retry_at: i64, at: i64 },
    Failed { attempt: i64, error: String, at: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its next attempt (at `next_at`).
    Queued,
    /// Claimed by a node until `next_at`.
    Sending,
    Sent,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub did: String,
    pub channel: Channel,
    pub to: String,
    pub template: Template,
    pub sealed: Vec<u8>,
    pub queued_at: i64,
    pub status: Status,
    /// Attempts started so far.
    pub attempts: i64,
    /// Queued: when the next attempt is due; Sending: when the claim lapses.
    pub next_at: i64,
    pub last_error: Option<String>,
}

/// Applies one event; events that do not fit are ignored.
pub fn evolve(state: Option<Notification>, event: &NotificationEvent) -> Option<Notification> {
    use NotificationEvent as E;
    match (state, event) {
        (None, E::Queued { id, did, channel, to, template, sealed, at }) => Some(Notification {
            id: id.clone(),
            did: did.clone(),
            channel: *channel,
            to: to.clone(),
            template: *template,
            sealed: sealed.clone(),
            queued_at: *at,
            status: Status::Queued,
            attempts: 0,
            next_at: *at,
            last_error: None,
        }),
        (Some(mut n), E::Claimed { attempt, until, .. }) => {
            n.status = Status::Sending;
            n.attempts = *attempt;
            n.next_at = *until;
            Some(n)
        }
        (Some(mut n), E::Sent { .. }) => {
            n.status = Status::Sent;
            Some(n)
        }
        (Some(mut n), E::AttemptFailed { error, retry_at, .. }) => {
            n.status = Status::Queued;
            n.next_at = *retry_at;
            n.last_error = Some(error.clone());
            Some(n)
        }
        (Some(mut n), E::Failed { error, .. }) => {
            n.status = Status::Failed;
            n.last_error = Some(error.clone());
            Some(n)
        }
        (s, _) => s,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("{0} must not contain line breaks or control characters")]
    HeaderInjection(&'static str),
    #[error("invalid {channel} address: {reason}")]
    InvalidAddress { channel: &'static str, reason: &'static str },
    #[error("subject is longer than {MAX_SUBJECT_LEN} bytes")]
    SubjectTooLong,
    #[error("no such notification")]
    NotFound,
    #[error("the notification is already sent or failed")]
    Finished,
    #[error("the notification is not due yet")]
    NotDue,
    #[error("attempt {0} is no longer the current one")]
    StaleAttempt(i64),
    #[error("the message content cannot be sealed or opened (wrong PDS_KEY_ENCRYPTION_KEY?)")]
    Unsealable,
}

/// A header value (recipient, subject): refused if it holds CR, LF or another control character
/// (tab aside), so nothing can add a header or end the header block.
pub fn check_header(what: &'static str, value: &str) -> Result<(), NotificationError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(NotificationError::HeaderInjection(what));
    }
    Ok(())
}

/// A subject for a message: no control characters, at most [`MAX_SUBJECT_LEN`] bytes.
pub fn check_subject(subject: &str) -> Result<(), NotificationError> {
    check_header("subject", subject)?;
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(NotificationError::SubjectTooLong);
    }
    Ok(())
}

/// The address of `channel`, validated:
/// - email: `local@domain`, printable ASCII or UTF-8 without spaces, control characters, `<>`,
///   `,` or `;`, one `@`, at most 254 bytes;
/// - discord: a webhook as `<id>/<token>` (id digits, token `[A-Za-z0-9_-]`, as Discord issues them);
/// - telegram: a chat id, an integer (negative for groups) of at most 20 digits;
/// - signal: an E.164 phone number, `+` and 7 to 15 digits, the first not 0.
pub fn check_address(channel: Channel, address: &str) -> Result<(), NotificationError> {
    let bad = |reason: &'static str| Err(NotificationError::InvalidAddress { channel: channel.as_str(), reason });
    match channel {
        Channel::Email => {
            check_header("recipient", address)?;
            if address.len() > 254 {
                return bad("longer than 254 bytes");
            }
            if address.chars().any(|c| c.is_whitespace() || "<>,;\"()[]\\".contains(c)) {
                return bad("spaces and <>,;\"()[]\\ are not allowed");
            }
            match address.split_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => Ok(()),
                _ => bad("expected local@domain"),
            }
        }
        Channel::Discord => {
            let Some((id, token)) = address.split_once('/') else { return bad("expected <webhook id>/<webhook token>") };
            if id.is_empty() || id.len() > 25 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return bad("the webhook id must be digits");
            }
            if token.is_empty() || token.len() > 100 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return bad("the webhook token must be letters, digits, _ and -");
            }
            Ok(())
        }
        Channel::Telegram => {
            let digits = address.strip_prefix('-').unwrap_or(address);
            if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
                return bad("a chat id is an integer");
            }
            Ok(())
        }
        Channel::Signal => {
            let Some(digits) = address.strip_prefix('+') else { return bad("an E.164 number starts with +") };
            if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
                return bad("an E.164 number is + and 7 to 15 digits, the first not 0");
            }
            Ok(())
        }
    }
}

/// A new message.
pub fn decide_queue(
    id: &str,
    did: &str,
    channel: Channel,
    to: &str,
    template: Template,
    sealed: Vec<u8>,
    now: i64,
) -> Result<Vec<NotificationEvent>, NotificationError> {
    check_address(channel, to)?;
    Ok(vec![NotificationEvent::Queued {
        id: id.to_owned(),
        did: did.to_owned(),
        channel,
        to: to.to_owned(),
        template,
        sealed,
        at: now,
    }])
}

/// A node takes the next attempt: due (queued and `next_at` passed, or a claim whose lease
/// lapsed) and not finished.
pub fn decide_claim(state: Option<&Notification>, node: &str, now: i64, lease: i64) -> Result<Vec<NotificationEvent>, NotificationError> {
    let n = state.ok_or(NotificationError::NotFound)?;
    match n.status {
        Status::Sent | Status::Failed => Err(NotificationError::Finished),
        Status::Queued | Status::Sending if n.next_at > now => Err(NotificationError::NotDue),
        Status::Queued | Status::Sending => Ok(vec![NotificationEvent::Claimed {
            attempt: n.attempts + 1,
            node: node.to_owned(),
            until: now.saturating_add(lease),
            at: now,
        }]),
    }
}

/// How a send attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Worth another attempt (connection refused, timeout, 4xx/5xx, 429).
    Retryable(String),
    /// Never sendable (content cannot be opened, no transport for the channel).
    Permanent(String),
}

/// Retries: attempt n failed → the next one after `base × 2^(n−1)`, at most `max_delay`; after
/// `max_attempts` attempts the message is failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: i64,
    pub max_delay: i64,
    pub max_attempts: i64,
}

impl RetryPolicy {
    pub fn delay(&self, attempt: i64) -> i64 {
        let shift = u32::try_from((attempt - 1).clamp(0, 40)).unwrap_or(40);
        self.base.saturating_mul(1i64 << shift).min(self.max_delay).max(0)
    }
}

/// One line of at most [`MAX_ERROR_LEN`] bytes (on a char boundary).
pub fn clean_error(error: &str) -> String {
    let one_line: String = error.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut end = one_line.len().min(MAX_ERROR_LEN);
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    one_line[..end].to_owned()
}

/// The outcome of `attempt`, which must be the current claim.
pub fn decide_outcome(
    state: Option<&Notification>,
    attempt: i64,
    outcome: &Outcome,
    policy: RetryPolicy,
    now: i64,
) -> Result<Vec<NotificationEvent>, NotificationError> {
    let n = state.ok_or(NotificationError::NotFound)?;
    if n.status != Status::Sending || n.attempts != attempt {
        return Err(NotificationError::StaleAttempt(attempt));
    }
    Ok(vec![match outcome {
        Outcome::Sent => NotificationEvent::Sent { attempt, at: now },
        Outcome::Permanent(e) => NotificationEvent::Failed { attempt, error: clean_error(e), at: now },
        Outcome::Retryable(e) if attempt >= policy.max_attempts => {
            NotificationEvent::Failed { attempt, error: clean_error(e), at: now }
        }
        Outcome::Retryable(e) => NotificationEvent::AttemptFailed {
            attempt,
            error: clean_error(e),
            retry_at: now.saturating_add(policy.delay(attempt)),
            at: now,
        },
    }])
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationDecodeError {
    #[error("unknown notification event type {0}")]
    UnknownType(String),
    #[error("unknown version {0}")]
    UnknownVersion(i32),
    #[error(transparent)]
    Cbor(#[from] cbor::CborError),
    #[error("payload: {0}")]
    Field(&'static str),
}

impl NotificationEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            NotificationEvent::Queued { .. } => QUEUED,
            NotificationEvent::Claimed { .. } => CLAIMED,
            NotificationEvent::Sent { .. } => SENT,
            NotificationEvent::AttemptFailed { .. } => ATTEMPT_FAILED,
            NotificationEvent::Failed { .. } => FAILED,
        }
    }

    /// The canonical DAG-CBOR payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let s = |v: &str| Ipld::String(v.to_owned());
        let i = |v: i64| Ipld::Integer(i128::from(v));
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Ipld| {
            m.insert(k.to_owned(), v);
        };
        match self {
            NotificationEvent::Queued { id, did, channel, to, template, sealed, at } => {
                put("id", s(id));
                put("did", s(did));
                put("channel", s(channel.as_str()));
                put("to", s(to));
                put("template", s(template.as_str()));
                put("sealed", Ipld::Bytes(sealed.clone()));
                put("at", i(*at));
            }
            NotificationEvent::Claimed { attempt, node, until, at } => {
                put("attempt", i(*attempt));
                put("node", s(node));
                put("until", i(*until));
                put("at", i(*at));
            }
            NotificationEvent::Sent { attempt, at } => {
                put("attempt", i(*attempt));
                put("at", i(*at));
            }
            NotificationEvent::AttemptFailed { attempt, error, retry_at, at } => {
                put("attempt", i(*attempt));
                put("error", s(error));
                put("retryAt", i(*retry_at));
                put("at", i(*at));
            }
            NotificationEvent::Failed { attempt, error, at } => {
                put("attempt", i(*attempt));
                put("error", s(error));
                put("at", i(*at));
            }
        }
        cbor::encode(&Ipld::Map(m)).unwrap_or_default()
    }

    pub fn from_payload(event_type: &str, version: i32, payload: &[u8]) -> Result<NotificationEvent, NotificationDecodeError> {
        use NotificationDecodeError as D;
        if !EVENT_TYPES.contains(&event_type) {
            return Err(D::UnknownType(event_type.to_owned()));
        }
        if version != EVENT_VERSION {
            return Err(D::UnknownVersion(version));
        }
        let Ipld::Map(m) = cbor::decode(payload)? else { return Err(D::Field("not a map")) };
        let text = |k: &'static str| match m.get(k) {
            Some(Ipld::String(v)) => Ok(v.clone()),
            _ => Err(D::Field(k)),
        };
        let int = |k: &'static str| match m.get(k) {
            Some(Ipld::Integer(v)) => i64::try_from(*v).map_err(|_| D::Field(k)),
            _ => Err(D::Field(k)),
        };
        Ok(match event_type {
            QUEUED => NotificationEvent::Queued {
                id: text("id")?,
                did: text("did")?,
                channel: Channel::parse(&text("channel")?).ok_or(D::Field("channel"))?,
                to: text("to")?,
                template: Template::parse(&text("template")?).ok_or(D::Field("template"))?,
                sealed: match m.get("sealed") {
                    Some(Ipld::Bytes(b)) => b.clone(),
                    _ => return Err(D::Field("sealed")),
                },
                at: int("at")?,
            },
            CLAIMED => NotificationEvent::Claimed { attempt: int("attempt")?, node: text("node")?, until: int("until")?, at: int("at")? },
            SENT => NotificationEvent::Sent { attempt: int("attempt")?, at: int("at")? },
            ATTEMPT_FAILED => NotificationEvent::AttemptFailed {
                attempt: int("attempt")?,
                error: text("error")?,
                retry_at: int("retryAt")?,
                at: int("at")?,
            },
            _ => NotificationEvent::Failed { attempt: int("attempt")?, error: text("error")?, at: int("at")? },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEK: [u8; 32] = [9u8; 32];
    const POLICY: RetryPolicy = RetryPolicy { base: 1_000, max_delay: 5_000, max_attempts: 3 };

    fn queued() -> Option<Notification> {
        let e = decide_queue("n1", "did:plc:a", Channel::Email, "a@example.com", Template::ResetPassword, vec![1], 100).unwrap();
        e.iter().fold(None, evolve)
    }

    #[test]
    fn events_round_trip_through_payloads() {
        let events = [
            decide_queue("n1", "did:plc:a", Channel::Signal, "+15551234567", Template::SignIn, vec![1, 2], 5).unwrap().remove(0),
            NotificationEvent::Claimed { attempt: 1, node: "node-a".into(), until: 9, at: 5 },
            NotificationEvent::Sent { attempt: 1, at: 6 },
            NotificationEvent::AttemptFailed { attempt: 2, error: "refused".into(), retry_at: 10, at: 7 },
            NotificationEvent::Failed { attempt: 3, error: "gone".into(), at: 8 },
        ];
        for e in events {
            let back = NotificationEvent::from_payload(e.event_type(), EVENT_VERSION, &e.to_payload()).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn sealed_content_opens_only_for_its_id_and_key() {
        let c = Content { token: Some("ABCDE-FGHIJ".into()), handle: Some("alice.test".into()), ..Content::default() };
        let sealed = c.seal(&KEK, "n1").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"ABCDE-FGHIJ"));
        assert_eq!(Content::open(&KEK, "n1", &sealed).unwrap(), c);
        assert_eq!(Content::open(&KEK, "n2", &sealed), Err(NotificationError::Unsealable));
        assert_eq!(Content::open(&[1u8; 32], "n1", &sealed), Err(NotificationError::Unsealable));
    }

    #[test]
    fn one_claim_per_attempt_then_retries_then_failed() {
        let mut s = queued();
        assert_eq!(decide_claim(s.as_ref(), "a", 99, 50), Err(NotificationError::NotDue));
        for attempt in 1..=3 {
            let now = s.as_ref().unwrap().next_at;
            let claim = decide_claim(s.as_ref(), "a", now, 50).unwrap();
            s = claim.iter().fold(s, evolve);
            assert_eq!(decide_claim(s.as_ref(), "b", now, 50), Err(NotificationError::NotDue), "claimed: not due for another node");
            let out = decide_outcome(s.as_ref(), attempt, &Outcome::Retryable("connection refused\r\nX: y".into()), POLICY, now).unwrap();
            s = out.iter().fold(s, evolve);
            let n = s.as_ref().unwrap();
            assert_eq!(n.last_error.as_deref(), Some("connection refused  X: y"));
            if attempt < 3 {
                assert_eq!(n.status, Status::Queued);
                assert_eq!(n.next_at, now + POLICY.delay(attempt));
            } else {
                assert_eq!(n.status, Status::Failed);
            }
        }
        assert_eq!(decide_claim(s.as_ref(), "a", i64::MAX, 50), Err(NotificationError::Finished));
    }

    #[test]
    fn a_lapsed_claim_is_claimable_and_a_stale_outcome_refused() {
        let mut s = queued();
        s = decide_claim(s.as_ref(), "a", 100, 50).unwrap().iter().fold(s, evolve);
        s = decide_claim(s.as_ref(), "b", 150, 50).unwrap().iter().fold(s, evolve);
        assert_eq!(s.as_ref().unwrap().attempts, 2);
        assert_eq!(decide_outcome(s.as_ref(), 1, &Outcome::Sent, POLICY, 160), Err(NotificationError::StaleAttempt(1)));
        s = decide_outcome(s.as_ref(), 2, &Outcome::Sent, POLICY, 160).unwrap().iter().fold(s, evolve);
        assert_eq!(s.unwrap().status, Status::Sent);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!([1, 2, 3, 4, 60].map(|a| POLICY.delay(a)), [1_000, 2_000, 4_000, 5_000, 5_000]);
    }

    #[test]
    fn addresses_and_headers() {
        let cases: &[(Channel, &str, bool)] = &[
            (Channel::Email, "alice@example.com", true),
            (Channel::Email, "alice@example.com\r\nBcc: eve@example.com", false),
            (Channel::Email, "alice@example.com\n", false),
            (Channel::Email, "Alice <alice@example.com>", false),
            (Channel::Email, "a,b@example.com", false),
            (Channel::Email, "no-at.example.com", false),
            (Channel::Discord, "123456789012345678/abcDEF_-123", true),
            (Channel::Discord, "12ab/abc", false),
            (Channel::Discord, "123/abc/../x", false),
            (Channel::Telegram, "123456789", true),
            (Channel::Telegram, "-1001234567890", true),
            (Channel::Telegram, "12; rm -rf /", false),
            (Channel::Telegram, "@channel", false),
            (Channel::Signal, "+15551234567", true),
            (Channel::Signal, "+1555$(id)", false),
            (Channel::Signal, "15551234567", false),
            (Channel::Signal, "+0555123456", false),
            (Channel::Signal, "+1555123456789012", false),
        ];
        for (channel, address, ok) in cases {
            assert_eq!(check_address(*channel, address).is_ok(), *ok, "{channel:?} {address:?}");
        }
        assert!(check_subject("Hello").is_ok());
        assert_eq!(check_subject("Hi\r\nBcc: x"), Err(NotificationError::HeaderInjection("subject")));
        assert_eq!(check_subject(&"x".repeat(501)), Err(NotificationError::SubjectTooLong));
    }
}
