//! Which handle an account may take: one under `PDS_SERVICE_HANDLE_DOMAINS` by the service rules
//! (`domain::handle_rules`), or — as the reference — a handle on the user's own domain, if that
//! domain already names the account's DID (DNS TXT `_atproto.<handle>` or
//! `https://<handle>/.well-known/atproto-did`, resolved fresh by `identity.rs`).

use domain::handle_rules::{self, HandleError};
use domain::syntax::Handle;

use crate::identity::IdentityError;
use crate::{CommandError, Ctx};

fn handle_error(e: HandleError) -> CommandError {
    match e {
        HandleError::NotServiceDomain(_) => CommandError::UnsupportedDomain("Not a supported handle domain".into()),
        HandleError::Reserved(_) => CommandError::HandleNotAvailable("Reserved handle".into()),
        other => CommandError::InvalidHandle(other.to_string()),
    }
}

/// The normalised handle `did` may take (`did`: `None` for a new did:plc, which cannot have
/// claimed a domain yet, so only service handles pass).
pub async fn check_handle(ctx: &Ctx, handle: &str, did: Option<&str>, allow_reserved: bool) -> Result<Handle, CommandError> {
    match handle_rules::check_service_handle_with(handle, &ctx.handle_domains, allow_reserved) {
        Ok(h) => Ok(h),
        Err(HandleError::NotServiceDomain(h)) => {
            let (Some(did), Some(identity)) = (did, ctx.identity.as_ref()) else {
                return Err(CommandError::UnsupportedDomain("Not a supported handle domain".into()));
            };
            match identity.resolve_handle_fresh(h.as_str()).await {
                Ok(found) if found == did => Ok(h),
                Ok(_) => Err(CommandError::InvalidRequest("External handle did not resolve to DID".into())),
                Err(IdentityError::InvalidHandle(m)) => Err(CommandError::InvalidHandle(m)),
                Err(e) => Err(CommandError::InvalidRequest(format!("External handle did not resolve to DID: {e}"))),
            }
        }
        Err(e) => Err(handle_error(e)),
    }
}
