//! `com.atproto.identity.submitPlcOperation` (the account's session, typically on the PDS an
//! account migrates to): the reference's checks — the operation keeps this server's rotation
//! key, names this server as `atproto_pds` (`AtprotoPersonalDataServer` at the public URL) and the
//! account's signing key as `atproto`, and keeps `at://<handle>` — then the directory gets it
//! (its answer decides: a bad signature or chain is refused there, nothing appended), then
//! `#identity` (no handle, as the reference).

use domain::account;
use domain::plc::{SignedOp, ATPROTO_KEY, ATPROTO_PDS_SERVICE, ATPROTO_PDS_TYPE};

use crate::{account_error, decide_on_account, load_account_profile, plc_client, CommandError, Ctx};

pub async fn submit_plc_operation(ctx: &Ctx, did: &str, operation: &serde_json::Value) -> Result<(), CommandError> {
    let bad = |m: &str| CommandError::InvalidRequest(m.to_owned());
    if !did.starts_with("did:plc:") {
        return Err(bad("only did:plc identities have PLC operations"));
    }
    let state = load_account_profile(ctx.log(), did).await?;
    let acc = state.live().ok_or(CommandError::AccountNotFound)?;
    let op = SignedOp::from_json(operation).map_err(|e| CommandError::InvalidRequest(format!("invalid operation: {e}")))?;
    let data = op.op.data().ok_or_else(|| bad("a tombstone cannot be submitted here"))?;
    if !data.rotation_keys.contains(&ctx.rotation_key.public_key().to_did_key()) {
        return Err(bad("Rotation keys do not include server's rotation key"));
    }
    match data.services.get(ATPROTO_PDS_SERVICE) {
        Some(s) if s.kind == ATPROTO_PDS_TYPE && s.endpoint == ctx.public_url => {}
        Some(s) if s.kind != ATPROTO_PDS_TYPE => return Err(bad("Incorrect type on atproto_pds service")),
        Some(_) => return Err(bad("Incorrect endpoint on atproto_pds service")),
        None => return Err(bad("Missing atproto_pds service")),
    }
    if data.verification_methods.get(ATPROTO_KEY) != Some(&acc.signing_did_key) {
        return Err(bad("Incorrect signing key"));
    }
    if !data.also_known_as.contains(&format!("at://{}", acc.handle.as_str())) {
        return Err(bad("Incorrect handle in alsoKnownAs"));
    }
    plc_client::submit_operation(ctx, did, operation).await?;
    decide_on_account(ctx, did, "", |state, now| account::decide_identity_changed(state, None, now).map_err(account_error)).await
}
