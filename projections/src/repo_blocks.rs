//! `repo_blocks` (inline): each repo's head (`repo_roots`: commit CID, rev, MST root) and every
//! block its events carried (`repo_blocks`: did, CID, bytes, and the rev that first stored it —
//! read from the events' CAR slices: commit, new MST nodes, records, covering-proof nodes). What repo reads and the next commit's
//! decision load; committed with the `repo.committed` / `repo.synced` events.
//!
//! An import (`repo.import_chunk`s, then `repo.imported`) adds its blocks chunk by chunk and moves
//! the head at `repo.imported`.
//!
//! Never computes anything: it stores what the events say. Blocks are never removed here (a
//! block's bytes are a function of its CID, so re-inserting one is a no-op).

use domain::car;
use domain::repo::{RepoEvent, REPO_COMMITTED, REPO_IMPORTED, REPO_IMPORT_CHUNK, REPO_SYNCED};
use eventlog::{Envelope, EventLog, Tx};
use futures_util::future::BoxFuture;

use crate::sql::{exec, fetch_text, insert_rows, Arg};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "repo_blocks";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &[REPO_COMMITTED, REPO_SYNCED, REPO_IMPORT_CHUNK, REPO_IMPORTED],
    tables: &[
        Table { name: "repo_roots", columns: &["did", "commit_cid", "rev", "data_cid"] },
        Table { name: "repo_blocks", columns: &["did", "cid", "bytes", "rev"] },
    ],
    apply,
};

fn apply<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        for e in events {
            let fail = |message: String| ProjectionError::Apply { projector: NAME, position: e.position, message };
            let version = u32::try_from(e.event_version).map_err(|_| fail("negative event version".into()))?;
            let event =
                RepoEvent::from_payload(&e.event_type, version, &e.payload).map_err(|err| fail(err.to_string()))?;
            let (did, commit, rev, data, blocks) = match &event {
                RepoEvent::Committed(c) => (&c.did, c.commit, c.rev, c.data, &c.blocks),
                RepoEvent::Synced(s) => (&s.did, s.commit, s.rev, s.data, &s.blocks),
                RepoEvent::Imported(i) => (&i.did, i.commit, i.rev, i.data, &i.blocks),
                RepoEvent::ImportChunk(c) => {
                    // A piece of an import: its blocks only (the head moves with `repo.imported`).
                    let (_, blocks) = car::read_car(&c.blocks).map_err(|err| fail(format!("CAR slice: {err}")))?;
                    let (did, rev) = (c.did.as_str(), c.rev.to_string());
                    let rows = blocks
                        .into_iter()
                        .map(|(cid, bytes)| vec![did.into(), cid.to_string().into(), Arg::Bytes(bytes), rev.clone().into()])
                        .collect();
                    insert_rows(&mut tx, "INSERT INTO repo_blocks (did, cid, bytes, rev)", "ON CONFLICT (did, cid) DO NOTHING", rows)
                        .await?;
                    continue;
                }
                RepoEvent::ImportStarted(_) => continue,
            };
            let did = did.as_str();
            let (_, blocks) = car::read_car(blocks).map_err(|err| fail(format!("CAR slice: {err}")))?;
            for (cid, bytes) in blocks {
                exec(
                    &mut tx,
                    "INSERT INTO repo_blocks (did, cid, bytes, rev) VALUES (?, ?, ?, ?) ON CONFLICT (did, cid) DO NOTHING",
                    &[did.into(), cid.to_string().into(), Arg::Bytes(bytes), rev.to_string().into()],
                )
                .await?;
            }
            exec(
                &mut tx,
                "INSERT INTO repo_roots (did, commit_cid, rev, data_cid) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (did) DO UPDATE SET commit_cid = excluded.commit_cid, rev = excluded.rev, \
                 data_cid = excluded.data_cid",
                &[did.into(), commit.to_string().into(), rev.to_string().into(), data.to_string().into()],
            )
            .await?;
        }
        Ok(())
    })
}

/// The head commit CID of `did`'s repo, if it has one.
pub async fn root_commit(log: &EventLog, did: &str) -> Result<Option<String>, ProjectionError> {
    Ok(fetch_text(log.read_pool(), "SELECT commit_cid FROM repo_roots WHERE did = ?", &[did.into()]).await?)
}
