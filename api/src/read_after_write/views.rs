//! The account's own records as AppView views, and the read-after-write merges (reference
//! `read-after-write/viewer.ts` and the munge functions of `api/app/bsky/{actor,feed}/*.ts`).
//!
//! Pure: JSON in, JSON out. Everything fetched (the account's records since the upstream's rev,
//! its handle and current profile, views of quoted records from the AppView) is in [`Local`].
//! A merge answers `None` when the upstream body does not have the shape it expects; the caller
//! then passes the upstream's answer on unchanged (the reference's "no munging of invalid
//! upstream data").

use std::collections::HashMap;

use serde_json::{json, Map, Value};

pub const PROFILE: &str = "app.bsky.actor.profile";
pub const POST: &str = "app.bsky.feed.post";
const THREAD_VIEW_POST: &str = "app.bsky.feed.defs#threadViewPost";
const REASON_REPOST: &str = "app.bsky.feed.defs#reasonRepost";

/// One of the account's records, as the reference's `RecordDescript`.
#[derive(Debug, Clone, PartialEq)]
pub struct Descript {
    pub uri: String,
    pub cid: String,
    /// When it was written (the commit's rev time), `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub indexed_at: String,
    pub record: Value,
}

/// What the merges know about the requesting account.
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub did: String,
    /// `None`: the account is gone (no post views can be made).
    pub handle: Option<String>,
    /// The current `app.bsky.actor.profile/self` record (for author views).
    pub current_profile: Option<Value>,
    /// Records since the upstream's rev: how many of any kind, the profile, the posts (oldest
    /// first).
    pub count: usize,
    pub profile: Option<Descript>,
    pub posts: Vec<Descript>,
    /// Views of records quoted by the local posts (`app.bsky.embed.record#viewRecord`, or a
    /// generator / list view), by AT-URI, as the AppView gave them.
    pub embedded: HashMap<String, Value>,
    /// `PDS_BSKY_APP_VIEW_CDN_URL_PATTERN`.
    pub cdn_url_pattern: Option<String>,
    /// Our public URL (the `getBlob` fallback for images).
    pub public_url: String,
}

impl Local {
    /// The oldest local record's age in ms at `now_ms` (`atproto-upstream-lag`).
    pub fn lag_ms(&self, now_ms: i64) -> Option<i64> {
        let oldest = self
            .profile
            .iter()
            .chain(self.posts.iter())
            .map(|d| d.indexed_at.as_str())
            .min()?;
        let at = domain::syntax::Datetime::parse(oldest).ok()?.unix_micros() / 1000;
        Some(now_ms - at)
    }

    fn image_url(&self, preset: &str, cid: &str) -> String {
        match &self.cdn_url_pattern {
            Some(p) => format_pattern(p, &[preset, &self.did, cid]),
            None => format!("{}/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}", self.public_url, self.did),
        }
    }

    /// `ProfileViewBasic` of the account from its current profile record.
    fn profile_basic(&self) -> Option<Value> {
        let handle = self.handle.as_ref()?;
        let mut v = Map::new();
        v.insert("did".into(), json!(self.did));
        v.insert("handle".into(), json!(handle));
        if let Some(p) = &self.current_profile {
            if let Some(name) = p.get("displayName") {
                v.insert("displayName".into(), name.clone());
            }
            if let Some(cid) = p.get("avatar").and_then(blob_cid) {
                v.insert("avatar".into(), json!(self.image_url("avatar", &cid)));
            }
        }
        Some(Value::Object(v))
    }

    /// A `PostView` of a local post (counts 0: it was just written).
    pub fn post_view(&self, d: &Descript) -> Option<Value> {
        let author = self.profile_basic()?;
        let mut v = Map::new();
        v.insert("uri".into(), json!(d.uri));
        v.insert("cid".into(), json!(d.cid));
        v.insert("likeCount".into(), json!(0));
        v.insert("replyCount".into(), json!(0));
        v.insert("repostCount".into(), json!(0));
        v.insert("quoteCount".into(), json!(0));
        v.insert("author".into(), author);
        v.insert("record".into(), d.record.clone());
        if let Some(embed) = d.record.get("embed").and_then(|e| self.embed_view(e)) {
            v.insert("embed".into(), embed);
        }
        v.insert("indexedAt".into(), json!(d.indexed_at));
        Some(Value::Object(v))
    }

    fn embed_view(&self, embed: &Value) -> Option<Value> {
        match embed.get("$type")?.as_str()? {
            "app.bsky.embed.images" => self.images_view(embed),
            "app.bsky.embed.external" => self.external_view(embed),
            "app.bsky.embed.record" => Some(self.record_view(embed)),
            "app.bsky.embed.recordWithMedia" => {
                let media = embed.get("media")?;
                let media = match media.get("$type")?.as_str()? {
                    "app.bsky.embed.images" => self.images_view(media)?,
                    "app.bsky.embed.external" => self.external_view(media)?,
                    _ => return None,
                };
                let record = self.record_view(embed.get("record")?);
                Some(json!({ "$type": "app.bsky.embed.recordWithMedia#view", "record": record, "media": media }))
            }
            _ => None,
        }
    }

    fn images_view(&self, embed: &Value) -> Option<Value> {
        let images = embed.get("images")?.as_array()?;
        let mut out = Vec::new();
        for img in images {
            let cid = img.get("image").and_then(blob_cid)?;
            let mut v = Map::new();
            v.insert("thumb".into(), json!(self.image_url("feed_thumbnail", &cid)));
            v.insert("fullsize".into(), json!(self.image_url("feed_fullsize", &cid)));
            if let Some(ar) = img.get("aspectRatio") {
                v.insert("aspectRatio".into(), ar.clone());
            }
            if let Some(alt) = img.get("alt") {
                v.insert("alt".into(), alt.clone());
            }
            out.push(Value::Object(v));
        }
        Some(json!({ "$type": "app.bsky.embed.images#view", "images": out }))
    }

    fn external_view(&self, embed: &Value) -> Option<Value> {
        let ext = embed.get("external")?.as_object()?;
        let mut v = Map::new();
        for k in ["uri", "title", "description"] {
            if let Some(x) = ext.get(k) {
                v.insert(k.into(), x.clone());
            }
        }
        if let Some(cid) = ext.get("thumb").and_then(blob_cid) {
            v.insert("thumb".into(), json!(self.image_url("feed_thumbnail", &cid)));
        }
        Some(json!({ "$type": "app.bsky.embed.external#view", "external": v }))
    }

    /// `app.bsky.embed.record#view`: the AppView's view of the quoted record, or `viewNotFound`.
    fn record_view(&self, embed: &Value) -> Value {
        let uri = embed.get("record").and_then(|r| r.get("uri")).cloned().unwrap_or(Value::Null);
        let record = uri
            .as_str()
            .and_then(|u| self.embedded.get(u))
            .cloned()
            .unwrap_or_else(|| json!({ "$type": "app.bsky.embed.record#viewNotFound", "uri": uri, "notFound": true }));
        json!({ "$type": "app.bsky.embed.record#view", "record": record })
    }

    /// `updateProfileViewBasic`: name and avatar from the newer profile record.
    fn update_basic(&self, view: &Value, record: &Value) -> Value {
        let mut v = view.as_object().cloned().unwrap_or_default();
        set_or_remove(&mut v, "displayName", record.get("displayName").cloned());
        let avatar = record.get("avatar").and_then(blob_cid).map(|c| json!(self.image_url("avatar", &c)));
        set_or_remove(&mut v, "avatar", avatar);
        Value::Object(v)
    }

    /// `updateProfileDetailed`: also the description and banner.
    fn update_detailed(&self, view: &Value, record: &Value) -> Value {
        let mut v = self.update_basic(view, record).as_object().cloned().unwrap_or_default();
        set_or_remove(&mut v, "description", record.get("description").cloned());
        let banner = record.get("banner").and_then(blob_cid).map(|c| json!(self.image_url("banner", &c)));
        set_or_remove(&mut v, "banner", banner);
        Value::Object(v)
    }

    /// `formatAndInsertPostsInFeed`: local posts newer than the feed's last item, newest first,
    /// each before the first item older than it.
    fn insert_posts(&self, mut feed: Vec<Value>) -> Option<Vec<Value>> {
        if self.posts.is_empty() {
            return Some(feed);
        }
        let last_time = match feed.last() {
            Some(item) => item.get("post")?.get("indexedAt")?.as_str()?.to_owned(),
            None => "1970-01-01T00:00:00.000Z".to_owned(),
        };
        for d in self.posts.iter().rev().filter(|d| d.indexed_at.as_str() > last_time.as_str()) {
            let Some(post) = self.post_view(d) else { continue };
            let at = d.indexed_at.as_str();
            let idx = feed.iter().position(|fi| {
                fi.get("post").and_then(|p| p.get("indexedAt")).and_then(Value::as_str).is_some_and(|t| t < at)
            });
            let item = json!({ "post": post });
            match idx {
                Some(i) => feed.insert(i, item),
                None => feed.push(item),
            }
        }
        Some(feed)
    }

    /// Author views of the account's own posts in a feed, renamed/re-avatared.
    fn update_authors(&self, feed: Vec<Value>) -> Option<Vec<Value>> {
        let Some(profile) = &self.profile else { return Some(feed) };
        feed.into_iter()
            .map(|mut item| {
                let post = item.get_mut("post")?.as_object_mut()?;
                if post.get("author").and_then(|a| a.get("did")).and_then(Value::as_str) == Some(self.did.as_str()) {
                    let author = post.get("author")?.clone();
                    post.insert("author".into(), self.update_basic(&author, &profile.record));
                }
                Some(item)
            })
            .collect()
    }
}

/// The read-after-write merges, by NSID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    GetProfile,
    GetProfiles,
    GetTimeline,
    GetAuthorFeed,
    GetActorLikes,
    GetPostThread,
}

impl Merge {
    pub fn for_nsid(nsid: &str) -> Option<Merge> {
        Some(match nsid {
            "app.bsky.actor.getProfile" => Merge::GetProfile,
            "app.bsky.actor.getProfiles" => Merge::GetProfiles,
            "app.bsky.feed.getTimeline" => Merge::GetTimeline,
            "app.bsky.feed.getAuthorFeed" => Merge::GetAuthorFeed,
            "app.bsky.feed.getActorLikes" => Merge::GetActorLikes,
            "app.bsky.feed.getPostThread" => Merge::GetPostThread,
            _ => return None,
        })
    }

    /// The merged body, or `None` when `original` is not the method's output shape.
    pub fn apply(self, local: &Local, original: &Value) -> Option<Value> {
        let mut out = original.as_object()?.clone();
        match self {
            Merge::GetProfile => {
                out.get("did")?.as_str()?;
                let Some(profile) = &local.profile else { return Some(original.clone()) };
                if out.get("did").and_then(Value::as_str) != Some(local.did.as_str()) {
                    return Some(original.clone());
                }
                return Some(local.update_detailed(original, &profile.record));
            }
            Merge::GetProfiles => {
                let profiles = out.get("profiles")?.as_array()?.clone();
                let Some(profile) = &local.profile else { return Some(original.clone()) };
                let merged = profiles
                    .iter()
                    .map(|p| {
                        if p.get("did").and_then(Value::as_str) == Some(local.did.as_str()) {
                            local.update_detailed(p, &profile.record)
                        } else {
                            p.clone()
                        }
                    })
                    .collect();
                out.insert("profiles".into(), Value::Array(merged));
            }
            Merge::GetTimeline => {
                let feed = feed_of(&out)?;
                out.insert("feed".into(), Value::Array(local.insert_posts(feed)?));
            }
            Merge::GetAuthorFeed => {
                let feed = feed_of(&out)?;
                if !is_users_feed(&feed, &local.did) {
                    return Some(original.clone());
                }
                let feed = local.update_authors(feed)?;
                out.insert("feed".into(), Value::Array(local.insert_posts(feed)?));
            }
            Merge::GetActorLikes => {
                let feed = feed_of(&out)?;
                out.insert("feed".into(), Value::Array(local.update_authors(feed)?));
            }
            Merge::GetPostThread => {
                let thread = out.get("thread")?;
                if !thread.is_object() {
                    return None;
                }
                if type_of(thread) != Some(THREAD_VIEW_POST) {
                    return Some(original.clone());
                }
                let merged = add_posts_to_thread(local, thread.clone(), &local.posts)?;
                out.insert("thread".into(), merged);
            }
        }
        Some(Value::Object(out))
    }
}

/// `getPostThread` answered NotFound for a post of the account that the AppView has not seen:
/// the thread made from local records (`readAfterWriteNotFound`); `None` when it is not one.
/// The caller fetches and sets `parent` (see [`highest_parent`]).
pub fn thread_from_local(local: &Local, uri: &str) -> Option<Value> {
    let found = local.posts.iter().find(|p| p.uri == uri)?;
    let thread = thread_post_view(local, found)?;
    let rest: Vec<Descript> = local.posts.iter().filter(|p| p.uri != uri).cloned().collect();
    add_posts_to_thread(local, thread, &rest)
}

/// The parent URI above the topmost post of `thread` (`getHighestParent`).
pub fn highest_parent(thread: &Value) -> Option<String> {
    let mut t = thread;
    while let Some(parent) = t.get("parent").filter(|p| type_of(p) == Some(THREAD_VIEW_POST)) {
        t = parent;
    }
    let record = t.get("post")?.get("record")?;
    if type_of(record) != Some(POST) {
        return None;
    }
    Some(record.get("reply")?.get("parent")?.get("uri")?.as_str()?.to_owned())
}

fn thread_post_view(local: &Local, d: &Descript) -> Option<Value> {
    Some(json!({ "$type": THREAD_VIEW_POST, "post": local.post_view(d)? }))
}

fn add_posts_to_thread(local: &Local, original: Value, posts: &[Descript]) -> Option<Value> {
    let root_uri = original.get("post")?.get("uri")?.as_str()?.to_owned();
    let thread_root = original
        .get("post")
        .and_then(|p| p.get("record"))
        .and_then(|r| r.get("reply"))
        .and_then(|r| r.get("root"))
        .and_then(|r| r.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let in_thread = posts.iter().filter(|p| {
        let Some(root) = reply_uri(&p.record, "root") else { return false };
        root == root_uri || thread_root.as_deref() == Some(root)
    });
    let mut thread = original;
    for d in in_thread {
        thread = insert_into_replies(local, thread, d);
    }
    Some(thread)
}

fn insert_into_replies(local: &Local, mut view: Value, d: &Descript) -> Value {
    let view_uri = view.get("post").and_then(|p| p.get("uri")).and_then(Value::as_str).map(str::to_owned);
    if view_uri.is_some() && reply_uri(&d.record, "parent") == view_uri.as_deref() {
        let Some(post) = thread_post_view(local, d) else { return view };
        let mut replies = vec![post];
        if let Some(Value::Array(old)) = view.get("replies") {
            replies.extend(old.iter().cloned());
        }
        if let Some(o) = view.as_object_mut() {
            o.insert("replies".into(), Value::Array(replies));
        }
        return view;
    }
    if let Some(Value::Array(replies)) = view.get_mut("replies") {
        for r in replies.iter_mut() {
            if type_of(r) == Some(THREAD_VIEW_POST) {
                *r = insert_into_replies(local, r.take(), d);
            }
        }
    }
    view
}

fn reply_uri<'a>(record: &'a Value, which: &str) -> Option<&'a str> {
    record.get("reply")?.get(which)?.get("uri")?.as_str()
}

fn feed_of(out: &Map<String, Value>) -> Option<Vec<Value>> {
    let feed = out.get("feed")?.as_array()?;
    feed.iter().all(|i| i.get("post").is_some_and(Value::is_object)).then(|| feed.clone())
}

/// `isUsersFeed`: the first item is the account's post, or its repost.
fn is_users_feed(feed: &[Value], did: &str) -> bool {
    let Some(first) = feed.first() else { return false };
    let did_at = |v: Option<&Value>| v.and_then(|a| a.get("did")).and_then(Value::as_str) == Some(did);
    match first.get("reason") {
        None | Some(Value::Null) => did_at(first.get("post").and_then(|p| p.get("author"))),
        Some(reason) => type_of(reason) == Some(REASON_REPOST) && did_at(reason.get("by")),
    }
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("$type")?.as_str()
}

fn set_or_remove(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    match v {
        Some(v) => {
            m.insert(key.into(), v);
        }
        None => {
            m.remove(key);
        }
    }
}

/// The CID of a blob ref (`{$type: blob, ref: {$link}}`, or a legacy `{cid, mimeType}`).
fn blob_cid(v: &Value) -> Option<String> {
    if let Some(link) = v.get("ref").and_then(|r| r.get("$link")).and_then(Value::as_str) {
        return Some(link.to_owned());
    }
    v.get("cid").and_then(Value::as_str).map(str::to_owned)
}

/// Node's `util.format(pattern, ...args)` for `%s` (what the reference does with the CDN pattern).
fn format_pattern(pattern: &str, args: &[&str]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut rest = pattern;
    while let Some(i) = rest.find("%s") {
        out.push_str(&rest[..i]);
        match args.next() {
            Some(a) => out.push_str(a),
            None => out.push_str("%s"),
        }
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    for a in args {
        out.push(' ');
        out.push_str(a);
    }
    out
}

/// Unix microseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (JavaScript's `toISOString`).
pub fn iso_millis(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let ms = micros.rem_euclid(1_000_000) / 1000;
    let (y, mo, d) = domain::syntax::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ME: &str = "did:plc:me";

    fn post(rkey: &str, at: &str, record: Value) -> Descript {
        Descript { uri: format!("at://{ME}/{POST}/{rkey}"), cid: format!("cid-{rkey}"), indexed_at: at.into(), record }
    }

    fn local(posts: Vec<Descript>, profile: Option<Value>) -> Local {
        Local {
            did: ME.into(),
            handle: Some("me.test".into()),
            current_profile: profile.clone(),
            count: posts.len() + usize::from(profile.is_some()),
            profile: profile.map(|record| Descript {
                uri: format!("at://{ME}/{PROFILE}/self"),
                cid: "cid-profile".into(),
                indexed_at: "2026-01-01T00:00:05.000Z".into(),
                record,
            }),
            posts,
            embedded: HashMap::new(),
            cdn_url_pattern: Some("https://cdn.example/img/%s/plain/%s/%s@jpeg".into()),
            public_url: "https://pds.example".into(),
        }
    }

    fn item(uri: &str, at: &str, author: &str) -> Value {
        json!({ "post": { "uri": uri, "cid": "c", "author": { "did": author, "handle": "x.test" }, "record": {}, "indexedAt": at } })
    }

    fn uris(feed: &Value) -> Vec<String> {
        feed["feed"].as_array().unwrap().iter().map(|i| i["post"]["uri"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn timeline_gets_new_posts_on_top_in_time_order() {
        let l = local(
            vec![
                post("a", "2026-01-01T00:00:03.000Z", json!({"$type": POST, "text": "a"})),
                post("b", "2026-01-01T00:00:04.000Z", json!({"$type": POST, "text": "b"})),
            ],
            None,
        );
        let original = json!({ "cursor": "x", "feed": [item("at://other/p/2", "2026-01-01T00:00:02.000Z", "did:plc:other"), item("at://other/p/1", "2026-01-01T00:00:01.000Z", "did:plc:other")] });
        let merged = Merge::GetTimeline.apply(&l, &original).unwrap();
        assert_eq!(uris(&merged), [format!("at://{ME}/{POST}/b"), format!("at://{ME}/{POST}/a"), "at://other/p/2".into(), "at://other/p/1".into()]);
        assert_eq!(merged["cursor"], "x");
        let b = &merged["feed"][0]["post"];
        assert_eq!(b["author"], json!({"did": ME, "handle": "me.test"}));
        assert_eq!((b["likeCount"].clone(), b["indexedAt"].clone()), (json!(0), json!("2026-01-01T00:00:04.000Z")));
        // Posts older than the feed's end are not inserted (they belong to a later page).
        let old = local(vec![post("z", "2025-01-01T00:00:00.000Z", json!({"$type": POST}))], None);
        assert_eq!(uris(&Merge::GetTimeline.apply(&old, &original).unwrap()).len(), 2);
        // An empty feed takes them all.
        assert_eq!(uris(&Merge::GetTimeline.apply(&l, &json!({"feed": []})).unwrap()).len(), 2);
    }

    #[test]
    fn garbage_shapes_are_not_merged() {
        let l = local(vec![post("a", "2026-01-01T00:00:03.000Z", json!({"$type": POST}))], None);
        for body in [json!([]), json!({"feed": 3}), json!({"feed": [1]}), json!({"feed": [{"post": "x"}]}), json!("x")] {
            assert_eq!(Merge::GetTimeline.apply(&l, &body), None, "{body}");
        }
        assert_eq!(Merge::GetProfile.apply(&l, &json!({"handle": "x"})), None);
        assert_eq!(Merge::GetPostThread.apply(&l, &json!({"thread": 1})), None);
    }

    #[test]
    fn profile_and_author_views_take_the_new_profile() {
        let record = json!({"$type": PROFILE, "displayName": "New", "avatar": {"$type": "blob", "ref": {"$link": "bafyavatar"}, "mimeType": "image/png", "size": 3}});
        let l = local(vec![], Some(record));
        let original = json!({"did": ME, "handle": "me.test", "displayName": "Old", "description": "old", "banner": "https://old"});
        let merged = Merge::GetProfile.apply(&l, &original).unwrap();
        assert_eq!(merged, json!({"did": ME, "handle": "me.test", "displayName": "New", "avatar": format!("https://cdn.example/img/avatar/plain/{ME}/bafyavatar@jpeg")}));
        let other = json!({"did": "did:plc:other", "displayName": "Old"});
        assert_eq!(Merge::GetProfile.apply(&l, &other).unwrap(), other);
        let both = Merge::GetProfiles.apply(&l, &json!({"profiles": [other, original]})).unwrap();
        assert_eq!((both["profiles"][0]["displayName"].clone(), both["profiles"][1]["displayName"].clone()), (json!("Old"), json!("New")));
        let likes = json!({"feed": [item("at://x/p/1", "2026-01-01T00:00:01.000Z", ME), item("at://x/p/2", "2026-01-01T00:00:01.000Z", "did:plc:other")]});
        let merged = Merge::GetActorLikes.apply(&l, &likes).unwrap();
        assert_eq!(merged["feed"][0]["post"]["author"]["displayName"], "New");
        assert_eq!(merged["feed"][1]["post"]["author"].get("displayName"), None);
    }

    #[test]
    fn author_feed_only_merges_the_accounts_own_feed() {
        let l = local(vec![post("a", "2026-01-01T00:00:03.000Z", json!({"$type": POST}))], None);
        let theirs = json!({"feed": [item("at://o/p/1", "2026-01-01T00:00:01.000Z", "did:plc:other")]});
        assert_eq!(Merge::GetAuthorFeed.apply(&l, &theirs).unwrap(), theirs);
        let mine = json!({"feed": [item("at://me/p/1", "2026-01-01T00:00:01.000Z", ME)]});
        assert_eq!(uris(&Merge::GetAuthorFeed.apply(&l, &mine).unwrap()).len(), 2);
        let repost = json!({"feed": [{"post": item("at://o/p/1", "2026-01-01T00:00:01.000Z", "did:plc:other")["post"], "reason": {"$type": REASON_REPOST, "by": {"did": ME}}}]});
        assert_eq!(uris(&Merge::GetAuthorFeed.apply(&l, &repost).unwrap()).len(), 2);
        assert_eq!(Merge::GetAuthorFeed.apply(&l, &json!({"feed": []})).unwrap(), json!({"feed": []}));
    }

    #[test]
    fn replies_land_in_their_thread() {
        let root_uri = "at://did:plc:other/app.bsky.feed.post/root";
        let child_uri = "at://did:plc:other/app.bsky.feed.post/child";
        let reply = |parent: &str| json!({"$type": POST, "text": "re", "reply": {"root": {"uri": root_uri, "cid": "c"}, "parent": {"uri": parent, "cid": "c"}}});
        let l = local(
            vec![post("r1", "2026-01-01T00:00:03.000Z", reply(root_uri)), post("r2", "2026-01-01T00:00:04.000Z", reply(child_uri)), post("x", "2026-01-01T00:00:04.000Z", json!({"$type": POST}))],
            None,
        );
        let thread = json!({"thread": {"$type": THREAD_VIEW_POST, "post": {"uri": root_uri, "record": {"$type": POST}}, "replies": [
            {"$type": THREAD_VIEW_POST, "post": {"uri": child_uri, "record": {"$type": POST, "reply": {"root": {"uri": root_uri}, "parent": {"uri": root_uri}}}}}
        ]}});
        let merged = Merge::GetPostThread.apply(&l, &thread).unwrap();
        let replies = merged["thread"]["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0]["post"]["uri"], format!("at://{ME}/{POST}/r1"));
        assert_eq!(replies[1]["replies"][0]["post"]["uri"], format!("at://{ME}/{POST}/r2"));
        // NotFound path: the local post becomes the thread; its parent is to be fetched.
        let t = thread_from_local(&l, &format!("at://{ME}/{POST}/r1")).unwrap();
        assert_eq!(t["post"]["uri"], format!("at://{ME}/{POST}/r1"));
        assert_eq!(highest_parent(&t).as_deref(), Some(root_uri));
        assert_eq!(thread_from_local(&l, "at://nope/x/y"), None);
        let blocked = json!({"thread": {"$type": "app.bsky.feed.defs#blockedPost"}});
        assert_eq!(Merge::GetPostThread.apply(&l, &blocked).unwrap(), blocked);
    }

    #[test]
    fn embeds_and_helpers() {
        let mut l = local(vec![], None);
        let img = json!({"$type": "app.bsky.embed.images", "images": [{"image": {"$type": "blob", "ref": {"$link": "bafyimg"}, "mimeType": "image/jpeg", "size": 1}, "alt": "a", "aspectRatio": {"width": 1, "height": 2}}]});
        let view = l.embed_view(&img).unwrap();
        assert_eq!(view["images"][0]["thumb"], format!("https://cdn.example/img/feed_thumbnail/plain/{ME}/bafyimg@jpeg"));
        assert_eq!(view["images"][0]["alt"], "a");
        l.cdn_url_pattern = None;
        let view = l.embed_view(&img).unwrap();
        assert_eq!(view["images"][0]["fullsize"], format!("https://pds.example/xrpc/com.atproto.sync.getBlob?did={ME}&cid=bafyimg"));
        let quote = json!({"$type": "app.bsky.embed.record", "record": {"uri": "at://o/p/1", "cid": "c"}});
        assert_eq!(l.embed_view(&quote).unwrap()["record"]["$type"], "app.bsky.embed.record#viewNotFound");
        l.embedded.insert("at://o/p/1".into(), json!({"$type": "app.bsky.embed.record#viewRecord", "uri": "at://o/p/1"}));
        assert_eq!(l.embed_view(&quote).unwrap()["record"]["$type"], "app.bsky.embed.record#viewRecord");
        assert_eq!(iso_millis(1_767_225_600_123_456), "2026-01-01T00:00:00.123Z");
        assert_eq!(format_pattern("a/%s/%s", &["x", "y", "z"]), "a/x/y z");
        let lagged = local(vec![post("a", "2026-01-01T00:00:03.000Z", json!({}))], None);
        assert_eq!(lagged.lag_ms(1_767_225_603_500), Some(500));
    }
}
