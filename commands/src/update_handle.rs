//! `com.atproto.identity.updateHandle` (the account's own access token): the same rules and
//! steps as the admin's `updateAccountHandle` — service-domain handle rules, uniqueness
//! (case-insensitive), the did:plc document updated first (an update op signed with the PDS
//! rotation key), then `account.handle_updated` + `#identity{handle}`; the same handle again
//! re-announces `#identity`. A handle outside `PDS_SERVICE_HANDLE_DOMAINS` must already name the
//! DID (DNS TXT or `.well-known`, `external_handle.rs`), else `InvalidRequest` "External handle
//! did not resolve to DID".

use crate::{admin_update_account_handle, CommandError, Ctx};

pub async fn update_handle(ctx: &Ctx, did: &str, handle: &str) -> Result<(), CommandError> {
    admin_update_account_handle(ctx, did, handle).await
}
