//! Calls this server makes to the configured AppView (`PDS_BSKY_APP_VIEW_URL`) on its own
//! account's behalf (reference `bskyAppView.client`): views of quoted records for
//! read-after-write, a thread's parents, a feed generator's record. The AppView is configured by
//! the operator, so no SSRF guard; every call has a 10 s timeout and a 10 MiB answer limit.
//!
//! Each answers `None` on any failure (not configured, unreachable, an error, not JSON): the
//! callers then do without, as the reference does for these lookups.

use std::sync::OnceLock;
use std::time::Duration;

use domain::session_jwt::Scope;
use serde_json::{json, Value};

use crate::server::AppState;

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER: usize = 10 * 1024 * 1024;

pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// `GET <AppView>/xrpc/<nsid>?<query>`; with a service JWT of `did` (aud the AppView, lxm `nsid`)
/// when `did` is given.
pub async fn call(state: &AppState, did: Option<&str>, nsid: &str, query: &[(&str, String)]) -> Option<Value> {
    let appview = state.config.proxy.bsky_app_view.as_ref()?;
    let mut url = url::Url::parse(&format!("{}/xrpc/{nsid}", appview.url)).ok()?;
    url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    let mut req = client().get(url);
    if let Some(did) = did {
        let ctx = crate::xrpc::ctx(state).ok()?;
        let jwt = commands::get_service_auth::get_service_auth(&ctx, did, Scope::Access, &appview.did, None, Some(nsid))
            .await
            .ok()?;
        req = req.bearer_auth(jwt);
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() || resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return None;
    }
    let bytes = resp.bytes().await.ok()?;
    if bytes.len() > MAX_ANSWER {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// An authenticated read of `did` at the AppView.
pub async fn get(state: &AppState, did: &str, nsid: &str, query: &[(&str, String)]) -> Option<Value> {
    call(state, Some(did), nsid, query).await
}

/// The view an `app.bsky.embed.record` of `uri` shows (reference `formatRecordEmbedInternal`):
/// a post as `#viewRecord`, a feed generator or a list as the AppView describes it.
pub async fn embedded_record_view(state: &AppState, did: &str, uri: &str) -> Option<Value> {
    let parsed = domain::syntax::AtUri::parse(uri).ok()?;
    match parsed.collection()? {
        "app.bsky.feed.post" => {
            let data = get(state, did, "app.bsky.feed.getPosts", &[("uris", uri.to_owned())]).await?;
            let post = data.get("posts")?.as_array()?.first()?.clone();
            let mut view = json!({
                "$type": "app.bsky.embed.record#viewRecord",
                "uri": post.get("uri")?,
                "cid": post.get("cid")?,
                "author": post.get("author")?,
                "value": post.get("record")?,
                "indexedAt": post.get("indexedAt")?,
            });
            if let Some(labels) = post.get("labels") {
                view["labels"] = labels.clone();
            }
            if let Some(embed) = post.get("embed") {
                view["embeds"] = json!([embed]);
            }
            Some(view)
        }
        "app.bsky.feed.generator" => {
            let data = get(state, did, "app.bsky.feed.getFeedGenerator", &[("feed", uri.to_owned())]).await?;
            let mut view = data.get("view")?.clone();
            view.as_object_mut()?.insert("$type".into(), json!("app.bsky.feed.defs#generatorView"));
            Some(view)
        }
        "app.bsky.graph.list" => {
            let data = get(state, did, "app.bsky.graph.getList", &[("list", uri.to_owned())]).await?;
            let mut view = data.get("list")?.clone();
            view.as_object_mut()?.insert("$type".into(), json!("app.bsky.graph.defs#listView"));
            Some(view)
        }
        _ => None,
    }
}
