//! `com.atproto.admin.disableInviteCodes` (admin): `invite.disabled` on each named code and on
//! every code made for the named accounts, all in one append (each stream at the version it was
//! decided on). A code already disabled or unknown appends nothing. Codes for `admin` cannot be
//! disabled by account (the reference's "cannot disable admin invite codes").
//!
//! Never decides who may call it (the caller checked admin auth).

use domain::invite;
use eventlog::{AppendError, ExpectedVersion};

use crate::create_invite_codes::{invite_append, load_invite};
use crate::{now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

pub async fn disable_invite_codes(ctx: &Ctx, codes: &[String], accounts: &[String]) -> Result<(), CommandError> {
    if accounts.iter().any(|a| a == "admin") {
        return Err(CommandError::InvalidRequest("cannot disable admin invite codes".into()));
    }
    let mut all: Vec<String> = codes.to_vec();
    for a in accounts {
        all.extend(projections::invites::codes_for_account(ctx.log(), a).await?);
    }
    all.sort();
    all.dedup();
    for _ in 0..ATTEMPTS {
        let (now_micros, _) = now();
        let mut batch = vec![];
        for code in &all {
            let (state, version) = load_invite(ctx.log(), code).await?;
            let events = invite::decide_disable(&state, now_micros);
            if !events.is_empty() {
                batch.push(invite_append(code, ExpectedVersion::Exact(version), &events));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        match ctx.appender.append(batch).await {
            Ok(_) => return Ok(()),
            // A signup used one of the codes meanwhile: decide again.
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict("invite codes".into()))
}
