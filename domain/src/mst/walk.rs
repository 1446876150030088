//! [`TreeWalk`]: a whole tree checked and visited node by node, in key order, without holding it:
//! the caller hands blocks in as the walk asks for them (sans I/O), so a tree far larger than
//! memory can be validated from any block store.
//!
//! Every node gets the checks of a full load (hash, canonical encoding, fields, prefix
//! compression, keys valid and strictly increasing, inside the key range its parent gives it, at
//! the node's layer, no empty node below the root, no subtree under layer 0). Together they make
//! the tree the one canonical MST of its keys, with every key in global order: a subtree reused
//! in two places, or a link back up the tree, is outside its range there and refused.
//! Memory: the pending stack, O(depth × fanout).

use std::sync::Arc;

use super::node::{self, Stub};
use super::{BlockSource, MstError};
use crate::cbor::Cid;

enum Item {
    Node(Stub, Option<u8>),
    Leaf(Arc<str>, Cid),
}

/// What the walk visited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visit {
    /// A node block, checked (its children and entries come next).
    Node(Cid),
    /// An entry: key and value (record CID), in global key order.
    Leaf(String, Cid),
}

/// A depth-first, in-order walk of the tree rooted at a CID (see the module docs).
pub struct TreeWalk {
    stack: Vec<Item>,
}

impl TreeWalk {
    pub fn new(root: Cid) -> TreeWalk {
        TreeWalk { stack: vec![Item::Node(Stub::root(root), None)] }
    }

    /// The next visit, `None` when the walk is done. When the next node is not in `src`, the
    /// answer is `MissingBlock(cid)` and nothing moves: add the block and call again.
    pub fn next(&mut self, src: &dyn BlockSource) -> Result<Option<Visit>, MstError> {
        let Some(top) = self.stack.last() else { return Ok(None) };
        let (stub, layer) = match top {
            Item::Leaf(..) => {
                let Some(Item::Leaf(key, value)) = self.stack.pop() else { return Ok(None) };
                return Ok(Some(Visit::Leaf(key.to_string(), value)));
            }
            Item::Node(stub, layer) => (stub, *layer),
        };
        let loaded = node::load(src, stub, layer)?;
        let cid = stub.cid;
        self.stack.pop();
        let below = Some(loaded.layer.saturating_sub(1));
        let child = |link: &Option<node::Link>| match link {
            Some(node::Link::Stub(s)) => Some(Item::Node((**s).clone(), below)),
            _ => None,
        };
        for e in loaded.entries.iter().rev() {
            if let Some(item) = child(&e.right) {
                self.stack.push(item);
            }
            self.stack.push(Item::Leaf(e.key.clone(), e.value));
        }
        if let Some(item) = child(&loaded.left) {
            self.stack.push(item);
        }
        Ok(Some(Visit::Node(cid)))
    }

    /// The CIDs of the next `n` pending items (nodes and record values), nearest first: what a
    /// caller may fetch ahead in one batch.
    pub fn upcoming(&self, n: usize) -> Vec<Cid> {
        self.stack
            .iter()
            .rev()
            .take(n)
            .map(|i| match i {
                Item::Node(s, _) => s.cid,
                Item::Leaf(_, v) => *v,
            })
            .collect()
    }
}
