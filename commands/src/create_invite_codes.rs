//! `com.atproto.server.createInviteCode` / `createInviteCodes` (admin): new codes in the
//! reference's format (`<hostname-with-dashes>-xxxxx-xxxxx`), each its own `invite/<code>` stream
//! created with `ExpectedVersion::NoStream` (a collision with an existing code is retried with a
//! fresh one). Also [`load_invite`] and [`invite_append`], which `create_account` uses to
//! consume a use in the account's own append.
//!
//! Never decides who may create codes (the caller checked admin auth).

use domain::invite::{self, InviteEvent, InviteState};
use eventlog::{AppendError, EventLog, ExpectedVersion, NewEvent, StreamAppend};

use crate::{now, CommandError, Ctx};

/// Most codes one `createInviteCodes` call makes per account.
pub const MAX_CODE_COUNT: i64 = 1000;
/// Most accounts one `createInviteCodes` call names.
pub const MAX_ACCOUNTS: usize = 100;
const ATTEMPTS: usize = 5;

/// The invite aggregate of `code`, folded from its stream, and the stream's version.
pub async fn load_invite(log: &EventLog, code: &str) -> Result<(InviteState, i64), CommandError> {
    if !invite::is_valid_code(code) {
        return Ok((InviteState::Absent, 0));
    }
    let envelopes = log.read_stream(&invite::stream_name(code)).await?;
    let mut state = InviteState::Absent;
    let mut version = 0;
    for e in &envelopes {
        let event = InviteEvent::from_payload(&e.event_type, e.event_version, &e.payload)
            .map_err(|err| CommandError::Internal(format!("{} v{}: {err}", e.stream, e.stream_version)))?;
        state = invite::evolve(state, &event);
        version = e.stream_version;
    }
    Ok((state, version))
}

/// The invite events as one stream append (never public).
pub(crate) fn invite_append(code: &str, expected: ExpectedVersion, events: &[InviteEvent]) -> StreamAppend {
    let events = events
        .iter()
        .map(|e| NewEvent::new(e.event_type(), invite::EVENT_VERSION, e.to_payload()))
        .collect();
    StreamAppend::new(invite::stream_name(code), expected, events)
}

fn invite_error(e: invite::InviteError) -> CommandError {
    match e {
        invite::InviteError::InvalidUseCount | invite::InviteError::InvalidCode => {
            CommandError::InvalidRequest(e.to_string())
        }
        other => CommandError::InvalidInviteCode(other.to_string()),
    }
}

/// Codes made for one account.
#[derive(Debug, Clone)]
pub struct AccountCodes {
    pub account: String,
    pub codes: Vec<String>,
}

/// `code_count` codes of `use_count` uses for each of `for_accounts` (`["admin"]` when empty),
/// all in one append. `hostname` is `PDS_HOSTNAME`.
pub async fn create_invite_codes(
    ctx: &Ctx,
    hostname: &str,
    code_count: i64,
    use_count: i64,
    for_accounts: &[String],
) -> Result<Vec<AccountCodes>, CommandError> {
    if !(1..=MAX_CODE_COUNT).contains(&code_count) {
        return Err(CommandError::InvalidRequest(format!("codeCount must be between 1 and {MAX_CODE_COUNT}")));
    }
    if for_accounts.len() > MAX_ACCOUNTS {
        return Err(CommandError::InvalidRequest(format!("at most {MAX_ACCOUNTS} forAccounts")));
    }
    let admin = ["admin".to_owned()];
    let accounts: &[String] = if for_accounts.is_empty() { &admin } else { for_accounts };
    for a in accounts {
        if a != "admin" && !domain::syntax::is_valid_did(a) {
            return Err(CommandError::InvalidRequest(format!("forAccounts: {a} is not a DID")));
        }
    }
    for _ in 0..ATTEMPTS {
        let (now_micros, _) = now();
        let mut batch = vec![];
        let mut out = vec![];
        for account in accounts {
            let mut codes = vec![];
            for _ in 0..code_count {
                let code = invite::generate_code(hostname);
                let events =
                    invite::decide_create(&InviteState::Absent, &code, use_count, account, "admin", now_micros)
                        .map_err(invite_error)?;
                batch.push(invite_append(&code, ExpectedVersion::NoStream, &events));
                codes.push(code);
            }
            out.push(AccountCodes { account: account.clone(), codes });
        }
        match ctx.appender.append(batch).await {
            Ok(_) => return Ok(out),
            // 50 random bits collided with an existing code: draw again.
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict("invite codes".into()))
}

/// One code of `getAccountInviteCodes`.
#[derive(Debug, Clone)]
pub struct InviteView {
    pub code: String,
    pub available: i64,
    pub disabled: bool,
    pub for_account: String,
    pub created_by: String,
    pub created_at: i64,
    /// (DID, microseconds)
    pub uses: Vec<(String, i64)>,
}

/// `com.atproto.server.getAccountInviteCodes`: the codes made for `did`; used-up ones only with
/// `include_used`.
pub async fn get_account_invite_codes(ctx: &Ctx, did: &str, include_used: bool) -> Result<Vec<InviteView>, CommandError> {
    let codes = projections::invites::codes_for_account(ctx.log(), did).await?;
    let mut out = vec![];
    for code in codes {
        let (state, _) = load_invite(ctx.log(), &code).await?;
        let Some(i) = state.live() else { continue };
        if !include_used && i.remaining() <= 0 {
            continue;
        }
        out.push(view_of(i));
    }
    Ok(out)
}

fn view_of(i: &domain::invite::Invite) -> InviteView {
    InviteView {
        code: i.code.clone(),
        available: i.available,
        disabled: i.disabled,
        for_account: i.for_account.clone(),
        created_by: i.created_by.clone(),
        created_at: i.created_at,
        uses: i.uses.iter().map(|u| (u.used_by.clone(), u.at)).collect(),
    }
}

/// One code as the lexicon's `inviteCode` view (`None`: no such code).
pub async fn invite_code_view(log: &eventlog::EventLog, code: &str) -> Result<Option<InviteView>, CommandError> {
    if !domain::invite::is_valid_code(code) {
        return Ok(None);
    }
    let (state, _) = load_invite(log, code).await?;
    Ok(state.live().map(view_of))
}
