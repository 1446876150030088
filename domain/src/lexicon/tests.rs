#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path as FsPath;

use serde_json::{json, Value};

use super::*;
use crate::json::json_to_ipld;
use crate::testing::{fixture_path, lexicon_path, read_fixture};

fn fixture_json(rel: &str) -> Value {
    serde_json::from_str(&read_fixture(rel)).unwrap()
}

fn cases(rel: &str) -> Vec<Value> {
    let v = fixture_json(rel);
    let cases = v.as_array().unwrap().clone();
    assert!(!cases.is_empty(), "{rel} yielded no cases");
    cases
}

#[track_caller]
fn check_doc(case: &Value, valid: bool) {
    let name = case["name"].as_str().unwrap();
    let result = parse_document(&case["lexicon"]);
    match (valid, result) {
        (true, Err(e)) => panic!("valid lexicon {name:?} rejected: {e}"),
        (false, Ok(_)) => panic!("invalid lexicon {name:?} accepted"),
        _ => {}
    }
}

#[test]
fn lexicon_documents_fixtures() {
    let valid = cases("interop-tests/lexicon/lexicon-valid.json");
    for c in &valid {
        check_doc(c, true);
    }
    let invalid = cases("interop-tests/lexicon/lexicon-invalid.json");
    for c in &invalid {
        check_doc(c, false);
    }
    assert_eq!((valid.len(), invalid.len()), (3, 7));
}

fn fixture_catalog() -> Catalog {
    let dir = fixture_path("interop-tests/lexicon/catalog");
    let mut catalog = Catalog::new();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            catalog
                .add_document(&v)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert_eq!(n, 5, "catalog documents in {}", dir.display());
    catalog
}

#[track_caller]
fn check_record(catalog: &Catalog, case: &Value, valid: bool) {
    let name = case["name"].as_str().unwrap();
    let result = json_to_ipld(&case["data"])
        .map_err(|e| e.to_string())
        .and_then(|rec| {
            catalog
                .validate_record("example.lexicon.record", &rec)
                .map_err(|e| e.to_string())
        });
    match (valid, result) {
        (true, Err(e)) => panic!("valid record {name:?} rejected: {e}"),
        (false, Ok(())) => panic!("invalid record {name:?} accepted"),
        _ => {}
    }
}

#[test]
fn record_data_fixtures() {
    let catalog = fixture_catalog();
    let valid = cases("interop-tests/lexicon/record-data-valid.json");
    for c in &valid {
        check_record(&catalog, c, true);
    }
    let invalid = cases("interop-tests/lexicon/record-data-invalid.json");
    for c in &invalid {
        check_record(&catalog, c, false);
    }
    assert_eq!((valid.len(), invalid.len()), (3, 50));
}

fn walk(dir: &FsPath, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

/// Every Lexicon document the server embeds (`commands/lexicons/`, listed in
/// `commands/src/lexicon_docs.rs`): all of them load, and the folder holds exactly the listed ones.
fn full_catalog() -> Catalog {
    let mut files = Vec::new();
    walk(&lexicon_path(""), &mut files);
    let listed = std::fs::read_to_string(lexicon_path("../src/lexicon_docs.rs"))
        .unwrap()
        .matches("include_str!(")
        .count();
    assert!(files.len() >= 250, "found only {} lexicon files", files.len());
    assert_eq!(files.len(), listed, "lexicon files in commands/lexicons/ vs. documents embedded by lexicon_docs.rs");
    let mut catalog = Catalog::new();
    for p in &files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        catalog
            .add_document(&v)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    assert_eq!(catalog.len(), files.len());
    catalog
}

const CID: &str = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq";

fn post() -> Value {
    let strong = json!({
        "uri": "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3k43tv4rft22g",
        "cid": CID,
    });
    json!({
        "$type": "app.bsky.feed.post",
        "text": "hello @alice.test, see https://example.com #rust",
        "createdAt": "2024-05-01T12:34:56.789Z",
        "langs": ["en", "pt-BR"],
        "facets": [
            {
                "index": {"byteStart": 6, "byteEnd": 17},
                "features": [{"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz"}]
            },
            {
                "index": {"byteStart": 23, "byteEnd": 42},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com"}]
            },
            {
                "index": {"byteStart": 43, "byteEnd": 48},
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "rust"}]
            }
        ],
        "reply": {"root": strong, "parent": strong},
        "embed": {
            "$type": "app.bsky.embed.images",
            "images": [{
                "alt": "a cat",
                "image": {"$type": "blob", "ref": {"$link": CID}, "mimeType": "image/jpeg", "size": 123456},
                "aspectRatio": {"width": 4, "height": 3}
            }]
        }
    })
}

#[track_caller]
fn check_post(catalog: &Catalog, record: &Value, expected: Result<(), &str>) {
    let rec = json_to_ipld(record).unwrap();
    let got = catalog
        .validate_record("app.bsky.feed.post", &rec)
        .map_err(|e| e.to_string());
    assert_eq!(
        got.as_ref().map(|_| ()).map_err(String::as_str),
        expected,
        "record: {record}"
    );
}

#[test]
fn all_lexicons_load_and_validate_posts() {
    let catalog = full_catalog();
    let unresolved = catalog.unresolved_refs();
    assert!(unresolved.is_empty(), "unresolved refs: {unresolved:?}");

    check_post(&catalog, &post(), Ok(()));

    let mut long = post();
    long["text"] = json!("🇩🇪".repeat(301));
    check_post(
        &catalog,
        &long,
        Err("Record/text must not be longer than 300 graphemes"),
    );

    let mut bad_date = post();
    bad_date["createdAt"] = json!("2024-05-01 12:34:56Z");
    check_post(
        &catalog,
        &bad_date,
        Err("Record/createdAt must be a valid datetime string"),
    );

    let mut no_date = post();
    no_date.as_object_mut().unwrap().remove("createdAt");
    check_post(
        &catalog,
        &no_date,
        Err("Record must have the property \"createdAt\""),
    );

    let mut wrong_type = post();
    wrong_type["$type"] = json!("app.bsky.feed.like");
    check_post(
        &catalog,
        &wrong_type,
        Err("Record $type must be app.bsky.feed.post, got app.bsky.feed.like"),
    );

    let mut bad_alt = post();
    bad_alt["embed"]["images"][0]["alt"] = json!(42);
    check_post(
        &catalog,
        &bad_alt,
        Err("Record/embed/images/0/alt must be a string"),
    );

    let mut bad_mime = post();
    bad_mime["embed"]["images"][0]["image"]["mimeType"] = json!("video/mp4");
    check_post(
        &catalog,
        &bad_mime,
        Err("Record/embed/images/0/image has a MIME type \"video/mp4\" that is not accepted (image/*)"),
    );

    let mut bad_facet = post();
    bad_facet["facets"][0]["features"][0]["did"] = json!("alice");
    check_post(
        &catalog,
        &bad_facet,
        Err("Record/facets/0/features/0/did must be a valid did string"),
    );

    let mut untyped_embed = post();
    untyped_embed["embed"]
        .as_object_mut()
        .unwrap()
        .remove("$type");
    check_post(
        &catalog,
        &untyped_embed,
        Err("Record/embed must be an object which includes the \"$type\" property"),
    );

    let mut open_union = post();
    open_union["embed"] = json!({"$type": "com.example.embed", "anything": true});
    check_post(&catalog, &open_union, Ok(()));

    let mut bad_lang = post();
    bad_lang["langs"] = json!(["en", "123"]);
    check_post(
        &catalog,
        &bad_lang,
        Err("Record/langs/1 must be a valid language string"),
    );

    let unknown = catalog
        .validate_record("com.example.nothing", &json_to_ipld(&post()).unwrap())
        .unwrap_err();
    assert!(unknown.is_unknown_schema());
}

#[test]
fn validate_defs_by_ref_and_params() {
    let catalog = full_catalog();
    let strong =
        json_to_ipld(&json!({"uri": "at://did:plc:abc/app.bsky.feed.post/1", "cid": CID})).unwrap();
    assert_eq!(
        catalog.validate_object("com.atproto.repo.strongRef", &strong),
        Ok(())
    );
    let broken = json_to_ipld(&json!({"uri": "at://did:plc:abc/app.bsky.feed.post/1"})).unwrap();
    assert_eq!(
        catalog
            .validate_object("com.atproto.repo.strongRef", &broken)
            .unwrap_err()
            .to_string(),
        "Object must have the property \"cid\""
    );
    assert!(catalog
        .validate_object("com.example.missing#thing", &strong)
        .unwrap_err()
        .is_unknown_schema());

    // Procedure input.
    let input = json_to_ipld(&json!({
        "repo": "alice.test",
        "collection": "app.bsky.feed.post",
        "record": {"text": "hi"},
    }))
    .unwrap();
    assert_eq!(
        catalog.validate_input("com.atproto.repo.createRecord", &input),
        Ok(())
    );
    let input = json_to_ipld(&json!({"repo": "alice.test", "record": {}})).unwrap();
    assert_eq!(
        catalog
            .validate_input("com.atproto.repo.createRecord", &input)
            .unwrap_err()
            .to_string(),
        "Input must have the property \"collection\""
    );

    // Query params: typed, defaults filled, limits enforced.
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let p = catalog
        .parse_params(
            "com.atproto.repo.listRecords",
            &pairs(&[
                ("repo", "alice.test"),
                ("collection", "app.bsky.feed.post"),
                ("reverse", "true"),
            ]),
        )
        .unwrap();
    assert_eq!(p.get("limit"), Some(&Ipld::Integer(50)));
    assert_eq!(p.get("reverse"), Some(&Ipld::Bool(true)));
    let err = catalog
        .parse_params(
            "com.atproto.repo.listRecords",
            &pairs(&[
                ("repo", "alice.test"),
                ("collection", "app.bsky.feed.post"),
                ("limit", "1000"),
            ]),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "Params/limit can not be greater than 100");
    let err = catalog
        .parse_params(
            "com.atproto.repo.listRecords",
            &pairs(&[("repo", "alice.test")]),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Params must have the property \"collection\""
    );
}

#[track_caller]
fn check_schema_error(doc: Value, expected: &str) {
    let err = parse_document(&doc).unwrap_err();
    assert_eq!(err.to_string(), expected);
}

#[test]
fn schema_errors_name_the_problem() {
    let doc = |def: Value| json!({"lexicon": 1, "id": "com.example.test", "defs": {"main": def}});
    check_schema_error(
        doc(json!({"type": "union", "refs": [], "closed": true})),
        "com.example.test#main: type \"union\" is not allowed as a named definition",
    );
    check_schema_error(
        doc(
            json!({"type": "object", "properties": {"u": {"type": "union", "refs": [], "closed": true}}}),
        ),
        "com.example.test#main/properties/u: a closed union must list at least one ref",
    );
    check_schema_error(
        doc(json!({"type": "object", "required": ["x"], "properties": {}})),
        "com.example.test#main: required property \"x\" is not defined in `properties`",
    );
    check_schema_error(
        doc(json!({"type": "string", "format": "email"})),
        "com.example.test#main: unknown string format \"email\"",
    );
    check_schema_error(
        doc(json!({"type": "object", "properties": {"r": {"type": "ref", "ref": "not a ref"}}})),
        "com.example.test#main/properties/r: invalid reference \"not a ref\"",
    );
    check_schema_error(
        doc(json!({"type": "blob", "accept": ["text/ht*"]})),
        "com.example.test#main: invalid blob accept pattern \"text/ht*\"",
    );
    check_schema_error(
        doc(json!({"type": "query", "parameters": {"type": "params", "properties": {"o": {"type": "object", "properties": {}}}}})),
        "com.example.test#main/parameters/properties/o: type \"object\" is not allowed in params (boolean, integer, string, unknown or arrays of those)",
    );
    check_schema_error(
        json!({"lexicon": 1, "id": "com.example.test", "defs": {}}),
        "com.example.test: `defs` must be a non-empty object",
    );
    let mut c = Catalog::new();
    c.add_document(&doc(json!({"type": "token"}))).unwrap();
    assert_eq!(
        c.add_document(&doc(json!({"type": "token"}))),
        Err(LexiconError::Duplicate("com.example.test".into()))
    );
}

#[test]
fn blob_accept_patterns() {
    let d = |a: &[&str]| BlobDef {
        accept: Some(a.iter().map(|s| s.to_string()).collect()),
        max_size: None,
    };
    assert!(d(&["image/*"]).accepts("image/png"));
    assert!(!d(&["image/*"]).accepts("video/mp4"));
    assert!(d(&["*/*"]).accepts("video/mp4"));
    assert!(d(&["video/mp4", "image/png"]).accepts("image/png"));
    assert!(!d(&["image/png"]).accepts("image/pngx"));
    assert!(BlobDef::default().accepts("anything/at-all"));
}

#[track_caller]
fn check_unknown_field(catalog: &Catalog, unknown: Value, expected: Result<(), &str>) {
    let rec =
        json_to_ipld(&json!({"$type": "example.lexicon.record", "integer": 1, "unknown": unknown}))
            .unwrap();
    let got = catalog
        .validate_record("example.lexicon.record", &rec)
        .map_err(|e| e.to_string());
    assert_eq!(got.as_ref().map(|_| ()).map_err(String::as_str), expected);
}

/// The fixture's `unknown wrong type` cases also lack the required `integer`; these check the
/// `unknown` rule itself.
#[test]
fn unknown_must_be_a_plain_object() {
    let catalog = fixture_catalog();
    check_unknown_field(&catalog, json!({"a": [1, {"b": "c"}]}), Ok(()));
    check_unknown_field(
        &catalog,
        json!(false),
        Err("Record/unknown must be an object"),
    );
    check_unknown_field(
        &catalog,
        json!({"$bytes": "AAEC"}),
        Err("Record/unknown must be an object"),
    );
    check_unknown_field(
        &catalog,
        json!({"$link": CID}),
        Err("Record/unknown must be an object"),
    );
    check_unknown_field(
        &catalog,
        json!({"$type": "blob", "ref": {"$link": CID}, "mimeType": "text/plain", "size": 1}),
        Err("Record/unknown must be an object, not a blob or another compound value"),
    );
}
