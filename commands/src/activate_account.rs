//! `com.atproto.server.activateAccount`: `account.activated`, `#account` (active), `#identity`
//! (the handle) from the account aggregate, then a `#sync` of the repo's current commit from the
//! repo stream — the reference's events, in its order, in ONE append (both streams at the
//! versions they were decided on). Re-announces when already active, as the reference.
//!
//! Never re-signs anything: the `#sync` carries the head commit block as stored.

use domain::account;
use domain::car;
use domain::repo::{RepoEvent, RepoState, Synced};
use domain::syntax::Did;
use eventlog::{AppendError, EventLog, ExpectedVersion, NewEvent, StreamAppend};

use crate::{account_append, account_error, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

/// The repo of `did`: its head (from the stream's LAST event, which always carries the whole
/// head and the signed commit block: O(1), however long the stream, e.g. after an import), the
/// signed block of its head commit, and the stream version.
pub(crate) async fn load_repo_head(
    log: &EventLog,
    did: &Did,
) -> Result<(RepoState, Option<Vec<u8>>, i64), CommandError> {
    let mut state = RepoState::new(did.clone());
    let Some(e) = log.read_stream_last(&format!("repo/{}", did.as_str())).await? else {
        return Ok((state, None, 0));
    };
    let event = RepoEvent::from_payload(&e.event_type, u32::try_from(e.event_version).unwrap_or(0), &e.payload)
        .map_err(|err| CommandError::Internal(format!("{} v{}: {err}", e.stream, e.stream_version)))?;
    let head_car = match &event {
        RepoEvent::Committed(c) => Some(&c.blocks),
        RepoEvent::Synced(s) => Some(&s.blocks),
        RepoEvent::Imported(i) => Some(&i.blocks),
        RepoEvent::ImportStarted(_) | RepoEvent::ImportChunk(_) => None,
    };
    state.apply(&event);
    let commit_block = match (&state.root, head_car) {
        (Some(root), Some(bytes)) => {
            let (_, blocks) = car::read_car(bytes).map_err(|e| CommandError::Internal(format!("repo CAR: {e}")))?;
            blocks.into_iter().find(|(cid, _)| *cid == root.commit).map(|(_, b)| b)
        }
        _ => None,
    };
    Ok((state, commit_block, e.stream_version))
}

pub async fn activate_account(ctx: &Ctx, did: &str) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = account::decide_activate(&state, now_micros).map_err(account_error)?;
        let (repo, commit_block, repo_version) = load_repo_head(ctx.log(), &parsed).await?;
        let mut batch = vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)];
        if let (Some(root), Some(block)) = (&repo.root, commit_block) {
            let synced = RepoEvent::Synced(Synced {
                did: parsed.clone(),
                commit: root.commit,
                rev: root.rev,
                data: root.data,
                blocks: car::write_car(&[root.commit], [(root.commit, block)]),
            });
            let payload = synced.to_payload().map_err(|e| CommandError::Internal(format!("repo payload: {e}")))?;
            let version_no = i32::try_from(synced.event_version()).unwrap_or(i32::MAX);
            batch.push(StreamAppend::new(
                format!("repo/{}", parsed.as_str()),
                ExpectedVersion::Exact(repo_version),
                vec![NewEvent::new(synced.event_type(), version_no, payload).public()],
            ));
        }
        match ctx.appender.append(batch).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}
