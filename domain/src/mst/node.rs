//! The in-memory node, its DAG-CBOR form `{e: [{k, p, t, v}], l}`, and strict loading.
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use super::{common_prefix_len, is_valid_mst_key, key_depth, BlockSource, MstError};
use crate::cbor::{self, Cid, Ipld, DAG_CBOR};

const SHA2_256: u64 = 0x12;

/// One tree node at `layer`: `left` subtree, then entries each followed by their right subtree.
/// (This shape makes two adjacent subtrees unrepresentable.) `cid` caches the hash; every
/// mutation goes through [`touch`], which clears it.
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub layer: u8,
    pub left: Option<Link>,
    pub entries: Vec<Entry>,
    pub cid: OnceLock<Cid>,
}

#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub key: Arc<str>,
    pub value: Cid,
    pub right: Option<Link>,
}

/// A subtree: loaded (shared, copy-on-write) or not yet read.
#[derive(Clone, Debug)]
pub(super) enum Link {
    Stub(Box<Stub>),
    Node(Arc<Node>),
}

/// An unloaded subtree and the key range its keys must fall in (checked when it is loaded).
#[derive(Clone, Debug)]
pub(super) struct Stub {
    pub cid: Cid,
    pub lo: Option<Arc<str>>,
    pub hi: Option<Arc<str>>,
}

impl Stub {
    pub fn root(cid: Cid) -> Stub {
        Stub {
            cid,
            lo: None,
            hi: None,
        }
    }
}

/// Mutable access to a node, dropping its cached CID (copies it first if shared).
pub(super) fn touch(arc: &mut Arc<Node>) -> &mut Node {
    let node = Arc::make_mut(arc);
    node.cid = OnceLock::new();
    node
}

impl Link {
    pub fn new(node: Node) -> Link {
        Link::Node(Arc::new(node))
    }

    pub fn cid(&self) -> Result<Cid, MstError> {
        match self {
            Link::Stub(s) => Ok(s.cid),
            Link::Node(n) => n.cid(),
        }
    }

    /// The node behind this link, reading it from `src` if needed (not cached).
    pub fn resolve(&self, src: &dyn BlockSource, layer: u8) -> Result<Arc<Node>, MstError> {
        match self {
            Link::Node(n) => Ok(n.clone()),
            Link::Stub(s) => Ok(Arc::new(load(src, s, Some(layer))?)),
        }
    }

    /// Owned node (cached CID cleared), for restructuring.
    pub fn into_node(self, src: &dyn BlockSource, layer: u8) -> Result<Node, MstError> {
        let mut node = match self {
            Link::Node(n) => Arc::try_unwrap(n).unwrap_or_else(|shared| (*shared).clone()),
            Link::Stub(s) => load(src, &s, Some(layer))?,
        };
        node.cid = OnceLock::new();
        Ok(node)
    }

    /// Block bytes of this node (encoded if in memory, read from `src` otherwise).
    pub fn block(&self, src: &dyn BlockSource) -> Result<(Cid, Vec<u8>), MstError> {
        match self {
            Link::Node(n) => n.encode(),
            Link::Stub(s) => match src.get_block(&s.cid) {
                Some(bytes) => Ok((s.cid, bytes.to_vec())),
                None => Err(MstError::MissingBlock(s.cid)),
            },
        }
    }
}

/// Mutable access to the node behind a link, loading it in place if it is a stub.
pub(super) fn open_mut<'a>(
    link: &'a mut Link,
    src: &dyn BlockSource,
    layer: u8,
) -> Result<&'a mut Node, MstError> {
    if let Link::Stub(s) = link {
        let node = load(src, s, Some(layer))?;
        *link = Link::new(node);
    }
    match link {
        Link::Node(arc) => Ok(touch(arc)),
        Link::Stub(s) => Err(MstError::MissingBlock(s.cid)),
    }
}

impl Node {
    pub fn empty(layer: u8) -> Node {
        Node {
            layer,
            left: None,
            entries: Vec::new(),
            cid: OnceLock::new(),
        }
    }

    /// No entries and no subtree.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.left.is_none()
    }

    /// `Ok(i)`: `key` is entry `i`; `Err(i)`: it would be in slot `i` (0 = `left`, else the right
    /// subtree of entry `i - 1`).
    pub fn search(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| (*e.key).cmp(key))
    }

    pub fn slot(&self, i: usize) -> Option<&Link> {
        match i.checked_sub(1) {
            None => self.left.as_ref(),
            Some(j) => self.entries.get(j).and_then(|e| e.right.as_ref()),
        }
    }

    /// Slot `i` for writing. `i` must be at most `entries.len()` (callers pass a `search` result).
    pub fn slot_mut(&mut self, i: usize) -> &mut Option<Link> {
        match i.checked_sub(1) {
            None => &mut self.left,
            Some(j) => &mut self.entries[j].right,
        }
    }

    /// The right-most slot (`left` if there are no entries).
    pub fn last_slot_mut(&mut self) -> &mut Option<Link> {
        match self.entries.last_mut() {
            None => &mut self.left,
            Some(e) => &mut e.right,
        }
    }

    /// All subtree links, left to right.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.left
            .iter()
            .chain(self.entries.iter().filter_map(|e| e.right.as_ref()))
    }

    pub fn cid(&self) -> Result<Cid, MstError> {
        if let Some(cid) = self.cid.get() {
            return Ok(*cid);
        }
        let (cid, _) = self.encode()?;
        // A concurrent reader may have set it first: same value.
        let _ = self.cid.set(cid);
        Ok(cid)
    }

    /// The node's DAG-CBOR block and CID (children's CIDs are computed as needed).
    pub fn encode(&self) -> Result<(Cid, Vec<u8>), MstError> {
        let link = |l: &Option<Link>| -> Result<Ipld, MstError> {
            Ok(match l {
                None => Ipld::Null,
                Some(l) => Ipld::Link(l.cid()?),
            })
        };
        let mut entries = Vec::with_capacity(self.entries.len());
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            let key = e.key.as_bytes();
            let p = common_prefix_len(prev, key);
            let mut m = BTreeMap::new();
            m.insert(
                "k".to_string(),
                Ipld::Bytes(key.get(p..).unwrap_or_default().to_vec()),
            );
            m.insert("p".to_string(), Ipld::Integer(p as i128));
            m.insert("t".to_string(), link(&e.right)?);
            m.insert("v".to_string(), Ipld::Link(e.value));
            entries.push(Ipld::Map(m));
            prev = key;
        }
        let mut m = BTreeMap::new();
        m.insert("e".to_string(), Ipld::List(entries));
        m.insert("l".to_string(), link(&self.left)?);
        let bytes = cbor::encode(&Ipld::Map(m)).map_err(MstError::Encode)?;
        Ok((cbor::cid_cbor(&bytes), bytes))
    }
}

fn malformed(cid: &Cid, reason: impl Into<String>) -> MstError {
    MstError::MalformedNode {
        cid: *cid,
        reason: reason.into(),
    }
}

fn is_blessed_node_cid(cid: &Cid) -> bool {
    cid.version() == cid::Version::V1
        && cid.codec() == DAG_CBOR
        && cid.hash().code() == SHA2_256
        && cid.hash().size() == 32
}

/// Reads, checks and decodes one node. `layer` is `None` for the root (taken from its keys).
///
/// Checks: the block hashes to its CID and is canonical DAG-CBOR; exactly the fields
/// `e, l` / `k, p, t, v` (nulls explicit); prefix compression consistent; keys valid, strictly
/// increasing and inside the stub's range; every key at the node's layer; no subtree below layer
/// 0; no empty node except the empty root; no root that only points to a subtree.
pub(super) fn load(
    src: &dyn BlockSource,
    stub: &Stub,
    layer: Option<u8>,
) -> Result<Node, MstError> {
    let cid = &stub.cid;
    let bytes = src.get_block(cid).ok_or(MstError::MissingBlock(*cid))?;
    if !is_blessed_node_cid(cid) {
        return Err(malformed(cid, "node CID is not CIDv1 dag-cbor sha2-256"));
    }
    if cbor::cid_cbor(bytes) != *cid {
        return Err(malformed(cid, "block does not hash to its CID"));
    }
    let value = cbor::decode(bytes).map_err(|e| malformed(cid, e.to_string()))?;
    let Ipld::Map(mut top) = value else {
        return Err(malformed(cid, "node is not a map"));
    };
    if top.len() != 2 {
        return Err(malformed(cid, "node must have exactly the fields e and l"));
    }
    let left = match top.remove("l") {
        Some(l) => node_link(cid, l)?,
        None => return Err(malformed(cid, "missing field l")),
    };
    let Some(Ipld::List(raw_entries)) = top.remove("e") else {
        return Err(malformed(cid, "missing or non-list field e"));
    };

    let mut entries: Vec<Entry> = Vec::with_capacity(raw_entries.len());
    let mut prev: Vec<u8> = Vec::new();
    let mut node_layer = layer;
    for raw in raw_entries {
        let Ipld::Map(mut m) = raw else {
            return Err(malformed(cid, "entry is not a map"));
        };
        if m.len() != 4 {
            return Err(malformed(
                cid,
                "entry must have exactly the fields k, p, t, v",
            ));
        }
        let Some(Ipld::Bytes(suffix)) = m.remove("k") else {
            return Err(malformed(cid, "entry k is missing or not bytes"));
        };
        let p = match m.remove("p") {
            Some(Ipld::Integer(p)) => usize::try_from(p).ok().filter(|p| *p <= prev.len()),
            _ => None,
        };
        let Some(p) = p else {
            return Err(malformed(cid, "entry p is missing or out of range"));
        };
        let right = match m.remove("t") {
            Some(t) => node_link(cid, t)?,
            None => return Err(malformed(cid, "entry t is missing")),
        };
        let Some(Ipld::Link(value)) = m.remove("v") else {
            return Err(malformed(cid, "entry v is missing or not a link"));
        };
        let mut key_bytes = prev.get(..p).unwrap_or_default().to_vec();
        key_bytes.extend_from_slice(&suffix);
        let key = match String::from_utf8(key_bytes) {
            Ok(k) if is_valid_mst_key(&k) => k,
            Ok(k) => return Err(malformed(cid, format!("invalid key {k:?}"))),
            Err(_) => return Err(malformed(cid, "key is not UTF-8")),
        };
        if !entries.is_empty() && key.as_bytes() <= prev.as_slice() {
            return Err(malformed(cid, "keys are not strictly increasing"));
        }
        if common_prefix_len(&prev, key.as_bytes()) != p {
            return Err(malformed(cid, "prefix length is not the shared prefix"));
        }
        let depth = key_depth(key.as_bytes());
        match node_layer {
            None => node_layer = Some(depth),
            Some(l) if l != depth => {
                return Err(malformed(
                    cid,
                    format!("key {key:?} has depth {depth}, node is at layer {l}"),
                ));
            }
            Some(_) => {}
        }
        let key: Arc<str> = Arc::from(key);
        prev = key.as_bytes().to_vec();
        // Each child stub gets its key range below, once the neighbouring keys are known.
        let right = right.map(|c| Link::Stub(Box::new(Stub::root(c))));
        entries.push(Entry { key, value, right });
    }

    if let (Some(first), Some(lo)) = (entries.first(), &stub.lo) {
        if *first.key <= **lo {
            return Err(malformed(cid, "key below the subtree's range"));
        }
    }
    if let (Some(last), Some(hi)) = (entries.last(), &stub.hi) {
        if *last.key >= **hi {
            return Err(malformed(cid, "key above the subtree's range"));
        }
    }

    let is_root = layer.is_none();
    if entries.is_empty() {
        if is_root && left.is_some() {
            return Err(malformed(
                cid,
                "root node has no entries but a subtree (top not trimmed)",
            ));
        }
        if !is_root && left.is_none() {
            return Err(malformed(cid, "empty node below the root"));
        }
    }
    let layer = node_layer.unwrap_or(0);
    let has_children = left.is_some() || entries.iter().any(|e| e.right.is_some());
    if layer == 0 && has_children {
        return Err(malformed(cid, "layer-0 node has a subtree"));
    }

    // Give each child stub its key range.
    let mut lo = stub.lo.clone();
    let first_key = entries
        .first()
        .map(|e| e.key.clone())
        .or_else(|| stub.hi.clone());
    let left = left.map(|c| {
        Link::Stub(Box::new(Stub {
            cid: c,
            lo: lo.clone(),
            hi: first_key,
        }))
    });
    let n = entries.len();
    for i in 0..n {
        let hi = match entries.get(i + 1) {
            Some(next) => Some(next.key.clone()),
            None => stub.hi.clone(),
        };
        if let Some(e) = entries.get_mut(i) {
            lo = Some(e.key.clone());
            if let Some(Link::Stub(s)) = &mut e.right {
                s.lo = lo.clone();
                s.hi = hi;
            }
        }
    }

    let node = Node {
        layer,
        left,
        entries,
        cid: OnceLock::new(),
    };
    // Canonical form: re-encoding must give back the same bytes.
    let (again, _) = node.encode()?;
    if again != *cid {
        return Err(malformed(cid, "block is not in canonical form"));
    }
    let _ = node.cid.set(*cid);
    Ok(node)
}

fn node_link(cid: &Cid, value: Ipld) -> Result<Option<Cid>, MstError> {
    match value {
        Ipld::Null => Ok(None),
        Ipld::Link(c) if is_blessed_node_cid(&c) => Ok(Some(c)),
        Ipld::Link(_) => Err(malformed(
            cid,
            "subtree link is not CIDv1 dag-cbor sha2-256",
        )),
        _ => Err(malformed(cid, "subtree link is neither null nor a link")),
    }
}

/// Loads a node and, recursively, all of its subtrees.
pub(super) fn load_full(
    src: &dyn BlockSource,
    stub: &Stub,
    layer: Option<u8>,
) -> Result<Node, MstError> {
    let mut node = load(src, stub, layer)?;
    let child_layer = node.layer.saturating_sub(1);
    let mut slots: Vec<&mut Option<Link>> = vec![&mut node.left];
    slots.extend(node.entries.iter_mut().map(|e| &mut e.right));
    for slot in slots {
        if let Some(Link::Stub(s)) = slot {
            let child = load_full(src, s, Some(child_layer))?;
            *slot = Some(Link::new(child));
        }
    }
    Ok(node)
}
