//! The one JSON rendering of a log envelope, shared by `pds events tail --json` and the admin
//! endpoints (`org.eventpds.admin.listEvents`, `subscribeEvents`). The payload is decoded as
//! DAG-CBOR and written as atproto JSON (`$link`, `$bytes`); a payload that is not valid DAG-CBOR
//! is written whole as `{"$bytes": ...}`.

use domain::cbor::Ipld;
use domain::json::ipld_to_json;
use eventlog::Envelope;
use serde_json::{json, Map, Value};

pub fn envelope_json(e: &Envelope) -> Value {
    let payload = match domain::cbor::decode(&e.payload) {
        Ok(v) => ipld_to_json(&v),
        Err(_) => ipld_to_json(&Ipld::Bytes(e.payload.clone())),
    };
    let mut o = Map::new();
    o.insert("position".into(), json!(e.position));
    if let Some(seq) = e.seq {
        o.insert("seq".into(), json!(seq));
    }
    o.insert("stream".into(), json!(e.stream));
    o.insert("streamVersion".into(), json!(e.stream_version));
    o.insert("type".into(), json!(e.event_type));
    o.insert("version".into(), json!(e.event_version));
    o.insert("recordedAt".into(), rfc3339(e.recorded_at));
    if let Some(a) = &e.actor {
        o.insert("actor".into(), json!(a));
    }
    if let Some(c) = &e.correlation {
        o.insert("correlation".into(), json!(c));
    }
    o.insert("payload".into(), payload);
    Value::Object(o)
}

/// Unix microseconds as an RFC 3339 UTC timestamp (millisecond precision); `null` out of range.
pub fn rfc3339(micros: i64) -> Value {
    domain::syntax::Datetime::from_unix_micros(micros).map_or(Value::Null, |d| json!(d.as_str()))
}
