//! `com.atproto.identity.updateHandle` (the account's own access token): the same rules and
//! steps as the admin's `updateAccountHandle` — service-domain handle rules, uniqueness
//! (case-insensitive), the did:plc document updated first (an update op signed with the PDS
//! rotation key), then `account.handle_updated` + `#identity{handle}`; the same handle again
//! re-announces `#identity`. Handles outside `PDS_SERVICE_HANDLE_DOMAINS` are refused
//! (`UnsupportedDomain`): verifying an external domain's DNS / `.well-known` claim is not built.

use crate::{admin_update_account_handle, CommandError, Ctx};

pub async fn update_handle(ctx: &Ctx, did: &str, handle: &str) -> Result<(), CommandError> {
    admin_update_account_handle(ctx, did, handle).await
}
