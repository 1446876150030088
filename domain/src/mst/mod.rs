//! Merkle Search Tree (atproto repo v3): the key -> record-CID map at the heart of a repository.
//!
//! Pure: blocks are read from a caller-supplied [`BlockSource`] (e.g. a [`BlockMap`] filled from a
//! database or a CAR slice); nothing here performs I/O. Never panics on untrusted blocks: a missing
//! block is [`MstError::MissingBlock`], a malformed one [`MstError::MalformedNode`].
//!
//! The tree is an in-memory, copy-on-write structure: nodes are shared behind `Arc`s, so cloning an
//! [`Mst`] is O(1), and a change copies and re-hashes only the nodes on the paths it touches
//! (cached CIDs elsewhere stay valid). Subtrees not yet needed stay as unloaded links and are loaded
//! lazily from the `BlockSource` passed to each call.
//!
//! * Structure: [`key_depth`] (SHA-256 leading zero bits / 2, fanout 4), [`common_prefix_len`],
//!   [`is_valid_mst_key`]; node CBOR `{e: [{k, p, t, v}], l}` with explicit nulls.
//! * Determinism: the same key -> CID map always gives the same root CID, whatever the history.
//! * [`diff`]: created / deleted nodes and record operations between two trees.
//! * [`Mst::covering_proof`]: the Sync v1.1 "relevant blocks" for an operation (path to the key and
//!   the nodes holding its neighbours), and [`invert_ops`] / [`verify_inversion`] which undo a
//!   commit's operations on a partial tree to recompute `prevData`.

mod block;
mod diff;
mod node;
mod ops;
mod proof;
#[cfg(test)]
mod tests;
mod walk;

use std::ops::Bound;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::cbor::{CborError, Cid};

pub use block::{BlockMap, BlockSource, NoBlocks};
pub use diff::{diff, MstDiff, OpAction, RecordOp};
pub use proof::{invert_ops, verify_inversion};
pub use walk::{TreeWalk, Visit};

use node::Node;

/// Longest MST key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// What went wrong building, loading or checking a tree.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MstError {
    #[error("invalid MST key {0:?}: expected `<collection>/<rkey>` of [A-Za-z0-9_~:.-], at most 1024 bytes")]
    InvalidKey(String),
    #[error("duplicate MST key {0:?}")]
    DuplicateKey(String),
    #[error("MST block {0} is missing")]
    MissingBlock(Cid),
    #[error("malformed MST node {cid}: {reason}")]
    MalformedNode { cid: Cid, reason: String },
    #[error("could not encode an MST node: {0}")]
    Encode(CborError),
    #[error("operation {op} on {path} has neither an old nor a new CID")]
    InvalidOp { op: &'static str, path: String },
    #[error("operation on {} does not match the tree: expected {:?}, found {:?}", .0.path, .0.expected, .0.found)]
    OpMismatch(Box<OpMismatch>),
    #[error("inverting the operations gives root {}, but prevData is {}", .0.computed, .0.expected)]
    InversionMismatch(Box<InversionMismatch>),
}

/// Detail of [`MstError::OpMismatch`]: the tree holds `found` at `path`, the op claims `expected`.
#[derive(Debug, PartialEq, Eq)]
pub struct OpMismatch {
    pub path: String,
    pub expected: Option<Cid>,
    pub found: Option<Cid>,
}

/// Detail of [`MstError::InversionMismatch`].
#[derive(Debug, PartialEq, Eq)]
pub struct InversionMismatch {
    pub expected: Cid,
    pub computed: Cid,
}

/// Whether `key` is a valid MST key (repo path): `<collection>/<rkey>`, both parts non-empty, only
/// `[A-Za-z0-9_~:.-]`, at most [`MAX_KEY_LEN`] bytes. Same rule as the reference `isValidMstKey`.
pub fn is_valid_mst_key(key: &str) -> bool {
    fn valid_chars(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-' | b':' | b'.'))
    }
    if key.len() > MAX_KEY_LEN {
        return false;
    }
    match key.split_once('/') {
        Some((coll, rkey)) => valid_chars(coll) && valid_chars(rkey),
        None => false,
    }
}

/// Depth (layer) of a key: leading zero bits of SHA-256(key), divided by two (fanout 4).
pub fn key_depth(key: &[u8]) -> u8 {
    let hash = Sha256::digest(key);
    let mut zeros: u32 = 0;
    for byte in hash.iter() {
        if *byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros();
            break;
        }
    }
    // At most 256 / 2 = 128.
    (zeros / 2) as u8
}

/// Number of leading bytes `a` and `b` share.
pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn check_key(key: &str) -> Result<(), MstError> {
    if is_valid_mst_key(key) {
        Ok(())
    } else {
        Err(MstError::InvalidKey(key.to_string()))
    }
}

/// A Merkle Search Tree. Cheap to clone (copy-on-write nodes); every mutation is all-or-nothing
/// (on error the tree is unchanged).
///
/// Methods taking a `src` read unloaded subtrees from it; a tree built in memory
/// ([`Mst::from_entries`], or mutations of [`Mst::new`]) never needs one, pass [`NoBlocks`].
#[derive(Clone, Debug)]
pub struct Mst {
    root: Arc<Node>,
}

impl Default for Mst {
    fn default() -> Self {
        Mst::new()
    }
}

impl Mst {
    /// The empty tree (root CID `bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm`).
    pub fn new() -> Mst {
        Mst {
            root: Arc::new(Node::empty(0)),
        }
    }

    /// Builds the tree holding exactly these pairs (any order). Rejects invalid and duplicate keys.
    pub fn from_entries<I, K>(entries: I) -> Result<Mst, MstError>
    where
        I: IntoIterator<Item = (K, Cid)>,
        K: Into<String>,
    {
        let mut items: Vec<(Arc<str>, Cid, u8)> = Vec::new();
        for (key, value) in entries {
            let key: String = key.into();
            check_key(&key)?;
            let depth = key_depth(key.as_bytes());
            items.push((Arc::from(key), value, depth));
        }
        items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = items.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(MstError::DuplicateKey(w[0].0.to_string()));
        }
        let top = items.iter().map(|i| i.2).max();
        let root = match top {
            None => Node::empty(0),
            Some(top) => ops::build(&items, top),
        };
        Ok(Mst {
            root: Arc::new(root),
        })
    }

    /// Opens the tree rooted at `root`, reading only the root node now; subtrees are read from the
    /// `src` given to later calls, when needed.
    pub fn load(src: &dyn BlockSource, root: Cid) -> Result<Mst, MstError> {
        let node = node::load(src, &node::Stub::root(root), None)?;
        Ok(Mst {
            root: Arc::new(node),
        })
    }

    /// Reads and validates the whole tree rooted at `root` (every node must be in `src`).
    pub fn load_all(src: &dyn BlockSource, root: Cid) -> Result<Mst, MstError> {
        let node = node::load_full(src, &node::Stub::root(root), None)?;
        Ok(Mst {
            root: Arc::new(node),
        })
    }

    /// CID of the root node (the commit's `data`). Re-hashes only nodes changed since last asked.
    pub fn root_cid(&self) -> Result<Cid, MstError> {
        self.root.cid()
    }

    /// Whether the tree holds no keys.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Layer of the root node (0 for an empty tree).
    pub fn root_layer(&self) -> u8 {
        self.root.layer
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, src: &dyn BlockSource, key: &str) -> Result<Option<Cid>, MstError> {
        let mut node = self.root.clone();
        loop {
            match node.search(key) {
                Ok(i) => return Ok(node.entries.get(i).map(|e| e.value)),
                Err(i) => match node.slot(i) {
                    None => return Ok(None),
                    Some(link) => node = link.resolve(src, node.layer.saturating_sub(1))?,
                },
            }
        }
    }

    /// Sets `key` to `value` (create or replace); returns the previous value. Setting the same
    /// value again changes nothing.
    pub fn put(
        &mut self,
        src: &dyn BlockSource,
        key: &str,
        value: Cid,
    ) -> Result<Option<Cid>, MstError> {
        check_key(key)?;
        let current = self.get(src, key)?;
        if current == Some(value) {
            return Ok(current);
        }
        self.root = ops::put(&self.root, src, key, value)?;
        Ok(current)
    }

    /// Removes `key`; returns the removed value (`None`, and no change, if it was absent).
    pub fn delete(&mut self, src: &dyn BlockSource, key: &str) -> Result<Option<Cid>, MstError> {
        check_key(key)?;
        let current = self.get(src, key)?;
        if current.is_none() {
            return Ok(None);
        }
        self.root = ops::delete(&self.root, src, key)?;
        Ok(current)
    }

    /// Applies a batch of writes in order (`Some(cid)` = put, `None` = delete), all or nothing.
    /// Returns the effective record operations (no-op writes left out), in batch order.
    pub fn apply_batch<K: AsRef<str>>(
        &mut self,
        src: &dyn BlockSource,
        writes: &[(K, Option<Cid>)],
    ) -> Result<Vec<RecordOp>, MstError> {
        let mut work = self.clone();
        let mut out = Vec::new();
        for (key, value) in writes {
            let key = key.as_ref();
            let old = match value {
                Some(v) => work.put(src, key, *v)?,
                None => work.delete(src, key)?,
            };
            if old != *value {
                out.push(RecordOp {
                    path: key.to_string(),
                    old,
                    new: *value,
                });
            }
        }
        *self = work;
        Ok(out)
    }

    /// Up to `limit` entries in key order, starting at `start`.
    pub fn list(
        &self,
        src: &dyn BlockSource,
        start: Bound<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Cid)>, MstError> {
        let mut out = Vec::new();
        if limit > 0 {
            ops::walk_range(&self.root, src, start, limit, &mut out)?;
        }
        Ok(out)
    }

    /// Every entry in key order.
    pub fn entries(&self, src: &dyn BlockSource) -> Result<Vec<(String, Cid)>, MstError> {
        self.list(src, Bound::Unbounded, usize::MAX)
    }

    /// Every node block of the tree, in pre-order (a node, then its subtrees left to right): the
    /// MST part of a full repo export.
    pub fn node_blocks(&self, src: &dyn BlockSource) -> Result<Vec<(Cid, Vec<u8>)>, MstError> {
        let mut out = Vec::new();
        ops::walk_nodes(&self.root, src, &mut out)?;
        Ok(out)
    }
}
