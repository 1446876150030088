//! Blobs through the real binary: uploadBlob → a post referencing it → getBlob (identical bytes,
//! the reference's headers, Range), oversize → `BlobTooLarge`, a lying `Content-Type` loses to the
//! sniffed type, a missing / someone else's / mistyped blob → `BlobNotFound` / `InvalidMimeType`,
//! a GPS-tagged JPEG comes back without its EXIF, listBlobs (`since`, cursor), listMissingBlobs,
//! blob takedown (getSubjectStatus / updateSubjectStatus `#repoBlobRef`), dereferencing deletes
//! the blob (and its object), an unreferenced upload is cleaned after the grace period, the
//! `blob.uploaded` events are private, and `pds replay` + `pds verify` are clean — on SQLite and
//! Postgres, with the disk store and with an S3-compatible server (moto, `scripts/s3-install`,
//! checking every request's SigV4 signature against an IAM user's keys).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{free_port, PgDatabase, Server};
use crate::invites::{admin_post, assert_error, call, get, post, replay_and_verify, signup, ADMIN, PASSWORD};
use crate::plc::PlcServer;

const POST: &str = "app.bsky.feed.post";
const BUCKET: &str = "pds-blobs-test";
const LIMIT: usize = 100_000;

/// moto in server mode on a free port, with the test bucket and an IAM user allowed `s3:*`; after
/// those four set-up calls moto checks every request's SigV4 signature against that user's keys.
/// Killed on drop.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
    access_key_id: String,
    secret_access_key: String,
}

impl MotoServer {
    pub async fn start() -> MotoServer {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/s3/.venv/bin/moto_server");
        assert!(bin.exists(), "{} not found: run scripts/s3-install (scripts/test does)", bin.display());
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut server = MotoServer { child, endpoint, access_key_id: String::new(), secret_access_key: String::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            // The first unchecked call: the bucket.
            if let Ok(r) = http.put(format!("{}/{BUCKET}", server.endpoint)).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "moto_server did not start on {}", server.endpoint);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Then the user, its policy and its keys (moto routes by the credential scope's service).
        let iam = |form: String| {
            http.post(format!("{}/", server.endpoint))
                .header("authorization", "AWS4-HMAC-SHA256 Credential=SETUP/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
        };
        let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3A*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D";
        assert!(iam("Action=CreateUser&UserName=pds&Version=2010-05-08".to_owned()).await.unwrap().status().is_success());
        let put_policy = format!("Action=PutUserPolicy&UserName=pds&PolicyName=s3&PolicyDocument={policy}&Version=2010-05-08");
        assert!(iam(put_policy).await.unwrap().status().is_success());
        let keys = iam("Action=CreateAccessKey&UserName=pds&Version=2010-05-08".to_owned()).await.unwrap().text().await.unwrap();
        let between = |open: &str, close: &str| keys.split(open).nth(1).and_then(|r| r.split(close).next()).unwrap().to_owned();
        server.access_key_id = between("<AccessKeyId>", "</AccessKeyId>");
        server.secret_access_key = between("<SecretAccessKey>", "</SecretAccessKey>");
        // From now on, unsigned requests are refused.
        let anonymous = http.put(format!("{}/{BUCKET}/probe", server.endpoint)).body("x").send().await.unwrap();
        assert!(!anonymous.status().is_success(), "moto does not check signatures");
        server
    }

    fn config(&self) -> blobstore::S3Config {
        blobstore::S3Config {
            bucket: BUCKET.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_owned(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            force_path_style: true,
            upload_timeout: Duration::from_secs(20),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PDS_BLOBSTORE_S3_BUCKET", BUCKET.to_owned()),
            ("PDS_BLOBSTORE_S3_ENDPOINT", self.endpoint.clone()),
            ("PDS_BLOBSTORE_S3_REGION", "us-east-1".to_owned()),
            ("PDS_BLOBSTORE_S3_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("PDS_BLOBSTORE_S3_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("PDS_BLOBSTORE_S3_FORCE_PATH_STYLE", "true".to_owned()),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the store holds `did`'s blob `cid`: the file on disk, or the object in the bucket.
async fn stored(data: &Path, s3: Option<&MotoServer>, did: &str, cid: &str) -> bool {
    match s3 {
        None => data.join("blobs").join(did).join(cid).exists(),
        Some(m) => {
            use blobstore::BlobStore;
            let spool = tempfile::tempdir().unwrap();
            let store = blobstore::S3Store::new(m.config(), spool.path()).unwrap();
            store.get(&blobstore::key(did, cid), None).await.unwrap().is_some()
        }
    }
}

async fn upload(s: &Server, token: &str, content_type: &str, bytes: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(s.xrpc("com.atproto.repo.uploadBlob"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn get_blob(s: &Server, did: &str, cid: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(s.xrpc(&format!("com.atproto.sync.getBlob?did={did}&cid={cid}")));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.unwrap()
}

async fn blob_error(s: &Server, did: &str, cid: &str) -> (u16, Value) {
    let r = get_blob(s, did, cid, None).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn raw_cid(bytes: &[u8]) -> String {
    domain::blob::raw_cid(&Sha256::digest(bytes).into()).to_string()
}

/// A tiny PNG: signature, IHDR, IDAT, IEND (CRCs are not checked by anything here).
pub fn png() -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        c
    };
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    p.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]));
    p.extend(chunk(b"IDAT", b"x\x9cc\xf8\x0f\x00\x00\x01\x01\x00"));
    p.extend(chunk(b"IEND", &[]));
    p
}

/// A JPEG whose APP1 Exif segment holds a GPS IFD (latitude 51°30'N), then a quantisation table
/// and a short scan.
pub fn jpeg_with_gps() -> Vec<u8> {
    let mut tiff = b"MM\0*\0\0\0\x08".to_vec();
    // IFD0: one entry, GPSInfo (0x8825) → offset 26.
    tiff.extend_from_slice(&[0, 1, 0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26, 0, 0, 0, 0]);
    // GPS IFD: GPSLatitudeRef = "N".
    tiff.extend_from_slice(&[0, 1, 0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0, 0, 0, 0, 0]);
    tiff.extend_from_slice(b"GPS 51.5074 N 0.1278 W");
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut j = vec![0xFF, 0xD8];
    j.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
    j.extend_from_slice(&[0xFF, 0xE1]);
    j.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    j.extend(app1);
    j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    j.extend_from_slice(&[1u8; 64]);
    j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x12, 0x34, 0x56, 0xFF, 0xD9]);
    j
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

fn image_post(text: &str, blob: &Value) -> Value {
    json!({
        "$type": POST,
        "text": text,
        "createdAt": "2024-05-01T12:34:56.000Z",
        "embed": { "$type": "app.bsky.embed.images", "images": [ { "image": blob, "alt": "a picture" } ] },
    })
}

async fn create_post(s: &Server, token: &str, did: &str, record: Value) -> (u16, Value) {
    post(s, "com.atproto.repo.createRecord", Some(token), json!({ "repo": did, "collection": POST, "record": record })).await
}

async fn start_server(dir: &Path, plc: &PlcServer, pg: Option<&PgDatabase>, s3: Option<&MotoServer>, grace: &str) -> (Server, Vec<(&'static str, String)>) {
    let mut env: Vec<(&'static str, String)> = vec![
        ("PDS_DID_PLC_URL", plc.url.clone()),
        ("PDS_INVITE_REQUIRED", "false".to_owned()),
        ("PDS_JWT_SECRET", "blobs-test-jwt-secret".to_owned()),
        ("PDS_ADMIN_PASSWORD", ADMIN.to_owned()),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test".to_owned()),
        ("PDS_BLOB_UPLOAD_LIMIT", LIMIT.to_string()),
        ("PDS_BLOB_TEMP_GRACE_SECONDS", grace.to_owned()),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.clone()));
    }
    if let Some(m) = s3 {
        env.extend(m.env());
    }
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (Server::start_in(dir, &borrowed).await, env)
}

async fn blobs_flow(pg: Option<&PgDatabase>, s3: Option<&MotoServer>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pds-data");
    let (s, env) = start_server(dir.path(), &plc, pg, s3, "3600").await;

    let (st, acct) = post(&s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(st, 200, "{acct}");
    let did = acct["did"].as_str().unwrap().to_owned();
    let token = acct["accessJwt"].as_str().unwrap().to_owned();
    let (_, bob) = post(&s, "com.atproto.server.createAccount", None, signup("bob.test", "bob@example.com", None)).await;
    let bob_did = bob["did"].as_str().unwrap().to_owned();
    let bob_token = bob["accessJwt"].as_str().unwrap().to_owned();

    // Upload with a lying Content-Type: the sniffed type wins; CIDv1 raw sha2-256 of the bytes.
    let png = png();
    let (st, up) = upload(&s, &token, "text/plain", png.clone()).await;
    assert_eq!(st, 200, "{up}");
    let blob = up["blob"].clone();
    let png_cid = raw_cid(&png);
    assert_eq!(blob, json!({ "$type": "blob", "ref": { "$link": png_cid }, "mimeType": "image/png", "size": png.len() }));
    assert!(png_cid.starts_with("bafkrei"), "{png_cid}");
    assert!(stored(&data, s3, &did, &png_cid).await, "the upload is in the store");
    // Unknown content: the declared type is kept.
    let (st, text_up) = upload(&s, &token, "text/plain; charset=utf-8", b"just some text".to_vec()).await;
    assert_eq!(st, 200, "{text_up}");
    assert_eq!(text_up["blob"]["mimeType"], "text/plain");
    let temp_cid = text_up["blob"]["ref"]["$link"].as_str().unwrap().to_owned();
    // Not referenced yet: temporary, not served.
    assert_error(&blob_error(&s, &did, &png_cid).await, 400, "BlobNotFound");
    // No token.
    let r = call(reqwest::Method::POST, &s.xrpc("com.atproto.repo.uploadBlob"), None, None, None).await;
    assert_error(&r, 401, "AuthMissing");

    // Oversize: refused, nothing stored.
    let (st, big) = upload(&s, &token, "application/octet-stream", vec![7u8; LIMIT + 1]).await;
    assert_eq!((st, big["error"].as_str()), (413, Some("BlobTooLarge")), "{big}");
    let (st, ok) = upload(&s, &token, "application/octet-stream", vec![7u8; LIMIT]).await;
    assert_eq!(st, 200, "exactly the limit is accepted: {ok}");

    // A post referencing the blob.
    let (st, created) = create_post(&s, &token, &did, image_post("with a picture", &blob)).await;
    assert_eq!(st, 200, "{created}");
    let post_uri = created["uri"].as_str().unwrap().to_owned();
    let first_rev = created["commit"]["rev"].as_str().unwrap().to_owned();

    // getBlob: identical bytes and the reference's headers.
    let r = get_blob(&s, &did, &png_cid, None).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], png.len().to_string().as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-disposition"], format!("attachment; filename=\"{png_cid}\"").as_str());
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
    assert_eq!(r.bytes().await.unwrap().as_ref(), png.as_slice());
    // Range requests.
    let r = get_blob(&s, &did, &png_cid, Some("bytes=2-9")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 2-9/{}", png.len()).as_str());
    assert_eq!(r.headers()["content-length"], "8");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &png[2..10]);
    let r = get_blob(&s, &did, &png_cid, Some("bytes=-4")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &png[png.len() - 4..]);
    let r = get_blob(&s, &did, &png_cid, Some("bytes=100000-")).await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], format!("bytes */{}", png.len()).as_str());
    // Unknown blob / repo; bad params.
    let absent = raw_cid(b"never uploaded");
    assert_error(&blob_error(&s, &did, &absent).await, 400, "BlobNotFound");
    assert_error(&blob_error(&s, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", &png_cid).await, 400, "RepoNotFound");
    assert_error(&blob_error(&s, &did, "not-a-cid").await, 400, "InvalidRequest");

    // Refs that may not be committed: a missing blob, someone else's blob, a wrong MIME type.
    let missing = json!({ "$type": "blob", "ref": { "$link": absent }, "mimeType": "image/png", "size": 10 });
    assert_error(&create_post(&s, &token, &did, image_post("missing", &missing)).await, 400, "BlobNotFound");
    assert_error(&create_post(&s, &bob_token, &bob_did, image_post("not mine", &blob)).await, 400, "BlobNotFound");
    let mut retyped = blob.clone();
    retyped["mimeType"] = json!("image/jpeg");
    assert_error(&create_post(&s, &token, &did, image_post("retyped", &retyped)).await, 400, "InvalidMimeType");
    // The lexicon's accept list holds: a text blob is no image.
    let r = create_post(&s, &token, &did, image_post("text as image", &text_up["blob"])).await;
    assert_error(&r, 400, "InvalidRequest");

    // A GPS-tagged JPEG comes back without EXIF; its CID is of the stripped bytes.
    let jpeg = jpeg_with_gps();
    assert!(contains(&jpeg, b"GPS") && contains(&jpeg, b"Exif"));
    let (st, jup) = upload(&s, &token, "image/jpeg", jpeg.clone()).await;
    assert_eq!(st, 200, "{jup}");
    let jblob = jup["blob"].clone();
    let jcid = jblob["ref"]["$link"].as_str().unwrap().to_owned();
    assert_eq!(jblob["mimeType"], "image/jpeg");
    assert!(jblob["size"].as_u64().unwrap() < jpeg.len() as u64);
    let (st, second) = create_post(&s, &token, &did, image_post("second", &jblob)).await;
    assert_eq!(st, 200, "{second}");
    let second_rev = second["commit"]["rev"].as_str().unwrap().to_owned();
    let (st, third) = create_post(&s, &token, &did, image_post("third, same picture", &jblob)).await;
    assert_eq!(st, 200, "{third}");
    let r = get_blob(&s, &did, &jcid, None).await;
    assert_eq!(r.status(), 200);
    let served = r.bytes().await.unwrap().to_vec();
    assert!(!contains(&served, b"GPS") && !contains(&served, b"Exif"), "EXIF stripped");
    assert!(served.starts_with(&[0xFF, 0xD8]) && served.ends_with(&[0xFF, 0xD9]) && contains(&served, b"JFIF"));
    assert_eq!(raw_cid(&served), jcid);
    assert_eq!(served.len() as u64, jblob["size"].as_u64().unwrap());

    // listBlobs: every referenced blob, ascending; paging; since.
    let mut all = vec![png_cid.clone(), jcid.clone()];
    all.sort();
    let (st, listed) = get(&s, &format!("com.atproto.sync.listBlobs?did={did}"), None).await;
    assert_eq!(st, 200, "{listed}");
    assert_eq!(listed["cids"], json!(all));
    let (_, page1) = get(&s, &format!("com.atproto.sync.listBlobs?did={did}&limit=1"), None).await;
    assert_eq!(page1["cids"], json!([all[0]]));
    let cursor = page1["cursor"].as_str().unwrap();
    let (_, page2) = get(&s, &format!("com.atproto.sync.listBlobs?did={did}&limit=1&cursor={cursor}"), None).await;
    assert_eq!(page2["cids"], json!([all[1]]));
    let (_, page3) = get(&s, &format!("com.atproto.sync.listBlobs?did={did}&limit=1&cursor={}", page2["cursor"].as_str().unwrap()), None).await;
    assert_eq!(page3["cids"], json!([]));
    assert!(page3.get("cursor").is_none(), "{page3}");
    let (_, since) = get(&s, &format!("com.atproto.sync.listBlobs?did={did}&since={first_rev}"), None).await;
    assert_eq!(since["cids"], json!([jcid]));
    let (_, since) = get(&s, &format!("com.atproto.sync.listBlobs?did={did}&since={second_rev}"), None).await;
    assert_eq!(since["cids"], json!([jcid]), "the third post also references it");
    assert_error(&get(&s, &format!("com.atproto.sync.listBlobs?did={did}&limit=0"), None).await, 400, "InvalidRequest");
    assert_error(&get(&s, &format!("com.atproto.sync.listBlobs?did={did}&since=nope"), None).await, 400, "InvalidRequest");
    // listMissingBlobs: commits refuse missing blobs, so there are none.
    let (st, missing_list) = get(&s, "com.atproto.repo.listMissingBlobs", Some(&token)).await;
    assert_eq!((st, missing_list), (200, json!({ "blobs": [] })));
    assert_error(&get(&s, "com.atproto.repo.listMissingBlobs", None).await, 401, "AuthMissing");

    // Takedown of one blob: not served, status reported; lifted: served again.
    let subject = json!({ "$type": "com.atproto.admin.defs#repoBlobRef", "did": did, "cid": jcid });
    let (st, out) = admin_post(&s, "com.atproto.admin.updateSubjectStatus", ADMIN, json!({ "subject": subject, "takedown": { "applied": true, "ref": "mod-42" } })).await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["takedown"], json!({ "applied": true, "ref": "mod-42" }));
    assert_error(&blob_error(&s, &did, &jcid).await, 400, "BlobNotFound");
    let status = call(reqwest::Method::GET, &s.xrpc(&format!("com.atproto.admin.getSubjectStatus?did={did}&blob={jcid}")), None, Some(ADMIN), None).await;
    assert_eq!(status.0, 200, "{status:?}");
    assert_eq!(status.1, json!({ "subject": subject, "takedown": { "applied": true, "ref": "mod-42" } }));
    // A taken-down blob may not be referenced anew.
    assert_error(&create_post(&s, &token, &did, image_post("again", &jblob)).await, 400, "BlobNotFound");
    let (st, _) = admin_post(&s, "com.atproto.admin.updateSubjectStatus", ADMIN, json!({ "subject": subject, "takedown": { "applied": false } })).await;
    assert_eq!(st, 200);
    let status = call(reqwest::Method::GET, &s.xrpc(&format!("com.atproto.admin.getSubjectStatus?did={did}&blob={jcid}")), None, Some(ADMIN), None).await;
    assert_eq!(status.1["takedown"], json!({ "applied": false }));
    assert_eq!(get_blob(&s, &did, &jcid, None).await.status(), 200);
    let r = call(reqwest::Method::GET, &s.xrpc(&format!("com.atproto.admin.getSubjectStatus?did={did}&blob={absent}")), None, Some(ADMIN), None).await;
    assert_error(&r, 400, "NotFound");

    // Dereference: deleting the only post with the PNG deletes the blob and its object; the JPEG,
    // still referenced by the third post, survives the deletion of the second.
    let rkey = post_uri.rsplit('/').next().unwrap();
    let (st, _) = post(&s, "com.atproto.repo.deleteRecord", Some(&token), json!({ "repo": did, "collection": POST, "rkey": rkey })).await;
    assert_eq!(st, 200);
    assert_error(&blob_error(&s, &did, &png_cid).await, 400, "BlobNotFound");
    assert!(!stored(&data, s3, &did, &png_cid).await, "the dereferenced blob's object is deleted");
    let second_rkey = second["uri"].as_str().unwrap().rsplit('/').next().unwrap();
    let (st, _) = post(&s, "com.atproto.repo.deleteRecord", Some(&token), json!({ "repo": did, "collection": POST, "rkey": second_rkey })).await;
    assert_eq!(st, 200);
    assert_eq!(get_blob(&s, &did, &jcid, None).await.status(), 200);
    assert!(stored(&data, s3, &did, &jcid).await);
    // Re-referencing the deleted blob is refused until it is uploaded again.
    assert_error(&create_post(&s, &token, &did, image_post("gone", &blob)).await, 400, "BlobNotFound");

    // The blob events are in the log, on blob/<did>, never on the firehose.
    let events = call(reqwest::Method::GET, &s.xrpc("org.eventpds.admin.listEvents?cursor=0&limit=1000"), None, Some(ADMIN), None).await.1;
    let uploads: Vec<&Value> = events["events"].as_array().unwrap().iter().filter(|e| e["type"] == "blob.uploaded").collect();
    assert_eq!(uploads.len(), 4, "png, text, limit-sized, jpeg");
    assert!(events["events"].as_array().unwrap().iter().all(|e| e["type"] != "blob.expired"));
    assert!(uploads.iter().all(|e| e["stream"] == format!("blob/{did}") && e["seq"].is_null()), "{uploads:?}");

    // checkAccountStatus counts, as the reference, the blobs records reference (the JPEG) and every
    // stored blob, referenced or still temporary (the JPEG, the text, the limit-sized one).
    let (st, status) = get(&s, "com.atproto.server.checkAccountStatus", Some(&token)).await;
    assert_eq!(st, 200, "{status}");
    assert_eq!((status["expectedBlobs"].as_i64(), status["importedBlobs"].as_i64()), (Some(1), Some(3)), "{status}");

    // Erasure takes the account's blobs with it.
    let (st, bob_up) = upload(&s, &bob_token, "image/png", png.clone()).await;
    assert_eq!(st, 200, "{bob_up}");
    assert!(stored(&data, s3, &bob_did, &png_cid).await);
    let (st, _) = admin_post(&s, "com.atproto.admin.deleteAccount", ADMIN, json!({ "did": bob_did })).await;
    assert_eq!(st, 200);
    assert!(!stored(&data, s3, &bob_did, &png_cid).await, "the erased account's blob is deleted");

    // Unreferenced uploads are cleaned after the grace period: restart with a 1 s grace.
    assert!(stored(&data, s3, &did, &temp_cid).await);
    drop(s);
    let (s, _) = start_server(dir.path(), &plc, pg, s3, "1").await;
    // A new port is a new service DID: log in again.
    let (st, session) = post(&s, "com.atproto.server.createSession", None, json!({ "identifier": "alice.test", "password": PASSWORD })).await;
    assert_eq!(st, 200, "{session}");
    let token = session["accessJwt"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored(&data, s3, &did, &temp_cid).await {
        assert!(Instant::now() < deadline, "the temporary blob was not cleaned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let temp_ref = text_up["blob"].clone();
    let r = post(&s, "com.atproto.repo.createRecord", Some(&token), json!({ "repo": did, "collection": "com.example.file", "record": { "file": temp_ref } })).await;
    assert_error(&r, 400, "BlobNotFound");
    // The referenced JPEG is kept.
    assert_eq!(get_blob(&s, &did, &jcid, None).await.status(), 200);
    assert!(stored(&data, s3, &did, &jcid).await);
    // Uploading the same bytes again brings the blob back.
    let (st, again) = upload(&s, &token, "image/png", png.clone()).await;
    assert_eq!((st, again["blob"]["ref"]["$link"].as_str()), (200, Some(png_cid.as_str())));
    let (st, _) = create_post(&s, &token, &did, image_post("back", &again["blob"])).await;
    assert_eq!(st, 200);
    assert_eq!(get_blob(&s, &did, &png_cid, None).await.status(), 200);

    drop(s);
    replay_and_verify(dir.path(), &env);
}

#[tokio::test]
async fn blobs_sqlite_disk() {
    blobs_flow(None, None).await;
}

#[tokio::test]
async fn blobs_postgres_disk() {
    let db = PgDatabase::create().await;
    blobs_flow(Some(&db), None).await;
    db.drop_now().await;
}

#[tokio::test]
async fn blobs_sqlite_s3() {
    let s3 = MotoServer::start().await;
    blobs_flow(None, Some(&s3)).await;
}

#[tokio::test]
async fn blobs_postgres_s3() {
    let s3 = MotoServer::start().await;
    let db = PgDatabase::create().await;
    blobs_flow(Some(&db), Some(&s3)).await;
    db.drop_now().await;
}

/// The server process's resident set (VmRSS) and its peak (VmHWM), in KiB; `None` once it exited.
fn try_rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The server's exit status and log, for a failure message.
fn exited(s: &mut Server) -> String {
    use std::io::Read;
    let status = s.child.try_wait();
    let mut log = String::new();
    if let Some(mut e) = s.child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    format!("pds exited ({status:?}):\n{log}")
}

/// `n` bytes no sniffer recognises (xorshift), different for each `seed`.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out[0] = b'#';
    out
}

/// 20 uploads at once; returns (seconds, peak VmRSS KiB seen while they ran).
async fn concurrent_uploads(s: &Server, token: &str, pid: u32, bodies: Vec<(String, Vec<u8>)>) -> (f64, u64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (ct, body) in bodies {
        let (url, token) = (s.xrpc("com.atproto.repo.uploadBlob"), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{:?}", r.text().await);
        }));
    }
    let mut peak = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        let Some((rss, _)) = try_rss_kib(pid) else { break };
        peak = peak.max(rss);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ok = futures_util::future::join_all(tasks).await.iter().all(Result::is_ok);
    (started.elapsed().as_secs_f64(), if ok { peak } else { 0 })
}

/// Benchmark (not part of the suite; see BENCHMARKS.md): upload and download throughput of a 5 MB
/// blob, and the server's peak RSS while 20 uploads of 5 MB run at once (non-images, streamed;
/// then JPEGs, which are read whole to strip their metadata).
/// `PDS_BIN=target/release/pds cargo nextest run -p tests --run-ignored only -E 'test(/bench_blob/)' --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run explicitly"]
async fn bench_blob_throughput() {
    const MB5: usize = 5 * 1000 * 1000;
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = {
        let env = [
            ("PDS_DID_PLC_URL", plc.url.as_str()),
            ("PDS_INVITE_REQUIRED", "false"),
            ("PDS_JWT_SECRET", "blobs-bench-jwt-secret"),
            ("PDS_SERVICE_HANDLE_DOMAINS", ".test"),
            ("PDS_BLOB_UPLOAD_LIMIT", "10000000"),
        ];
        (Server::start_in(dir.path(), &env).await, ())
    };
    let pid = s.child.id();
    let mut s = s;
    let (_, acct) = post(&s, "com.atproto.server.createAccount", None, signup("bench.test", "bench@example.com", None)).await;
    let did = acct["did"].as_str().unwrap().to_owned();
    let token = acct["accessJwt"].as_str().unwrap().to_owned();

    let mb = MB5 as f64 / 1e6;
    let mut up = Vec::new();
    let mut blob = Value::Null;
    for i in 0..5 {
        let body = noise(MB5, 1000 + i);
        let t = Instant::now();
        let (st, b) = upload(&s, &token, "application/octet-stream", body).await;
        up.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(st, 200, "{b}");
        blob = b["blob"].clone();
    }
    let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
    let (st, _) = post(&s, "com.atproto.repo.createRecord", Some(&token), json!({ "repo": did, "collection": "com.example.file", "record": { "file": blob } })).await;
    assert_eq!(st, 200);
    let mut down = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let bytes = get_blob(&s, &did, &cid, None).await.bytes().await.unwrap();
        down.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(bytes.len(), MB5);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (idle, _) = try_rss_kib(pid).unwrap();
    let bodies = (0..20).map(|i| ("application/octet-stream".to_owned(), noise(MB5, 2000 + i))).collect();
    let (secs, peak) = concurrent_uploads(&s, &token, pid, bodies).await;
    let Some((_, hwm)) = try_rss_kib(pid).filter(|_| peak > 0) else { panic!("{}", exited(&mut s)) };
    let jpegs = (0..20)
        .map(|i| {
            let mut j = jpeg_with_gps();
            j.truncate(j.len() - 2);
            j.extend(noise(MB5 - j.len() - 2, 3000 + i).iter().map(|b| if *b == 0xFF { 0 } else { *b }));
            j.extend_from_slice(&[0xFF, 0xD9]);
            ("image/jpeg".to_owned(), j)
        })
        .collect();
    let (jsecs, jpeak) = concurrent_uploads(&s, &token, pid, jpegs).await;
    let Some((_, jhwm)) = try_rss_kib(pid).filter(|_| jpeak > 0) else { panic!("{}", exited(&mut s)) };
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "blob bench: 5 MB upload {:.0} MB/s, download {:.0} MB/s (median of 5); RSS idle {:.0} MiB; \
         20 concurrent 5 MB uploads: {:.2} s, peak RSS {:.0} MiB (VmHWM {:.0} MiB); \
         20 concurrent 5 MB JPEGs (stripped): {:.2} s, peak RSS {:.0} MiB (VmHWM {:.0} MiB)",
        median(&mut up),
        median(&mut down),
        mib(idle),
        secs,
        mib(peak),
        mib(hwm),
        jsecs,
        mib(jpeak),
        mib(jhwm)
    );
    // Streamed uploads are not held in memory: far below 20 × 5 MB above idle.
    assert!(peak < idle + 60 * 1024, "peak {peak} KiB vs idle {idle} KiB");
}
