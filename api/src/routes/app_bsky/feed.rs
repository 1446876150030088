//! `app.bsky.feed.*` answered here (reference `api/app/bsky/feed/*.ts`): `getTimeline`,
//! `getAuthorFeed`, `getActorLikes`, `getPostThread` are proxied with read-after-write
//! (`crate::read_after_write`).
//!
//! `getFeed`: the feed generator's
//! record is read from the configured AppView (`com.atproto.repo.getRecord` of the `feed`
//! AT-URI), then the call goes through the proxy to its usual target with a service JWT for the
//! generator (`aud` the record's `did`, `lxm` `app.bsky.feed.getFeedSkeleton`), which the
//! AppView passes on to the generator.
//!
//! Without a configured AppView the call is an ordinary proxied one.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::proxy::JwtFor;
use crate::read_after_write::{pipethrough, views::Merge};
use crate::xrpc::prelude::*;

const GET_FEED: &str = "app.bsky.feed.getFeed";
const SKELETON: &str = "app.bsky.feed.getFeedSkeleton";

pub async fn get_timeline(State(state): State<AppState>, auth: AccessAuth, req: Request) -> Response {
    pipethrough(&state, &auth.did, Merge::GetTimeline, req).await
}

pub async fn get_author_feed(State(state): State<AppState>, auth: AccessAuth, req: Request) -> Response {
    pipethrough(&state, &auth.did, Merge::GetAuthorFeed, req).await
}

pub async fn get_actor_likes(State(state): State<AppState>, auth: AccessAuth, req: Request) -> Response {
    pipethrough(&state, &auth.did, Merge::GetActorLikes, req).await
}

pub async fn get_post_thread(State(state): State<AppState>, auth: AccessAuth, req: Request) -> Response {
    pipethrough(&state, &auth.did, Merge::GetPostThread, req).await
}

pub async fn get_feed(State(state): State<AppState>, req: Request) -> Response {
    match feed(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn feed(state: &AppState, req: Request) -> Result<Response, XrpcError> {
    if state.config.proxy.bsky_app_view.is_none() {
        return Ok(crate::proxy::handle(State(state.clone()), req).await);
    }
    let proxy_to = super::proxy_to(state, req.headers())?;
    let (mut parts, body) = req.into_parts();
    let auth = AccessAuth::from_request_parts(&mut parts, state).await?;
    if !auth.scope.is_standard_access() {
        return Err(XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token scope"));
    }
    if let Some(aud) = &proxy_to {
        super::check_rpc(&parts.headers, parts.extensions.get(), GET_FEED, aud)?;
        super::check_rpc(&parts.headers, parts.extensions.get(), SKELETON, aud)?;
    }
    let query = parts.uri.query().unwrap_or_default();
    let feed = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "feed").map(|(_, v)| v.into_owned());
    let Some(feed) = feed else {
        return Err(XrpcError::invalid_request("Params must have the property \"feed\""));
    };
    let uri = domain::syntax::AtUri::parse(&feed)
        .map_err(|_| XrpcError::invalid_request(format!("Invalid app.bsky.feed.getFeed params: feed must be a valid at-uri (got {feed:?})")))?;
    let (Some(collection), Some(rkey)) = (uri.collection(), uri.rkey()) else {
        return Err(unknown_feed());
    };
    let lookup = [
        ("repo", uri.authority().to_owned()),
        ("collection", collection.to_owned()),
        ("rkey", rkey.to_owned()),
    ];
    let Some(record) = crate::appview::call(state, None, "com.atproto.repo.getRecord", &lookup).await else {
        return Err(crate::proxy::upstream_failure("could not fetch the feed generator record"));
    };
    let Some(feed_did) = record.get("value").and_then(|v| v.get("did")).and_then(|d| d.as_str()) else {
        return Err(unknown_feed());
    };
    let jwt_for = JwtFor { aud: feed_did.to_owned(), lxm: SKELETON.to_owned() };
    crate::proxy::forward_as(state, Request::from_parts(parts, body), Some(jwt_for)).await
}

fn unknown_feed() -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "UnknownFeed", "could not resolve feed did")
}
