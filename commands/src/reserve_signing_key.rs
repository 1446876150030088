//! `com.atproto.server.reserveSigningKey`: a secp256k1 key made before its account, returned as a
//! did:key. With a `did`, the key is reserved for that DID (asking again returns the same key,
//! and a bring-your-own-DID `createAccount` for that DID signs its repo with it, so the DID
//! document may name the key before the account exists); without, it is filed under its own
//! did:key. Stored as one `signing_key.reserved` event (the private key sealed with the
//! key-encryption key), never in the clear.
//!
//! The reference keeps reserved keys as files and, outside its entryway mode, gives a migrating
//! account a fresh key regardless; using the reservation is ours.

use domain::crypto::{KeyType, Keypair};
use domain::reserved_key::{self, Reserved, SIGNING_KEY_RESERVED};
use eventlog::{AppendError, ExpectedVersion, NewEvent, StreamAppend};
use zeroize::Zeroizing;

use crate::{CommandError, Ctx};

/// The key reserved for `subject`, if any (decrypted).
pub async fn reserved_for(ctx: &Ctx, subject: &str) -> Result<Option<Keypair>, CommandError> {
    let Some(e) = ctx.log().read_stream_last(&reserved_key::stream_name(subject)).await? else { return Ok(None) };
    let r = Reserved::from_payload(&e.event_type, u32::try_from(e.event_version).unwrap_or(0), &e.payload)
        .map_err(|err| CommandError::Internal(err.to_string()))?;
    let private = domain::key_encryption::decrypt_key(&ctx.kek, subject, &r.sealed)
        .map_err(|err| CommandError::Internal(format!("reserved key: {err}")))?;
    Keypair::from_private_bytes(KeyType::K256, &private)
        .map(Some)
        .map_err(|err| CommandError::Internal(format!("reserved key: {err}")))
}

/// Reserves a key (for `did` when given) and returns its did:key.
pub async fn reserve_signing_key(ctx: &Ctx, did: Option<&str>) -> Result<String, CommandError> {
    if let Some(d) = did {
        if !domain::syntax::is_valid_did(d) {
            return Err(CommandError::InvalidRequest(format!("invalid DID: {d}")));
        }
        if let Some(k) = reserved_for(ctx, d).await? {
            return Ok(k.public_key().to_did_key());
        }
    }
    let key = Keypair::generate(KeyType::K256);
    let key_did = key.public_key().to_did_key();
    let subject = did.map_or_else(|| key_did.clone(), str::to_owned);
    let sealed = domain::key_encryption::encrypt_key(&ctx.kek, &subject, &Zeroizing::new(key.private_bytes()))
        .map_err(|e| CommandError::Internal(e.to_string()))?;
    let payload = Reserved { key_did: key_did.clone(), sealed }
        .to_payload()
        .map_err(|e| CommandError::Internal(e.to_string()))?;
    let append = StreamAppend::new(
        reserved_key::stream_name(&subject),
        ExpectedVersion::NoStream,
        vec![NewEvent::new(SIGNING_KEY_RESERVED, 1, payload)],
    );
    match ctx.appender.append(vec![append]).await {
        Ok(_) => Ok(key_did),
        // Another request reserved one for this DID first: that one is the reservation.
        Err(AppendError::Conflict { .. }) => match reserved_for(ctx, &subject).await? {
            Some(k) => Ok(k.public_key().to_did_key()),
            None => Err(CommandError::Conflict(reserved_key::stream_name(&subject))),
        },
        Err(e) => Err(CommandError::Internal(e.to_string())),
    }
}
