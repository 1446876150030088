//! CAR v1 (Content Addressable aRchive): the repository export and commit-diff format.
//!
//! Layout: `varint(len) ‖ dag-cbor {roots: [cid…], version: 1}`, then per block
//! `varint(len(cid) + len(bytes)) ‖ cid-bytes ‖ block-bytes`.
//!
//! The writer streams (never holds the whole file); [`encode_header`] / [`encode_block`] give
//! the frames for callers that stream themselves. The reader streams over any `std::io::Read`
//! (wrap unbuffered sources in a `BufReader`: varints are read byte by byte), checks every
//! length against a limit before allocating, and by default verifies each block's sha2-256 hash
//! against its CID. It never panics on any input. The caller owns the I/O.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use crate::cbor::{self, CborError, Cid, Ipld};

/// Default largest block section (CID + bytes) the reader accepts.
pub const DEFAULT_MAX_BLOCK_SIZE: usize = 2 * 1024 * 1024;
/// Default largest header the reader accepts.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;
/// An unsigned varint in CAR is at most 9 bytes (63 bits).
const MAX_VARINT_BYTES: usize = 9;
const SHA2_256: u64 = 0x12;

#[derive(Debug, thiserror::Error)]
pub enum CarError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed varint: {0}")]
    BadVarint(&'static str),
    #[error("unexpected end of input")]
    Truncated,
    #[error("empty input: no CAR header")]
    MissingHeader,
    #[error("section of length zero")]
    EmptySection,
    #[error("header of {len} bytes exceeds the limit of {max}")]
    HeaderTooLarge { len: u64, max: usize },
    #[error("block section of {len} bytes exceeds the limit of {max}")]
    BlockTooLarge { len: u64, max: usize },
    #[error("header is not valid DAG-CBOR: {0}")]
    HeaderCbor(CborError),
    #[error("invalid header: {0}")]
    InvalidHeader(&'static str),
    #[error("unsupported CAR version {0}")]
    UnsupportedVersion(i128),
    #[error("invalid block CID: {0}")]
    InvalidCid(CborError),
    #[error("block {0} uses a hash other than sha2-256; cannot verify")]
    UnsupportedHash(Cid),
    #[error("block {0} uses a codec other than dag-cbor or raw")]
    UnsupportedCodec(Cid),
    #[error("block bytes do not hash to its CID {0}")]
    CidMismatch(Cid),
}

// ---------------------------------------------------------------------------------------------
// Writing

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The header frame: `varint(len) ‖ {roots, version: 1}`.
pub fn encode_header(roots: &[Cid]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + roots.len() * 41);
    body.push(0xa2);
    body.push(0x65);
    body.extend_from_slice(b"roots");
    cbor::write_head(&mut body, 4, roots.len() as u64);
    for cid in roots {
        body.extend_from_slice(&[0xd8, 42]);
        cbor::write_link_payload(&mut body, cid);
    }
    body.push(0x67);
    body.extend_from_slice(b"version");
    body.push(0x01);
    let mut out = Vec::with_capacity(body.len() + 3);
    push_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// One block frame: `varint(len(cid) + len(bytes)) ‖ cid ‖ bytes`.
pub fn encode_block(cid: &Cid, bytes: &[u8]) -> Vec<u8> {
    let raw = cid.to_bytes();
    let mut out = Vec::with_capacity(raw.len() + bytes.len() + 5);
    push_varint(&mut out, (raw.len() + bytes.len()) as u64);
    out.extend_from_slice(&raw);
    out.extend_from_slice(bytes);
    out
}

/// Writes a CAR to any `Write`, block by block.
pub struct CarWriter<W: Write> {
    w: W,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header.
    pub fn new(mut w: W, roots: &[Cid]) -> Result<Self, CarError> {
        w.write_all(&encode_header(roots))?;
        Ok(Self { w })
    }

    pub fn write_block(&mut self, cid: &Cid, bytes: &[u8]) -> Result<(), CarError> {
        let raw = cid.to_bytes();
        let mut prefix = Vec::with_capacity(raw.len() + 10);
        push_varint(&mut prefix, (raw.len() + bytes.len()) as u64);
        prefix.extend_from_slice(&raw);
        self.w.write_all(&prefix)?;
        self.w.write_all(bytes)?;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, CarError> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// A whole CAR in memory.
pub fn write_car(roots: &[Cid], blocks: impl IntoIterator<Item = (Cid, Vec<u8>)>) -> Vec<u8> {
    let mut out = encode_header(roots);
    for (cid, bytes) in blocks {
        out.extend_from_slice(&encode_block(&cid, &bytes));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reader limits and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarReadOptions {
    /// Largest block section (CID + bytes) accepted.
    pub max_block_size: usize,
    /// Largest header accepted.
    pub max_header_size: usize,
    /// Check every block's bytes hash to its CID (sha2-256; dag-cbor or raw codec).
    pub verify: bool,
}

impl Default for CarReadOptions {
    fn default() -> Self {
        Self {
            max_block_size: DEFAULT_MAX_BLOCK_SIZE,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            verify: true,
        }
    }
}

/// Reads a CAR block by block from any `Read`.
pub struct CarReader<R: Read> {
    r: R,
    roots: Vec<Cid>,
    opts: CarReadOptions,
    done: bool,
}

impl<R: Read> CarReader<R> {
    /// Reads and validates the header, with default options (hash verification on).
    pub fn new(r: R) -> Result<Self, CarError> {
        Self::with_options(r, CarReadOptions::default())
    }

    pub fn with_options(mut r: R, opts: CarReadOptions) -> Result<Self, CarError> {
        let len = read_varint(&mut r)?.ok_or(CarError::MissingHeader)?;
        if len == 0 {
            return Err(CarError::EmptySection);
        }
        if len > opts.max_header_size as u64 {
            return Err(CarError::HeaderTooLarge {
                len,
                max: opts.max_header_size,
            });
        }
        let buf = read_exact_vec(&mut r, len)?;
        let roots = parse_header(&buf)?;
        Ok(Self {
            r,
            roots,
            opts,
            done: false,
        })
    }

    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block, `None` at a clean end of input.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, CarError> {
        if self.done {
            return Ok(None);
        }
        let res = self.read_block();
        if !matches!(res, Ok(Some(_))) {
            self.done = true;
        }
        res
    }

    fn read_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, CarError> {
        let Some(len) = read_varint(&mut self.r)? else {
            return Ok(None);
        };
        if len == 0 {
            return Err(CarError::EmptySection);
        }
        if len > self.opts.max_block_size as u64 {
            return Err(CarError::BlockTooLarge {
                len,
                max: self.opts.max_block_size,
            });
        }
        let mut buf = read_exact_vec(&mut self.r, len)?;
        let mut rest: &[u8] = &buf;
        let cid = cbor::read_cid(&mut rest).map_err(CarError::InvalidCid)?;
        let cid_len = buf.len() - rest.len();
        if self.opts.verify {
            verify_block(&cid, rest)?;
        }
        buf.drain(..cid_len);
        Ok(Some((cid, buf)))
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.r
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<(Cid, Vec<u8>), CarError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().transpose()
    }
}

/// Reads a whole in-memory CAR (default options: hashes verified).
#[allow(clippy::type_complexity)]
pub fn read_car(bytes: &[u8]) -> Result<(Vec<Cid>, Vec<(Cid, Vec<u8>)>), CarError> {
    let mut reader = CarReader::new(bytes)?;
    let mut blocks = Vec::new();
    while let Some(b) = reader.next_block()? {
        blocks.push(b);
    }
    Ok((reader.roots, blocks))
}

/// Checks `bytes` hash to `cid` (sha2-256, codec dag-cbor or raw).
pub fn verify_block(cid: &Cid, bytes: &[u8]) -> Result<(), CarError> {
    if cid.codec() != cbor::DAG_CBOR && cid.codec() != cbor::RAW {
        return Err(CarError::UnsupportedCodec(*cid));
    }
    let mh = cid.hash();
    if mh.code() != SHA2_256 || mh.size() != 32 {
        return Err(CarError::UnsupportedHash(*cid));
    }
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    if digest[..] != *mh.digest() {
        return Err(CarError::CidMismatch(*cid));
    }
    Ok(())
}

fn parse_header(buf: &[u8]) -> Result<Vec<Cid>, CarError> {
    let Ipld::Map(m) = cbor::decode(buf).map_err(CarError::HeaderCbor)? else {
        return Err(CarError::InvalidHeader("not a map"));
    };
    match m.get("version") {
        Some(Ipld::Integer(1)) => {}
        Some(Ipld::Integer(v)) => return Err(CarError::UnsupportedVersion(*v)),
        Some(_) => return Err(CarError::InvalidHeader("version is not an integer")),
        None => return Err(CarError::InvalidHeader("missing version")),
    }
    let Some(Ipld::List(roots)) = m.get("roots") else {
        return Err(CarError::InvalidHeader("roots is missing or not a list"));
    };
    roots
        .iter()
        .map(|r| match r {
            Ipld::Link(c) => Ok(*c),
            _ => Err(CarError::InvalidHeader("root is not a CID link")),
        })
        .collect()
}

/// What [`CarDecoder::next_item`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarItem {
    /// The header's roots (always first).
    Header(Vec<Cid>),
    /// One block, its hash checked when the options say so.
    Block(Cid, Vec<u8>),
}

/// A push-based CAR reader for input that arrives in pieces (an HTTP body): [`CarDecoder::push`]
/// the bytes as they come, take items with [`CarDecoder::next_item`] until it answers `None` (needs
/// more input), and call [`CarDecoder::finish`] at the end of input (a partial section is
/// `Truncated`). Same checks and limits as [`CarReader`]; a section's length is checked against
/// the limit as soon as its varint is complete, so memory stays within one section plus one
/// pushed piece whatever the input claims.
#[derive(Debug)]
pub struct CarDecoder {
    buf: Vec<u8>,
    start: usize,
    header_done: bool,
    opts: CarReadOptions,
}

impl CarDecoder {
    pub fn new(opts: CarReadOptions) -> CarDecoder {
        CarDecoder { buf: Vec::new(), start: 0, header_done: false, opts }
    }

    /// Appends input.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next item, or `None` when the buffered input holds no complete section.
    pub fn next_item(&mut self) -> Result<Option<CarItem>, CarError> {
        let avail = self.buf.get(self.start..).unwrap_or_default();
        let Some((len, used)) = varint_from_slice(avail)? else { return Ok(None) };
        if len == 0 {
            return Err(CarError::EmptySection);
        }
        let max = if self.header_done { self.opts.max_block_size } else { self.opts.max_header_size };
        if len > max as u64 {
            return Err(if self.header_done {
                CarError::BlockTooLarge { len, max }
            } else {
                CarError::HeaderTooLarge { len, max }
            });
        }
        let len = len as usize;
        let Some(section) = avail.get(used..used + len) else { return Ok(None) };
        let item = if self.header_done {
            let mut rest: &[u8] = section;
            let cid = cbor::read_cid(&mut rest).map_err(CarError::InvalidCid)?;
            if self.opts.verify {
                verify_block(&cid, rest)?;
            }
            CarItem::Block(cid, rest.to_vec())
        } else {
            self.header_done = true;
            CarItem::Header(parse_header(section)?)
        };
        self.start += used + len;
        Ok(Some(item))
    }

    /// End of input: an error if no header came or a section is incomplete.
    pub fn finish(&self) -> Result<(), CarError> {
        if !self.header_done {
            return Err(if self.buf.len() == self.start { CarError::MissingHeader } else { CarError::Truncated });
        }
        if self.buf.len() > self.start {
            return Err(CarError::Truncated);
        }
        Ok(())
    }
}

/// A varint at the start of `buf`: `(value, bytes used)`, or `None` if `buf` ends inside it.
fn varint_from_slice(buf: &[u8]) -> Result<Option<(u64, usize)>, CarError> {
    let mut n: u64 = 0;
    for i in 0..MAX_VARINT_BYTES {
        let Some(&byte) = buf.get(i) else { return Ok(None) };
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(CarError::BadVarint("not minimal"));
            }
            return Ok(Some((n, i + 1)));
        }
    }
    Err(CarError::BadVarint("longer than 9 bytes"))
}

/// Reads an unsigned LEB128 varint (minimal, at most 9 bytes). `None` at a clean end of input
/// (no byte read); `Truncated` if the input ends inside it.
fn read_varint<R: Read>(r: &mut R) -> Result<Option<u64>, CarError> {
    let mut n: u64 = 0;
    for i in 0..MAX_VARINT_BYTES {
        let mut b = [0u8; 1];
        if let Err(e) = r.read_exact(&mut b) {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof if i == 0 => Ok(None),
                std::io::ErrorKind::UnexpectedEof => Err(CarError::Truncated),
                _ => Err(CarError::Io(e)),
            };
        }
        let byte = b[0];
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(CarError::BadVarint("not minimal"));
            }
            return Ok(Some(n));
        }
    }
    Err(CarError::BadVarint("longer than 9 bytes"))
}

/// Reads exactly `len` bytes (already checked against a limit), growing the buffer only as data
/// actually arrives.
fn read_exact_vec<R: Read>(r: &mut R, len: u64) -> Result<Vec<u8>, CarError> {
    let mut buf = Vec::new();
    r.by_ref().take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) != len {
        return Err(CarError::Truncated);
    }
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testing::read_fixture;
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine;

    struct Fixture {
        root: Cid,
        blocks: Vec<(Cid, Vec<u8>)>,
        car: Vec<u8>,
    }

    fn b64(s: &str) -> Vec<u8> {
        STANDARD_NO_PAD.decode(s.trim_end_matches('=')).unwrap()
    }

    fn fixtures() -> Vec<Fixture> {
        let v: serde_json::Value = serde_json::from_str(&read_fixture(
            "interop-tests-extra/repo-car-file-fixtures.json",
        ))
        .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| Fixture {
                root: Cid::try_from(f["root"].as_str().unwrap()).unwrap(),
                blocks: f["blocks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| {
                        (
                            Cid::try_from(b["cid"].as_str().unwrap()).unwrap(),
                            b64(b["bytes"].as_str().unwrap()),
                        )
                    })
                    .collect(),
                car: b64(f["car"].as_str().unwrap()),
            })
            .collect()
    }

    #[track_caller]
    fn check_fixture(f: &Fixture) {
        // encode: convenience, frames and streaming writer all give the exact bytes
        assert_eq!(write_car(&[f.root], f.blocks.clone()), f.car);
        let mut framed = encode_header(&[f.root]);
        for (c, b) in &f.blocks {
            framed.extend(encode_block(c, b));
        }
        assert_eq!(framed, f.car);
        let mut w = CarWriter::new(Vec::new(), &[f.root]).unwrap();
        for (c, b) in &f.blocks {
            w.write_block(c, b).unwrap();
        }
        assert_eq!(w.finish().unwrap(), f.car);

        // decode
        let (roots, blocks) = read_car(&f.car).unwrap();
        assert_eq!(roots, vec![f.root]);
        assert_eq!(blocks, f.blocks);
        let reader = CarReader::new(&f.car[..]).unwrap();
        assert_eq!(reader.roots(), &[f.root]);
        assert_eq!(reader.collect::<Result<Vec<_>, _>>().unwrap(), f.blocks);

        // pushed in pieces of every size, the decoder gives the same items
        for piece in [1usize, 2, 3, 7, 64, 1000] {
            let mut d = CarDecoder::new(CarReadOptions::default());
            let mut got = Vec::new();
            let mut roots = None;
            for p in f.car.chunks(piece) {
                d.push(p);
                while let Some(item) = d.next_item().unwrap() {
                    match item {
                        CarItem::Header(r) => roots = Some(r),
                        CarItem::Block(c, b) => got.push((c, b)),
                    }
                }
            }
            d.finish().unwrap();
            assert_eq!(roots, Some(vec![f.root]));
            assert_eq!(got, f.blocks);
            // a strict prefix that is not at a boundary is reported truncated at the end
            let mut d = CarDecoder::new(CarReadOptions::default());
            d.push(&f.car[..f.car.len() - 1]);
            while d.next_item().unwrap().is_some() {}
            assert!(matches!(d.finish(), Err(CarError::Truncated)));
        }

        // Every truncation: an error, or (exactly at a section boundary) a shorter valid CAR.
        let mut boundaries = vec![encode_header(&[f.root]).len()];
        for (c, b) in &f.blocks {
            boundaries.push(boundaries[boundaries.len() - 1] + encode_block(c, b).len());
        }
        for i in 0..f.car.len() {
            match read_car(&f.car[..i]) {
                Err(_) => assert!(!boundaries.contains(&i), "prefix {i} rejected"),
                Ok((_, got)) => {
                    let k = boundaries
                        .iter()
                        .position(|&x| x == i)
                        .expect("accepted only at a boundary");
                    assert_eq!(got, f.blocks[..k]);
                }
            }
        }
        // Any single flipped bit in a block body is caught by verification.
        let last = f.car.len() - 1;
        let mut bad = f.car.clone();
        bad[last] ^= 1;
        assert!(matches!(read_car(&bad), Err(CarError::CidMismatch(_))));
        let opts = CarReadOptions {
            verify: false,
            ..Default::default()
        };
        assert!(CarReader::with_options(&bad[..], opts)
            .unwrap()
            .all(|r| r.is_ok()));
    }

    #[test]
    fn fixture_cases() {
        let fs = fixtures();
        for f in &fs {
            check_fixture(f);
        }
        assert_eq!(fs.len(), 1);
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[track_caller]
    fn check(input: Vec<u8>, expected: &str) {
        let got = read_car(&input);
        let name = match &got {
            Ok(_) => "Ok".to_string(),
            Err(e) => format!("{e:?}"),
        };
        assert!(
            name.starts_with(expected),
            "{}: got {name}, expected {expected}",
            hex_str(&input)
        );
    }

    fn hex_str(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn malformed_table() {
        let block = b"\xa0".to_vec(); // {} as DAG-CBOR
        let cid = cbor::cid_cbor(&block);
        let raw_cid = cbor::cid_for(cbor::RAW, b"hello");
        let header = encode_header(&[cid]);
        let good = write_car(&[cid], vec![(cid, block.clone())]);
        let with = |tail: &[u8]| [header.clone(), tail.to_vec()].concat();
        let hdr = |cbor_hex: &str| {
            let body = hex(cbor_hex);
            let mut v = Vec::new();
            push_varint(&mut v, body.len() as u64);
            v.extend(body);
            v
        };
        let cid_bytes = cid.to_bytes();
        let mut sha1_cid = vec![0x01, 0x71, 0x11, 0x14];
        sha1_cid.extend([0u8; 20]);
        let cidv0 = [vec![0x12, 0x20], vec![0u8; 32]].concat();

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good.clone(), "Ok"),
            (
                write_car(
                    &[cid, raw_cid],
                    vec![(raw_cid, b"hello".to_vec()), (cid, block.clone())],
                ),
                "Ok",
            ),
            (write_car(&[], Vec::new()), "Ok"),
            // header framing
            (vec![], "MissingHeader"),
            (vec![0x00], "EmptySection"),
            (vec![0x80], "Truncated"),
            (vec![0x80, 0x00], "BadVarint(\"not minimal\")"),
            (vec![0xff; 10], "BadVarint(\"longer than 9 bytes\")"),
            (vec![0x80, 0x80, 0x08], "HeaderTooLarge"),
            (vec![0x05, 0xa0], "Truncated"),
            // header content
            (hdr("a0"), "InvalidHeader(\"missing version\")"),
            (hdr("80"), "InvalidHeader(\"not a map\")"),
            (hdr("a16776657273696f6e02"), "UnsupportedVersion(2)"),
            (hdr("a16776657273696f6e01"), "InvalidHeader(\"roots"),
            (hdr("a165726f6f74738101"), "InvalidHeader(\"missing version"),
            (
                hdr("a265726f6f747381016776657273696f6e01"),
                "InvalidHeader(\"root is not",
            ),
            (
                hdr("a26776657273696f6e0165726f6f747380"),
                "HeaderCbor(KeyOrder)",
            ),
            (
                hdr("a265726f6f7473806776657273696f6efb3ff0000000000000"),
                "HeaderCbor(Float)",
            ),
            (
                hdr("a265726f6f7473806776657273696f6e01 00"),
                "HeaderCbor(TrailingBytes(1))",
            ),
            (
                hdr("a265726f6f7473806776657273696f6e6161"),
                "InvalidHeader(\"version is not",
            ),
            // block framing
            (with(&[0x00]), "EmptySection"),
            (with(&[0x80]), "Truncated"),
            (with(&[0x80, 0x80, 0x81, 0x01]), "BlockTooLarge"),
            (
                with(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
                "BlockTooLarge",
            ),
            (with(&[0x30, 0x01]), "Truncated"),
            // block CIDs
            (
                with(&[vec![0x23], cidv0.clone(), vec![0xa0]].concat()),
                "InvalidCid(InvalidCid(\"CIDv0",
            ),
            (
                with(&[vec![0x04], vec![0x01, 0x71, 0x12, 0x20]].concat()),
                "InvalidCid(InvalidCid(\"malformed",
            ),
            (with(&[vec![0x02], vec![0x02, 0x71]].concat()), "InvalidCid"),
            (
                with(
                    &[
                        vec![(cid_bytes.len() + 2) as u8],
                        cid_bytes.clone(),
                        vec![0xa1, 0x60],
                    ]
                    .concat(),
                ),
                "CidMismatch",
            ),
            (
                with(&[vec![25], sha1_cid.clone(), vec![0xa0]].concat()),
                "UnsupportedHash",
            ),
            (
                with(
                    &[
                        vec![(cid_bytes.len() + 1) as u8],
                        cbor::cid_for(0x70, &block).to_bytes(),
                        vec![0xa0],
                    ]
                    .concat(),
                ),
                "UnsupportedCodec",
            ),
            // trailing garbage after the last block
            ([good.clone(), vec![0x01]].concat(), "Truncated"),
            ([good, vec![0x05, 0x01]].concat(), "Truncated"),
        ];
        let n = cases.len();
        for (input, expected) in cases {
            check(input, expected);
        }
        assert_eq!(n, 33);

        // Limits are configurable and checked before reading the section.
        let small = CarReadOptions {
            max_block_size: 8,
            ..Default::default()
        };
        let car = write_car(&[cid], vec![(cid, block.clone())]);
        let mut r = CarReader::with_options(&car[..], small).unwrap();
        assert!(matches!(
            r.next_block(),
            Err(CarError::BlockTooLarge { .. })
        ));
        assert!(
            r.next_block().unwrap().is_none(),
            "reader stops after an error"
        );
        let tiny_header = CarReadOptions {
            max_header_size: 8,
            ..Default::default()
        };
        assert!(matches!(
            CarReader::with_options(&car[..], tiny_header),
            Err(CarError::HeaderTooLarge { .. })
        ));
    }
}
