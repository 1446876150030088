//! `com.atproto.server.getServiceAuth` (a service-auth JWT signed with the account's repo key)
//! and `com.atproto.identity.getRecommendedDidCredentials` (what a migrating account's DID
//! document should say to point here). Both read the account from the `accounts` read model.
//!
//! The reference's rules for `getServiceAuth`: `aud` a DID (optionally `#service`); `exp` in the
//! future, at most an hour ahead, at most a minute ahead without `lxm` (`BadExpiration`); default
//! 60 s; an `lxm` among the protected account-management methods is refused; an `lxm` among the
//! privileged ones needs a privileged session (full access or a privileged app password); a
//! takendown account's session may only mint `com.atproto.server.createAccount` (migrating away).
//!
//! Never records the token; never logs it.

use domain::crypto::{KeyType, Keypair};
use domain::service_jwt;
use domain::session_jwt::Scope;

use crate::{load_account_profile, now, CommandError, Ctx};

pub const CREATE_ACCOUNT: &str = "com.atproto.server.createAccount";

/// Methods a service token may never be minted for (reference `PROTECTED_METHODS`).
pub const PROTECTED_METHODS: [&str; 16] = [
    "com.atproto.admin.sendEmail",
    "com.atproto.identity.requestPlcOperationSignature",
    "com.atproto.identity.signPlcOperation",
    "com.atproto.identity.updateHandle",
    "com.atproto.server.activateAccount",
    "com.atproto.server.confirmEmail",
    "com.atproto.server.createAppPassword",
    "com.atproto.server.deactivateAccount",
    "com.atproto.server.getAccountInviteCodes",
    "com.atproto.server.getSession",
    "com.atproto.server.listAppPasswords",
    "com.atproto.server.requestAccountDelete",
    "com.atproto.server.requestEmailConfirmation",
    "com.atproto.server.requestEmailUpdate",
    "com.atproto.server.revokeAppPassword",
    "com.atproto.server.updateEmail",
];

/// Methods that need a privileged session (reference `PRIVILEGED_METHODS`).
pub const PRIVILEGED_METHODS: [&str; 15] = [
    "chat.bsky.actor.deleteAccount",
    "chat.bsky.actor.exportAccountData",
    "chat.bsky.convo.deleteMessageForSelf",
    "chat.bsky.convo.getConvo",
    "chat.bsky.convo.getConvoForMembers",
    "chat.bsky.convo.getLog",
    "chat.bsky.convo.getMessages",
    "chat.bsky.convo.leaveConvo",
    "chat.bsky.convo.listConvos",
    "chat.bsky.convo.muteConvo",
    "chat.bsky.convo.sendMessage",
    "chat.bsky.convo.sendMessageBatch",
    "chat.bsky.convo.unmuteConvo",
    "chat.bsky.convo.updateRead",
    CREATE_ACCOUNT,
];

/// A service token from `did` (whose session has `scope`) for `aud`, optionally for one method
/// `lxm`, expiring at `exp` (Unix seconds; default now + 60 s).
pub async fn get_service_auth(
    ctx: &Ctx,
    did: &str,
    scope: Scope,
    aud: &str,
    exp: Option<i64>,
    lxm: Option<&str>,
) -> Result<String, CommandError> {
    let aud_did = aud.split_once('#').map_or(aud, |(d, _)| d);
    if !domain::syntax::is_valid_did(aud_did) || aud.split_once('#').is_some_and(|(_, f)| f.is_empty()) {
        return Err(CommandError::InvalidRequest("aud must be a DID, optionally with a #service fragment".into()));
    }
    if let Some(m) = lxm {
        if !domain::syntax::is_valid_nsid(m) {
            return Err(CommandError::InvalidRequest("lxm must be an NSID".into()));
        }
    }
    let (_, now_secs) = now();
    if let Some(exp) = exp {
        let diff = exp - now_secs;
        if diff < 0 {
            return Err(CommandError::BadExpiration("expiration is in past".into()));
        } else if diff > service_jwt::MAX_LIFETIME_SECS {
            return Err(CommandError::BadExpiration(
                "cannot request a token with an expiration more than an hour in the future".into(),
            ));
        } else if lxm.is_none() && diff > service_jwt::MAX_METHODLESS_LIFETIME_SECS {
            return Err(CommandError::BadExpiration(
                "cannot request a method-less token with an expiration more than a minute in the future".into(),
            ));
        }
    }
    if scope == Scope::Takendown && lxm != Some(CREATE_ACCOUNT) {
        return Err(CommandError::InvalidToken("Bad token scope".into()));
    }
    if let Some(m) = lxm {
        if PROTECTED_METHODS.contains(&m) {
            return Err(CommandError::InvalidRequest(format!(
                "cannot request a service auth token for the following protected method: {m}"
            )));
        }
        let privileged = matches!(scope, Scope::Access | Scope::AppPassPrivileged | Scope::Takendown);
        if !privileged && PRIVILEGED_METHODS.contains(&m) {
            return Err(CommandError::InvalidRequest(format!(
                "insufficient access to request a service auth token for the following method: {m}"
            )));
        }
    }
    let state = load_account_profile(ctx.log(), did).await?;
    let account = state.live().ok_or(CommandError::AccountNotFound)?;
    let private = domain::key_encryption::decrypt_key(&ctx.kek, did, &account.signing_key_encrypted)
        .map_err(|e| CommandError::Internal(format!("signing key: {e}")))?;
    let key = Keypair::from_private_bytes(KeyType::K256, &private)
        .map_err(|e| CommandError::Internal(format!("signing key: {e}")))?;
    let exp = exp.unwrap_or(now_secs + service_jwt::DEFAULT_LIFETIME_SECS);
    Ok(service_jwt::create(&key, did, aud, lxm, now_secs, exp))
}

/// `getRecommendedDidCredentials`: the DID document data that would make `did` an account of this
/// server (its handle, its signing key here, this server's rotation key and endpoint).
#[derive(Debug, Clone)]
pub struct DidCredentials {
    pub rotation_keys: Vec<String>,
    pub also_known_as: Vec<String>,
    pub signing_did_key: String,
    pub pds_endpoint: String,
}

pub async fn get_recommended_did_credentials(ctx: &Ctx, did: &str) -> Result<DidCredentials, CommandError> {
    let state = load_account_profile(ctx.log(), did).await?;
    let account = state.live().ok_or(CommandError::AccountNotFound)?;
    Ok(DidCredentials {
        rotation_keys: vec![ctx.rotation_key.public_key().to_did_key()],
        also_known_as: vec![format!("at://{}", account.handle.as_str())],
        signing_did_key: account.signing_did_key.clone(),
        pds_endpoint: ctx.public_url.clone(),
    })
}
