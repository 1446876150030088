//! Route modules, laid out by namespace: `com.atproto.repo.createRecord` lives in
//! `com_atproto/repo/…`, `org.eventpds.admin.listEvents` in `org_eventpds/admin.rs`. The OAuth
//! authorization server is `oauth/`, `/.well-known/…` is `well_known.rs`, `/`, `/robots.txt` and
//! `_health` are `root.rs`.
//!
//! [`methods`] is THE method table: every local XRPC method, declared once, with the auth it
//! needs, its OAuth permission and its body limit. The kernel (`crate::xrpc`) mounts it and
//! runs those checks before each handler. Route modules import from the kernel only, never from
//! one another; only this file names them all.

use axum::routing::{get, post};
use axum::Router;

use crate::server::AppState;
use crate::xrpc::{Auth::*, BodyLimit, Method, Permission::*};

pub mod app_bsky;
pub mod com_atproto;
pub mod oauth;
pub mod plc_directory;
pub mod org_eventpds;
pub mod root;
pub mod tls_check;
pub mod well_known;

use com_atproto::{admin, identity, identity_resolve, repo, server, sync, temp};

/// Repo writes carry whole records: the reference's 1,000,000-byte JSON limit for them.
const RECORDS: BodyLimit = BodyLimit::Bytes(repo::records::RECORD_JSON_LIMIT);
const JSON: BodyLimit = BodyLimit::Json;

/// One row: `m!(nsid, auth, OAuth permission, body limit, handler)`.
macro_rules! m {
    ($nsid:expr, $auth:expr, $permission:expr, $limit:expr, $handler:expr) => {
        Method::new($nsid, $auth, $permission, $limit, $handler)
    };
}

/// Every local XRPC method: NSID, auth, OAuth permission, body limit, handler.
pub fn methods(firehose: sync::subscribe_repos::Settings) -> Vec<Method> {
    vec![
        // com.atproto.server
        m!("com.atproto.server.describeServer", Public, Nothing, JSON, server::describe_server::describe_server),
        m!("com.atproto.server.createAccount", OptionalServiceAuth, Rpc, JSON, server::accounts::create_account),
        m!("com.atproto.server.createSession", Public, Rpc, JSON, server::accounts::create_session),
        m!("com.atproto.server.getSession", Access, Nothing, JSON, server::accounts::get_session),
        m!("com.atproto.server.refreshSession", Refresh, Rpc, JSON, server::accounts::refresh_session),
        m!("com.atproto.server.deleteSession", Refresh, Rpc, JSON, server::accounts::delete_session),
        m!("com.atproto.server.createInviteCode", Admin, Rpc, JSON, server::invites::create_invite_code),
        m!("com.atproto.server.createInviteCodes", Admin, Rpc, JSON, server::invites::create_invite_codes),
        m!("com.atproto.server.getAccountInviteCodes", AccessFull, Refused, JSON, server::invites::get_account_invite_codes),
        m!("com.atproto.server.createAppPassword", AccessFull, Refused, JSON, server::app_passwords::create_app_password),
        m!("com.atproto.server.listAppPasswords", AccessStandard, Refused, JSON, server::app_passwords::list_app_passwords),
        m!("com.atproto.server.revokeAppPassword", AccessStandard, Refused, JSON, server::app_passwords::revoke_app_password),
        m!("com.atproto.server.activateAccount", AccessFull, Account("status", true), JSON, server::account_status::activate_account),
        m!("com.atproto.server.deactivateAccount", AccessFull, Account("status", true), JSON, server::account_status::deactivate_account),
        m!("com.atproto.server.checkAccountStatus", AccessStandard, Nothing, JSON, server::account_status::check_account_status),
        m!("com.atproto.server.requestEmailConfirmation", AccessStandard, Account("email", true), JSON, server::email::request_email_confirmation),
        m!("com.atproto.server.confirmEmail", AccessStandard, Account("email", true), JSON, server::email::confirm_email),
        m!("com.atproto.server.requestEmailUpdate", AccessStandard, Account("email", true), JSON, server::email::request_email_update),
        m!("com.atproto.server.updateEmail", AccessStandard, Account("email", true), JSON, server::email::update_email),
        m!("com.atproto.server.requestPasswordReset", Public, Rpc, JSON, server::email::request_password_reset),
        m!("com.atproto.server.resetPassword", Public, Rpc, JSON, server::email::reset_password),
        m!("com.atproto.server.requestAccountDelete", AccessStandard, Refused, JSON, server::email::request_account_delete),
        m!("com.atproto.server.deleteAccount", Public, Refused, JSON, server::email::delete_account),
        m!("com.atproto.server.getServiceAuth", Access, Rpc, JSON, server::service_auth::get_service_auth),
        m!("com.atproto.server.reserveSigningKey", Public, Rpc, JSON, server::reserve_signing_key::reserve_signing_key),
        // com.atproto.identity
        m!("com.atproto.identity.resolveHandle", Public, Nothing, JSON, identity::resolve_handle),
        m!("com.atproto.identity.resolveDid", Public, Nothing, JSON, identity_resolve::resolve_did),
        m!("com.atproto.identity.resolveIdentity", Public, Nothing, JSON, identity_resolve::resolve_identity),
        m!("com.atproto.identity.refreshIdentity", Public, Rpc, JSON, identity_resolve::refresh_identity),
        m!("com.atproto.identity.updateHandle", AccessStandard, Identity("handle"), JSON, identity::update_handle),
        m!("com.atproto.identity.getRecommendedDidCredentials", AccessStandard, Rpc, JSON, identity::get_recommended_did_credentials),
        m!("com.atproto.identity.requestPlcOperationSignature", AccessFull, Identity("*"), JSON, identity::request_plc_operation_signature),
        m!("com.atproto.identity.signPlcOperation", AccessFull, Identity("*"), JSON, identity::sign_plc_operation),
        m!("com.atproto.identity.submitPlcOperation", AccessStandard, Identity("*"), JSON, identity::submit_plc_operation),
        // com.atproto.repo
        m!("com.atproto.repo.createRecord", Access, Repo, RECORDS, repo::records::create_record),
        m!("com.atproto.repo.putRecord", Access, Repo, RECORDS, repo::records::put_record),
        m!("com.atproto.repo.deleteRecord", Access, Repo, RECORDS, repo::records::delete_record),
        m!("com.atproto.repo.applyWrites", Access, Repo, RECORDS, repo::records::apply_writes),
        m!("com.atproto.repo.getRecord", Public, Nothing, JSON, repo::records::get_record),
        m!("com.atproto.repo.listRecords", Public, Nothing, JSON, repo::records::list_records),
        m!("com.atproto.repo.describeRepo", Public, Nothing, JSON, repo::records::describe_repo),
        m!("com.atproto.repo.uploadBlob", Access, Blob, BodyLimit::Blob, repo::blobs::upload_blob),
        m!("com.atproto.repo.listMissingBlobs", Access, Rpc, JSON, repo::blobs::list_missing_blobs),
        m!("com.atproto.repo.importRepo", AccessFull, Account("repo", true), BodyLimit::RepoImport, repo::import::import_repo),
        // com.atproto.sync
        m!("com.atproto.sync.getLatestCommit", Public, Nothing, JSON, sync::repo::get_latest_commit),
        m!("com.atproto.sync.getRepo", Public, Nothing, JSON, sync::repo::get_repo),
        m!("com.atproto.sync.getRecord", Public, Nothing, JSON, sync::repo::get_record),
        m!("com.atproto.sync.getBlocks", Public, Nothing, JSON, sync::repo::get_blocks),
        m!("com.atproto.sync.listRepos", Public, Nothing, JSON, sync::repo::list_repos),
        m!("com.atproto.sync.getRepoStatus", Public, Nothing, JSON, sync::repo::get_repo_status),
        m!("com.atproto.sync.getHead", Public, Nothing, JSON, sync::repo::get_head),
        m!("com.atproto.sync.getCheckout", Public, Nothing, JSON, sync::repo::get_checkout),
        m!("com.atproto.sync.getBlob", Public, Nothing, JSON, sync::blobs::get_blob),
        m!("com.atproto.sync.listBlobs", Public, Nothing, JSON, sync::blobs::list_blobs),
        Method::with_route(sync::subscribe_repos::NSID, Public, Nothing, sync::subscribe_repos::route(firehose)),
        // com.atproto.admin
        m!("com.atproto.admin.getAccountInfo", Admin, Rpc, JSON, admin::get_account_info),
        m!("com.atproto.admin.getAccountInfos", Admin, Rpc, JSON, admin::get_account_infos),
        m!("com.atproto.admin.getSubjectStatus", Admin, Rpc, JSON, admin::get_subject_status),
        m!("com.atproto.admin.updateSubjectStatus", Admin, Rpc, JSON, admin::update_subject_status),
        m!("com.atproto.admin.updateAccountPassword", Admin, Rpc, JSON, admin::update_account_password),
        m!("com.atproto.admin.updateAccountHandle", Admin, Rpc, JSON, admin::update_account_handle),
        m!("com.atproto.admin.deleteAccount", Admin, Rpc, JSON, admin::delete_account),
        m!("com.atproto.admin.sendEmail", Admin, Rpc, JSON, com_atproto::admin_email::send_email),
        m!("com.atproto.admin.updateAccountEmail", Admin, Rpc, JSON, com_atproto::admin_email::update_account_email),
        m!("com.atproto.admin.getInviteCodes", Admin, Rpc, JSON, admin::get_invite_codes),
        m!("com.atproto.admin.disableInviteCodes", Admin, Rpc, JSON, admin::disable_invite_codes),
        m!("com.atproto.admin.disableAccountInvites", Admin, Rpc, JSON, admin::disable_account_invites),
        m!("com.atproto.admin.enableAccountInvites", Admin, Rpc, JSON, admin::enable_account_invites),
        // com.atproto.temp
        m!("com.atproto.temp.checkSignupQueue", Access, Refused, JSON, temp::check_signup_queue),
        // app.bsky: what a PDS answers itself for the Bluesky app (the rest is proxied). Each
        // checks OAuth `rpc:` against its real audience (`Proxied`).
        m!("app.bsky.actor.getPreferences", Access, Proxied, JSON, app_bsky::actor::get_preferences),
        m!("app.bsky.actor.putPreferences", AccessStandard, Proxied, JSON, app_bsky::actor::put_preferences),
        m!("app.bsky.actor.getProfile", AccessStandard, Proxied, JSON, app_bsky::actor::get_profile),
        m!("app.bsky.actor.getProfiles", AccessStandard, Proxied, JSON, app_bsky::actor::get_profiles),
        m!("app.bsky.feed.getTimeline", AccessStandard, Proxied, JSON, app_bsky::feed::get_timeline),
        m!("app.bsky.feed.getAuthorFeed", AccessStandard, Proxied, JSON, app_bsky::feed::get_author_feed),
        m!("app.bsky.feed.getActorLikes", AccessStandard, Proxied, JSON, app_bsky::feed::get_actor_likes),
        m!("app.bsky.feed.getPostThread", AccessStandard, Proxied, JSON, app_bsky::feed::get_post_thread),
        m!("app.bsky.feed.getFeed", AccessStandard, Proxied, JSON, app_bsky::feed::get_feed),
        m!("app.bsky.notification.registerPush", Access, Proxied, JSON, app_bsky::notification::register_push),
        m!("app.bsky.notification.unregisterPush", AccessStandard, Proxied, JSON, app_bsky::notification::unregister_push),
        // org.eventpds.admin (this server's own operator API)
        m!("org.eventpds.admin.listEvents", Admin, Rpc, JSON, org_eventpds::admin::list_events),
        m!("org.eventpds.admin.getEventStats", Admin, Rpc, JSON, org_eventpds::admin::get_event_stats),
        m!("org.eventpds.admin.listStreams", Admin, Rpc, JSON, org_eventpds::admin::list_streams),
        Method::with_route("org.eventpds.admin.subscribeEvents", Admin, Rpc, get(org_eventpds::admin::subscribe_events)),
        m!("org.eventpds.admin.listNotifications", Admin, Rpc, JSON, org_eventpds::notifications::list_notifications),
        // org.eventpds.account: an account's notification channels (codes may go there: full access)
        m!("org.eventpds.account.getNotificationPrefs", AccessStandard, Refused, JSON, org_eventpds::account::get_prefs),
        m!("org.eventpds.account.updateNotificationPrefs", AccessFull, Refused, JSON, org_eventpds::account::update_prefs),
        m!("org.eventpds.account.startChannelVerification", AccessFull, Refused, JSON, org_eventpds::account::start_verification),
        m!("org.eventpds.account.confirmChannelVerification", AccessFull, Refused, JSON, org_eventpds::account::confirm_verification),
        m!("org.eventpds.account.listNotificationHistory", AccessStandard, Refused, JSON, org_eventpds::account::history),
    ]
}

/// Everything that is not an XRPC method: `/`, `/robots.txt`, `_health`, `/.well-known/…`,
/// the OAuth authorization server.
pub fn other() -> Router<AppState> {
    Router::new()
        .route("/", get(root::banner))
        .route("/robots.txt", get(root::robots))
        .route("/xrpc/_health", get(root::health))
        .route("/health", get(root::health))
        .route("/.well-known/did.json", get(well_known::did_json))
        .route("/.well-known/atproto-did", get(well_known::well_known_atproto_did))
        .route("/.well-known/oauth-protected-resource", get(oauth::server::protected_resource))
        .route("/.well-known/oauth-authorization-server", get(oauth::server::authorization_server))
        .route("/oauth/jwks", get(oauth::server::jwks))
        .route("/oauth/par", post(oauth::server::par))
        .route("/oauth/token", post(oauth::server::token))
        .route("/oauth/revoke", post(oauth::server::revoke))
        .route("/oauth/authorize", get(oauth::authorize_page::page).post(oauth::authorize_page::submit))
}
