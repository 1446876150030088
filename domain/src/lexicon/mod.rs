//! Lexicon: parsing schema documents and validating data against them.
//!
//! [`Catalog`] holds parsed documents ([`schema`]) keyed by NSID; `validate_*` check
//! data-model values ([`Ipld`]) against them ([`validate`]). Documents are compiled once on
//! [`Catalog::add_document`]; validation never touches JSON. Loading schema files from disk is
//! the caller's business: this module performs no I/O.

pub mod schema;
pub mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

pub use schema::{
    parse_document, ArrayDef, BlobDef, Body, BooleanDef, BytesDef, Def, ErrorDef, FieldType,
    IntegerDef, LexiconDoc, LexiconError, ObjectDef, ParamsDef, Permission, PermissionSetDef,
    Property, RecordDef, RecordKeyType, RefTarget, SchemaProblem, StringDef, StringFormat,
    SubscriptionDef, UnionDef, XrpcDef,
};
pub use validate::{Problem, ValidationError};

use crate::cbor::Ipld;
use validate::{fail, Path};

/// A set of lexicon documents, keyed by NSID.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    docs: HashMap<String, LexiconDoc>,
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Parses a lexicon document and adds it. Fails on an invalid document or a duplicate id.
    /// References to other documents are not checked here (documents may come in any order);
    /// see [`Catalog::unresolved_refs`].
    pub fn add_document(&mut self, doc: &serde_json::Value) -> Result<(), LexiconError> {
        let doc = parse_document(doc)?;
        self.add(doc)
    }

    /// Adds an already parsed document.
    pub fn add(&mut self, doc: LexiconDoc) -> Result<(), LexiconError> {
        if self.docs.contains_key(&doc.id) {
            return Err(LexiconError::Duplicate(doc.id));
        }
        self.docs.insert(doc.id.clone(), doc);
        Ok(())
    }

    pub fn get(&self, nsid: &str) -> Option<&LexiconDoc> {
        self.docs.get(nsid)
    }

    /// A definition by reference: `nsid` (its `main`) or `nsid#name`.
    pub fn get_def(&self, ref_str: &str) -> Option<&Def> {
        let target = RefTarget::parse(ref_str, "")?;
        self.resolve(&target)
    }

    pub fn resolve(&self, target: &RefTarget) -> Option<&Def> {
        self.docs.get(&target.nsid)?.defs.get(&target.name)
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The NSIDs of all documents, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.docs.keys().map(String::as_str)
    }

    /// Every `ref`/union member that names a definition missing from the catalog, or one that
    /// can not be referenced (a token, query, …), with the document that mentions it. Sorted.
    pub fn unresolved_refs(&self) -> Vec<(String, RefTarget)> {
        let mut out = Vec::new();
        for doc in self.docs.values() {
            for def in doc.defs.values() {
                for_each_ref_in_def(def, &mut |t, in_union| {
                    let ok = match self.resolve(t) {
                        Some(Def::Field(FieldType::Object(_))) | Some(Def::Record(_)) => true,
                        Some(Def::Field(_)) => !in_union,
                        _ => false,
                    };
                    if !ok {
                        out.push((doc.id.clone(), t.clone()));
                    }
                });
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Validates a repository record of collection `collection_nsid`: the collection's `main`
    /// must be a `record` definition and the record's `$type` must be exactly the collection.
    /// Errors are located from `Record` (e.g. `Record/embed/images/0/alt`).
    pub fn validate_record(
        &self,
        collection_nsid: &str,
        record: &Ipld,
    ) -> Result<(), ValidationError> {
        let root = Path::Root("Record");
        let Some(doc) = self.docs.get(collection_nsid) else {
            return fail(&root, Problem::UnknownSchema(collection_nsid.to_string()));
        };
        let def = match doc.main() {
            Some(Def::Record(r)) => r,
            Some(other) => {
                return fail(
                    &root,
                    Problem::WrongDefType {
                        target: collection_nsid.to_string(),
                        found: other.type_name(),
                        expected: "a record",
                    },
                )
            }
            None => return fail(&root, Problem::UnknownSchema(collection_nsid.to_string())),
        };
        let Ipld::Map(map) = record else {
            return fail(&root, Problem::WrongType("an object"));
        };
        match map.get("$type") {
            Some(Ipld::String(t)) if t == collection_nsid => {}
            Some(Ipld::String(t)) => {
                return fail(
                    &root,
                    Problem::RecordTypeMismatch {
                        expected: collection_nsid.to_string(),
                        found: t.clone(),
                    },
                )
            }
            _ => return fail(&Path::Key(&root, "$type"), Problem::WrongType("a string")),
        }
        self.check_object(&root, &def.record, record)
    }

    /// Validates `value` against the definition `ref_str` (`nsid` or `nsid#name`) of any
    /// data type (object, record body, string, …). Errors are located from `Object`.
    pub fn validate_object(&self, ref_str: &str, value: &Ipld) -> Result<(), ValidationError> {
        self.validate_ref_at("Object", ref_str, value)
    }

    /// Like [`Catalog::validate_object`], naming the root of error paths.
    pub fn validate_ref_at(
        &self,
        root: &str,
        ref_str: &str,
        value: &Ipld,
    ) -> Result<(), ValidationError> {
        let root = Path::Root(root);
        let Some(target) = RefTarget::parse(ref_str, "") else {
            return fail(&root, Problem::UnknownSchema(ref_str.to_string()));
        };
        if self.resolve(&target).is_none() {
            return fail(&root, Problem::UnknownSchema(ref_str.to_string()));
        }
        self.check_field(&root, &FieldType::Ref(target), value)
    }

    /// Validates `value` against a schema taken from a document of this catalog (e.g. a
    /// subscription message union). Errors are located from `root`.
    pub fn validate_field(
        &self,
        root: &str,
        schema: &FieldType,
        value: &Ipld,
    ) -> Result<(), ValidationError> {
        self.check_field(&Path::Root(root), schema, value)
    }

    /// Validates a procedure's JSON input body (as data model) against its `input.schema`.
    /// No schema means anything goes. Errors are located from `Input`.
    pub fn validate_input(&self, nsid: &str, body: &Ipld) -> Result<(), ValidationError> {
        let root = Path::Root("Input");
        match self.docs.get(nsid).and_then(LexiconDoc::main) {
            Some(Def::Procedure(x)) => self.check_body(&root, x.input.as_ref(), body),
            _ => fail(&root, Problem::UnknownSchema(nsid.to_string())),
        }
    }

    /// Validates a query's or procedure's JSON output body. Errors are located from `Output`.
    pub fn validate_output(&self, nsid: &str, body: &Ipld) -> Result<(), ValidationError> {
        let root = Path::Root("Output");
        match self.docs.get(nsid).and_then(LexiconDoc::main) {
            Some(Def::Procedure(x) | Def::Query(x)) => {
                self.check_body(&root, x.output.as_ref(), body)
            }
            _ => fail(&root, Problem::UnknownSchema(nsid.to_string())),
        }
    }

    fn check_body(
        &self,
        root: &Path<'_>,
        body: Option<&Body>,
        value: &Ipld,
    ) -> Result<(), ValidationError> {
        match body.and_then(|b| b.schema.as_ref()) {
            Some(schema) => self.check_field(root, schema, value),
            None => Ok(()),
        }
    }

    /// The `parameters` of a query, procedure or subscription.
    pub fn params(&self, nsid: &str) -> Option<&ParamsDef> {
        match self.docs.get(nsid)?.main()? {
            Def::Query(x) | Def::Procedure(x) => x.parameters.as_ref(),
            Def::Subscription(s) => s.parameters.as_ref(),
            _ => None,
        }
    }

    /// Turns HTTP query-string pairs into typed parameters for endpoint `nsid` and validates
    /// them: booleans `true`/`false`, integers, strings, repeated keys for arrays; missing
    /// parameters with a `default` get it. Unknown parameters are ignored. Errors are located
    /// from `Params`.
    pub fn parse_params(
        &self,
        nsid: &str,
        pairs: &[(String, String)],
    ) -> Result<BTreeMap<String, Ipld>, ValidationError> {
        let root = Path::Root("Params");
        let empty = ParamsDef::default();
        let params = match self.docs.get(nsid).and_then(LexiconDoc::main) {
            Some(Def::Query(_) | Def::Procedure(_) | Def::Subscription(_)) => {
                self.params(nsid).unwrap_or(&empty)
            }
            _ => return fail(&root, Problem::UnknownSchema(nsid.to_string())),
        };
        let mut out = BTreeMap::new();
        for prop in &params.properties {
            let path = Path::Key(&root, &prop.name);
            let raw: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| *k == prop.name)
                .map(|(_, v)| v.as_str())
                .collect();
            let value = match &prop.schema {
                FieldType::Array(a) => {
                    if raw.is_empty() {
                        None
                    } else {
                        let items = raw
                            .iter()
                            .map(|s| scalar_param(&path, &a.items, s))
                            .collect::<Result<Vec<_>, _>>()?;
                        Some(Ipld::List(items))
                    }
                }
                scalar => match raw.first() {
                    Some(s) => Some(scalar_param(&path, scalar, s)?),
                    None => default_of(scalar),
                },
            };
            match value {
                Some(v) => {
                    self.check_field(&path, &prop.schema, &v)?;
                    out.insert(prop.name.clone(), v);
                }
                None if prop.required => {
                    return fail(&root, Problem::MissingProperty(prop.name.clone()))
                }
                None => {}
            }
        }
        Ok(out)
    }
}

/// One query-string value read as the scalar type of `schema`.
fn scalar_param(path: &Path<'_>, schema: &FieldType, s: &str) -> Result<Ipld, ValidationError> {
    match schema {
        FieldType::Boolean(_) => match s {
            "true" => Ok(Ipld::Bool(true)),
            "false" => Ok(Ipld::Bool(false)),
            _ => fail(path, Problem::WrongType("a boolean")),
        },
        FieldType::Integer(_) => s
            .parse::<i64>()
            .map(|i| Ipld::Integer(i128::from(i)))
            .or_else(|_| fail(path, Problem::WrongType("an integer"))),
        _ => Ok(Ipld::String(s.to_string())),
    }
}

fn default_of(schema: &FieldType) -> Option<Ipld> {
    match schema {
        FieldType::Boolean(b) => b.default.map(Ipld::Bool),
        FieldType::Integer(i) => i.default.map(|d| Ipld::Integer(i128::from(d))),
        FieldType::String(s) => s.default.clone().map(Ipld::String),
        _ => None,
    }
}

/// Calls `f(target, in_union)` for every reference inside a definition.
fn for_each_ref_in_def(def: &Def, f: &mut dyn FnMut(&RefTarget, bool)) {
    let body = |b: &Option<Body>, f: &mut dyn FnMut(&RefTarget, bool)| {
        if let Some(s) = b.as_ref().and_then(|b| b.schema.as_ref()) {
            for_each_ref(s, f);
        }
    };
    match def {
        Def::Record(r) => r
            .record
            .properties
            .iter()
            .for_each(|p| for_each_ref(&p.schema, f)),
        Def::Query(x) | Def::Procedure(x) => {
            body(&x.input, f);
            body(&x.output, f);
        }
        Def::Subscription(s) => {
            if let Some(m) = &s.message {
                for_each_ref(m, f);
            }
        }
        Def::Field(t) => for_each_ref(t, f),
        Def::PermissionSet(_) | Def::Token => {}
    }
}

fn for_each_ref(t: &FieldType, f: &mut dyn FnMut(&RefTarget, bool)) {
    match t {
        FieldType::Ref(r) => f(r, false),
        FieldType::Union(u) => u.refs.iter().for_each(|r| f(r, true)),
        FieldType::Array(a) => for_each_ref(&a.items, f),
        FieldType::Object(o) => o.properties.iter().for_each(|p| for_each_ref(&p.schema, f)),
        _ => {}
    }
}
