//! The Lexicon schema model and its parser from JSON (`serde_json::Value`, no serde derive).
//!
//! A document is parsed once into these types; references are resolved to absolute
//! `(nsid, name)` targets at parse time so validation never looks at JSON again.
//! Never panics on bad input: every problem is a [`LexiconError`].

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::syntax::{is_valid_language, is_valid_nsid};

/// Why a lexicon document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexiconError {
    #[error("a lexicon document must be a JSON object")]
    NotAnObject,
    #[error("`lexicon` must be the integer 1")]
    UnsupportedVersion,
    #[error("`id` must be a string")]
    MissingId,
    #[error("`id` is not a valid NSID: {0:?}")]
    InvalidId(String),
    #[error("{id}: `defs` must be a non-empty object")]
    MissingDefs { id: String },
    #[error("{id}#{location}: {problem}")]
    InvalidDef {
        id: String,
        location: String,
        problem: SchemaProblem,
    },
    #[error("lexicon {0} is already in the catalog")]
    Duplicate(String),
}

/// What is wrong with one definition of a lexicon document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaProblem {
    #[error("must be an object")]
    NotAnObject,
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongFieldType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("unknown type {0:?}")]
    UnknownType(String),
    #[error("type {ty:?} is not allowed {context}")]
    NotAllowedHere { ty: String, context: &'static str },
    #[error("primary type {0:?} must be the `main` definition")]
    PrimaryNotMain(String),
    #[error("invalid definition name {0:?}")]
    InvalidDefName(String),
    #[error("invalid reference {0:?}")]
    InvalidRef(String),
    #[error("a closed union must list at least one ref")]
    EmptyClosedUnion,
    #[error("`const` and `default` are mutually exclusive")]
    ConstWithDefault,
    #[error("unknown string format {0:?}")]
    UnknownFormat(String),
    #[error("required property {0:?} is not defined in `properties`")]
    RequiredNotDefined(String),
    #[error("nullable property {0:?} is not defined in `properties`")]
    NullableNotDefined(String),
    #[error("invalid record key type {0:?} (expected tid, nsid, any or literal:<key>)")]
    InvalidRecordKey(String),
    #[error("invalid blob accept pattern {0:?}")]
    InvalidAccept(String),
    #[error("invalid language code {0:?}")]
    InvalidLanguage(String),
}

/// One parsed lexicon document.
#[derive(Debug, Clone, PartialEq)]
pub struct LexiconDoc {
    pub id: String,
    pub description: Option<String>,
    pub defs: BTreeMap<String, Def>,
}

impl LexiconDoc {
    /// The `main` definition, if any.
    pub fn main(&self) -> Option<&Def> {
        self.defs.get("main")
    }
}

/// A named definition under `defs`.
#[derive(Debug, Clone, PartialEq)]
pub enum Def {
    Record(RecordDef),
    Query(XrpcDef),
    Procedure(XrpcDef),
    Subscription(SubscriptionDef),
    PermissionSet(PermissionSetDef),
    Token,
    /// A non-primary named type (object, string, array, …); never `ref`, `union` or `unknown`.
    Field(FieldType),
}

impl Def {
    /// The lexicon `type` name of this definition.
    pub fn type_name(&self) -> &'static str {
        match self {
            Def::Record(_) => "record",
            Def::Query(_) => "query",
            Def::Procedure(_) => "procedure",
            Def::Subscription(_) => "subscription",
            Def::PermissionSet(_) => "permission-set",
            Def::Token => "token",
            Def::Field(f) => f.type_name(),
        }
    }
}

/// A schema usable at a field position (object property, array item, body schema).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    Boolean(BooleanDef),
    Integer(IntegerDef),
    String(StringDef),
    Bytes(BytesDef),
    CidLink,
    Blob(BlobDef),
    Array(ArrayDef),
    Object(ObjectDef),
    Ref(RefTarget),
    Union(UnionDef),
    Unknown,
}

impl FieldType {
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldType::Boolean(_) => "boolean",
            FieldType::Integer(_) => "integer",
            FieldType::String(_) => "string",
            FieldType::Bytes(_) => "bytes",
            FieldType::CidLink => "cid-link",
            FieldType::Blob(_) => "blob",
            FieldType::Array(_) => "array",
            FieldType::Object(_) => "object",
            FieldType::Ref(_) => "ref",
            FieldType::Union(_) => "union",
            FieldType::Unknown => "unknown",
        }
    }
}

/// An absolute reference to a definition: `nsid#name` (`name` is `main` for a bare NSID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefTarget {
    pub nsid: String,
    pub name: String,
}

impl RefTarget {
    /// Parses `nsid`, `nsid#name` or (relative to `base`) `#name`.
    pub fn parse(s: &str, base: &str) -> Option<RefTarget> {
        let (nsid, name) = match s.split_once('#') {
            Some(("", name)) => (base, name),
            Some((nsid, name)) => (nsid, name),
            None => (s, "main"),
        };
        if !is_valid_nsid(nsid) || !is_valid_def_name(name) {
            return None;
        }
        Some(RefTarget {
            nsid: nsid.to_string(),
            name: name.to_string(),
        })
    }

    /// Whether a data `$type` value names this target (`nsid` means `nsid#main`).
    pub fn matches_type(&self, ty: &str) -> bool {
        match ty.split_once('#') {
            Some((nsid, name)) => nsid == self.nsid && name == self.name,
            None => ty == self.nsid && self.name == "main",
        }
    }
}

impl fmt::Display for RefTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == "main" {
            f.write_str(&self.nsid)
        } else {
            write!(f, "{}#{}", self.nsid, self.name)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BooleanDef {
    pub default: Option<bool>,
    pub const_: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegerDef {
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
    pub enum_: Option<Vec<i64>>,
    pub default: Option<i64>,
    pub const_: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringDef {
    pub format: Option<StringFormat>,
    /// In UTF-8 bytes.
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_graphemes: Option<u64>,
    pub max_graphemes: Option<u64>,
    pub known_values: Vec<String>,
    pub enum_: Option<Vec<String>>,
    pub default: Option<String>,
    pub const_: Option<String>,
}

/// The `format` values of a `string` schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFormat {
    AtIdentifier,
    AtUri,
    Cid,
    Datetime,
    Did,
    Handle,
    Nsid,
    Tid,
    RecordKey,
    Uri,
    Language,
}

impl StringFormat {
    pub fn parse(s: &str) -> Option<StringFormat> {
        Some(match s {
            "at-identifier" => StringFormat::AtIdentifier,
            "at-uri" => StringFormat::AtUri,
            "cid" => StringFormat::Cid,
            "datetime" => StringFormat::Datetime,
            "did" => StringFormat::Did,
            "handle" => StringFormat::Handle,
            "nsid" => StringFormat::Nsid,
            "tid" => StringFormat::Tid,
            "record-key" => StringFormat::RecordKey,
            "uri" => StringFormat::Uri,
            "language" => StringFormat::Language,
            _ => return None,
        })
    }

    /// What a value of this format must be, in the reference's words (`@atproto/lexicon`'s
    /// `validators/formats.ts`).
    pub fn requirement(self) -> &'static str {
        match self {
            StringFormat::AtIdentifier => "must be a valid did or a handle",
            StringFormat::AtUri => "must be a valid at-uri",
            StringFormat::Cid => "must be a cid string",
            StringFormat::Datetime => "must be an valid atproto datetime (both RFC-3339 and ISO-8601)",
            StringFormat::Did => "must be a valid did",
            StringFormat::Handle => "must be a valid handle",
            StringFormat::Nsid => "must be a valid nsid",
            StringFormat::Tid => "must be a valid TID",
            StringFormat::RecordKey => "must be a valid Record Key",
            StringFormat::Uri => "must be a uri",
            StringFormat::Language => "must be a well-formed BCP 47 language tag",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StringFormat::AtIdentifier => "at-identifier",
            StringFormat::AtUri => "at-uri",
            StringFormat::Cid => "cid",
            StringFormat::Datetime => "datetime",
            StringFormat::Did => "did",
            StringFormat::Handle => "handle",
            StringFormat::Nsid => "nsid",
            StringFormat::Tid => "tid",
            StringFormat::RecordKey => "record-key",
            StringFormat::Uri => "uri",
            StringFormat::Language => "language",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BytesDef {
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobDef {
    /// MIME patterns: `type/subtype`, `type/*` or `*/*`. `None` accepts anything.
    pub accept: Option<Vec<String>>,
    pub max_size: Option<u64>,
}

impl BlobDef {
    /// Whether `mime` matches one of the `accept` patterns (or there are none).
    pub fn accepts(&self, mime: &str) -> bool {
        let Some(accept) = &self.accept else {
            return true;
        };
        accept.iter().any(|p| {
            if p == "*/*" {
                return true;
            }
            match p.strip_suffix('*') {
                Some(prefix) => mime.starts_with(prefix),
                None => p == mime,
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArrayDef {
    pub items: Box<FieldType>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
}

/// One property of an `object` or `params`.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub schema: FieldType,
    pub required: bool,
    pub nullable: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectDef {
    /// In key order (the order of `properties` in the document is not kept by `serde_json`).
    pub properties: Vec<Property>,
}

impl ObjectDef {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnionDef {
    pub refs: Vec<RefTarget>,
    pub closed: bool,
}

/// `params`: like an object, but properties are boolean, integer, string, unknown, or arrays of
/// those, and nothing is nullable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamsDef {
    pub properties: Vec<Property>,
}

/// The record-key type of a `record` definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKeyType {
    Tid,
    Nsid,
    Any,
    Literal(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordDef {
    pub key: RecordKeyType,
    pub record: ObjectDef,
}

/// An HTTP body of a query or procedure.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub encoding: String,
    /// `object`, `ref` or `union`.
    pub schema: Option<FieldType>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDef {
    pub name: String,
    pub description: Option<String>,
}

/// `query` or `procedure` (only procedures have `input`).
#[derive(Debug, Clone, PartialEq)]
pub struct XrpcDef {
    pub parameters: Option<ParamsDef>,
    pub input: Option<Body>,
    pub output: Option<Body>,
    pub errors: Vec<ErrorDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionDef {
    pub parameters: Option<ParamsDef>,
    /// The message schema: a union of refs.
    pub message: Option<FieldType>,
    pub errors: Vec<ErrorDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSetDef {
    pub title: Option<String>,
    pub title_lang: BTreeMap<String, String>,
    pub detail: Option<String>,
    pub detail_lang: BTreeMap<String, String>,
    pub permissions: Vec<Permission>,
}

/// One `permission` of a permission set. Fields not meaningful for the resource are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub resource: String,
    pub collection: Vec<String>,
    pub action: Vec<String>,
    pub lxm: Vec<String>,
    pub aud: Option<String>,
    pub inherit_aud: bool,
}

/// Definition names: non-empty ASCII letters, digits, `_` and `-`... kept permissive but
/// without the characters that would break reference syntax.
fn is_valid_def_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses one lexicon document.
pub fn parse_document(v: &Value) -> Result<LexiconDoc, LexiconError> {
    let obj = v.as_object().ok_or(LexiconError::NotAnObject)?;
    if obj.get("lexicon").and_then(Value::as_u64) != Some(1) {
        return Err(LexiconError::UnsupportedVersion);
    }
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or(LexiconError::MissingId)?;
    if !is_valid_nsid(id) {
        return Err(LexiconError::InvalidId(id.to_string()));
    }
    let description = match obj.get("description") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(LexiconError::InvalidDef {
                id: id.to_string(),
                location: String::new(),
                problem: SchemaProblem::WrongFieldType {
                    field: "description",
                    expected: "a string",
                },
            })
        }
    };
    let defs_json = match obj.get("defs") {
        Some(Value::Object(m)) if !m.is_empty() => m,
        _ => {
            return Err(LexiconError::MissingDefs { id: id.to_string() });
        }
    };
    let parser = Parser { id };
    let mut defs = BTreeMap::new();
    for (name, def) in defs_json {
        let parsed =
            parser
                .def(name, def)
                .map_err(|(location, problem)| LexiconError::InvalidDef {
                    id: id.to_string(),
                    location,
                    problem,
                })?;
        defs.insert(name.clone(), parsed);
    }
    Ok(LexiconDoc {
        id: id.to_string(),
        description,
        defs,
    })
}

/// A parse failure inside a document: where (a `/`-separated path from the def name) and what.
type PErr = (String, SchemaProblem);
type PResult<T> = Result<T, PErr>;

fn err<T>(loc: &str, problem: SchemaProblem) -> PResult<T> {
    Err((loc.to_string(), problem))
}

fn wrong(loc: &str, field: &'static str, expected: &'static str) -> PErr {
    (
        loc.to_string(),
        SchemaProblem::WrongFieldType { field, expected },
    )
}

struct Parser<'a> {
    id: &'a str,
}

fn as_obj<'v>(v: &'v Value, loc: &str) -> PResult<&'v Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| (loc.to_string(), SchemaProblem::NotAnObject))
}

fn type_of<'v>(m: &'v Map<String, Value>, loc: &str) -> PResult<&'v str> {
    match m.get("type") {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(wrong(loc, "type", "a string")),
        None => err(loc, SchemaProblem::MissingField("type")),
    }
}

fn opt_str(m: &Map<String, Value>, field: &'static str, loc: &str) -> PResult<Option<String>> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(loc, field, "a string")),
    }
}

fn req_str(m: &Map<String, Value>, field: &'static str, loc: &str) -> PResult<String> {
    opt_str(m, field, loc)?.ok_or_else(|| (loc.to_string(), SchemaProblem::MissingField(field)))
}

fn opt_bool(m: &Map<String, Value>, field: &'static str, loc: &str) -> PResult<Option<bool>> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong(loc, field, "a boolean")),
    }
}

fn opt_i64(m: &Map<String, Value>, field: &'static str, loc: &str) -> PResult<Option<i64>> {
    match m.get(field) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| wrong(loc, field, "an integer")),
    }
}

fn opt_u64(m: &Map<String, Value>, field: &'static str, loc: &str) -> PResult<Option<u64>> {
    match m.get(field) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| wrong(loc, field, "a non-negative integer")),
    }
}

fn opt_str_list(
    m: &Map<String, Value>,
    field: &'static str,
    loc: &str,
) -> PResult<Option<Vec<String>>> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong(loc, field, "an array of strings"))
            })
            .collect::<PResult<Vec<_>>>()
            .map(Some),
        Some(_) => Err(wrong(loc, field, "an array of strings")),
    }
}

fn opt_i64_list(
    m: &Map<String, Value>,
    field: &'static str,
    loc: &str,
) -> PResult<Option<Vec<i64>>> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_i64()
                    .ok_or_else(|| wrong(loc, field, "an array of integers"))
            })
            .collect::<PResult<Vec<_>>>()
            .map(Some),
        Some(_) => Err(wrong(loc, field, "an array of integers")),
    }
}

fn lang_map(
    m: &Map<String, Value>,
    field: &'static str,
    loc: &str,
) -> PResult<BTreeMap<String, String>> {
    match m.get(field) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => {
            let mut out = BTreeMap::new();
            for (k, v) in o {
                if !is_valid_language(k) {
                    return err(loc, SchemaProblem::InvalidLanguage(k.clone()));
                }
                let s = v
                    .as_str()
                    .ok_or_else(|| wrong(loc, field, "a map of language to string"))?;
                out.insert(k.clone(), s.to_string());
            }
            Ok(out)
        }
        Some(_) => Err(wrong(loc, field, "a map of language to string")),
    }
}

fn is_primary(ty: &str) -> bool {
    matches!(
        ty,
        "record" | "query" | "procedure" | "subscription" | "permission-set"
    )
}

impl Parser<'_> {
    fn def(&self, name: &str, v: &Value) -> PResult<Def> {
        let loc = name;
        if !is_valid_def_name(name) {
            return err(loc, SchemaProblem::InvalidDefName(name.to_string()));
        }
        let m = as_obj(v, loc)?;
        let ty = type_of(m, loc)?;
        if is_primary(ty) && name != "main" {
            return err(loc, SchemaProblem::PrimaryNotMain(ty.to_string()));
        }
        match ty {
            "record" => {
                let key = req_str(m, "key", loc)?;
                let key = match key.as_str() {
                    "tid" => RecordKeyType::Tid,
                    "nsid" => RecordKeyType::Nsid,
                    "any" => RecordKeyType::Any,
                    other => match other.strip_prefix("literal:") {
                        Some(lit) if !lit.is_empty() => RecordKeyType::Literal(lit.to_string()),
                        _ => return err(loc, SchemaProblem::InvalidRecordKey(key)),
                    },
                };
                let rloc = format!("{loc}/record");
                let rv = m
                    .get("record")
                    .ok_or_else(|| (loc.to_string(), SchemaProblem::MissingField("record")))?;
                let rm = as_obj(rv, &rloc)?;
                let rty = type_of(rm, &rloc)?;
                if rty != "object" {
                    return err(
                        &rloc,
                        SchemaProblem::NotAllowedHere {
                            ty: rty.to_string(),
                            context: "as a record schema (must be an object)",
                        },
                    );
                }
                let record = self.object(rm, &rloc)?;
                Ok(Def::Record(RecordDef { key, record }))
            }
            "query" | "procedure" => {
                let parameters = self.opt_params(m, loc)?;
                let input = if ty == "procedure" {
                    self.opt_body(m, "input", loc)?
                } else {
                    None
                };
                let output = self.opt_body(m, "output", loc)?;
                let errors = self.errors(m, loc)?;
                let x = XrpcDef {
                    parameters,
                    input,
                    output,
                    errors,
                };
                Ok(if ty == "query" {
                    Def::Query(x)
                } else {
                    Def::Procedure(x)
                })
            }
            "subscription" => {
                let parameters = self.opt_params(m, loc)?;
                let message = match m.get("message") {
                    None => None,
                    Some(mv) => {
                        let mloc = format!("{loc}/message");
                        let mm = as_obj(mv, &mloc)?;
                        match mm.get("schema") {
                            None => None,
                            Some(sv) => {
                                let sloc = format!("{mloc}/schema");
                                let schema = self.field(sv, &sloc)?;
                                if !matches!(schema, FieldType::Union(_)) {
                                    return err(
                                        &sloc,
                                        SchemaProblem::NotAllowedHere {
                                            ty: schema.type_name().to_string(),
                                            context: "as a subscription message (must be a union)",
                                        },
                                    );
                                }
                                Some(schema)
                            }
                        }
                    }
                };
                let errors = self.errors(m, loc)?;
                Ok(Def::Subscription(SubscriptionDef {
                    parameters,
                    message,
                    errors,
                }))
            }
            "permission-set" => self.permission_set(m, loc).map(Def::PermissionSet),
            "token" => Ok(Def::Token),
            "params" | "permission" | "ref" | "union" | "unknown" => err(
                loc,
                SchemaProblem::NotAllowedHere {
                    ty: ty.to_string(),
                    context: "as a named definition",
                },
            ),
            _ => self.field(v, loc).map(Def::Field),
        }
    }

    /// A schema at a field position.
    fn field(&self, v: &Value, loc: &str) -> PResult<FieldType> {
        let m = as_obj(v, loc)?;
        let ty = type_of(m, loc)?;
        Ok(match ty {
            "boolean" => {
                let d = BooleanDef {
                    default: opt_bool(m, "default", loc)?,
                    const_: opt_bool(m, "const", loc)?,
                };
                if d.default.is_some() && d.const_.is_some() {
                    return err(loc, SchemaProblem::ConstWithDefault);
                }
                FieldType::Boolean(d)
            }
            "integer" => {
                let d = IntegerDef {
                    minimum: opt_i64(m, "minimum", loc)?,
                    maximum: opt_i64(m, "maximum", loc)?,
                    enum_: opt_i64_list(m, "enum", loc)?,
                    default: opt_i64(m, "default", loc)?,
                    const_: opt_i64(m, "const", loc)?,
                };
                if d.default.is_some() && d.const_.is_some() {
                    return err(loc, SchemaProblem::ConstWithDefault);
                }
                FieldType::Integer(d)
            }
            "string" => {
                let format = match opt_str(m, "format", loc)? {
                    None => None,
                    Some(f) => Some(
                        StringFormat::parse(&f)
                            .ok_or_else(|| (loc.to_string(), SchemaProblem::UnknownFormat(f)))?,
                    ),
                };
                let d = StringDef {
                    format,
                    min_length: opt_u64(m, "minLength", loc)?,
                    max_length: opt_u64(m, "maxLength", loc)?,
                    min_graphemes: opt_u64(m, "minGraphemes", loc)?,
                    max_graphemes: opt_u64(m, "maxGraphemes", loc)?,
                    known_values: opt_str_list(m, "knownValues", loc)?.unwrap_or_default(),
                    enum_: opt_str_list(m, "enum", loc)?,
                    default: opt_str(m, "default", loc)?,
                    const_: opt_str(m, "const", loc)?,
                };
                if d.default.is_some() && d.const_.is_some() {
                    return err(loc, SchemaProblem::ConstWithDefault);
                }
                FieldType::String(d)
            }
            "bytes" => FieldType::Bytes(BytesDef {
                min_length: opt_u64(m, "minLength", loc)?,
                max_length: opt_u64(m, "maxLength", loc)?,
            }),
            "cid-link" => FieldType::CidLink,
            "blob" => {
                let accept = opt_str_list(m, "accept", loc)?;
                for p in accept.iter().flatten() {
                    if !is_valid_accept(p) {
                        return err(loc, SchemaProblem::InvalidAccept(p.clone()));
                    }
                }
                FieldType::Blob(BlobDef {
                    accept,
                    max_size: opt_u64(m, "maxSize", loc)?,
                })
            }
            "array" => {
                let iloc = format!("{loc}/items");
                let items = m
                    .get("items")
                    .ok_or_else(|| (loc.to_string(), SchemaProblem::MissingField("items")))?;
                FieldType::Array(ArrayDef {
                    items: Box::new(self.field(items, &iloc)?),
                    min_length: opt_u64(m, "minLength", loc)?,
                    max_length: opt_u64(m, "maxLength", loc)?,
                })
            }
            "object" => FieldType::Object(self.object(m, loc)?),
            "ref" => {
                let r = req_str(m, "ref", loc)?;
                FieldType::Ref(self.reference(&r, loc)?)
            }
            "union" => {
                let refs = opt_str_list(m, "refs", loc)?
                    .ok_or_else(|| (loc.to_string(), SchemaProblem::MissingField("refs")))?
                    .iter()
                    .map(|r| self.reference(r, loc))
                    .collect::<PResult<Vec<_>>>()?;
                let closed = opt_bool(m, "closed", loc)?.unwrap_or(false);
                if closed && refs.is_empty() {
                    return err(loc, SchemaProblem::EmptyClosedUnion);
                }
                FieldType::Union(UnionDef { refs, closed })
            }
            "unknown" => FieldType::Unknown,
            "params" | "permission" | "token" | "record" | "query" | "procedure"
            | "subscription" | "permission-set" => {
                return err(
                    loc,
                    SchemaProblem::NotAllowedHere {
                        ty: ty.to_string(),
                        context: "at a field position",
                    },
                )
            }
            other => return err(loc, SchemaProblem::UnknownType(other.to_string())),
        })
    }

    fn reference(&self, r: &str, loc: &str) -> PResult<RefTarget> {
        RefTarget::parse(r, self.id)
            .ok_or_else(|| (loc.to_string(), SchemaProblem::InvalidRef(r.to_string())))
    }

    /// The body of an `object` schema (its `type` already checked).
    fn object(&self, m: &Map<String, Value>, loc: &str) -> PResult<ObjectDef> {
        let properties = self.properties(m, loc, false)?;
        let nullable = opt_str_list(m, "nullable", loc)?.unwrap_or_default();
        let mut properties = properties;
        for n in nullable {
            match properties.iter_mut().find(|p| p.name == n) {
                Some(p) => p.nullable = true,
                None => return err(loc, SchemaProblem::NullableNotDefined(n)),
            }
        }
        Ok(ObjectDef { properties })
    }

    /// `properties` + `required` of an object or params.
    fn properties(
        &self,
        m: &Map<String, Value>,
        loc: &str,
        params: bool,
    ) -> PResult<Vec<Property>> {
        let props = match m.get("properties") {
            // Tolerated: `properties` absent means no declared properties.
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(wrong(loc, "properties", "an object")),
        };
        let mut out = Vec::new();
        for (name, pv) in props.into_iter().flatten() {
            let ploc = format!("{loc}/properties/{name}");
            let schema = self.field(pv, &ploc)?;
            if params && !is_param_type(&schema) {
                return err(
                    &ploc,
                    SchemaProblem::NotAllowedHere {
                        ty: schema.type_name().to_string(),
                        context: "in params (boolean, integer, string, unknown or arrays of those)",
                    },
                );
            }
            out.push(Property {
                name: name.clone(),
                schema,
                required: false,
                nullable: false,
            });
        }
        for r in opt_str_list(m, "required", loc)?.unwrap_or_default() {
            match out.iter_mut().find(|p| p.name == r) {
                Some(p) => p.required = true,
                None => return err(loc, SchemaProblem::RequiredNotDefined(r)),
            }
        }
        Ok(out)
    }

    fn opt_params(&self, m: &Map<String, Value>, loc: &str) -> PResult<Option<ParamsDef>> {
        let Some(pv) = m.get("parameters") else {
            return Ok(None);
        };
        let ploc = format!("{loc}/parameters");
        let pm = as_obj(pv, &ploc)?;
        let ty = type_of(pm, &ploc)?;
        if ty != "params" {
            return err(
                &ploc,
                SchemaProblem::NotAllowedHere {
                    ty: ty.to_string(),
                    context: "as parameters (must be params)",
                },
            );
        }
        Ok(Some(ParamsDef {
            properties: self.properties(pm, &ploc, true)?,
        }))
    }

    fn opt_body(
        &self,
        m: &Map<String, Value>,
        field: &'static str,
        loc: &str,
    ) -> PResult<Option<Body>> {
        let Some(bv) = m.get(field) else {
            return Ok(None);
        };
        let bloc = format!("{loc}/{field}");
        let bm = as_obj(bv, &bloc)?;
        let encoding = req_str(bm, "encoding", &bloc)?;
        let schema = match bm.get("schema") {
            None => None,
            Some(sv) => {
                let sloc = format!("{bloc}/schema");
                let s = self.field(sv, &sloc)?;
                if !matches!(
                    s,
                    FieldType::Object(_) | FieldType::Ref(_) | FieldType::Union(_)
                ) {
                    return err(
                        &sloc,
                        SchemaProblem::NotAllowedHere {
                            ty: s.type_name().to_string(),
                            context: "as a body schema (object, ref or union)",
                        },
                    );
                }
                Some(s)
            }
        };
        Ok(Some(Body { encoding, schema }))
    }

    fn errors(&self, m: &Map<String, Value>, loc: &str) -> PResult<Vec<ErrorDef>> {
        let Some(ev) = m.get("errors") else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = ev else {
            return Err(wrong(loc, "errors", "an array of objects"));
        };
        items
            .iter()
            .map(|e| {
                let eloc = format!("{loc}/errors");
                let em = as_obj(e, &eloc)?;
                Ok(ErrorDef {
                    name: req_str(em, "name", &eloc)?,
                    description: opt_str(em, "description", &eloc)?,
                })
            })
            .collect()
    }

    fn permission_set(&self, m: &Map<String, Value>, loc: &str) -> PResult<PermissionSetDef> {
        let perms = match m.get("permissions") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(wrong(loc, "permissions", "an array of objects")),
            None => return err(loc, SchemaProblem::MissingField("permissions")),
        };
        let mut permissions = Vec::with_capacity(perms.len());
        for (i, p) in perms.iter().enumerate() {
            let ploc = format!("{loc}/permissions/{i}");
            let pm = as_obj(p, &ploc)?;
            let ty = type_of(pm, &ploc)?;
            if ty != "permission" {
                return err(
                    &ploc,
                    SchemaProblem::NotAllowedHere {
                        ty: ty.to_string(),
                        context: "in permissions (must be permission)",
                    },
                );
            }
            permissions.push(Permission {
                resource: req_str(pm, "resource", &ploc)?,
                collection: opt_str_list(pm, "collection", &ploc)?.unwrap_or_default(),
                action: opt_str_list(pm, "action", &ploc)?.unwrap_or_default(),
                lxm: opt_str_list(pm, "lxm", &ploc)?.unwrap_or_default(),
                aud: opt_str(pm, "aud", &ploc)?,
                inherit_aud: opt_bool(pm, "inheritAud", &ploc)?.unwrap_or(false),
            });
        }
        Ok(PermissionSetDef {
            title: opt_str(m, "title", loc)?,
            title_lang: lang_map(m, "title:lang", loc)?,
            detail: opt_str(m, "detail", loc)?,
            detail_lang: lang_map(m, "detail:lang", loc)?,
            permissions,
        })
    }
}

fn is_param_type(t: &FieldType) -> bool {
    match t {
        FieldType::Boolean(_)
        | FieldType::Integer(_)
        | FieldType::String(_)
        | FieldType::Unknown => true,
        FieldType::Array(a) => matches!(
            *a.items,
            FieldType::Boolean(_) | FieldType::Integer(_) | FieldType::String(_)
        ),
        _ => false,
    }
}

/// `type/subtype`, `type/*` or `*/*`; no partial globs, no bare `*`.
fn is_valid_accept(p: &str) -> bool {
    let Some((ty, sub)) = p.split_once('/') else {
        return false;
    };
    let ok_part = |s: &str| {
        !s.is_empty() && !s.contains('*') && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
    };
    match (ty, sub) {
        ("*", "*") => true,
        ("*", _) => false,
        (t, "*") => ok_part(t),
        (t, s) => ok_part(t) && ok_part(s),
    }
}
