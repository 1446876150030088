//! Where tree blocks come from: any map from CID to bytes.
use std::collections::{BTreeMap, HashMap};

use crate::cbor::Cid;

/// Read access to blocks by CID. Implemented for [`BlockMap`], `HashMap`/`BTreeMap<Cid, Vec<u8>>`,
/// [`NoBlocks`], and for a pair `(A, B)` (looks in `A`, then `B`).
pub trait BlockSource {
    fn get_block(&self, cid: &Cid) -> Option<&[u8]>;
}

/// A source with no blocks: for trees that are entirely in memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoBlocks;

impl BlockSource for NoBlocks {
    fn get_block(&self, _cid: &Cid) -> Option<&[u8]> {
        None
    }
}

/// Blocks held in memory, ordered by CID (deterministic iteration).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockMap(pub BTreeMap<Cid, Vec<u8>>);

impl BlockMap {
    pub fn new() -> BlockMap {
        BlockMap(BTreeMap::new())
    }
    pub fn insert(&mut self, cid: Cid, bytes: Vec<u8>) {
        self.0.insert(cid, bytes);
    }
    pub fn get(&self, cid: &Cid) -> Option<&[u8]> {
        self.0.get(cid).map(Vec::as_slice)
    }
    pub fn contains(&self, cid: &Cid) -> bool {
        self.0.contains_key(cid)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Adds every block of `other` (same CID means same bytes).
    pub fn extend(&mut self, other: BlockMap) {
        self.0.extend(other.0);
    }
    pub fn cids(&self) -> impl Iterator<Item = &Cid> {
        self.0.keys()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Cid, &Vec<u8>)> {
        self.0.iter()
    }
}

impl FromIterator<(Cid, Vec<u8>)> for BlockMap {
    fn from_iter<T: IntoIterator<Item = (Cid, Vec<u8>)>>(iter: T) -> Self {
        BlockMap(iter.into_iter().collect())
    }
}

impl IntoIterator for BlockMap {
    type Item = (Cid, Vec<u8>);
    type IntoIter = std::collections::btree_map::IntoIter<Cid, Vec<u8>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl BlockSource for BlockMap {
    fn get_block(&self, cid: &Cid) -> Option<&[u8]> {
        self.get(cid)
    }
}

impl BlockSource for HashMap<Cid, Vec<u8>> {
    fn get_block(&self, cid: &Cid) -> Option<&[u8]> {
        self.get(cid).map(Vec::as_slice)
    }
}

impl BlockSource for BTreeMap<Cid, Vec<u8>> {
    fn get_block(&self, cid: &Cid) -> Option<&[u8]> {
        self.get(cid).map(Vec::as_slice)
    }
}

impl<T: BlockSource + ?Sized> BlockSource for &T {
    fn get_block(&self, cid: &Cid) -> Option<&[u8]> {
        (**self).get_block(cid)
    }
}

impl<A: BlockSource, B: BlockSource> BlockSource for (A, B) {
    fn get_block(&self, cid: &Cid) -> Option<&[u8]> {
        self.0.get_block(cid).or_else(|| self.1.get_block(cid))
    }
}
