//! The bad-input sweep (issue 13): for EVERY method of the method table (`api::routes::methods`),
//! requests built from its lexicon — the wrong HTTP method, no params, each declared param at
//! its boundaries and with random junk, each input property with wrong types, boundary and
//! random values, missing required properties, junk bodies, the wrong content type, an
//! oversized body — with the credentials the method's auth kind asks for. Every answer must be
//! below 500; every error body must be `{error, message}` (strings); no 2xx reply may carry the
//! kernel's lexicon-output problem header. Prints the number of requests and methods. On SQLite
//! and Postgres.

use domain::lexicon::{Def, FieldType, ParamsDef, Property, StringDef, StringFormat};
use serde_json::{json, Map, Value};

use crate::harness::PgDatabase;
use crate::invites::{post, signup, start, ADMIN};
use crate::plc::PlcServer;

const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const CID: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";
const OUTPUT_PROBLEM: &str = "x-debug-lexicon-output-problem";

/// A small deterministic generator (xorshift), so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn junk(&mut self) -> String {
        const POOL: &[&str] = &["", " ", "%", "\u{0}", "ünïcødé", "💥", "../..", "'\"<>", "did:", "at://", "9999999999999999999999", "-1", "null"];
        let n = 1 + (self.next() % 4) as usize;
        (0..n).map(|_| POOL[(self.next() % POOL.len() as u64) as usize]).collect()
    }
}

fn format_sample(f: StringFormat) -> &'static str {
    match f {
        StringFormat::AtIdentifier | StringFormat::Did => DID,
        StringFormat::AtUri => "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/com.example.thing/3jzfcijpj2z2a",
        StringFormat::Cid => CID,
        StringFormat::Datetime => "2024-01-01T00:00:00.000Z",
        StringFormat::Handle => "nobody.test",
        StringFormat::Nsid => "com.example.thing",
        StringFormat::Tid => "3jzfcijpj2z2a",
        StringFormat::RecordKey => "self",
        StringFormat::Uri => "https://example.com/x",
        StringFormat::Language => "en",
    }
}

fn string_sample(s: &StringDef) -> String {
    if let Some(e) = s.enum_.as_ref().and_then(|e| e.first()) {
        return e.clone();
    }
    if let Some(k) = s.known_values.first() {
        return k.clone();
    }
    if let Some(f) = s.format {
        return format_sample(f).to_owned();
    }
    "x".repeat(s.min_length.unwrap_or(1).max(s.min_graphemes.unwrap_or(1)).max(1) as usize)
}

/// A value that satisfies `t` as far as a sample can (refs resolved, unions take their first).
fn sample(t: &FieldType, depth: usize) -> Value {
    let catalog = commands::lexicon_catalog();
    if depth > 6 {
        return json!({});
    }
    match t {
        FieldType::Boolean(_) => json!(true),
        FieldType::Integer(i) => json!(i.default.or(i.minimum).unwrap_or(1)),
        FieldType::String(s) => json!(string_sample(s)),
        FieldType::Bytes(_) => json!({ "$bytes": "AAAA" }),
        FieldType::CidLink => json!({ "$link": CID }),
        FieldType::Blob(_) => json!({ "$type": "blob", "ref": { "$link": CID }, "mimeType": "image/png", "size": 1 }),
        FieldType::Array(a) => json!([sample(&a.items, depth + 1)]),
        FieldType::Object(o) => object_sample(&o.properties, depth),
        FieldType::Ref(r) => match catalog.resolve(r) {
            Some(Def::Field(f)) => sample(f, depth + 1),
            Some(Def::Record(rec)) => object_sample(&rec.record.properties, depth),
            _ => json!({}),
        },
        FieldType::Union(u) => match u.refs.first() {
            Some(r) => {
                let mut v = sample(&FieldType::Ref(r.clone()), depth + 1);
                let ty = if r.name == "main" { r.nsid.clone() } else { format!("{}#{}", r.nsid, r.name) };
                if let Value::Object(m) = &mut v {
                    m.insert("$type".into(), json!(ty));
                }
                v
            }
            None => json!({}),
        },
        FieldType::Unknown => json!({}),
    }
}

fn object_sample(props: &[Property], depth: usize) -> Value {
    let mut m = Map::new();
    for p in props.iter().filter(|p| p.required) {
        m.insert(p.name.clone(), sample(&p.schema, depth + 1));
    }
    Value::Object(m)
}

/// Wrong, boundary and random JSON values for a property of type `t`.
fn bad_json(t: &FieldType, rng: &mut Rng) -> Vec<Value> {
    let mut out = vec![Value::Null, json!(rng.junk()), json!([]), json!({ "$type": "nope" }), json!(1.5), json!(-9_007_199_254_740_993i64)];
    match t {
        FieldType::Integer(i) => {
            out.extend(i.minimum.map(|m| json!(m.saturating_sub(1))));
            out.extend(i.maximum.map(|m| json!(m.saturating_add(1))));
            out.push(json!(i64::MAX));
            out.push(json!("12"));
        }
        FieldType::String(s) => {
            out.push(json!(""));
            out.push(json!("x".repeat(s.max_length.map_or(3000, |m| m as usize + 1))));
            out.push(json!(12));
            out.push(json!("not valid!"));
        }
        FieldType::Array(a) => {
            out.push(json!([Value::Null]));
            out.push(Value::Array(vec![sample(&a.items, 1); a.max_length.map_or(300, |m| m as usize + 1)]));
        }
        FieldType::Boolean(_) => out.push(json!("true")),
        _ => out.push(json!("str")),
    }
    out
}

/// Boundary and random query-string values for a param of type `t`.
fn bad_param(t: &FieldType, rng: &mut Rng) -> Vec<String> {
    let mut out = vec![String::new(), rng.junk(), rng.junk(), "x".repeat(3000)];
    match t {
        FieldType::Integer(i) => {
            out.extend(i.minimum.map(|m| m.saturating_sub(1).to_string()));
            out.extend(i.maximum.map(|m| m.saturating_add(1).to_string()));
            out.extend(["abc", "1.5", "-0", "99999999999999999999999"].map(String::from));
        }
        FieldType::Boolean(_) => out.extend(["maybe", "TRUE", "1"].map(String::from)),
        FieldType::String(s) => {
            out.push("not valid!".into());
            out.extend(s.max_length.map(|m| "y".repeat(m as usize + 1)));
        }
        _ => {}
    }
    out
}

fn param_sample(t: &FieldType) -> String {
    match sample(t, 0) {
        Value::String(s) => s,
        Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or("x").to_owned(),
        v => v.to_string(),
    }
}

struct Req {
    method: reqwest::Method,
    query: Vec<(String, String)>,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
}

impl Req {
    fn get(query: Vec<(String, String)>) -> Req {
        Req { method: reqwest::Method::GET, query, content_type: None, body: None }
    }
    fn post_json(query: Vec<(String, String)>, body: &Value) -> Req {
        Req { method: reqwest::Method::POST, query, content_type: Some("application/json"), body: Some(body.to_string().into_bytes()) }
    }
}

/// Every request of the sweep for one method.
fn requests(nsid: &str, rng: &mut Rng) -> Vec<Req> {
    let catalog = commands::lexicon_catalog();
    let main = catalog.get(nsid).and_then(|d| d.main());
    let empty = ParamsDef::default();
    let params = catalog.params(nsid).unwrap_or(&empty);
    let base: Vec<(String, String)> =
        params.properties.iter().filter(|p| p.required).map(|p| (p.name.clone(), param_sample(&p.schema))).collect();
    let post = matches!(main, Some(Def::Procedure(_)));
    let mut out = vec![];
    // The wrong HTTP method, and an unknown one.
    out.push(Req { method: if post { reqwest::Method::GET } else { reqwest::Method::POST }, query: base.clone(), content_type: None, body: None });
    out.push(Req { method: reqwest::Method::PUT, query: base.clone(), content_type: None, body: None });
    // Params: none at all, an unknown one, each declared one bad in turn.
    let with = |q: Vec<(String, String)>| -> Req {
        if post { Req::post_json(q, &json!({})) } else { Req::get(q) }
    };
    out.push(with(vec![]));
    let mut extra = base.clone();
    extra.push(("notAParam".into(), rng.junk()));
    out.push(with(extra));
    for p in &params.properties {
        for v in bad_param(&p.schema, rng) {
            let mut q: Vec<(String, String)> = base.iter().filter(|(k, _)| *k != p.name).cloned().collect();
            q.push((p.name.clone(), v));
            out.push(with(q));
        }
        // Repeated (arrays take many; scalars must not break).
        let mut q = base.clone();
        q.push((p.name.clone(), param_sample(&p.schema)));
        q.push((p.name.clone(), param_sample(&p.schema)));
        out.push(with(q));
    }
    out.push(with(base.clone()));
    // Input bodies.
    if let Some(Def::Procedure(x)) = main {
        let input = x.input.as_ref();
        let schema = input.and_then(|i| i.schema.as_ref());
        let json_input = input.is_some_and(|i| i.encoding.contains("json"));
        for junk in [&b"junk{"[..], b"[]", b"null", b"\"str\"", b"{\"a\":", b"{}", &[0xff, 0xfe, 0x00]] {
            out.push(Req { method: reqwest::Method::POST, query: base.clone(), content_type: Some("application/json"), body: Some(junk.to_vec()) });
        }
        out.push(Req { method: reqwest::Method::POST, query: base.clone(), content_type: None, body: None });
        out.push(Req { method: reqwest::Method::POST, query: base.clone(), content_type: Some("text/plain"), body: Some(b"hello".to_vec()) });
        let mut random = vec![0u8; 64];
        random.iter_mut().for_each(|b| *b = rng.next() as u8);
        out.push(Req { method: reqwest::Method::POST, query: base.clone(), content_type: Some("application/octet-stream"), body: Some(random) });
        if json_input {
            // Over every JSON limit of the table (1,000,000 bytes for records).
            let big = json!({ "x": "a".repeat(1_100_000) });
            out.push(Req::post_json(base.clone(), &big));
        }
        if let Some(schema) = schema {
            let valid = sample(schema, 0);
            out.push(Req::post_json(base.clone(), &valid));
            let props: Vec<Property> = match schema {
                FieldType::Object(o) => o.properties.clone(),
                FieldType::Ref(r) => match catalog.resolve(r) {
                    Some(Def::Field(FieldType::Object(o))) => o.properties.clone(),
                    _ => vec![],
                },
                _ => vec![],
            };
            for p in &props {
                for v in bad_json(&p.schema, rng) {
                    let mut b = valid.clone();
                    b[p.name.as_str()] = v;
                    out.push(Req::post_json(base.clone(), &b));
                }
                if p.required {
                    let mut b = valid.clone();
                    if let Value::Object(m) = &mut b {
                        m.remove(&p.name);
                    }
                    out.push(Req::post_json(base.clone(), &b));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn lexicon_sweep_sqlite() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    sweep(&dir, &plc, None).await;
}

#[tokio::test]
async fn lexicon_sweep_postgres() {
    let plc = PlcServer::start();
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    sweep(&dir, &plc, Some(&db)).await;
}

async fn sweep(dir: &tempfile::TempDir, plc: &PlcServer, pg: Option<&PgDatabase>) {
    let (s, _env) = start(dir.path(), plc, pg, "false").await;
    let alice = post(&s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(alice.0, 200, "{alice:?}");
    let access = alice.1["accessJwt"].as_str().unwrap().to_owned();
    let methods = api::routes::methods(Default::default());
    assert!(methods.len() >= 60, "the table lists {} methods", methods.len());
    // No connection reuse: a body refused early (413) may leave its connection unusable.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut total, mut failures) = (0usize, Vec::new());
    for m in &methods {
        for r in requests(m.nsid, &mut rng) {
            let mut req = client.request(r.method.clone(), s.xrpc(m.nsid)).query(&r.query);
            req = match m.auth {
                api::xrpc::Auth::Admin => req.basic_auth("admin", Some(ADMIN)),
                api::xrpc::Auth::Access | api::xrpc::Auth::AccessStandard | api::xrpc::Auth::AccessFull => req.bearer_auth(&access),
                api::xrpc::Auth::Refresh => req.bearer_auth("not-a-refresh-token"),
                api::xrpc::Auth::Public | api::xrpc::Auth::OptionalServiceAuth => req,
            };
            if let Some(ct) = r.content_type {
                req = req.header("content-type", ct);
            }
            if let Some(b) = r.body.clone() {
                req = req.body(b);
            }
            total += 1;
            let what = format!("{} {} {:?} {:?}", r.method, m.nsid, r.query, r.body.as_ref().map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned()));
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    failures.push(format!("{what}: no answer: {e}"));
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let problem = resp.headers().get(OUTPUT_PROBLEM).map(|v| v.to_str().unwrap_or("?").to_owned());
            let bytes = resp.bytes().await.unwrap_or_default();
            if status >= 500 {
                failures.push(format!("{what}: {status} {}", String::from_utf8_lossy(&bytes)));
            } else if status >= 400 {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if !body["error"].is_string() || !body["message"].is_string() {
                    failures.push(format!("{what}: {status} without {{error, message}}: {:?}", String::from_utf8_lossy(&bytes)));
                }
            } else if let Some(p) = problem {
                failures.push(format!("{what}: {status} reply does not match the lexicon: {p}"));
            }
        }
    }
    println!("lexicon sweep: {total} requests over {} methods, {} failures", methods.len(), failures.len());
    assert!(failures.is_empty(), "{} of {total} requests failed:\n{}", failures.len(), failures.join("\n"));
    assert!(total > methods.len() * 10, "too few requests: {total}");
}
