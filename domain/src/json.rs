//! The atproto JSON representation of the data model, and the abstract data-model rules.
//!
//! JSON ↔ [`Ipld`]: `{"$link": "<cid>"}` is a link, `{"$bytes": "<base64>"}` is a byte string,
//! numbers must be integers in the signed 64-bit range, everything else maps one to one.
//! [`validate_data_model`] checks the rules that hold regardless of any Lexicon (no floats,
//! `$type` is a non-empty string, blob shape, reserved `$link`/`$bytes` keys).
//! Never panics, never performs I/O.

use std::collections::BTreeMap;

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::cbor::{Cid, Ipld};

/// Deepest nesting of lists/maps accepted (matches the CBOR decoder's limit).
pub const MAX_DEPTH: usize = 128;

/// Base64 (RFC 4648 §4) without padding on output; padding optional on input.
const B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        // Lenient like the reference (JS) decoders: the lexicon fixtures carry "123".
        .with_decode_allow_trailing_bits(true),
);

/// Why a value is not valid under the atproto data model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataModelError {
    #[error("floats are not allowed in the atproto data model")]
    Float,
    #[error("integer out of the signed 64-bit range")]
    IntegerOutOfRange,
    #[error("top-level value must be an object")]
    NotAnObject,
    #[error("$type must be a non-empty string")]
    InvalidType,
    #[error("invalid $link object: {0}")]
    InvalidLink(String),
    #[error("invalid $bytes object: {0}")]
    InvalidBytes(String),
    #[error("invalid blob: {0}")]
    InvalidBlob(&'static str),
    #[error("reserved key {0} may not appear in a data-model map")]
    ReservedKey(&'static str),
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A reference to a blob, as found in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRef {
    /// `{$type: "blob", ref: <link>, mimeType, size}`.
    Typed {
        cid: Cid,
        mime_type: String,
        size: u64,
    },
    /// Deprecated `{cid: "<cid string>", mimeType}`; readable, never written.
    Legacy { cid: Cid, mime_type: String },
}

impl BlobRef {
    pub fn cid(&self) -> &Cid {
        match self {
            BlobRef::Typed { cid, .. } | BlobRef::Legacy { cid, .. } => cid,
        }
    }

    pub fn mime_type(&self) -> &str {
        match self {
            BlobRef::Typed { mime_type, .. } | BlobRef::Legacy { mime_type, .. } => mime_type,
        }
    }

    /// The typed data-model form (legacy refs have no size; it is written as given).
    pub fn to_ipld(&self, size: u64) -> Ipld {
        let mut m = BTreeMap::new();
        m.insert("$type".to_string(), Ipld::String("blob".to_string()));
        m.insert("ref".to_string(), Ipld::Link(*self.cid()));
        m.insert(
            "mimeType".to_string(),
            Ipld::String(self.mime_type().to_string()),
        );
        m.insert("size".to_string(), Ipld::Integer(i128::from(size)));
        Ipld::Map(m)
    }
}

/// Recognises a blob reference (typed or legacy). `None` if `v` is not shaped like one.
pub fn blob_ref_from_ipld(v: &Ipld) -> Option<BlobRef> {
    let Ipld::Map(m) = v else { return None };
    match m.get("$type") {
        Some(Ipld::String(t)) if t == "blob" => {
            let Some(Ipld::Link(cid)) = m.get("ref") else {
                return None;
            };
            let Some(Ipld::String(mime)) = m.get("mimeType") else {
                return None;
            };
            let Some(Ipld::Integer(size)) = m.get("size") else {
                return None;
            };
            let size = u64::try_from(*size).ok()?;
            if mime.is_empty() {
                return None;
            }
            Some(BlobRef::Typed {
                cid: *cid,
                mime_type: mime.clone(),
                size,
            })
        }
        Some(_) => None,
        None => {
            let Some(Ipld::String(cid)) = m.get("cid") else {
                return None;
            };
            let Some(Ipld::String(mime)) = m.get("mimeType") else {
                return None;
            };
            if mime.is_empty() {
                return None;
            }
            let cid = Cid::try_from(cid.as_str()).ok()?;
            Some(BlobRef::Legacy {
                cid,
                mime_type: mime.clone(),
            })
        }
    }
}

/// Converts atproto JSON to the data model, checking every data-model rule on the way.
///
/// Floats with no fractional part (`123.0`) are read as integers: JSON does not tell them apart
/// and the official fixtures treat them as valid.
pub fn json_to_ipld(v: &serde_json::Value) -> Result<Ipld, DataModelError> {
    from_json(v, 0)
}

/// Like [`json_to_ipld`] but the top level must be an object (records, request bodies).
pub fn json_object_to_ipld(v: &serde_json::Value) -> Result<Ipld, DataModelError> {
    if !v.is_object() {
        return Err(DataModelError::NotAnObject);
    }
    from_json(v, 0)
}

fn from_json(v: &serde_json::Value, depth: usize) -> Result<Ipld, DataModelError> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err(DataModelError::TooDeep);
    }
    Ok(match v {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => Ipld::Integer(json_integer(n)?),
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(a) => Ipld::List(
            a.iter()
                .map(|x| from_json(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            if let Some(link) = o.get("$link") {
                if o.len() != 1 {
                    return Err(DataModelError::InvalidLink("extra fields".into()));
                }
                let Value::String(s) = link else {
                    return Err(DataModelError::InvalidLink("value is not a string".into()));
                };
                return parse_link(s).map(Ipld::Link);
            }
            if let Some(bytes) = o.get("$bytes") {
                if o.len() != 1 {
                    return Err(DataModelError::InvalidBytes("extra fields".into()));
                }
                let Value::String(s) = bytes else {
                    return Err(DataModelError::InvalidBytes("value is not a string".into()));
                };
                return B64
                    .decode(s)
                    .map(Ipld::Bytes)
                    .map_err(|e| DataModelError::InvalidBytes(e.to_string()));
            }
            let mut m = BTreeMap::new();
            for (k, x) in o {
                m.insert(k.clone(), from_json(x, depth + 1)?);
            }
            check_map(&m)?;
            Ipld::Map(m)
        }
    })
}

fn json_integer(n: &serde_json::Number) -> Result<i128, DataModelError> {
    if let Some(i) = n.as_i64() {
        return Ok(i128::from(i));
    }
    if n.is_u64() {
        return Err(DataModelError::IntegerOutOfRange);
    }
    match n.as_f64() {
        // Exactly representable integers only (|f| <= 2^53), so the conversion is lossless.
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Ok(f as i128)
        }
        _ => Err(DataModelError::Float),
    }
}

fn parse_link(s: &str) -> Result<Cid, DataModelError> {
    let cid = Cid::try_from(s).map_err(|e| DataModelError::InvalidLink(e.to_string()))?;
    if cid.version() != cid::Version::V1 {
        return Err(DataModelError::InvalidLink("CIDv0 is not allowed".into()));
    }
    Ok(cid)
}

/// Rules local to one map: `$type`, blob shape, reserved keys.
fn check_map(m: &BTreeMap<String, Ipld>) -> Result<(), DataModelError> {
    if let Some(t) = m.get("$type") {
        match t {
            Ipld::String(s) if !s.is_empty() => {
                if s == "blob" {
                    check_blob(m)?;
                }
            }
            _ => return Err(DataModelError::InvalidType),
        }
    }
    Ok(())
}

fn check_blob(m: &BTreeMap<String, Ipld>) -> Result<(), DataModelError> {
    match m.get("ref") {
        Some(Ipld::Link(_)) => {}
        Some(_) => return Err(DataModelError::InvalidBlob("ref is not a link")),
        None => return Err(DataModelError::InvalidBlob("missing ref")),
    }
    match m.get("mimeType") {
        Some(Ipld::String(s)) if !s.is_empty() => {}
        Some(_) => {
            return Err(DataModelError::InvalidBlob(
                "mimeType is not a non-empty string",
            ))
        }
        None => return Err(DataModelError::InvalidBlob("missing mimeType")),
    }
    match m.get("size") {
        // The spec says "positive"; zero is accepted because empty files exist and the
        // reference implementation reads them. Negative sizes never.
        Some(Ipld::Integer(n)) if *n >= 0 => {}
        Some(_) => {
            return Err(DataModelError::InvalidBlob(
                "size is not a non-negative integer",
            ))
        }
        None => return Err(DataModelError::InvalidBlob("missing size")),
    }
    Ok(())
}

/// Checks the abstract data-model rules on a decoded value (e.g. from CBOR): no floats,
/// integers in i64 range, `$type` a non-empty string, typed blobs well formed, and no map
/// with a `$link` or `$bytes` key (those would not survive a JSON round trip).
pub fn validate_data_model(v: &Ipld) -> Result<(), DataModelError> {
    validate(v, 0)
}

fn validate(v: &Ipld, depth: usize) -> Result<(), DataModelError> {
    if depth > MAX_DEPTH {
        return Err(DataModelError::TooDeep);
    }
    match v {
        Ipld::Float(_) => Err(DataModelError::Float),
        Ipld::Integer(i) if i64::try_from(*i).is_err() => Err(DataModelError::IntegerOutOfRange),
        Ipld::Link(c) if c.version() != cid::Version::V1 => {
            Err(DataModelError::InvalidLink("CIDv0 is not allowed".into()))
        }
        Ipld::List(l) => l.iter().try_for_each(|x| validate(x, depth + 1)),
        Ipld::Map(m) => {
            if m.contains_key("$link") {
                return Err(DataModelError::ReservedKey("$link"));
            }
            if m.contains_key("$bytes") {
                return Err(DataModelError::ReservedKey("$bytes"));
            }
            check_map(m)?;
            m.values().try_for_each(|x| validate(x, depth + 1))
        }
        _ => Ok(()),
    }
}

/// Converts a data-model value to atproto JSON. Total: values outside the data model (floats,
/// huge integers) are written as best they can be (non-finite floats become `null`).
pub fn ipld_to_json(v: &Ipld) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => {
            if let Ok(x) = i64::try_from(*i) {
                Value::from(x)
            } else if let Ok(x) = u64::try_from(*i) {
                Value::from(x)
            } else {
                #[allow(clippy::cast_precision_loss)]
                serde_json::Number::from_f64(*i as f64).map_or(Value::Null, Value::Number)
            }
        }
        Ipld::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => {
            let mut o = serde_json::Map::with_capacity(1);
            o.insert("$bytes".to_string(), Value::String(B64.encode(b)));
            Value::Object(o)
        }
        Ipld::List(l) => Value::Array(l.iter().map(ipld_to_json).collect()),
        Ipld::Map(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), ipld_to_json(x)))
                .collect(),
        ),
        Ipld::Link(c) => {
            let mut o = serde_json::Map::with_capacity(1);
            o.insert("$link".to_string(), Value::String(c.to_string()));
            Value::Object(o)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cbor;
    use crate::testing::read_fixture;
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use serde_json::{json, Value};

    fn fixture_array(rel: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(&read_fixture(rel)).unwrap();
        v.as_array().unwrap().clone()
    }

    #[track_caller]
    fn check_roundtrip(case: &Value) {
        let j = &case["json"];
        let want_cbor = STANDARD_NO_PAD
            .decode(case["cbor_base64"].as_str().unwrap())
            .unwrap();
        let want_cid = case["cid"].as_str().unwrap();

        let ipld = json_object_to_ipld(j).unwrap();
        validate_data_model(&ipld).unwrap();
        let bytes = cbor::encode(&ipld).unwrap();
        assert_eq!(bytes, want_cbor, "json -> cbor for {j}");
        assert_eq!(cbor::cid_cbor(&bytes).to_string(), want_cid);

        let decoded = cbor::decode(&want_cbor).unwrap();
        assert_eq!(decoded, ipld);
        validate_data_model(&decoded).unwrap();
        assert_eq!(&ipld_to_json(&decoded), j, "cbor -> json");
    }

    #[test]
    fn fixtures_roundtrip() {
        let cases = fixture_array("interop-tests/data-model/data-model-fixtures.json");
        for c in &cases {
            check_roundtrip(c);
        }
        assert_eq!(cases.len(), 3);
    }

    #[track_caller]
    fn check_validity(j: &Value, valid: bool) {
        let res = json_object_to_ipld(j);
        assert_eq!(res.is_ok(), valid, "{j}: {res:?}");
        if let Ok(ipld) = res {
            validate_data_model(&ipld).unwrap();
            // Valid values survive a CBOR round trip and validate again.
            let back = cbor::decode(&cbor::encode(&ipld).unwrap()).unwrap();
            validate_data_model(&back).unwrap();
        }
    }

    #[test]
    fn fixtures_valid() {
        let cases = fixture_array("interop-tests/data-model/data-model-valid.json");
        for c in &cases {
            check_validity(&c["json"], true);
        }
        assert_eq!(cases.len(), 5);
    }

    #[test]
    fn fixtures_invalid() {
        let cases = fixture_array("interop-tests/data-model/data-model-invalid.json");
        for c in &cases {
            check_validity(&c["json"], false);
        }
        assert_eq!(cases.len(), 12);
    }

    #[track_caller]
    fn check_ipld(v: Ipld, expected: Result<(), DataModelError>) {
        assert_eq!(validate_data_model(&v), expected, "{v:?}");
    }

    fn map(pairs: &[(&str, Ipld)]) -> Ipld {
        Ipld::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn ipld_rules() {
        let cid = cbor::cid_for(cbor::RAW, b"x");
        let s = |x: &str| Ipld::String(x.to_string());
        let blob = |size: i128| {
            map(&[
                ("$type", s("blob")),
                ("ref", Ipld::Link(cid)),
                ("mimeType", s("image/png")),
                ("size", Ipld::Integer(size)),
            ])
        };
        let cases: Vec<(Ipld, Result<(), DataModelError>)> = vec![
            (Ipld::Float(1.0), Err(DataModelError::Float)),
            (
                Ipld::List(vec![Ipld::Float(0.5)]),
                Err(DataModelError::Float),
            ),
            (Ipld::Integer(i128::from(i64::MAX)), Ok(())),
            (Ipld::Integer(i128::from(i64::MIN)), Ok(())),
            (
                Ipld::Integer(i128::from(i64::MAX) + 1),
                Err(DataModelError::IntegerOutOfRange),
            ),
            (map(&[("$type", s(""))]), Err(DataModelError::InvalidType)),
            (
                map(&[("$type", Ipld::Null)]),
                Err(DataModelError::InvalidType),
            ),
            (map(&[("$type", s("a.b.c"))]), Ok(())),
            (
                map(&[("$link", s("x"))]),
                Err(DataModelError::ReservedKey("$link")),
            ),
            (
                map(&[("$bytes", s("x"))]),
                Err(DataModelError::ReservedKey("$bytes")),
            ),
            (blob(10), Ok(())),
            (
                blob(-1),
                Err(DataModelError::InvalidBlob(
                    "size is not a non-negative integer",
                )),
            ),
            (
                map(&[
                    ("$type", s("blob")),
                    ("ref", s("x")),
                    ("mimeType", s("a")),
                    ("size", Ipld::Integer(1)),
                ]),
                Err(DataModelError::InvalidBlob("ref is not a link")),
            ),
            (
                map(&[
                    ("$type", s("blob")),
                    ("ref", Ipld::Link(cid)),
                    ("mimeType", s("")),
                    ("size", Ipld::Integer(1)),
                ]),
                Err(DataModelError::InvalidBlob(
                    "mimeType is not a non-empty string",
                )),
            ),
            (
                map(&[
                    ("$type", s("blob")),
                    ("ref", Ipld::Link(cid)),
                    ("mimeType", s("a")),
                ]),
                Err(DataModelError::InvalidBlob("missing size")),
            ),
            (map(&[("cid", s("x")), ("mimeType", s("a"))]), Ok(())),
        ];
        let n = cases.len();
        for (v, e) in cases {
            check_ipld(v, e);
        }
        assert_eq!(n, 16);
        let mut deep = Ipld::Null;
        for _ in 0..200 {
            deep = Ipld::List(vec![deep]);
        }
        check_ipld(deep, Err(DataModelError::TooDeep));
    }

    #[test]
    fn blob_refs() {
        let cid_s = "bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity";
        let cid = Cid::try_from(cid_s).unwrap();
        let typed = json_to_ipld(
            &json!({"$type":"blob","ref":{"$link":cid_s},"mimeType":"image/jpeg","size":10000}),
        )
        .unwrap();
        assert_eq!(
            blob_ref_from_ipld(&typed),
            Some(BlobRef::Typed {
                cid,
                mime_type: "image/jpeg".into(),
                size: 10000
            })
        );
        assert_eq!(
            BlobRef::Typed {
                cid,
                mime_type: "image/jpeg".into(),
                size: 10000
            }
            .to_ipld(10000),
            typed
        );
        let legacy = json_to_ipld(&json!({"cid": cid_s, "mimeType": "image/jpeg"})).unwrap();
        assert_eq!(
            blob_ref_from_ipld(&legacy),
            Some(BlobRef::Legacy {
                cid,
                mime_type: "image/jpeg".into()
            })
        );
        assert_eq!(
            blob_ref_from_ipld(&json_to_ipld(&json!({"a": 1})).unwrap()),
            None
        );
        assert_eq!(
            blob_ref_from_ipld(&json_to_ipld(&json!({"cid": "x", "mimeType": "a"})).unwrap()),
            None
        );
    }

    #[test]
    fn json_details() {
        // Padded base64 accepted on input; output never padded.
        let v = json_to_ipld(&json!({"$bytes": "AQI="})).unwrap();
        assert_eq!(v, Ipld::Bytes(vec![1, 2]));
        assert_eq!(ipld_to_json(&v), json!({"$bytes": "AQI"}));
        assert_eq!(json_to_ipld(&json!({"$bytes": "AQI"})).unwrap(), v);
        assert!(matches!(
            json_to_ipld(&json!({"$bytes": "A-_"})),
            Err(DataModelError::InvalidBytes(_))
        ));
        assert_eq!(json_to_ipld(&json!(1.5)), Err(DataModelError::Float));
        assert_eq!(json_to_ipld(&json!(1.0)), Ok(Ipld::Integer(1)));
        assert_eq!(
            json_to_ipld(&json!(u64::MAX)),
            Err(DataModelError::IntegerOutOfRange)
        );
        assert_eq!(
            json_to_ipld(&json!(i64::MIN)),
            Ok(Ipld::Integer(i128::from(i64::MIN)))
        );
        assert_eq!(
            json_object_to_ipld(&json!([1])),
            Err(DataModelError::NotAnObject)
        );
        assert!(matches!(
            json_to_ipld(&json!({"$link": "QmcRD4wkPPi6dig81r5sLj9Zm1gDCL4zgpEj9CfuRrGbzF"})),
            Err(DataModelError::InvalidLink(_))
        ));
    }
}
