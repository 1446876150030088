//! Validation of data-model values ([`Ipld`]) against the compiled schema.
//!
//! Paths are kept as a borrowed chain and only rendered into a string when an error is
//! reported, so successful validation allocates nothing.

use std::fmt;

use unicode_segmentation::UnicodeSegmentation;

use super::schema::{
    ArrayDef, BlobDef, BooleanDef, BytesDef, Def, FieldType, IntegerDef, ObjectDef, RefTarget,
    StringDef, StringFormat, UnionDef,
};
use super::Catalog;
use crate::cbor::Ipld;
use crate::json::{blob_ref_from_ipld, BlobRef};
use crate::syntax::{
    is_valid_at_identifier, is_valid_at_uri, is_valid_cid, is_valid_datetime, is_valid_did,
    is_valid_handle, is_valid_language, is_valid_nsid, is_valid_record_key, is_valid_tid,
    is_valid_uri,
};

/// Nesting limit for refs/unions/containers, so a cyclic schema cannot recurse forever.
const MAX_DEPTH: usize = 128;

/// A value that does not match its schema: where (`Record/embed/images/0/alt`) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {problem}")]
pub struct ValidationError {
    pub path: String,
    pub problem: Problem,
}

impl ValidationError {
    /// The schema itself is not in the catalog (callers doing optimistic validation let the
    /// value through in that case).
    pub fn is_unknown_schema(&self) -> bool {
        matches!(self.problem, Problem::UnknownSchema(_))
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("has no lexicon schema {0} in the catalog")]
    UnknownSchema(String),
    #[error("refers to {target}, which is a {found}, not {expected}")]
    WrongDefType {
        target: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("refers to {0}, which is not in the catalog")]
    UnresolvedRef(String),
    #[error("must be {0}")]
    WrongType(&'static str),
    #[error("must have the property \"{0}\"")]
    MissingProperty(String),
    #[error("$type must be {expected}, got {found}")]
    RecordTypeMismatch { expected: String, found: String },
    #[error("must be an object which includes the \"$type\" property")]
    MissingType,
    #[error("$type must be one of {0}")]
    NotInClosedUnion(String),
    #[error("must be {0}")]
    NotConst(String),
    #[error("must be one of ({0})")]
    NotInEnum(String),
    #[error("can not be greater than {0}")]
    TooLarge(i64),
    #[error("can not be less than {0}")]
    TooSmall(i64),
    #[error("must not be longer than {max} {unit}")]
    TooLong { max: u64, unit: &'static str },
    #[error("must not be shorter than {min} {unit}")]
    TooShort { min: u64, unit: &'static str },
    #[error("must not have more than {0} elements")]
    TooManyElements(u64),
    #[error("must not have fewer than {0} elements")]
    TooFewElements(u64),
    #[error("{}", .0.requirement())]
    BadFormat(StringFormat),
    #[error("is too big: {size} bytes, at most {max} allowed")]
    BlobTooLarge { size: u64, max: u64 },
    #[error("has a MIME type {mime:?} that is not accepted ({accept})")]
    BlobNotAccepted { mime: String, accept: String },
    #[error("must be an object, not a blob or another compound value")]
    CompoundNotAllowed,
    #[error("must not contain floats")]
    Float,
    #[error("is nested too deeply")]
    TooDeep,
}

/// A location inside the value being validated, rendered as `Root/key/0/key`.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(r) => f.write_str(r),
            Path::Key(p, k) => write!(f, "{p}/{k}"),
            Path::Index(p, i) => write!(f, "{p}/{i}"),
        }
    }
}

impl Path<'_> {
    fn depth(&self) -> usize {
        let mut n = 0;
        let mut p = self;
        loop {
            match p {
                Path::Root(_) => return n,
                Path::Key(q, _) | Path::Index(q, _) => {
                    n += 1;
                    p = q;
                }
            }
        }
    }
}

/// `len` within `[min, max]` (either bound optional), else `TooShort`/`TooLong` in `unit`.
fn check_length(
    path: &Path<'_>,
    len: u64,
    min: Option<u64>,
    max: Option<u64>,
    unit: &'static str,
) -> Result<(), ValidationError> {
    if let Some(max) = max.filter(|&max| len > max) {
        return fail(path, Problem::TooLong { max, unit });
    }
    if let Some(min) = min.filter(|&min| len < min) {
        return fail(path, Problem::TooShort { min, unit });
    }
    Ok(())
}

pub(crate) fn fail<T>(path: &Path<'_>, problem: Problem) -> Result<T, ValidationError> {
    Err(ValidationError {
        path: path.to_string(),
        problem,
    })
}

type VResult = Result<(), ValidationError>;

impl Catalog {
    /// Validates `value` against a field schema (from a document in this catalog).
    pub(crate) fn check_field(&self, path: &Path<'_>, ty: &FieldType, value: &Ipld) -> VResult {
        match ty {
            FieldType::Boolean(d) => check_boolean(path, d, value),
            FieldType::Integer(d) => check_integer(path, d, value),
            FieldType::String(d) => check_string(path, d, value),
            FieldType::Bytes(d) => check_bytes(path, d, value),
            FieldType::CidLink => match value {
                Ipld::Link(_) => Ok(()),
                _ => fail(path, Problem::WrongType("a CID link")),
            },
            FieldType::Blob(d) => check_blob(path, d, value),
            FieldType::Array(d) => self.check_array(path, d, value),
            FieldType::Object(d) => self.check_object(path, d, value),
            FieldType::Ref(r) => self.check_ref(path, r, value),
            FieldType::Union(u) => self.check_union(path, u, value),
            FieldType::Unknown => check_unknown(path, value),
        }
    }

    pub(crate) fn check_object(&self, path: &Path<'_>, def: &ObjectDef, value: &Ipld) -> VResult {
        let Ipld::Map(map) = value else {
            return fail(path, Problem::WrongType("an object"));
        };
        if path.depth() > MAX_DEPTH {
            return fail(path, Problem::TooDeep);
        }
        for prop in &def.properties {
            match map.get(&prop.name) {
                None => {
                    if prop.required {
                        return fail(path, Problem::MissingProperty(prop.name.clone()));
                    }
                }
                Some(Ipld::Null) if prop.nullable => {}
                Some(v) => {
                    let p = Path::Key(path, &prop.name);
                    self.check_field(&p, &prop.schema, v)?;
                }
            }
        }
        Ok(())
    }

    fn check_array(&self, path: &Path<'_>, def: &ArrayDef, value: &Ipld) -> VResult {
        let Ipld::List(items) = value else {
            return fail(path, Problem::WrongType("an array"));
        };
        let n = items.len() as u64;
        if let Some(max) = def.max_length {
            if n > max {
                return fail(path, Problem::TooManyElements(max));
            }
        }
        if let Some(min) = def.min_length {
            if n < min {
                return fail(path, Problem::TooFewElements(min));
            }
        }
        if path.depth() > MAX_DEPTH {
            return fail(path, Problem::TooDeep);
        }
        for (i, item) in items.iter().enumerate() {
            self.check_field(&Path::Index(path, i), &def.items, item)?;
        }
        Ok(())
    }

    fn check_ref(&self, path: &Path<'_>, target: &RefTarget, value: &Ipld) -> VResult {
        if path.depth() > MAX_DEPTH {
            return fail(path, Problem::TooDeep);
        }
        match self.resolve(target) {
            None => fail(path, Problem::UnresolvedRef(target.to_string())),
            Some(Def::Field(f)) => self.check_field(path, f, value),
            Some(Def::Record(r)) => self.check_object(path, &r.record, value),
            Some(other) => fail(
                path,
                Problem::WrongDefType {
                    target: target.to_string(),
                    found: other.type_name(),
                    expected: "a data type",
                },
            ),
        }
    }

    fn check_union(&self, path: &Path<'_>, def: &UnionDef, value: &Ipld) -> VResult {
        let ty = match value {
            Ipld::Map(m) => match m.get("$type") {
                Some(Ipld::String(t)) => t,
                _ => return fail(path, Problem::MissingType),
            },
            _ => return fail(path, Problem::MissingType),
        };
        let Some(target) = def.refs.iter().find(|r| r.matches_type(ty)) else {
            if def.closed {
                let refs: Vec<String> = def.refs.iter().map(ToString::to_string).collect();
                return fail(path, Problem::NotInClosedUnion(refs.join(", ")));
            }
            // Open union: a variant this schema does not know about is accepted as is.
            return Ok(());
        };
        if path.depth() > MAX_DEPTH {
            return fail(path, Problem::TooDeep);
        }
        match self.resolve(target) {
            None => fail(path, Problem::UnresolvedRef(target.to_string())),
            Some(Def::Field(FieldType::Object(o))) => self.check_object(path, o, value),
            Some(Def::Record(r)) => self.check_object(path, &r.record, value),
            Some(other) => fail(
                path,
                Problem::WrongDefType {
                    target: target.to_string(),
                    found: other.type_name(),
                    expected: "an object or record",
                },
            ),
        }
    }
}

fn check_boolean(path: &Path<'_>, def: &BooleanDef, value: &Ipld) -> VResult {
    let Ipld::Bool(b) = value else {
        return fail(path, Problem::WrongType("a boolean"));
    };
    if let Some(c) = def.const_ {
        if *b != c {
            return fail(path, Problem::NotConst(c.to_string()));
        }
    }
    Ok(())
}

fn check_integer(path: &Path<'_>, def: &IntegerDef, value: &Ipld) -> VResult {
    let Ipld::Integer(i) = value else {
        return fail(path, Problem::WrongType("an integer"));
    };
    let i = *i;
    if let Some(c) = def.const_ {
        if i != i128::from(c) {
            return fail(path, Problem::NotConst(c.to_string()));
        }
    }
    if let Some(e) = &def.enum_ {
        if !e.iter().any(|x| i128::from(*x) == i) {
            let list: Vec<String> = e.iter().map(ToString::to_string).collect();
            return fail(path, Problem::NotInEnum(list.join("|")));
        }
    }
    if let Some(max) = def.maximum {
        if i > i128::from(max) {
            return fail(path, Problem::TooLarge(max));
        }
    }
    if let Some(min) = def.minimum {
        if i < i128::from(min) {
            return fail(path, Problem::TooSmall(min));
        }
    }
    Ok(())
}

fn check_string(path: &Path<'_>, def: &StringDef, value: &Ipld) -> VResult {
    let Ipld::String(s) = value else {
        return fail(path, Problem::WrongType("a string"));
    };
    if let Some(c) = &def.const_ {
        if s != c {
            return fail(path, Problem::NotConst(c.clone()));
        }
    }
    if let Some(e) = &def.enum_ {
        if !e.iter().any(|x| x == s) {
            return fail(path, Problem::NotInEnum(e.join("|")));
        }
    }
    let bytes = s.len() as u64;
    check_length(path, bytes, def.min_length, def.max_length, "characters")?;
    // A grapheme is at least one byte: skip counting when the byte length already decides.
    let needs_max = def.max_graphemes.is_some_and(|max| bytes > max);
    if needs_max || def.min_graphemes.is_some() {
        let graphemes = s.graphemes(true).count() as u64;
        check_length(
            path,
            graphemes,
            def.min_graphemes,
            def.max_graphemes,
            "graphemes",
        )?;
    }
    if let Some(format) = def.format {
        if !format_ok(format, s) {
            return fail(path, Problem::BadFormat(format));
        }
    }
    Ok(())
}

fn format_ok(format: StringFormat, s: &str) -> bool {
    match format {
        StringFormat::AtIdentifier => is_valid_at_identifier(s),
        StringFormat::AtUri => is_valid_at_uri(s),
        StringFormat::Cid => is_valid_cid(s),
        StringFormat::Datetime => is_valid_datetime(s),
        StringFormat::Did => is_valid_did(s),
        StringFormat::Handle => is_valid_handle(s),
        StringFormat::Nsid => is_valid_nsid(s),
        StringFormat::Tid => is_valid_tid(s),
        StringFormat::RecordKey => is_valid_record_key(s),
        StringFormat::Uri => is_valid_uri(s),
        StringFormat::Language => is_valid_language(s),
    }
}

fn check_bytes(path: &Path<'_>, def: &BytesDef, value: &Ipld) -> VResult {
    let Ipld::Bytes(b) = value else {
        return fail(path, Problem::WrongType("bytes"));
    };
    check_length(
        path,
        b.len() as u64,
        def.min_length,
        def.max_length,
        "bytes",
    )
}

fn check_blob(path: &Path<'_>, def: &BlobDef, value: &Ipld) -> VResult {
    let Some(blob) = blob_ref_from_ipld(value) else {
        return fail(path, Problem::WrongType("a blob ref"));
    };
    if !def.accepts(blob.mime_type()) {
        let accept = def.accept.as_deref().unwrap_or_default().join(", ");
        return fail(
            path,
            Problem::BlobNotAccepted {
                mime: blob.mime_type().to_string(),
                accept,
            },
        );
    }
    if let (Some(max), BlobRef::Typed { size, .. }) = (def.max_size, &blob) {
        if *size > max {
            return fail(path, Problem::BlobTooLarge { size: *size, max });
        }
    }
    Ok(())
}

/// `unknown`: any object (not a blob or other compound value), with no floats inside.
fn check_unknown(path: &Path<'_>, value: &Ipld) -> VResult {
    let Ipld::Map(m) = value else {
        return fail(path, Problem::WrongType("an object"));
    };
    if matches!(m.get("$type"), Some(Ipld::String(t)) if t == "blob") {
        return fail(path, Problem::CompoundNotAllowed);
    }
    if let Some(problem) = data_problem(value, 0) {
        return fail(path, problem);
    }
    Ok(())
}

/// A data-model rule broken inside `v` (a float, or nesting beyond the limit).
fn data_problem(v: &Ipld, depth: usize) -> Option<Problem> {
    if depth > MAX_DEPTH {
        return Some(Problem::TooDeep);
    }
    match v {
        Ipld::Float(_) => Some(Problem::Float),
        Ipld::List(l) => l.iter().find_map(|x| data_problem(x, depth + 1)),
        Ipld::Map(m) => m.values().find_map(|x| data_problem(x, depth + 1)),
        _ => None,
    }
}
