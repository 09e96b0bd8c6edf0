//! The schema as the running server describes it (introspection), reduced to
//! what the authorization matrix and the fuzzer need: root fields with their
//! arguments, object fields, input fields and enum values.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::TestApp;

const QUERY: &str = r#"
query Schema {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      kind name
      fields(includeDeprecated: true) { name args { name defaultValue type { ...T } } type { ...T } }
      inputFields { name defaultValue type { ...T } }
      enumValues(includeDeprecated: true) { name }
      possibleTypes { name }
    }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }
"#;

/// A type reference as written in SDL: `[ID!]!` is `NonNull(List(NonNull(Named("ID"))))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    Named(String),
    List(Box<TypeRef>),
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    fn from_json(v: &Value) -> TypeRef {
        match v["kind"].as_str() {
            Some("NON_NULL") => TypeRef::NonNull(Box::new(TypeRef::from_json(&v["ofType"]))),
            Some("LIST") => TypeRef::List(Box::new(TypeRef::from_json(&v["ofType"]))),
            _ => TypeRef::Named(v["name"].as_str().unwrap_or_default().to_owned()),
        }
    }

    /// The named type underneath the wrappers.
    pub fn named(&self) -> &str {
        match self {
            TypeRef::Named(n) => n,
            TypeRef::List(t) | TypeRef::NonNull(t) => t.named(),
        }
    }

    pub fn is_non_null(&self) -> bool {
        matches!(self, TypeRef::NonNull(_))
    }

    /// The SDL spelling, for variable definitions.
    pub fn sdl(&self) -> String {
        match self {
            TypeRef::Named(n) => n.clone(),
            TypeRef::List(t) => format!("[{}]", t.sdl()),
            TypeRef::NonNull(t) => format!("{}!", t.sdl()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct InputValue {
    pub name: String,
    pub ty: TypeRef,
    pub has_default: bool,
}

impl InputValue {
    /// A value must be given: non-null without a default.
    pub fn required(&self) -> bool {
        self.ty.is_non_null() && !self.has_default
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub args: Vec<InputValue>,
    pub ty: TypeRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Scalar,
    Object,
    Interface,
    Union,
    Enum,
    InputObject,
}

#[derive(Debug, Clone)]
pub struct TypeDef {
    pub kind: Kind,
    pub fields: Vec<Field>,
    pub input_fields: Vec<InputValue>,
    pub enum_values: Vec<String>,
    pub possible_types: Vec<String>,
}

/// The three root types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Root {
    Query,
    Mutation,
    Subscription,
}

impl Root {
    pub const ALL: [Root; 3] = [Root::Query, Root::Mutation, Root::Subscription];

    pub fn keyword(self) -> &'static str {
        match self {
            Root::Query => "query",
            Root::Mutation => "mutation",
            Root::Subscription => "subscription",
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Root::Query => "Query",
            Root::Mutation => "Mutation",
            Root::Subscription => "Subscription",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SchemaModel {
    pub types: BTreeMap<String, TypeDef>,
}

impl SchemaModel {
    /// Introspects the server (introspection is on in development mode).
    pub async fn fetch(app: &TestApp) -> SchemaModel {
        let data = app.gql(QUERY, json!({}), None).await.ok();
        let schema = &data["__schema"];
        for (root, key) in [(Root::Query, "queryType"), (Root::Mutation, "mutationType"), (Root::Subscription, "subscriptionType")] {
            assert_eq!(schema[key]["name"], root.type_name(), "root type names");
        }
        let mut types = BTreeMap::new();
        for t in schema["types"].as_array().expect("types") {
            let name = t["name"].as_str().unwrap_or_default().to_owned();
            let kind = match t["kind"].as_str() {
                Some("OBJECT") => Kind::Object,
                Some("INTERFACE") => Kind::Interface,
                Some("UNION") => Kind::Union,
                Some("ENUM") => Kind::Enum,
                Some("INPUT_OBJECT") => Kind::InputObject,
                _ => Kind::Scalar,
            };
            let input_values = |v: &Value| -> Vec<InputValue> {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|i| InputValue {
                                name: i["name"].as_str().unwrap_or_default().to_owned(),
                                ty: TypeRef::from_json(&i["type"]),
                                has_default: !i["defaultValue"].is_null(),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let fields = t["fields"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|f| Field {
                            name: f["name"].as_str().unwrap_or_default().to_owned(),
                            args: input_values(&f["args"]),
                            ty: TypeRef::from_json(&f["type"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let names = |v: &Value| -> Vec<String> {
                v.as_array()
                    .map(|a| a.iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default()
            };
            types.insert(
                name,
                TypeDef {
                    kind,
                    fields,
                    input_fields: input_values(&t["inputFields"]),
                    enum_values: names(&t["enumValues"]),
                    possible_types: names(&t["possibleTypes"]),
                },
            );
        }
        SchemaModel { types }
    }

    pub fn root_fields(&self, root: Root) -> &[Field] {
        self.types.get(root.type_name()).map(|t| t.fields.as_slice()).unwrap_or_default()
    }

    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// Whether a field of this type needs a selection set.
    pub fn is_composite(&self, ty: &TypeRef) -> bool {
        self.type_def(ty.named())
            .is_some_and(|t| matches!(t.kind, Kind::Object | Kind::Interface | Kind::Union))
    }
}
