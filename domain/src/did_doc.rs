//! Reading a resolved DID document (JSON; `specs/did.md`): the atproto signing key is the
//! `verificationMethod` whose id is `#atproto` (relative or `<did>#atproto`), as a `Multikey`
//! `publicKeyMultibase` or one of the legacy `EcdsaSecp256{k,r}1VerificationKey2019` forms.
//!
//! Never performs I/O: the caller fetched the document.

use serde_json::Value;

use crate::crypto::{KeyType, PublicKey};

/// The `#atproto` signing key of `did`'s document, if it has a usable one.
pub fn atproto_signing_key(doc: &Value, did: &str) -> Option<PublicKey> {
    if doc.get("id").and_then(Value::as_str) != Some(did) {
        return None;
    }
    let methods = doc.get("verificationMethod")?.as_array()?;
    let method = methods.iter().find(|m| {
        let id = m.get("id").and_then(Value::as_str).unwrap_or_default();
        id == "#atproto" || id.strip_prefix(did) == Some("#atproto")
    })?;
    let multibase = method.get("publicKeyMultibase")?.as_str()?;
    match method.get("type").and_then(Value::as_str)? {
        "Multikey" => PublicKey::from_multikey(multibase).ok(),
        legacy => PublicKey::from_legacy_multibase(KeyType::from_legacy_suite(legacy)?, multibase).ok(),
    }
}

/// The first `at://` handle of `alsoKnownAs`, without the scheme.
pub fn handle(doc: &Value) -> Option<&str> {
    doc.get("alsoKnownAs")?.as_array()?.iter().find_map(|a| a.as_str()?.strip_prefix("at://"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    #[test]
    fn finds_the_atproto_key_in_relative_and_absolute_ids_only_for_its_did() {
        let key = Keypair::generate(KeyType::K256).public_key();
        let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        let doc = |id: &str, typ: &str, mb: String, doc_id: &str| {
            serde_json::json!({
                "id": doc_id,
                "alsoKnownAs": ["https://x", "at://alice.test"],
                "verificationMethod": [{ "id": id, "type": typ, "controller": did, "publicKeyMultibase": mb }],
            })
        };
        let table = [
            (doc("#atproto", "Multikey", key.to_multikey(), did), true),
            (doc(&format!("{did}#atproto"), "Multikey", key.to_multikey(), did), true),
            (doc("#other", "Multikey", key.to_multikey(), did), false),
            (doc("#atproto", "Multikey", key.to_multikey(), "did:plc:somebodyelse234567abcdef"), false),
            (doc("#atproto", "Multikey", "zNotAKey".into(), did), false),
        ];
        for (i, (d, found)) in table.iter().enumerate() {
            assert_eq!(atproto_signing_key(d, did).as_ref() == Some(&key), *found, "case {i}");
        }
        assert_eq!(handle(&table[0].0), Some("alice.test"));
    }
}
