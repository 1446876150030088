//! The OAuth aggregate, stream `oauth/<request id>`: a pushed authorization request, which the
//! user approves (a code is issued), which the client exchanges (the code is consumed and the
//! session's first tokens issued), whose refresh token rotates, until it is revoked. One stream
//! per request; after the exchange it is the session.
//!
//! Events (DAG-CBOR, never public; codes and refresh tokens only as `sha256_b64url` hashes):
//! `oauth.requested`, `oauth.device_bound` (the first browser to open the consent page owns the
//! request), `oauth.code_issued`, `oauth.code_consumed`, `oauth.token_issued`,
//! `oauth.token_rotated`, `oauth.revoked`. Single use of a code and of a refresh token across
//! nodes comes from appending at the version the decision was made on (a second node conflicts);
//! the `oauth` read model adds unique constraints on top.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use super::scope::{self, Scopes};
use super::{ct_eq, pkce, sha256_b64url};
use crate::cbor;

pub const REQUESTED: &str = "oauth.requested";
pub const CODE_ISSUED: &str = "oauth.code_issued";
pub const CODE_CONSUMED: &str = "oauth.code_consumed";
pub const TOKEN_ISSUED: &str = "oauth.token_issued";
pub const TOKEN_ROTATED: &str = "oauth.token_rotated";
pub const REVOKED: &str = "oauth.revoked";
pub const DEVICE_BOUND: &str = "oauth.device_bound";
pub const EVENT_TYPES: [&str; 7] = [REQUESTED, DEVICE_BOUND, CODE_ISSUED, CODE_CONSUMED, TOKEN_ISSUED, TOKEN_ROTATED, REVOKED];
pub const EVENT_VERSION: i32 = 1;

/// PAR `request_uri` lifetime (reference `PAR_EXPIRES_IN`), and code lifetime after approval.
pub const REQUEST_LIFETIME_MICROS: i64 = 5 * 60 * 1_000_000;
pub const CODE_LIFETIME_MICROS: i64 = 5 * 60 * 1_000_000;
/// Public clients: session 2 weeks, refresh inactivity 2 weeks (reference defaults).
pub const SESSION_LIFETIME_MICROS: i64 = 14 * 24 * 3600 * 1_000_000;
pub const REFRESH_INACTIVITY_MICROS: i64 = 14 * 24 * 3600 * 1_000_000;
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

pub fn stream_name(request_id: &str) -> String {
    format!("oauth/{request_id}")
}

/// `req-` followed by 64 hex digits.
pub fn is_request_id(id: &str) -> bool {
    id.strip_prefix("req-").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The authorization request as pushed (validated by the caller: client, redirect URI, scope,
/// PKCE challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub request_id: String,
    pub client_id: String,
    /// `none` or `private_key_jwt`.
    pub auth_method: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub code_challenge: String,
    /// The DPoP key thumbprint the request is bound to ("" = first proof at the token endpoint).
    pub dpop_jkt: String,
    pub login_hint: String,
    pub response_mode: String,
    pub expires_at: i64,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthEvent {
    Requested(Request),
    DeviceBound { device_id: String, at: i64 },
    CodeIssued { did: String, scope: String, code_hash: String, device_id: String, expires_at: i64, at: i64 },
    CodeConsumed { code_hash: String, at: i64 },
    TokenIssued { token_id: String, refresh_hash: String, dpop_jkt: String, at: i64 },
    TokenRotated { token_id: String, refresh_hash: String, previous_refresh_hash: String, at: i64 },
    Revoked { reason: String, at: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub did: String,
    pub scope: String,
    pub code_hash: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_id: String,
    pub refresh_hash: String,
    pub used_refresh_hashes: Vec<String>,
    pub dpop_jkt: String,
    pub created_at: i64,
    pub refreshed_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OAuthState {
    #[default]
    Absent,
    Live(Box<Flow>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub request: Request,
    /// The browser (device cookie) the request is bound to.
    pub device: Option<String>,
    pub approval: Option<Approval>,
    pub code_consumed: bool,
    pub session: Option<Session>,
    pub revoked: Option<String>,
}

impl OAuthState {
    pub fn flow(&self) -> Option<&Flow> {
        match self {
            OAuthState::Live(f) => Some(f),
            OAuthState::Absent => None,
        }
    }
}

pub fn evolve(state: OAuthState, e: &OAuthEvent) -> OAuthState {
    let mut f = match (state, e) {
        (OAuthState::Absent, OAuthEvent::Requested(r)) => {
            return OAuthState::Live(Box::new(Flow {
                request: r.clone(),
                device: None,
                approval: None,
                code_consumed: false,
                session: None,
                revoked: None,
            }))
        }
        (OAuthState::Live(f), _) => f,
        (s, _) => return s,
    };
    match e {
        OAuthEvent::Requested(_) => {}
        OAuthEvent::DeviceBound { device_id, .. } => f.device = Some(device_id.clone()),
        OAuthEvent::CodeIssued { did, scope, code_hash, expires_at, .. } => {
            f.approval = Some(Approval { did: did.clone(), scope: scope.clone(), code_hash: code_hash.clone(), expires_at: *expires_at });
        }
        OAuthEvent::CodeConsumed { .. } => f.code_consumed = true,
        OAuthEvent::TokenIssued { token_id, refresh_hash, dpop_jkt, at } => {
            f.session = Some(Session {
                token_id: token_id.clone(),
                refresh_hash: refresh_hash.clone(),
                used_refresh_hashes: vec![],
                dpop_jkt: dpop_jkt.clone(),
                created_at: *at,
                refreshed_at: *at,
            });
        }
        OAuthEvent::TokenRotated { token_id, refresh_hash, previous_refresh_hash, at } => {
            if let Some(s) = f.session.as_mut() {
                s.used_refresh_hashes.push(previous_refresh_hash.clone());
                s.token_id = token_id.clone();
                s.refresh_hash = refresh_hash.clone();
                s.refreshed_at = *at;
            }
        }
        OAuthEvent::Revoked { reason, .. } => f.revoked = Some(reason.clone()),
    }
    OAuthState::Live(f)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("Unknown request_uri")]
    UnknownRequest,
    #[error("This request has expired")]
    RequestExpired,
    #[error("This request was already authorized")]
    AlreadyAuthorized,
    #[error("This authorization request is in use on another device")]
    OtherDevice,
    #[error("This request is for another client")]
    ClientMismatch,
    #[error("The approved scope exceeds the requested scope")]
    ScopeEscalation,
    #[error(transparent)]
    Scope(#[from] scope::ScopeError),
    #[error("Invalid code")]
    InvalidCode,
    #[error("Code expired")]
    CodeExpired,
    #[error("Code replayed")]
    CodeReplayed,
    #[error("redirect_uri does not match the authorization request")]
    RedirectUriMismatch,
    #[error("DPoP key mismatch")]
    DpopKeyMismatch,
    #[error(transparent)]
    Pkce(#[from] pkce::PkceError),
    #[error("Invalid refresh token")]
    InvalidRefreshToken,
    #[error("Refresh token replayed")]
    RefreshReplayed,
    #[error("Session expired")]
    SessionExpired,
    #[error("Session revoked")]
    Revoked,
}

pub fn decide_request(state: &OAuthState, request: Request) -> Result<Vec<OAuthEvent>, OAuthError> {
    if state.flow().is_some() {
        return Err(OAuthError::AlreadyAuthorized);
    }
    Ok(vec![OAuthEvent::Requested(request)])
}

/// The consent page was opened by `device_id`: the first device binds the request; another one
/// is refused; the same one again changes nothing.
pub fn decide_bind_device(state: &OAuthState, client_id: &str, device_id: &str, now: i64) -> Result<Vec<OAuthEvent>, OAuthError> {
    let f = state.flow().ok_or(OAuthError::UnknownRequest)?;
    if f.request.client_id != client_id {
        return Err(OAuthError::ClientMismatch);
    }
    if f.approval.is_some() || f.revoked.is_some() {
        return Err(OAuthError::AlreadyAuthorized);
    }
    if f.request.expires_at <= now {
        return Err(OAuthError::RequestExpired);
    }
    match &f.device {
        None => Ok(vec![OAuthEvent::DeviceBound { device_id: device_id.to_owned(), at: now }]),
        Some(d) if d == device_id => Ok(vec![]),
        Some(_) => Err(OAuthError::OtherDevice),
    }
}

/// The user signed in as `did` and approved `approved_scope` (a subset of the request's, with
/// `atproto`): a code (hashed here) valid for 5 minutes.
pub fn decide_authorize(
    state: &OAuthState,
    client_id: &str,
    did: &str,
    approved_scope: &str,
    code: &str,
    device_id: &str,
    now: i64,
) -> Result<Vec<OAuthEvent>, OAuthError> {
    let f = state.flow().ok_or(OAuthError::UnknownRequest)?;
    if f.revoked.is_some() {
        return Err(OAuthError::Revoked);
    }
    if f.request.client_id != client_id {
        return Err(OAuthError::ClientMismatch);
    }
    if f.approval.is_some() {
        return Err(OAuthError::AlreadyAuthorized);
    }
    if f.device.as_deref().is_some_and(|d| d != device_id) {
        return Err(OAuthError::OtherDevice);
    }
    if f.request.expires_at <= now {
        return Err(OAuthError::RequestExpired);
    }
    let requested = scope::parse(&f.request.scope)?;
    let approved = scope::parse(approved_scope)?;
    if !requested.contains_all(&approved) {
        return Err(OAuthError::ScopeEscalation);
    }
    Ok(vec![OAuthEvent::CodeIssued {
        did: did.to_owned(),
        scope: approved.as_string(),
        code_hash: sha256_b64url(code),
        device_id: device_id.to_owned(),
        expires_at: now.saturating_add(CODE_LIFETIME_MICROS),
        at: now,
    }])
}

/// The token endpoint's `authorization_code` grant.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    pub code: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub dpop_jkt: &'a str,
    /// New random ids for the session's first tokens.
    pub token_id: &'a str,
    pub refresh_token: &'a str,
}

/// What the exchange decided: issue, or (a consumed code presented again) revoke what that code
/// issued and refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeDecision {
    Issue(Vec<OAuthEvent>),
    Replayed(Vec<OAuthEvent>),
}

pub fn decide_exchange(state: &OAuthState, x: &Exchange<'_>, now: i64) -> Result<ExchangeDecision, OAuthError> {
    let f = state.flow().ok_or(OAuthError::InvalidCode)?;
    let approval = f.approval.as_ref().ok_or(OAuthError::InvalidCode)?;
    if !ct_eq(&approval.code_hash, &sha256_b64url(x.code)) {
        return Err(OAuthError::InvalidCode);
    }
    if f.code_consumed {
        let events = if f.revoked.is_none() {
            vec![OAuthEvent::Revoked { reason: "code replayed".into(), at: now }]
        } else {
            vec![]
        };
        return Ok(ExchangeDecision::Replayed(events));
    }
    if f.revoked.is_some() {
        return Err(OAuthError::Revoked);
    }
    if approval.expires_at <= now {
        return Err(OAuthError::CodeExpired);
    }
    if f.request.client_id != x.client_id {
        return Err(OAuthError::ClientMismatch);
    }
    if x.redirect_uri != Some(f.request.redirect_uri.as_str()) {
        return Err(OAuthError::RedirectUriMismatch);
    }
    if !f.request.dpop_jkt.is_empty() && f.request.dpop_jkt != x.dpop_jkt {
        return Err(OAuthError::DpopKeyMismatch);
    }
    pkce::verify(&f.request.code_challenge, x.code_verifier)?;
    Ok(ExchangeDecision::Issue(vec![
        OAuthEvent::CodeConsumed { code_hash: approval.code_hash.clone(), at: now },
        OAuthEvent::TokenIssued {
            token_id: x.token_id.to_owned(),
            refresh_hash: sha256_b64url(x.refresh_token),
            dpop_jkt: x.dpop_jkt.to_owned(),
            at: now,
        },
    ]))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    Rotate(Vec<OAuthEvent>),
    /// An already-rotated token: the session is revoked (these events), the request refused.
    Replayed(Vec<OAuthEvent>),
}

/// The `refresh_token` grant: the current token rotates; a used one revokes the session
/// (reference behaviour, no grace).
pub fn decide_refresh(
    state: &OAuthState,
    presented: &str,
    client_id: &str,
    dpop_jkt: &str,
    new_token_id: &str,
    new_refresh: &str,
    now: i64,
) -> Result<RefreshOutcome, OAuthError> {
    let f = state.flow().ok_or(OAuthError::InvalidRefreshToken)?;
    let s = f.session.as_ref().ok_or(OAuthError::InvalidRefreshToken)?;
    let hash = sha256_b64url(presented);
    if f.revoked.is_some() {
        return Err(OAuthError::Revoked);
    }
    if s.used_refresh_hashes.iter().any(|h| ct_eq(h, &hash)) {
        return Ok(RefreshOutcome::Replayed(vec![OAuthEvent::Revoked { reason: "refresh token replayed".into(), at: now }]));
    }
    if !ct_eq(&s.refresh_hash, &hash) {
        return Err(OAuthError::InvalidRefreshToken);
    }
    if f.request.client_id != client_id {
        return Err(OAuthError::ClientMismatch);
    }
    if s.dpop_jkt != dpop_jkt {
        return Err(OAuthError::DpopKeyMismatch);
    }
    if now >= s.created_at.saturating_add(SESSION_LIFETIME_MICROS)
        || now >= s.refreshed_at.saturating_add(REFRESH_INACTIVITY_MICROS)
    {
        return Err(OAuthError::SessionExpired);
    }
    Ok(RefreshOutcome::Rotate(vec![OAuthEvent::TokenRotated {
        token_id: new_token_id.to_owned(),
        refresh_hash: sha256_b64url(new_refresh),
        previous_refresh_hash: hash,
        at: now,
    }]))
}

/// Revocation (RFC 7009: the caller answers 200 whatever this decides).
pub fn decide_revoke(state: &OAuthState, reason: &str, now: i64) -> Vec<OAuthEvent> {
    match state.flow() {
        Some(f) if f.revoked.is_none() => vec![OAuthEvent::Revoked { reason: reason.to_owned(), at: now }],
        _ => vec![],
    }
}

/// The scope a session grants (after consent).
pub fn granted_scope(f: &Flow) -> Option<Scopes> {
    f.approval.as_ref().and_then(|a| scope::parse(&a.scope).ok())
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthDecodeError {
    #[error("unknown oauth event type {0}")]
    UnknownType(String),
    #[error("unknown version {0}")]
    UnknownVersion(i32),
    #[error(transparent)]
    Cbor(#[from] cbor::CborError),
    #[error("payload field {0}")]
    Field(&'static str),
}

enum F<'a> {
    S(&'a str),
    I(i64),
}

fn map(fields: &[(&str, F<'_>)]) -> Vec<u8> {
    let m: BTreeMap<String, Ipld> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                F::S(s) => Ipld::String((*s).to_owned()),
                F::I(i) => Ipld::Integer(i128::from(*i)),
            };
            ((*k).to_owned(), v)
        })
        .collect();
    cbor::encode(&Ipld::Map(m)).unwrap_or_default()
}

impl OAuthEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            OAuthEvent::Requested(_) => REQUESTED,
            OAuthEvent::DeviceBound { .. } => DEVICE_BOUND,
            OAuthEvent::CodeIssued { .. } => CODE_ISSUED,
            OAuthEvent::CodeConsumed { .. } => CODE_CONSUMED,
            OAuthEvent::TokenIssued { .. } => TOKEN_ISSUED,
            OAuthEvent::TokenRotated { .. } => TOKEN_ROTATED,
            OAuthEvent::Revoked { .. } => REVOKED,
        }
    }

    pub fn to_payload(&self) -> Vec<u8> {
        use F::{I, S};
        match self {
            OAuthEvent::Requested(r) => map(&[
                ("requestId", S(&r.request_id)),
                ("clientId", S(&r.client_id)),
                ("authMethod", S(&r.auth_method)),
                ("redirectUri", S(&r.redirect_uri)),
                ("scope", S(&r.scope)),
                ("state", S(&r.state)),
                ("codeChallenge", S(&r.code_challenge)),
                ("dpopJkt", S(&r.dpop_jkt)),
                ("loginHint", S(&r.login_hint)),
                ("responseMode", S(&r.response_mode)),
                ("expiresAt", I(r.expires_at)),
                ("at", I(r.at)),
            ]),
            OAuthEvent::DeviceBound { device_id, at } => map(&[("deviceId", S(device_id)), ("at", I(*at))]),
            OAuthEvent::CodeIssued { did, scope, code_hash, device_id, expires_at, at } => map(&[
                ("did", S(did)),
                ("scope", S(scope)),
                ("codeHash", S(code_hash)),
                ("deviceId", S(device_id)),
                ("expiresAt", I(*expires_at)),
                ("at", I(*at)),
            ]),
            OAuthEvent::CodeConsumed { code_hash, at } => map(&[("codeHash", S(code_hash)), ("at", I(*at))]),
            OAuthEvent::TokenIssued { token_id, refresh_hash, dpop_jkt, at } => map(&[
                ("tokenId", S(token_id)),
                ("refreshHash", S(refresh_hash)),
                ("dpopJkt", S(dpop_jkt)),
                ("at", I(*at)),
            ]),
            OAuthEvent::TokenRotated { token_id, refresh_hash, previous_refresh_hash, at } => map(&[
                ("tokenId", S(token_id)),
                ("refreshHash", S(refresh_hash)),
                ("previousRefreshHash", S(previous_refresh_hash)),
                ("at", I(*at)),
            ]),
            OAuthEvent::Revoked { reason, at } => map(&[("reason", S(reason)), ("at", I(*at))]),
        }
    }

    pub fn from_payload(event_type: &str, version: i32, payload: &[u8]) -> Result<OAuthEvent, OAuthDecodeError> {
        if !EVENT_TYPES.contains(&event_type) {
            return Err(OAuthDecodeError::UnknownType(event_type.to_owned()));
        }
        if version != EVENT_VERSION {
            return Err(OAuthDecodeError::UnknownVersion(version));
        }
        let Ipld::Map(m) = cbor::decode(payload)? else { return Err(OAuthDecodeError::Field("not a map")) };
        let s = |k: &'static str| match m.get(k) {
            Some(Ipld::String(v)) => Ok(v.clone()),
            _ => Err(OAuthDecodeError::Field(k)),
        };
        let i = |k: &'static str| match m.get(k) {
            Some(Ipld::Integer(v)) => i64::try_from(*v).map_err(|_| OAuthDecodeError::Field(k)),
            _ => Err(OAuthDecodeError::Field(k)),
        };
        let e = match event_type {
            REQUESTED => OAuthEvent::Requested(Request {
                request_id: s("requestId")?,
                client_id: s("clientId")?,
                auth_method: s("authMethod")?,
                redirect_uri: s("redirectUri")?,
                scope: s("scope")?,
                state: s("state")?,
                code_challenge: s("codeChallenge")?,
                dpop_jkt: s("dpopJkt")?,
                login_hint: s("loginHint")?,
                response_mode: s("responseMode")?,
                expires_at: i("expiresAt")?,
                at: i("at")?,
            }),
            CODE_ISSUED => OAuthEvent::CodeIssued {
                did: s("did")?,
                scope: s("scope")?,
                code_hash: s("codeHash")?,
                device_id: s("deviceId")?,
                expires_at: i("expiresAt")?,
                at: i("at")?,
            },
            DEVICE_BOUND => OAuthEvent::DeviceBound { device_id: s("deviceId")?, at: i("at")? },
            CODE_CONSUMED => OAuthEvent::CodeConsumed { code_hash: s("codeHash")?, at: i("at")? },
            TOKEN_ISSUED => OAuthEvent::TokenIssued {
                token_id: s("tokenId")?,
                refresh_hash: s("refreshHash")?,
                dpop_jkt: s("dpopJkt")?,
                at: i("at")?,
            },
            TOKEN_ROTATED => OAuthEvent::TokenRotated {
                token_id: s("tokenId")?,
                refresh_hash: s("refreshHash")?,
                previous_refresh_hash: s("previousRefreshHash")?,
                at: i("at")?,
            },
            _ => OAuthEvent::Revoked { reason: s("reason")?, at: i("at")? },
        };
        if e.to_payload() != payload {
            return Err(OAuthDecodeError::Field("unexpected fields"));
        }
        Ok(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000;
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn request() -> Request {
        Request {
            request_id: "req-1".into(),
            client_id: "http://localhost".into(),
            auth_method: "none".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            scope: "atproto transition:generic".into(),
            state: "st".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            dpop_jkt: "jkt1".into(),
            login_hint: String::new(),
            response_mode: "query".into(),
            expires_at: NOW + REQUEST_LIFETIME_MICROS,
            at: NOW,
        }
    }

    struct Given(OAuthState);
    fn given(events: &[OAuthEvent]) -> Given {
        Given(events.iter().fold(OAuthState::Absent, evolve))
    }

    fn requested() -> OAuthEvent {
        OAuthEvent::Requested(request())
    }
    fn authorized() -> OAuthEvent {
        decide_authorize(&given(&[requested()]).0, "http://localhost", "did:plc:a", "atproto transition:generic", "cod-1", "dev", NOW + 1).unwrap().remove(0)
    }
    fn exchange(code: &str, verifier: Option<&str>, jkt: &str) -> Exchange<'static> {
        Exchange {
            code: Box::leak(code.to_owned().into_boxed_str()),
            client_id: "http://localhost",
            redirect_uri: Some("http://127.0.0.1/cb"),
            code_verifier: verifier.map(|v| &*Box::leak(v.to_owned().into_boxed_str())),
            dpop_jkt: Box::leak(jkt.to_owned().into_boxed_str()),
            token_id: "tok-1",
            refresh_token: "ref-1",
        }
    }
    fn issued() -> Vec<OAuthEvent> {
        match decide_exchange(&given(&[requested(), authorized()]).0, &exchange("cod-1", Some(VERIFIER), "jkt1"), NOW + 2).unwrap() {
            ExchangeDecision::Issue(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_a_request_when_the_user_approves_more_than_asked_then_scope_escalation() {
        let g = given(&[requested()]);
        assert_eq!(decide_authorize(&g.0, "http://localhost", "did:plc:a", "atproto transition:chat.bsky", "c", "d", NOW), Err(OAuthError::ScopeEscalation));
        assert_eq!(decide_authorize(&g.0, "http://localhost", "did:plc:a", "transition:generic", "c", "d", NOW), Err(OAuthError::Scope(scope::ScopeError::MissingAtproto)));
        assert_eq!(decide_authorize(&g.0, "http://other", "did:plc:a", "atproto", "c", "d", NOW), Err(OAuthError::ClientMismatch));
        assert_eq!(decide_authorize(&g.0, "http://localhost", "did:plc:a", "atproto", "c", "d", NOW + REQUEST_LIFETIME_MICROS), Err(OAuthError::RequestExpired));
        let narrowed = decide_authorize(&g.0, "http://localhost", "did:plc:a", "atproto", "c", "d", NOW).unwrap();
        assert!(matches!(&narrowed[0], OAuthEvent::CodeIssued { scope, code_hash, .. } if scope == "atproto" && code_hash == &sha256_b64url("c")));
    }

    #[test]
    fn given_a_request_opened_on_one_device_when_another_opens_or_approves_it_then_refused() {
        let g = given(&[requested()]);
        let bound = decide_bind_device(&g.0, "http://localhost", "dev-a", NOW).unwrap();
        assert_eq!(bound, vec![OAuthEvent::DeviceBound { device_id: "dev-a".into(), at: NOW }]);
        let g = given(&[requested(), bound[0].clone()]);
        assert_eq!(decide_bind_device(&g.0, "http://localhost", "dev-a", NOW), Ok(vec![]));
        assert_eq!(decide_bind_device(&g.0, "http://localhost", "dev-b", NOW), Err(OAuthError::OtherDevice));
        assert_eq!(decide_authorize(&g.0, "http://localhost", "did:plc:a", "atproto", "c", "dev-b", NOW), Err(OAuthError::OtherDevice));
        assert!(decide_authorize(&g.0, "http://localhost", "did:plc:a", "atproto", "c", "dev-a", NOW).is_ok());
    }

    #[test]
    fn given_an_approved_request_when_exchanged_then_the_code_is_consumed_once() {
        let events = issued();
        assert_eq!(events.len(), 2);
        let g = given(&[vec![requested(), authorized()], events].concat());
        assert_eq!(
            decide_exchange(&g.0, &exchange("cod-1", Some(VERIFIER), "jkt1"), NOW + 3),
            Ok(ExchangeDecision::Replayed(vec![OAuthEvent::Revoked { reason: "code replayed".into(), at: NOW + 3 }]))
        );
    }

    #[test]
    fn given_an_approved_request_when_exchanged_wrongly_then_refused() {
        let g = given(&[requested(), authorized()]);
        let check = |x: Exchange<'_>, e: OAuthError| assert_eq!(decide_exchange(&g.0, &x, NOW + 2), Err(e));
        check(exchange("cod-2", Some(VERIFIER), "jkt1"), OAuthError::InvalidCode);
        check(exchange("cod-1", None, "jkt1"), OAuthError::Pkce(pkce::PkceError::MissingVerifier));
        check(exchange("cod-1", Some(&VERIFIER.replace('k', "x")), "jkt1"), OAuthError::Pkce(pkce::PkceError::Mismatch));
        check(exchange("cod-1", Some(VERIFIER), "jkt2"), OAuthError::DpopKeyMismatch);
        check(Exchange { redirect_uri: Some("http://127.0.0.1/other"), ..exchange("cod-1", Some(VERIFIER), "jkt1") }, OAuthError::RedirectUriMismatch);
        assert_eq!(decide_exchange(&g.0, &exchange("cod-1", Some(VERIFIER), "jkt1"), NOW + 1 + CODE_LIFETIME_MICROS), Err(OAuthError::CodeExpired));
    }

    #[test]
    fn given_a_session_when_a_rotated_refresh_token_is_reused_then_the_session_is_revoked() {
        let base = [vec![requested(), authorized()], issued()].concat();
        let g = given(&base);
        let RefreshOutcome::Rotate(rot) = decide_refresh(&g.0, "ref-1", "http://localhost", "jkt1", "tok-2", "ref-2", NOW + 5).unwrap() else { panic!() };
        assert_eq!(decide_refresh(&g.0, "ref-1", "http://localhost", "jkt2", "t", "r", NOW + 5), Err(OAuthError::DpopKeyMismatch));
        let g2 = given(&[base.clone(), rot.clone()].concat());
        assert_eq!(g2.0.flow().unwrap().session.as_ref().unwrap().token_id, "tok-2");
        let replay = decide_refresh(&g2.0, "ref-1", "http://localhost", "jkt1", "tok-3", "ref-3", NOW + 6).unwrap();
        let RefreshOutcome::Replayed(rev) = replay else { panic!() };
        let g3 = given(&[base, rot, rev].concat());
        assert_eq!(decide_refresh(&g3.0, "ref-2", "http://localhost", "jkt1", "t", "r", NOW + 7), Err(OAuthError::Revoked));
        assert_eq!(decide_revoke(&g3.0, "x", NOW), vec![]);
        assert_eq!(decide_refresh(&g2.0, "ref-x", "http://localhost", "jkt1", "t", "r", NOW + 7), Err(OAuthError::InvalidRefreshToken));
    }

    #[test]
    fn payloads_round_trip() {
        let mut all = vec![requested(), OAuthEvent::DeviceBound { device_id: "dev-a".into(), at: 1 }, authorized()];
        all.extend(issued());
        all.push(OAuthEvent::TokenRotated { token_id: "t".into(), refresh_hash: "h".into(), previous_refresh_hash: "p".into(), at: 1 });
        all.push(OAuthEvent::Revoked { reason: "r".into(), at: 2 });
        for e in all {
            assert_eq!(OAuthEvent::from_payload(e.event_type(), EVENT_VERSION, &e.to_payload()).unwrap(), e);
        }
        assert!(OAuthEvent::from_payload(REVOKED, 2, &[]).is_err());
    }
}
