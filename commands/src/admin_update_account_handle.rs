//! Admin `com.atproto.admin.updateAccountHandle`: the service-domain rules
//! (`check_service_handle`), the handle free (case-insensitive; the read model's UNIQUE index
//! settles a race), the DID document updated first (a did:plc update op chained to the
//! directory's last op, signed with the rotation key; nothing appended if the directory refuses),
//! then `account.handle_updated` + `#identity{handle}` in one append.

use domain::account;
use domain::handle_rules::{self, HandleError};
use domain::plc::UnsignedOp;
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};

use crate::{account_append, account_error, append_error, load_account, now, plc_client, CommandError, Ctx};

const ATTEMPTS: usize = 3;

fn handle_error(e: HandleError) -> CommandError {
    match e {
        HandleError::NotServiceDomain(_) => CommandError::UnsupportedDomain("Not a supported handle domain".into()),
        HandleError::Reserved(_) => CommandError::HandleNotAvailable("Reserved handle".into()),
        other => CommandError::InvalidHandle(other.to_string()),
    }
}

pub async fn admin_update_account_handle(ctx: &Ctx, did: &str, handle: &str) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    let handle = handle_rules::check_service_handle(handle, &ctx.handle_domains).map_err(handle_error)?;
    let (state, _) = load_account(ctx.log(), did).await?;
    let Some(current) = state.live() else {
        return Err(CommandError::AccountNotFound);
    };
    match projections::accounts::did_by_handle(ctx.log(), handle.as_str()).await? {
        Some(owner) if owner != did => {
            return Err(CommandError::HandleNotAvailable(format!("Handle already taken: {}", handle.as_str())))
        }
        _ => {}
    }
    if parsed.method() == "plc" && current.handle != handle {
        update_plc_handle(ctx, did, handle.as_str()).await?;
    }
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = account::decide_update_handle(&state, handle.clone(), now_micros).map_err(account_error)?;
        match ctx.appender.append(vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)]).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(append_error(e, handle.as_str(), "")),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}

/// `GET {plc}/{did}/log/last`, then an update op with the new `alsoKnownAs`, signed and submitted.
async fn update_plc_handle(ctx: &Ctx, did: &str, handle: &str) -> Result<(), CommandError> {
    let plc = |m: String| CommandError::Plc(m);
    let last = plc_client::last_operation(ctx, did).await?;
    let data = last.op.data().ok_or_else(|| plc(format!("{did} is tombstoned in the directory")))?;
    let prev = last.cid().map_err(|e| plc(e.to_string()))?;
    let op = UnsignedOp::update(data.with_handle(handle), prev)
        .sign(&ctx.rotation_key)
        .map_err(|e| CommandError::Internal(e.to_string()))?;
    plc_client::submit_operation(ctx, did, &op.to_json()).await
}
