//! Differences between two trees: node blocks created and deleted, record operations.
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::node::Link;
use super::{BlockMap, BlockSource, Mst, MstError};
use crate::cbor::Cid;

/// A record-level change: `old` → `new` at `path` (`None` = absent).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordOp {
    pub path: String,
    pub old: Option<Cid>,
    pub new: Option<Cid>,
}

/// Firehose `action` of a [`RecordOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpAction {
    Create,
    Update,
    Delete,
}

impl OpAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OpAction::Create => "create",
            OpAction::Update => "update",
            OpAction::Delete => "delete",
        }
    }
}

impl RecordOp {
    /// `None` when both sides are absent (not an operation).
    pub fn action(&self) -> Option<OpAction> {
        match (self.old, self.new) {
            (None, Some(_)) => Some(OpAction::Create),
            (Some(_), Some(_)) => Some(OpAction::Update),
            (Some(_), None) => Some(OpAction::Delete),
            (None, None) => None,
        }
    }
}

/// What changed between two trees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MstDiff {
    /// Nodes of the new tree that are not in the old one, with their blocks (ordered by CID).
    pub created_nodes: BlockMap,
    /// Nodes of the old tree that are not in the new one, sorted.
    pub deleted_nodes: Vec<Cid>,
    /// Record operations, sorted by path (values that only moved between nodes are not ops).
    pub ops: Vec<RecordOp>,
}

/// Compares two trees, visiting only the nodes that differ (equal CIDs are skipped whole).
///
/// Nodes at the same layer are compared layer by layer from the top: a node with the same CID on
/// both sides is shared; anything else is created (new side) or deleted (old side) and its children
/// are compared one layer down. Record values come from the entries of those nodes only.
pub fn diff(old: &Mst, new: &Mst, src: &dyn BlockSource) -> Result<MstDiff, MstError> {
    let top = old.root.layer.max(new.root.layer);
    let mut old_pending: BTreeMap<u8, Vec<Link>> = BTreeMap::new();
    let mut new_pending: BTreeMap<u8, Vec<Link>> = BTreeMap::new();
    old_pending
        .entry(old.root.layer)
        .or_default()
        .push(Link::Node(old.root.clone()));
    new_pending
        .entry(new.root.layer)
        .or_default()
        .push(Link::Node(new.root.clone()));

    let mut out = MstDiff::default();
    let mut old_leaves: BTreeMap<Arc<str>, Cid> = BTreeMap::new();
    let mut new_leaves: BTreeMap<Arc<str>, Cid> = BTreeMap::new();
    for layer in (0..=top).rev() {
        let olds = with_cids(old_pending.remove(&layer).unwrap_or_default())?;
        let news = with_cids(new_pending.remove(&layer).unwrap_or_default())?;
        let old_set: HashSet<Cid> = olds.iter().map(|(c, _)| *c).collect();
        let new_set: HashSet<Cid> = news.iter().map(|(c, _)| *c).collect();
        let below = layer.saturating_sub(1);
        for (cid, link) in olds {
            if new_set.contains(&cid) {
                continue;
            }
            out.deleted_nodes.push(cid);
            let node = link.resolve(src, layer)?;
            for e in &node.entries {
                old_leaves.insert(e.key.clone(), e.value);
            }
            old_pending
                .entry(below)
                .or_default()
                .extend(node.links().cloned());
        }
        for (cid, link) in news {
            if old_set.contains(&cid) {
                continue;
            }
            let (_, bytes) = link.block(src)?;
            out.created_nodes.insert(cid, bytes);
            let node = link.resolve(src, layer)?;
            for e in &node.entries {
                new_leaves.insert(e.key.clone(), e.value);
            }
            new_pending
                .entry(below)
                .or_default()
                .extend(node.links().cloned());
        }
    }
    out.deleted_nodes.sort();

    let mut changes: BTreeMap<Arc<str>, (Option<Cid>, Option<Cid>)> = BTreeMap::new();
    for (key, value) in old_leaves {
        changes.entry(key).or_default().0 = Some(value);
    }
    for (key, value) in new_leaves {
        changes.entry(key).or_default().1 = Some(value);
    }
    out.ops = changes
        .into_iter()
        .filter(|(_, (old, new))| old != new)
        .map(|(key, (old, new))| RecordOp {
            path: key.to_string(),
            old,
            new,
        })
        .collect();
    Ok(out)
}

fn with_cids(links: Vec<Link>) -> Result<Vec<(Cid, Link)>, MstError> {
    links.into_iter().map(|l| Ok((l.cid()?, l))).collect()
}
