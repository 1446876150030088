//! `com.atproto.server.createAccount` (new did:plc): validates the handle, email, password and
//! invite code; checks the handle and email are free; creates a secp256k1 signing key (sealed
//! with the key-encryption key); signs the PLC genesis operation with the PDS rotation key; builds
//! the empty repo's genesis commit; submits the operation to the PLC directory; then appends
//! `account/<did>` (account.created, #identity, #account) and `repo/<did>` (#commit, #sync) in
//! ONE append with the inline read models, and issues the first session.
//!
//! Never appends when the directory refused the operation, so nothing is half-created in the log
//! (the DID may exist in the directory then; it names no account here). Never records the signing
//! key or the password in the clear. An invite code (required with `PDS_INVITE_REQUIRED`) is
//! consumed by an `invite.used` event in the same append.
//!
//! If the directory accepted the genesis operation but the append then fails (a handle or email
//! race lost at the unique index, a database error), the DID stays registered in the directory,
//! naming no account here. The reference does the same (its `createAccount` destroys the actor
//! store on failure and leaves the PLC DID alone; a tombstone would need the DID's rotation
//! key, which we have, but the reference does not send one), so we match it.
//!
//! Bring-your-own DID (migration, `did` in the input): the request must carry a service-auth JWT
//! from that DID (`iss` = the DID, `aud` = this service, `lxm` = createAccount), verified against
//! the DID's current `#atproto` key as the PLC directory (or did:web host) serves it. The account
//! starts deactivated, with a fresh signing key, no PLC operation, an empty repo whose genesis
//! commit is appended without a seq, and no firehose event (reference: `createRepo([])` without
//! sequencing; migration imports the repo, updates the DID document, then activates).

use domain::account::{self, AccountState, CreateAccount};
use domain::crypto::{KeyType, Keypair};
use domain::plc::{DocumentData, UnsignedOp};
use domain::repo::{self, RepoEvent};
use domain::service_jwt;
use domain::session_jwt;
use domain::syntax::{Did, Handle};
use domain::tid::TidClock;
use eventlog::{ExpectedVersion, NewEvent, StreamAppend};

use crate::create_invite_codes::{invite_append, load_invite};
use crate::get_service_auth::CREATE_ACCOUNT;
use crate::resolve_did::resolve_did_document_cached;
use crate::{
    account_append, account_error, account_view, append_error, blocking, load_account, now, plc_client, refresh_expiry_micros,
    tokens, CommandError, Ctx, Session,
};

#[derive(Debug, Clone, Default)]
pub struct CreateAccountInput {
    pub handle: String,
    pub email: Option<String>,
    pub password: Option<String>,
    pub invite_code: Option<String>,
    /// Bring-your-own DID (migration).
    pub did: Option<String>,
    /// The `Authorization: Bearer` token of the request: a service-auth JWT (from `did`, when
    /// one is brought; verified whenever sent, as the reference's optional service auth).
    pub service_auth: Option<String>,
}

/// Syntax good enough to send mail to: one `@`, a non-empty local part, a dotted domain, no
/// spaces, at most 254 characters.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    email.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn unavailable_invite() -> CommandError {
    CommandError::InvalidInviteCode("Provided invite code not available".into())
}

/// A 401 of the reference's service-auth verifier.
fn auth_error(name: &'static str, message: impl Into<String>) -> CommandError {
    CommandError::ServiceAuth { name, message: message.into() }
}

/// Checks the service-auth JWT that must come with a bring-your-own `did`; returns the DID's
/// current DID document.
async fn verify_did_owner(ctx: &Ctx, did: &str, token: Option<&str>) -> Result<serde_json::Value, CommandError> {
    let missing = || auth_error("AuthRequired", format!("Missing auth to create account with did: {did}"));
    let token = token.ok_or_else(missing)?;
    let parsed = service_jwt::parse(token).map_err(service_jwt_error)?;
    if parsed.claims.iss != did {
        return Err(missing());
    }
    // A cached document first; if the signature does not match its key, the key may have
    // rotated: once more with a fresh document (as the reference's verifier).
    let mut last = None;
    for force in [false, true] {
        let doc = resolve_did_document_cached(ctx, did, force)
            .await?
            .ok_or_else(|| auth_error("AuthRequired", format!("could not resolve did document: {did}")))?;
        let Some(key) = domain::did_doc::atproto_signing_key(&doc, did) else {
            last = Some(auth_error("BadJwtSignature", format!("the DID document of {did} has no #atproto signing key")));
            continue;
        };
        let (_, now_secs) = now();
        match service_jwt::verify(&parsed, &key, &ctx.service_did, Some(CREATE_ACCOUNT), now_secs) {
            Ok(_) => return Ok(doc),
            Err(e @ service_jwt::ServiceJwtError::BadJwtSignature) => last = Some(service_jwt_error(e)),
            Err(e) => return Err(service_jwt_error(e)),
        }
    }
    Err(last.unwrap_or_else(|| auth_error("BadJwtSignature", "jwt signature does not match jwt issuer")))
}

fn service_jwt_error(e: service_jwt::ServiceJwtError) -> CommandError {
    use service_jwt::ServiceJwtError as E;
    let name = match &e {
        E::BadJwt(_) => "BadJwt",
        E::JwtExpired => "JwtExpired",
        E::BadJwtAudience => "BadJwtAudience",
        E::BadJwtLexiconMethod => "BadJwtLexiconMethod",
        E::BadJwtSignature => "BadJwtSignature",
    };
    auth_error(name, e.to_string())
}

pub async fn create_account(ctx: &Ctx, input: CreateAccountInput) -> Result<Session, CommandError> {
    let byo = match input.did.as_deref() {
        Some(did) => {
            let parsed = Did::parse(did).map_err(|_| CommandError::InvalidRequest(format!("invalid DID: {did}")))?;
            let doc = verify_did_owner(ctx, did, input.service_auth.as_deref()).await?;
            Some((parsed, doc))
        }
        None => {
            // Reference `userServiceAuthOptional`: a bearer token, when sent, must be a valid
            // service-auth JWT even though no DID is brought.
            if let Some(token) = input.service_auth.as_deref() {
                let iss = service_jwt::parse(token).map_err(service_jwt_error)?.claims.iss;
                verify_did_owner(ctx, &iss, Some(token)).await?;
            }
            None
        }
    };
    let handle =
        crate::external_handle::check_handle(ctx, &input.handle, byo.as_ref().map(|(d, _)| d.as_str()), false).await?;
    let email = match input.email.as_deref().map(str::trim) {
        None | Some("") => return Err(CommandError::InvalidRequest("Email is required".into())),
        Some(e) if !is_valid_email(e) => {
            return Err(CommandError::InvalidRequest(
                "This email address is not supported, please use a different email.".into(),
            ))
        }
        Some(e) => e.to_lowercase(),
    };
    let Some(password) = input.password.filter(|p| !p.is_empty()) else {
        return Err(CommandError::InvalidRequest("Password is required".into()));
    };
    domain::password::check_new_password(&password).map_err(|e| CommandError::InvalidRequest(e.to_string()))?;
    let invite_code = input.invite_code.as_deref().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
    if ctx.invite_required && invite_code.is_none() {
        return Err(CommandError::InvalidInviteCode("No invite code provided".into()));
    }
    let log = ctx.log();
    // A code, when given, is checked now (fail before the PLC directory) and consumed in the
    // account's append below (decided again on the stream version that append expects).
    if let Some(code) = &invite_code {
        let (invite, _) = load_invite(log, code).await?;
        if invite.live().is_none_or(|i| i.remaining() <= 0) {
            return Err(unavailable_invite());
        }
    }
    if projections::accounts::did_by_handle(log, handle.as_str()).await?.is_some() {
        return Err(CommandError::HandleNotAvailable(format!("Handle already taken: {}", handle.as_str())));
    }
    if projections::accounts::did_by_email(log, &email).await?.is_some() {
        return Err(CommandError::EmailTaken(email));
    }

    let password_hash = blocking(move || domain::password::hash_password(&password))
        .await?
        .map_err(|e| CommandError::Internal(e.to_string()))?;

    let signing = Keypair::generate(KeyType::K256);
    if let Some((did, doc)) = byo {
        // A key reserved for this DID (`reserveSigningKey`) signs its repo; else the fresh one.
        let signing = crate::reserve_signing_key::reserved_for(ctx, did.as_str()).await?.unwrap_or(signing);
        return create_for_existing_did(ctx, did, doc, handle, email, password_hash, invite_code, signing).await;
    }
    // Identity: the account's repo signing key and the PLC genesis operation.
    let data = DocumentData::atproto(
        vec![ctx.rotation_key.public_key().to_did_key()],
        &signing.public_key(),
        handle.as_str(),
        &ctx.public_url,
    );
    let op = UnsignedOp::genesis(data)
        .sign(&ctx.rotation_key)
        .map_err(|e| CommandError::Internal(format!("PLC genesis: {e}")))?;
    let did = op.did().map_err(|e| CommandError::Internal(format!("PLC genesis: {e}")))?;
    let op_cid = op.cid().map_err(|e| CommandError::Internal(format!("PLC genesis: {e}")))?;
    let signing_key_encrypted =
        domain::key_encryption::encrypt_key(&ctx.kek, did.as_str(), &zeroize::Zeroizing::new(signing.private_bytes()))
            .map_err(|e| CommandError::Internal(e.to_string()))?;

    let (now_micros, now_secs) = now();
    let account_events = account::decide_create_account(
        &AccountState::Absent,
        CreateAccount {
            did: did.clone(),
            handle: handle.clone(),
            email: email.clone(),
            password_hash,
            signing_key_encrypted,
            signing_did_key: signing.public_key().to_did_key(),
            plc_genesis: Some(op_cid),
            invite_code: invite_code.clone(),
            deactivated: false,
        },
        now_micros,
    )
    .map_err(account_error)?;
    let mut clock = TidClock::with_random_clock_id();
    let genesis = repo::decide_genesis(did.clone(), &signing, &mut clock, u64::try_from(now_micros).unwrap_or(0))
        .map_err(|e| CommandError::Internal(format!("repo genesis: {e}")))?;

    // The first session, recorded with the account (the password was just set, so it checks).
    let jti = session_jwt::generate_jti();
    let created_state = AccountState::from_events(&account_events);
    let session_events = account::decide_create_session(
        &created_state,
        account::CreateSession {
            password: account::PasswordCheck { account_password_ok: true, app_password_hash: None },
            allow_takendown: false,
            token_hash: session_jwt::refresh_token_hash(&jti),
            expires_at: refresh_expiry_micros(now_secs),
        },
        now_micros,
    )
    .map_err(account_error)?;

    plc_client::submit_operation(ctx, did.as_str(), &op.to_json()).await?;

    let mut events = account_events;
    events.extend(session_events);
    let repo_events: Vec<NewEvent> = genesis
        .events
        .iter()
        .map(|e: &RepoEvent| {
            let payload = e.to_payload().map_err(|err| CommandError::Internal(format!("repo payload: {err}")))?;
            let version = i32::try_from(e.event_version()).unwrap_or(i32::MAX);
            let ev = NewEvent::new(e.event_type(), version, payload);
            Ok(if e.is_public() { ev.public() } else { ev })
        })
        .collect::<Result<_, CommandError>>()?;
    // Two signups racing for a code's last use: both expect the stream version they decided on;
    // the loser sees a conflict, decides again on the new version, and is refused.
    let mut attempt = 0;
    loop {
        let mut batch = vec![
            account_append(&did, ExpectedVersion::NoStream, &events),
            StreamAppend::new(format!("repo/{}", did.as_str()), ExpectedVersion::NoStream, repo_events.clone()),
        ];
        if let Some(code) = &invite_code {
            let (invite, version) = load_invite(log, code).await?;
            let used = domain::invite::decide_use(&invite, did.as_str(), now_micros).map_err(|_| unavailable_invite())?;
            batch.push(invite_append(code, ExpectedVersion::Exact(version), &used));
        }
        match ctx.appender.append(batch).await {
            Ok(_) => break,
            Err(eventlog::AppendError::Conflict { stream, .. }) if stream.starts_with("invite/") && attempt < 10 => {
                attempt += 1;
            }
            Err(e) => return Err(append_error(e, handle.as_str(), &email)),
        }
    }

    let state = AccountState::from_events(&events);
    let Some(created) = state.live() else {
        return Err(CommandError::Internal("created account does not fold to a live one".into()));
    };
    let (access_jwt, refresh_jwt) = tokens(ctx, did.as_str(), created.session_scope(None), &jti, now_secs);
    Ok(Session { account: account_view(ctx, created), access_jwt, refresh_jwt })
}

/// The empty repo of a bring-your-own-DID account, as the reference creates it: a genesis commit
/// signed with the new key, appended WITHOUT a seq (`repo.committed`, private: the account is
/// deactivated, nothing is announced; `activateAccount` announces the head later). So
/// `checkAccountStatus` has a `repoCommit` and `repoRev` before anything is imported.
async fn empty_repo(did: &Did, signing: &Keypair, now_micros: i64, log: &eventlog::EventLog) -> Result<StreamAppend, CommandError> {
    let mut clock = TidClock::with_random_clock_id();
    let genesis = repo::decide_genesis(did.clone(), signing, &mut clock, u64::try_from(now_micros).unwrap_or(0))
        .map_err(|e| CommandError::Internal(format!("repo genesis: {e}")))?;
    let committed = genesis
        .events
        .iter()
        .find(|e| matches!(e, RepoEvent::Committed(_)))
        .ok_or_else(|| CommandError::Internal("repo genesis without a commit".into()))?;
    let payload = committed.to_payload().map_err(|err| CommandError::Internal(format!("repo payload: {err}")))?;
    let stream = format!("repo/{}", did.as_str());
    let version = log.stream_version(&stream).await?;
    let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
    let version_no = i32::try_from(committed.event_version()).unwrap_or(i32::MAX);
    Ok(StreamAppend::new(stream, expected, vec![NewEvent::new(committed.event_type(), version_no, payload)]))
}

/// The bring-your-own-DID account: deactivated, no PLC operation, an empty repo announced to no
/// one (`empty_repo`), no public event; the first session; the DID's current document in the
/// reply.
#[allow(clippy::too_many_arguments)]
async fn create_for_existing_did(
    ctx: &Ctx,
    did: Did,
    doc: serde_json::Value,
    handle: Handle,
    email: String,
    password_hash: String,
    invite_code: Option<String>,
    signing: Keypair,
) -> Result<Session, CommandError> {
    let log = ctx.log();
    let signing_key_encrypted =
        domain::key_encryption::encrypt_key(&ctx.kek, did.as_str(), &zeroize::Zeroizing::new(signing.private_bytes()))
            .map_err(|e| CommandError::Internal(e.to_string()))?;
    let mut attempt = 0;
    loop {
        let (state, version) = load_account(log, did.as_str()).await?;
        let (now_micros, now_secs) = now();
        let mut events = account::decide_create_account(
            &state,
            CreateAccount {
                did: did.clone(),
                handle: handle.clone(),
                email: email.clone(),
                password_hash: password_hash.clone(),
                signing_key_encrypted: signing_key_encrypted.clone(),
                signing_did_key: signing.public_key().to_did_key(),
                plc_genesis: None,
                invite_code: invite_code.clone(),
                deactivated: true,
            },
            now_micros,
        )
        .map_err(account_error)?;
        let jti = session_jwt::generate_jti();
        let created = AccountState::from_events(&events);
        events.extend(
            account::decide_create_session(
                &created,
                account::CreateSession {
                    password: account::PasswordCheck { account_password_ok: true, app_password_hash: None },
                    allow_takendown: false,
                    token_hash: session_jwt::refresh_token_hash(&jti),
                    expires_at: refresh_expiry_micros(now_secs),
                },
                now_micros,
            )
            .map_err(account_error)?,
        );
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        let mut batch = vec![account_append(&did, expected, &events), empty_repo(&did, &signing, now_micros, log).await?];
        if let Some(code) = &invite_code {
            let (invite, v) = load_invite(log, code).await?;
            let used = domain::invite::decide_use(&invite, did.as_str(), now_micros).map_err(|_| unavailable_invite())?;
            batch.push(invite_append(code, ExpectedVersion::Exact(v), &used));
        }
        match ctx.appender.append(batch).await {
            Ok(_) => {}
            Err(eventlog::AppendError::Conflict { .. }) if attempt < 10 => {
                attempt += 1;
                continue;
            }
            Err(e) => return Err(append_error(e, handle.as_str(), &email)),
        }
        let state = AccountState::from_events(&events);
        let Some(account) = state.live() else {
            return Err(CommandError::Internal("created account does not fold to a live one".into()));
        };
        let (access_jwt, refresh_jwt) = tokens(ctx, did.as_str(), account.session_scope(None), &jti, now_secs);
        let mut view = account_view(ctx, account);
        view.did_doc = doc;
        return Ok(Session { account: view, access_jwt, refresh_jwt });
    }
}
