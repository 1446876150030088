//! An account's notification preferences (stream `notification-prefs/<did>`, erased with the
//! account): the channel its messages prefer and its chat channel addresses (Discord webhook,
//! Telegram chat id, Signal number), each proved by a code sent there before it is used.
//! Email is always available and proved by `confirmEmail`, not here.
//!
//! Events (DAG-CBOR, never public): `notification_prefs.verification_started {channel, address,
//! codeHash, expiresAt, at}` (a new address replaces the old one, unverified; if that channel was
//! preferred, email is again), `notification_prefs.channel_verified {channel, address, at}`,
//! `notification_prefs.preferred_set {channel, at}`. Only the code's keyed hash is stored.
//! Pure: the caller passes the time in.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use crate::cbor;
use crate::notification::{check_address, Channel, NotificationError};

pub const VERIFICATION_STARTED: &str = "notification_prefs.verification_started";
pub const CHANNEL_VERIFIED: &str = "notification_prefs.channel_verified";
pub const PREFERRED_SET: &str = "notification_prefs.preferred_set";
pub const EVENT_TYPES: [&str; 3] = [VERIFICATION_STARTED, CHANNEL_VERIFIED, PREFERRED_SET];
pub const EVENT_VERSION: i32 = 1;

pub fn stream_name(did: &str) -> String {
    format!("notification-prefs/{did}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefsEvent {
    VerificationStarted { channel: Channel, address: String, code_hash: String, expires_at: i64, at: i64 },
    ChannelVerified { channel: Channel, address: String, at: i64 },
    PreferredSet { channel: Channel, at: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEntry {
    pub address: String,
    pub verified_at: Option<i64>,
    /// The pending code's hash and expiry.
    pub pending: Option<(String, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefs {
    pub preferred: Channel,
    pub channels: BTreeMap<&'static str, ChannelEntry>,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs { preferred: Channel::Email, channels: BTreeMap::new() }
    }
}

impl Prefs {
    pub fn entry(&self, channel: Channel) -> Option<&ChannelEntry> {
        self.channels.get(channel.as_str())
    }

    /// The verified address of the preferred channel (`None`: email).
    pub fn route(&self) -> Option<(Channel, &str)> {
        if self.preferred == Channel::Email {
            return None;
        }
        let e = self.entry(self.preferred)?;
        e.verified_at.map(|_| (self.preferred, e.address.as_str()))
    }
}

pub fn evolve(mut state: Prefs, event: &PrefsEvent) -> Prefs {
    match event {
        PrefsEvent::VerificationStarted { channel, address, code_hash, expires_at, .. } => {
            if state.preferred == *channel {
                state.preferred = Channel::Email;
            }
            state.channels.insert(
                channel.as_str(),
                ChannelEntry { address: address.clone(), verified_at: None, pending: Some((code_hash.clone(), *expires_at)) },
            );
        }
        PrefsEvent::ChannelVerified { channel, address, at } => {
            if let Some(e) = state.channels.get_mut(channel.as_str()).filter(|e| e.address == *address) {
                e.verified_at = Some(*at);
                e.pending = None;
            }
        }
        PrefsEvent::PreferredSet { channel, .. } => state.preferred = *channel,
    }
    state
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefsError {
    #[error("email is verified with confirmEmail")]
    EmailChannel,
    #[error(transparent)]
    Address(#[from] NotificationError),
    #[error("no verification is pending for this channel")]
    NothingPending,
    #[error("Token is invalid")]
    InvalidToken,
    #[error("Token is expired")]
    ExpiredToken,
    #[error("the {0} channel is not verified")]
    NotVerified(&'static str),
}

/// A new address for `channel` and the hash of the code sent to it (valid `lifetime`).
pub fn decide_start_verification(
    channel: Channel,
    address: &str,
    code_hash: String,
    now: i64,
    lifetime: i64,
) -> Result<Vec<PrefsEvent>, PrefsError> {
    if channel == Channel::Email {
        return Err(PrefsError::EmailChannel);
    }
    check_address(channel, address)?;
    Ok(vec![PrefsEvent::VerificationStarted {
        channel,
        address: address.to_owned(),
        code_hash,
        expires_at: now.saturating_add(lifetime),
        at: now,
    }])
}

/// The code sent to `channel`'s pending address.
pub fn decide_confirm_verification(state: &Prefs, channel: Channel, code_hash: &str, now: i64) -> Result<Vec<PrefsEvent>, PrefsError> {
    let entry = state.entry(channel).ok_or(PrefsError::NothingPending)?;
    let (hash, expires_at) = entry.pending.as_ref().ok_or(PrefsError::NothingPending)?;
    if !crate::password::hashes_equal(hash, code_hash) {
        return Err(PrefsError::InvalidToken);
    }
    if *expires_at <= now {
        return Err(PrefsError::ExpiredToken);
    }
    Ok(vec![PrefsEvent::ChannelVerified { channel, address: entry.address.clone(), at: now }])
}

/// The preferred channel: email, or a verified one.
pub fn decide_set_preferred(state: &Prefs, channel: Channel, now: i64) -> Result<Vec<PrefsEvent>, PrefsError> {
    if state.preferred == channel {
        return Ok(vec![]);
    }
    if channel != Channel::Email && state.entry(channel).and_then(|e| e.verified_at).is_none() {
        return Err(PrefsError::NotVerified(channel.as_str()));
    }
    Ok(vec![PrefsEvent::PreferredSet { channel, at: now }])
}

#[derive(Debug, thiserror::Error)]
pub enum PrefsDecodeError {
    #[error("unknown notification prefs event type {0}")]
    UnknownType(String),
    #[error("unknown version {0}")]
    UnknownVersion(i32),
    #[error(transparent)]
    Cbor(#[from] cbor::CborError),
    #[error("payload: {0}")]
    Field(&'static str),
}

impl PrefsEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            PrefsEvent::VerificationStarted { .. } => VERIFICATION_STARTED,
            PrefsEvent::ChannelVerified { .. } => CHANNEL_VERIFIED,
            PrefsEvent::PreferredSet { .. } => PREFERRED_SET,
        }
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let s = |v: &str| Ipld::String(v.to_owned());
        let i = |v: i64| Ipld::Integer(i128::from(v));
        let mut m = BTreeMap::new();
        match self {
            PrefsEvent::VerificationStarted { channel, address, code_hash, expires_at, at } => {
                m.insert("channel".to_owned(), s(channel.as_str()));
                m.insert("address".to_owned(), s(address));
                m.insert("codeHash".to_owned(), s(code_hash));
                m.insert("expiresAt".to_owned(), i(*expires_at));
                m.insert("at".to_owned(), i(*at));
            }
            PrefsEvent::ChannelVerified { channel, address, at } => {
                m.insert("channel".to_owned(), s(channel.as_str()));
                m.insert("address".to_owned(), s(address));
                m.insert("at".to_owned(), i(*at));
            }
            PrefsEvent::PreferredSet { channel, at } => {
                m.insert("channel".to_owned(), s(channel.as_str()));
                m.insert("at".to_owned(), i(*at));
            }
        }
        cbor::encode(&Ipld::Map(m)).unwrap_or_default()
    }

    pub fn from_payload(event_type: &str, version: i32, payload: &[u8]) -> Result<PrefsEvent, PrefsDecodeError> {
        use PrefsDecodeError as D;
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
        let channel = Channel::parse(&text("channel")?).ok_or(D::Field("channel"))?;
        Ok(match event_type {
            VERIFICATION_STARTED => PrefsEvent::VerificationStarted {
                channel,
                address: text("address")?,
                code_hash: text("codeHash")?,
                expires_at: int("expiresAt")?,
                at: int("at")?,
            },
            CHANNEL_VERIFIED => PrefsEvent::ChannelVerified { channel, address: text("address")?, at: int("at")? },
            _ => PrefsEvent::PreferredSet { channel, at: int("at")? },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fold(events: &[PrefsEvent]) -> Prefs {
        events.iter().fold(Prefs::default(), evolve)
    }

    #[test]
    fn verify_then_prefer_then_a_new_address_falls_back_to_email() {
        let mut log = decide_start_verification(Channel::Telegram, "12345", "h1".into(), 0, 100).unwrap();
        assert_eq!(decide_set_preferred(&fold(&log), Channel::Telegram, 1), Err(PrefsError::NotVerified("telegram")));
        assert_eq!(decide_confirm_verification(&fold(&log), Channel::Telegram, "h2", 1), Err(PrefsError::InvalidToken));
        assert_eq!(decide_confirm_verification(&fold(&log), Channel::Telegram, "h1", 100), Err(PrefsError::ExpiredToken));
        assert_eq!(decide_confirm_verification(&fold(&log), Channel::Signal, "h1", 1), Err(PrefsError::NothingPending));
        log.extend(decide_confirm_verification(&fold(&log), Channel::Telegram, "h1", 1).unwrap());
        assert_eq!(decide_confirm_verification(&fold(&log), Channel::Telegram, "h1", 2), Err(PrefsError::NothingPending), "used once");
        log.extend(decide_set_preferred(&fold(&log), Channel::Telegram, 2).unwrap());
        assert_eq!(fold(&log).route(), Some((Channel::Telegram, "12345")));
        assert_eq!(decide_set_preferred(&fold(&log), Channel::Telegram, 3), Ok(vec![]));
        log.extend(decide_start_verification(Channel::Telegram, "-100777", "h3".into(), 4, 100).unwrap());
        assert_eq!(fold(&log).preferred, Channel::Email);
        assert_eq!(fold(&log).route(), None);
        for e in &log {
            assert_eq!(&PrefsEvent::from_payload(e.event_type(), EVENT_VERSION, &e.to_payload()).unwrap(), e);
        }
    }

    #[test]
    fn addresses_are_checked_and_email_is_not_verified_here() {
        assert_eq!(decide_start_verification(Channel::Email, "a@b.c", "h".into(), 0, 1), Err(PrefsError::EmailChannel));
        assert!(matches!(decide_start_verification(Channel::Signal, "+1 555; reboot", "h".into(), 0, 1), Err(PrefsError::Address(_))));
        assert!(decide_start_verification(Channel::Discord, "1234/abc-DEF_9", "h".into(), 0, 1).is_ok());
    }
}
