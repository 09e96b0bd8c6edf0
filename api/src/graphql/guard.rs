//! A cheap pass over a parsed document before async-graphql validates it.
//!
//! async-graphql's validation and complexity visitors expand every fragment
//! spread where it occurs, so a document of n fragments that each spread the
//! next twice costs 2^n. This pass computes the expanded size once per
//! fragment (memoised, saturating at the limit), so it is linear in the
//! document, and refuses documents that would expand beyond the limits. It
//! also refuses what no resolver should see: more than one `login`/`register`
//! per document (each is a deliberately slow password hash) and NUL bytes in
//! string inputs (PostgreSQL cannot store them).

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Request, ServerError, Value};

use super::documents::DocumentCache;

/// Mutations that hash a password: at most one per document.
const HASHING_FIELDS: [&str; 2] = ["login", "register"];

#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    /// Fields of the document once every fragment is expanded.
    pub max_expanded_fields: usize,
    /// Nesting of selection sets and fragment spreads.
    pub max_nesting: usize,
}

impl DocumentLimits {
    pub fn from_settings(settings: &crate::config::GraphqlSettings) -> Self {
        Self {
            // Every field costs at least 1 in async-graphql's complexity, so a
            // document over this many fields can never pass it.
            max_expanded_fields: settings.complexity_limit.max(1),
            // Well above the depth limit: fragments add nesting without depth.
            max_nesting: settings.depth_limit.saturating_mul(4).max(64),
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooLarge { limit: usize },
    TooDeep { limit: usize },
    SeveralHashingFields,
    NulByte { at: String },
}

impl Refusal {
    pub fn into_server_error(self) -> ServerError {
        let (code, reason, message) = match &self {
            Refusal::TooLarge { limit } => (
                "GRAPHQL_VALIDATION_FAILED",
                "TOO_COMPLEX",
                format!("the query is too complex: it expands to more than {limit} fields"),
            ),
            Refusal::TooDeep { limit } => (
                "GRAPHQL_VALIDATION_FAILED",
                "TOO_DEEP",
                format!("the query nests selections and fragments more than {limit} levels deep"),
            ),
            Refusal::SeveralHashingFields => (
                "BAD_USER_INPUT",
                "TOO_MANY",
                "send at most one login or register per request".to_owned(),
            ),
            Refusal::NulByte { at } => ("BAD_USER_INPUT", "NUL_BYTE", format!("{at}: NUL bytes are not allowed")),
        };
        let mut error = ServerError::new(message, None);
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", code);
        ext.set("reason", reason);
        if let Refusal::NulByte { at } = &self {
            ext.set("field", at.as_str());
        }
        error.extensions = Some(ext);
        error
    }
}

/// Checks `request` before it is executed. A document that does not parse
/// passes: async-graphql reports the parse error as usual.
pub fn check(request: &mut Request, limits: DocumentLimits) -> Result<(), Refusal> {
    for (name, value) in request.variables.iter() {
        reject_nul_in_value(value, &format!("${name}"))?;
    }
    let Ok(doc) = request.parsed_query() else {
        return Ok(());
    };
    check_document(doc, limits)
}

/// `check`, with the parsed document taken from (and, once it passed, put into)
/// `cache`: a document sent before is neither parsed nor checked again. The
/// variables are checked every time.
pub fn check_cached(request: &mut Request, limits: DocumentLimits, cache: &DocumentCache) -> Result<(), Refusal> {
    if let Some(doc) = cache.get(&request.query) {
        for (name, value) in request.variables.iter() {
            reject_nul_in_value(value, &format!("${name}"))?;
        }
        request.set_parsed_query(doc);
        return Ok(());
    }
    check(request, limits)?;
    let query = std::mem::take(&mut request.query);
    if let Ok(doc) = request.parsed_query() {
        cache.insert(&query, doc);
    }
    request.query = query;
    Ok(())
}

pub fn check_document(doc: &ExecutableDocument, limits: DocumentLimits) -> Result<(), Refusal> {
    let mut sizer = Sizer {
        fragments: &doc.fragments,
        memo: HashMap::new(),
        limits,
    };
    let mut total = 0usize;
    for (_, op) in doc.operations.iter() {
        total = total.saturating_add(sizer.selection_set(&op.node.selection_set.node, 1)?);
        if total > limits.max_expanded_fields {
            return Err(Refusal::TooLarge {
                limit: limits.max_expanded_fields,
            });
        }
    }
    for fragment in doc.fragments.values() {
        sizer.fragment(&fragment.node, 1)?;
    }
    check_hashing_fields(doc)?;
    check_literals(doc)
}

struct Sizer<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Expanded size per fragment; `None` while it is being computed (a
    /// cycle, which validation reports).
    memo: HashMap<&'a str, Option<usize>>,
    limits: DocumentLimits,
}

impl<'a> Sizer<'a> {
    fn too_large(&self) -> Refusal {
        Refusal::TooLarge {
            limit: self.limits.max_expanded_fields,
        }
    }

    fn selection_set(&mut self, set: &'a SelectionSet, nesting: usize) -> Result<usize, Refusal> {
        if nesting > self.limits.max_nesting {
            return Err(Refusal::TooDeep {
                limit: self.limits.max_nesting,
            });
        }
        let mut size = 0usize;
        for item in &set.items {
            let add = match &item.node {
                Selection::Field(field) => {
                    1usize.saturating_add(self.selection_set(&field.node.selection_set.node, nesting + 1)?)
                }
                Selection::InlineFragment(inline) => self.selection_set(&inline.node.selection_set.node, nesting + 1)?,
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    match self.fragments.get(name) {
                        Some(def) => self.fragment_named(name, &def.node, nesting + 1)?,
                        // Unknown fragments are a validation error.
                        None => 0,
                    }
                }
            };
            size = size.saturating_add(add);
            if size > self.limits.max_expanded_fields {
                return Err(self.too_large());
            }
        }
        Ok(size)
    }

    fn fragment(&mut self, def: &'a FragmentDefinition, nesting: usize) -> Result<usize, Refusal> {
        self.selection_set(&def.selection_set.node, nesting)
    }

    fn fragment_named(&mut self, name: &'a str, def: &'a FragmentDefinition, nesting: usize) -> Result<usize, Refusal> {
        match self.memo.get(name) {
            Some(Some(size)) => return Ok(*size),
            Some(None) => return Ok(0),
            None => {}
        }
        self.memo.insert(name, None);
        let size = self.fragment(def, nesting)?;
        self.memo.insert(name, Some(size));
        Ok(size)
    }
}

/// Counts the distinct response keys of `login`/`register` at the root of
/// each mutation, through fragments.
fn check_hashing_fields(doc: &ExecutableDocument) -> Result<(), Refusal> {
    fn walk<'a>(
        doc: &'a ExecutableDocument,
        set: &'a SelectionSet,
        keys: &mut HashSet<&'a str>,
        seen: &mut HashSet<&'a str>,
    ) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    if HASHING_FIELDS.contains(&field.node.name.node.as_str()) {
                        keys.insert(field.node.response_key().node.as_str());
                    }
                }
                Selection::InlineFragment(inline) => walk(doc, &inline.node.selection_set.node, keys, seen),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if seen.insert(name) {
                        if let Some(def) = doc.fragments.get(name) {
                            walk(doc, &def.node.selection_set.node, keys, seen);
                        }
                    }
                }
            }
        }
    }
    for (_, op) in doc.operations.iter() {
        if op.node.ty != OperationType::Mutation {
            continue;
        }
        let mut keys = HashSet::new();
        walk(doc, &op.node.selection_set.node, &mut keys, &mut HashSet::new());
        if keys.len() > 1 {
            return Err(Refusal::SeveralHashingFields);
        }
    }
    Ok(())
}

/// NUL bytes in string literals anywhere in the document's arguments.
fn check_literals(doc: &ExecutableDocument) -> Result<(), Refusal> {
    fn set(s: &SelectionSet) -> Result<(), Refusal> {
        for item in &s.items {
            match &item.node {
                Selection::Field(field) => {
                    for (name, value) in &field.node.arguments {
                        // Variables are checked with the request's variables.
                        let literal = value.node.clone().into_const_with(|_| Ok::<_, ()>(Value::Null));
                        if let Ok(literal) = literal {
                            reject_nul_in_value(&literal, name.node.as_str())?;
                        }
                    }
                    set(&field.node.selection_set.node)?;
                }
                Selection::InlineFragment(inline) => set(&inline.node.selection_set.node)?,
                Selection::FragmentSpread(_) => {}
            }
        }
        Ok(())
    }
    for (_, op) in doc.operations.iter() {
        set(&op.node.selection_set.node)?;
    }
    for def in doc.fragments.values() {
        set(&def.node.selection_set.node)?;
    }
    Ok(())
}

fn reject_nul_in_value(value: &Value, at: &str) -> Result<(), Refusal> {
    match value {
        Value::String(s) if s.contains('\0') => Err(Refusal::NulByte { at: at.to_owned() }),
        Value::List(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| reject_nul_in_value(v, &format!("{at}[{i}]"))),
        Value::Object(fields) => fields.iter().try_for_each(|(k, v)| {
            if k.as_str().contains('\0') {
                return Err(Refusal::NulByte { at: at.to_owned() });
            }
            reject_nul_in_value(v, &format!("{at}.{k}"))
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DocumentLimits = DocumentLimits {
        max_expanded_fields: 2_000,
        max_nesting: 64,
    };

    fn doubling(levels: usize) -> String {
        let mut q = String::from("query{...F0}");
        for i in 0..levels - 1 {
            q.push_str(&format!(" fragment F{i} on Query{{...F{n} ...F{n}}}", n = i + 1));
        }
        q.push_str(&format!(" fragment F{} on Query{{categories}}", levels - 1));
        q
    }

    fn check_str(q: &str) -> Result<(), Refusal> {
        check(&mut Request::new(q), LIMITS)
    }

    #[test]
    fn a_doubling_fragment_chain_is_refused_without_expanding_it() {
        assert_eq!(check_str(&doubling(24)), Err(Refusal::TooLarge { limit: 2_000 }));
        // 2^10 = 1024 fields fit, 2^11 do not.
        assert_eq!(check_str(&doubling(11)), Ok(()));
        assert_eq!(check_str(&doubling(12)), Err(Refusal::TooLarge { limit: 2_000 }));
    }

    #[test]
    fn ordinary_fragments_and_cycles_pass_to_validation() {
        assert_eq!(check_str("query { ...A ...A } fragment A on Query { categories me { id email } }"), Ok(()));
        assert_eq!(check_str("query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }"), Ok(()));
        assert_eq!(check_str("query { ...Missing }"), Ok(()));
        assert_eq!(check_str("this is not graphql"), Ok(()));
    }

    #[test]
    fn long_fragment_chains_are_refused_before_they_recurse_deeply() {
        let mut q = String::from("query{...F0}");
        for i in 0..199 {
            q.push_str(&format!(" fragment F{i} on Query{{...F{}}}", i + 1));
        }
        q.push_str(" fragment F199 on Query{categories}");
        assert_eq!(check_str(&q), Err(Refusal::TooDeep { limit: 64 }));
        // Deeply nested fields are already refused by the parser; they pass
        // here and fail there.
        let q = format!("query {{ {}x{} }}", "a {".repeat(100), "}".repeat(100));
        assert!(async_graphql::parser::parse_query(&q).is_err());
        assert_eq!(check_str(&q), Ok(()));
    }

    #[test]
    fn one_password_hash_per_document() {
        let two = "mutation { a: login(input: {email: \"a@b.c\", password: \"x\"}) { accessToken } b: login(input: {email: \"a@b.c\", password: \"y\"}) { accessToken } }";
        assert_eq!(check_str(two), Err(Refusal::SeveralHashingFields));
        let via_fragment = "mutation { login(input: {email: \"a@b.c\", password: \"x\"}) { accessToken } ...R } fragment R on Mutation { register(input: {email: \"a@b.c\", password: \"y\"}) { user { id } } }";
        assert_eq!(check_str(via_fragment), Err(Refusal::SeveralHashingFields));
        let one = "mutation { login(input: {email: \"a@b.c\", password: \"x\"}) { accessToken } }";
        assert_eq!(check_str(one), Ok(()));
    }

    #[test]
    fn nul_bytes_are_refused_in_literals_and_variables() {
        assert!(matches!(
            check_str("query { listings(search: \"a\\u0000b\") { totalCount } }"),
            Err(Refusal::NulByte { .. })
        ));
        let mut request = Request::new("query($s: String) { listings(search: $s) { totalCount } }")
            .variables(async_graphql::Variables::from_json(serde_json::json!({"s": {"deep": ["ok", "no\u{0}"]}})));
        assert_eq!(
            check(&mut request, LIMITS),
            Err(Refusal::NulByte { at: "$s.deep[1]".into() })
        );
    }
}
