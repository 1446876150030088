//! Tree algorithms: bulk build, put, delete (split / merge), ordered walks.
//!
//! Mutations work on a copy-on-write clone of the root and return the new root, so a failure
//! half-way (a missing block) leaves the caller's tree untouched.
use std::ops::Bound;
use std::sync::Arc;

use super::node::{open_mut, touch, Entry, Link, Node};
use super::{key_depth, BlockSource, MstError};
use crate::cbor::Cid;

/// Builds the canonical node at `layer` for sorted `items` (key, value, depth), all of depth <=
/// `layer`: the items at `layer` are its entries, each run between them a subtree one layer down.
pub(super) fn build(items: &[(Arc<str>, Cid, u8)], layer: u8) -> Node {
    let mut node = Node::empty(layer);
    let mut start = 0;
    for (j, (key, value, depth)) in items.iter().enumerate() {
        if *depth == layer {
            let run = items.get(start..j).unwrap_or_default();
            *node.last_slot_mut() = subtree(run, layer);
            node.entries.push(Entry {
                key: key.clone(),
                value: *value,
                right: None,
            });
            start = j + 1;
        }
    }
    let run = items.get(start..).unwrap_or_default();
    *node.last_slot_mut() = subtree(run, layer);
    node
}

fn subtree(run: &[(Arc<str>, Cid, u8)], layer: u8) -> Option<Link> {
    match layer.checked_sub(1) {
        Some(below) if !run.is_empty() => Some(Link::new(build(run, below))),
        _ => None,
    }
}

/// New root after setting `key` (absent or with another value) to `value`.
pub(super) fn put(
    root: &Arc<Node>,
    src: &dyn BlockSource,
    key: &str,
    value: Cid,
) -> Result<Arc<Node>, MstError> {
    let depth = key_depth(key.as_bytes());
    let key: Arc<str> = Arc::from(key);
    if root.is_empty() {
        let mut node = Node::empty(depth);
        node.entries.push(Entry {
            key,
            value,
            right: None,
        });
        return Ok(Arc::new(node));
    }
    if depth > root.layer {
        // The key becomes the only entry of a new root; the old tree is split around it and each
        // half lifted through empty nodes so no link skips a layer.
        let old = Link::Node(root.clone()).into_node(src, root.layer)?;
        let (mut left, mut right) = split(old, src, &key)?;
        for layer in root.layer + 1..depth {
            left = left.map(|n| parent_of(n, layer));
            right = right.map(|n| parent_of(n, layer));
        }
        let mut node = Node::empty(depth);
        node.left = left.map(Link::new);
        node.entries.push(Entry {
            key,
            value,
            right: right.map(Link::new),
        });
        return Ok(Arc::new(node));
    }
    let mut root = root.clone();
    insert_into(touch(&mut root), src, key, depth, value)?;
    Ok(root)
}

fn parent_of(child: Node, layer: u8) -> Node {
    let mut node = Node::empty(layer);
    node.left = Some(Link::new(child));
    node
}

fn insert_into(
    node: &mut Node,
    src: &dyn BlockSource,
    key: Arc<str>,
    depth: u8,
    value: Cid,
) -> Result<(), MstError> {
    let below = node.layer.saturating_sub(1);
    match node.search(&key) {
        Ok(i) => {
            if let Some(e) = node.entries.get_mut(i) {
                e.value = value;
            }
            Ok(())
        }
        Err(i) if depth == node.layer => {
            let (left, right) = match node.slot_mut(i).take() {
                Some(link) => split(link.into_node(src, below)?, src, &key)?,
                None => (None, None),
            };
            *node.slot_mut(i) = left.map(Link::new);
            node.entries.insert(
                i,
                Entry {
                    key,
                    value,
                    right: right.map(Link::new),
                },
            );
            Ok(())
        }
        Err(i) => {
            let slot = node.slot_mut(i);
            match slot {
                Some(link) => insert_into(open_mut(link, src, below)?, src, key, depth, value),
                None => {
                    let mut child = Node::empty(below);
                    insert_into(&mut child, src, key, depth, value)?;
                    *slot = Some(Link::new(child));
                    Ok(())
                }
            }
        }
    }
}

/// Splits a node (and recursively the subtree straddling `key`) into the parts below and above
/// `key`, at the same layer; an empty part is `None`.
fn split(
    mut node: Node,
    src: &dyn BlockSource,
    key: &str,
) -> Result<(Option<Node>, Option<Node>), MstError> {
    let i = match node.search(key) {
        Ok(i) | Err(i) => i,
    };
    let below = node.layer.saturating_sub(1);
    let (mid_left, mid_right) = match node.slot_mut(i).take() {
        Some(link) => split(link.into_node(src, below)?, src, key)?,
        None => (None, None),
    };
    let right_entries = node.entries.split_off(i);
    let mut left = node;
    *left.last_slot_mut() = mid_left.map(Link::new);
    let right = Node {
        layer: left.layer,
        left: mid_right.map(Link::new),
        entries: right_entries,
        cid: Default::default(),
    };
    let keep = |n: Node| if n.is_empty() { None } else { Some(n) };
    Ok((keep(left), keep(right)))
}

/// New root after removing `key` (which must be present).
pub(super) fn delete(
    root: &Arc<Node>,
    src: &dyn BlockSource,
    key: &str,
) -> Result<Arc<Node>, MstError> {
    let depth = key_depth(key.as_bytes());
    let mut root = root.clone();
    delete_from(touch(&mut root), src, key, depth)?;
    // Trim the top: a root with no entries is replaced by its only subtree.
    loop {
        if !root.entries.is_empty() {
            return Ok(root);
        }
        let below = root.layer.saturating_sub(1);
        match &root.left {
            Some(link) => root = link.resolve(src, below)?,
            None => return Ok(Arc::new(Node::empty(0))),
        }
    }
}

fn delete_from(
    node: &mut Node,
    src: &dyn BlockSource,
    key: &str,
    depth: u8,
) -> Result<(), MstError> {
    let below = node.layer.saturating_sub(1);
    match node.search(key) {
        Ok(i) => {
            let removed = node.entries.remove(i);
            let left = node.slot_mut(i).take();
            let merged = merge(left, removed.right, src, below)?;
            *node.slot_mut(i) = merged.map(Link::new);
            Ok(())
        }
        Err(_) if depth >= node.layer => Ok(()),
        Err(i) => {
            let slot = node.slot_mut(i);
            let Some(link) = slot else { return Ok(()) };
            let child = open_mut(link, src, below)?;
            delete_from(child, src, key, depth)?;
            if child.is_empty() {
                *slot = None;
            }
            Ok(())
        }
    }
}

/// Joins two adjacent subtrees of the same layer (all keys of `a` before all keys of `b`).
fn merge(
    a: Option<Link>,
    b: Option<Link>,
    src: &dyn BlockSource,
    layer: u8,
) -> Result<Option<Node>, MstError> {
    match (a, b) {
        (None, None) => Ok(None),
        (Some(x), None) | (None, Some(x)) => Ok(Some(x.into_node(src, layer)?)),
        (Some(a), Some(b)) => {
            let mut a = a.into_node(src, layer)?;
            let mut b = b.into_node(src, layer)?;
            let below = layer.saturating_sub(1);
            let junction = merge(a.last_slot_mut().take(), b.left.take(), src, below)?;
            *a.last_slot_mut() = junction.map(Link::new);
            a.entries.append(&mut b.entries);
            Ok(Some(a))
        }
    }
}

/// In-order walk from `start`, stopping once `out` holds `limit` entries.
pub(super) fn walk_range(
    node: &Node,
    src: &dyn BlockSource,
    start: Bound<&str>,
    limit: usize,
    out: &mut Vec<(String, Cid)>,
) -> Result<(), MstError> {
    let first = match start {
        Bound::Unbounded => 0,
        Bound::Included(k) | Bound::Excluded(k) => node.entries.partition_point(|e| *e.key < *k),
    };
    let below = node.layer.saturating_sub(1);
    for i in first..=node.entries.len() {
        if let Some(link) = node.slot(i) {
            let child = link.resolve(src, below)?;
            walk_range(&child, src, start, limit, out)?;
        }
        if out.len() >= limit {
            return Ok(());
        }
        if let Some(e) = node.entries.get(i) {
            let wanted = match start {
                Bound::Unbounded => true,
                Bound::Included(k) => *e.key >= *k,
                Bound::Excluded(k) => *e.key > *k,
            };
            if wanted {
                out.push((e.key.to_string(), e.value));
                if out.len() >= limit {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Pre-order walk collecting every node block.
pub(super) fn walk_nodes(
    node: &Node,
    src: &dyn BlockSource,
    out: &mut Vec<(Cid, Vec<u8>)>,
) -> Result<(), MstError> {
    out.push(node.encode()?);
    let below = node.layer.saturating_sub(1);
    for link in node.links() {
        let child = link.resolve(src, below)?;
        walk_nodes(&child, src, out)?;
    }
    Ok(())
}
