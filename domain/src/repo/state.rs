//! `RepoState`: what the decisions need to know about a repo, folded from its stream.
//!
//! Only the head: the MST itself and its blocks live in the `repo_blocks` read model and are
//! handed to the decisions separately.

use crate::cbor::Cid;
use crate::syntax::Did;
use crate::tid::Tid;

use super::events::RepoEvent;

/// The repo head: the current signed commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRoot {
    pub commit: Cid,
    pub rev: Tid,
    /// MST root of `commit`.
    pub data: Cid,
}

/// State of one `repo/<did>` stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoState {
    pub did: Did,
    /// `None` until the genesis commit.
    pub root: Option<RepoRoot>,
}

impl RepoState {
    /// A repo with no events yet.
    pub fn new(did: Did) -> RepoState {
        RepoState { did, root: None }
    }

    /// Folds `events` (in stream order) into a fresh state.
    pub fn from_events<'a>(did: Did, events: impl IntoIterator<Item = &'a RepoEvent>) -> RepoState {
        let mut state = RepoState::new(did);
        for e in events {
            state.apply(e);
        }
        state
    }

    /// Folds one event in. Events of another DID are ignored (a stream holds one repo).
    pub fn apply(&mut self, event: &RepoEvent) {
        if event.did() != &self.did {
            return;
        }
        let root = match event {
            RepoEvent::ImportStarted(_) | RepoEvent::ImportChunk(_) => return,
            RepoEvent::Imported(i) => RepoRoot {
                commit: i.commit,
                rev: i.rev,
                data: i.data,
            },
            RepoEvent::Committed(c) => RepoRoot {
                commit: c.commit,
                rev: c.rev,
                data: c.data,
            },
            RepoEvent::Synced(s) => RepoRoot {
                commit: s.commit,
                rev: s.rev,
                data: s.data,
            },
        };
        self.root = Some(root);
    }

    pub fn rev(&self) -> Option<&Tid> {
        self.root.as_ref().map(|r| &r.rev)
    }
}
