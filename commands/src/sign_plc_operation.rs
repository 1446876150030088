//! `com.atproto.identity.signPlcOperation` (the account's session and the emailed
//! `plc_operation` token from `requestPlcOperationSignature`): an update of the account's
//! did:plc, chained to the directory's last operation, with the fields the caller gives
//! (`rotationKeys`, `alsoKnownAs`, `verificationMethods`, `services`) replacing the current ones,
//! signed with this server's rotation key — what a migrating account's old PDS signs to point
//! the DID at the new one. Returned, not submitted (the new PDS submits it). The token is used.

use std::collections::BTreeMap;

use domain::account;
use domain::plc::{DocumentData, Service, UnsignedOp};

use crate::{decide_on_account, email_token_error, plc_client, CommandError, Ctx};

/// The caller's replacements; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct PlcOperationFields {
    pub rotation_keys: Option<Vec<String>>,
    pub also_known_as: Option<Vec<String>>,
    pub verification_methods: Option<BTreeMap<String, String>>,
    /// Id → (type, endpoint).
    pub services: Option<BTreeMap<String, (String, String)>>,
}

pub async fn sign_plc_operation(
    ctx: &Ctx,
    did: &str,
    token: &str,
    fields: PlcOperationFields,
) -> Result<serde_json::Value, CommandError> {
    if !did.starts_with("did:plc:") {
        return Err(CommandError::InvalidRequest("only did:plc identities have PLC operations".into()));
    }
    let hash = domain::email_token::hash(&ctx.jwt_secret, token);
    decide_on_account(ctx, did, "", |state, now| {
        account::decide_use_plc_operation_token(state, &hash, now).map_err(email_token_error)
    })
    .await?;
    let last = plc_client::last_operation(ctx, did).await?;
    let current = last.op.data().ok_or_else(|| CommandError::InvalidRequest(format!("{did} is tombstoned")))?;
    let data = DocumentData {
        rotation_keys: fields.rotation_keys.unwrap_or(current.rotation_keys),
        also_known_as: fields.also_known_as.unwrap_or(current.also_known_as),
        verification_methods: fields.verification_methods.unwrap_or(current.verification_methods),
        services: match fields.services {
            Some(s) => s.into_iter().map(|(id, (kind, endpoint))| (id, Service { kind, endpoint })).collect(),
            None => current.services,
        },
    };
    data.validate().map_err(|e| CommandError::InvalidRequest(format!("invalid operation: {e}")))?;
    let prev = last.cid().map_err(|e| CommandError::Plc(e.to_string()))?;
    let op = UnsignedOp::update(data, prev)
        .sign(&ctx.rotation_key)
        .map_err(|e| CommandError::Internal(e.to_string()))?;
    Ok(op.to_json())
}
