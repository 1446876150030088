//! Sync v1.1 covering proofs and operation inversion.
use std::sync::Arc;

use super::node::{Link, Node};
use super::{BlockMap, BlockSource, Mst, MstError, RecordOp};
use crate::cbor::Cid;

impl Mst {
    /// The blocks a consumer needs, besides the commit's new blocks, to check and invert an
    /// operation on `key` (the reference's `getCoveringProof`, a commit's "relevant blocks"):
    /// every node on the path from the root to where `key` is or would be; and, when `key` is
    /// present, the right-most spine of the subtree just left of it and the left-most spine of the
    /// subtree just right of it (where its neighbours live, which a delete would merge).
    pub fn covering_proof(&self, src: &dyn BlockSource, key: &str) -> Result<BlockMap, MstError> {
        let mut out = BlockMap::new();
        self.add_covering_proof(src, key, &mut out)?;
        Ok(out)
    }

    /// Union of [`Mst::covering_proof`] over `keys` (a commit's operations).
    pub fn covering_proof_for<K: AsRef<str>>(
        &self,
        src: &dyn BlockSource,
        keys: &[K],
    ) -> Result<BlockMap, MstError> {
        let mut out = BlockMap::new();
        for key in keys {
            self.add_covering_proof(src, key.as_ref(), &mut out)?;
        }
        Ok(out)
    }

    fn add_covering_proof(
        &self,
        src: &dyn BlockSource,
        key: &str,
        out: &mut BlockMap,
    ) -> Result<(), MstError> {
        let mut link = Link::Node(self.root.clone());
        let mut layer = self.root.layer;
        loop {
            let node = add_block(&link, src, layer, out)?;
            let below = layer.saturating_sub(1);
            match node.search(key) {
                Ok(i) => {
                    if let Some(left) = node.slot(i) {
                        spine(left, src, below, out, Side::Right)?;
                    }
                    if let Some(right) = node.slot(i + 1) {
                        spine(right, src, below, out, Side::Left)?;
                    }
                    return Ok(());
                }
                Err(i) => match node.slot(i) {
                    None => return Ok(()),
                    Some(next) => {
                        link = next.clone();
                        layer = below;
                    }
                },
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Left,
    Right,
}

fn add_block(
    link: &Link,
    src: &dyn BlockSource,
    layer: u8,
    out: &mut BlockMap,
) -> Result<Arc<Node>, MstError> {
    let node = link.resolve(src, layer)?;
    let (cid, bytes) = link.block(src)?;
    out.insert(cid, bytes);
    Ok(node)
}

/// The left-most (or right-most) chain of nodes down from `link`.
fn spine(
    link: &Link,
    src: &dyn BlockSource,
    layer: u8,
    out: &mut BlockMap,
    side: Side,
) -> Result<(), MstError> {
    let mut link = link.clone();
    let mut layer = layer;
    loop {
        let node = add_block(&link, src, layer, out)?;
        let next = match side {
            Side::Left => node.left.clone(),
            Side::Right => match node.entries.last() {
                Some(e) => e.right.clone(),
                None => node.left.clone(),
            },
        };
        match next {
            Some(next) => {
                link = next;
                layer = layer.saturating_sub(1);
            }
            None => return Ok(()),
        }
    }
}

/// Undoes a commit's operations on the tree rooted at `new_root` and returns the previous root.
///
/// `src` needs only the commit's new blocks and its covering proofs. Each operation is first
/// checked against the tree (the path must hold `op.new`), then inverted: a create is deleted, an
/// update or delete restores `op.old`. Operations are undone last to first.
pub fn invert_ops(src: &dyn BlockSource, new_root: Cid, ops: &[RecordOp]) -> Result<Cid, MstError> {
    let mut tree = Mst::load(src, new_root)?;
    for op in ops.iter().rev() {
        if op.old.is_none() && op.new.is_none() {
            return Err(MstError::InvalidOp {
                op: "none",
                path: op.path.clone(),
            });
        }
        let found = tree.get(src, &op.path)?;
        if found != op.new {
            let path = op.path.clone();
            return Err(MstError::OpMismatch(Box::new(super::OpMismatch {
                path,
                expected: op.new,
                found,
            })));
        }
        match op.old {
            Some(old) => tree.put(src, &op.path, old)?,
            None => tree.delete(src, &op.path)?,
        };
    }
    tree.root_cid()
}

/// [`invert_ops`], then checks the result against the commit's `prevData`.
pub fn verify_inversion(
    src: &dyn BlockSource,
    new_root: Cid,
    ops: &[RecordOp],
    prev_data: Cid,
) -> Result<(), MstError> {
    let computed = invert_ops(src, new_root, ops)?;
    if computed == prev_data {
        Ok(())
    } else {
        Err(MstError::InversionMismatch(Box::new(
            super::InversionMismatch {
                expected: prev_data,
                computed,
            },
        )))
    }
}
