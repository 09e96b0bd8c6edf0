#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed set-up should stop the test loudly

//! A bounded GraphQL fuzz run: documents generated from the schema the server
//! introspects (valid ones and mutated ones: wrong variable types, huge
//! numbers, NUL bytes, long strings, deep nesting, truncated or corrupted
//! text), sent over HTTP (POST and GET) and over the WebSocket, from a fixed
//! seed. Whatever is sent, the server answers with GraphQL JSON, never a 5xx,
//! and every error carries one of the documented `extensions.code`s, never
//! `INTERNAL`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use agora_api::graphql::errors::CODES;
use agora_tests::introspect::{Field, InputValue, Kind, Root, SchemaModel, TypeRef};
use agora_tests::{ws, Backend, TestApp};

use crate::orders_btc::{fund, parties, place};

/// Documents per backend over HTTP, and over the WebSocket.
const HTTP_CASES: usize = 4000;
const WS_CASES: usize = 800;
const SEED: u64 = 0x4147_4f52_4131; // fixed: a failure replays exactly

struct Gen<'a> {
    rng: StdRng,
    model: &'a SchemaModel,
    /// Ids of real records, so generated arguments reach past the id checks.
    ids: Vec<String>,
    vars: Map<String, Value>,
    defs: Vec<String>,
}

const EVIL_STRINGS: [&str; 8] = [
    "\u{0}",
    "a\u{0}b",
    "",
    "   ",
    "<script>alert(1)</script>",
    "'; DROP TABLE users; --",
    "\u{202e}\u{fffd}\u{1f600}",
    "%00%ff\\x00",
];

impl<'a> Gen<'a> {
    fn new(model: &'a SchemaModel, seed: u64, ids: Vec<String>) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            model,
            ids,
            vars: Map::new(),
            defs: Vec::new(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.rng.gen_range(0..items.len())])
        }
    }

    /// A value of `ty`, or with `evil` one that is probably not.
    fn value(&mut self, ty: &TypeRef, evil: bool, depth: usize) -> Value {
        if evil && self.chance(0.3) {
            return self.evil_value(depth);
        }
        match ty {
            TypeRef::NonNull(inner) => self.value(inner, evil, depth),
            TypeRef::List(inner) => {
                let n = if evil && self.chance(0.1) { 150 } else { self.rng.gen_range(0..4) };
                Value::Array((0..n).map(|_| self.value(inner, evil, depth + 1)).collect())
            }
            TypeRef::Named(name) => self.named_value(name, evil, depth),
        }
    }

    fn named_value(&mut self, name: &str, evil: bool, depth: usize) -> Value {
        match name {
            "ID" => {
                if self.chance(0.7) {
                    if let Some(id) = self.pick(&self.ids.clone()) {
                        return json!(id);
                    }
                }
                let junk = ["T3JkZXI6MA", "VXNlcjpub3QtYS11dWlk", "", "!!!", "\u{0}"][self.rng.gen_range(0..5)];
                json!(junk)
            }
            "String" => {
                if evil || self.chance(0.2) {
                    json!(*self.pick(&EVIL_STRINGS).unwrap_or(&""))
                } else {
                    let text = ["rust", "eu", "expert-session", "hello world", "12:00", "megabyte"][self.rng.gen_range(0..6)];
                    json!(text)
                }
            }
            "Int" => {
                if evil {
                    let n = [i64::from(i32::MAX) + 1, i64::MIN, -1, 99_999_999_999_i64][self.rng.gen_range(0..4)];
                    json!(n)
                } else {
                    json!(self.rng.gen_range(-2..100))
                }
            }
            "Float" => json!(if evil { 1e308 } else { 1.5 }),
            "Boolean" => json!(self.chance(0.5)),
            "MinorUnits" => {
                let options = if evil {
                    vec!["-1", "99999999999999999999999999", "1e9", "0x10", "\u{0}", "18446744073709551616"]
                } else {
                    vec!["0", "1", "50000", "100000", "18446744073709551615"]
                };
                json!(options[self.rng.gen_range(0..options.len())])
            }
            "DateTime" => json!(if evil { "yesterday" } else { "2030-01-01T00:00:00Z" }),
            _ => match self.model.type_def(name).cloned() {
                Some(t) if t.kind == Kind::Enum => {
                    if evil && self.chance(0.3) {
                        json!("NOT_A_VALUE")
                    } else {
                        json!(self.pick(&t.enum_values).cloned().unwrap_or_default())
                    }
                }
                Some(t) if t.kind == Kind::InputObject && depth < 6 => {
                    let mut obj = Map::new();
                    let one_of = name == "PricingInput";
                    let mut chosen = false;
                    for f in &t.input_fields {
                        let include = if one_of { !chosen && (self.chance(0.5) || f.name == "metered") } else { f.required() || self.chance(0.5) };
                        let include = if evil && self.chance(0.1) { !include } else { include };
                        if include {
                            chosen = true;
                            obj.insert(f.name.clone(), self.value(&f.ty, evil, depth + 1));
                        }
                    }
                    if evil && self.chance(0.1) {
                        obj.insert("notAField".into(), json!(1));
                    }
                    Value::Object(obj)
                }
                _ => Value::Null,
            },
        }
    }

    fn evil_value(&mut self, depth: usize) -> Value {
        match self.rng.gen_range(0..8) {
            0 => json!("x".repeat(20_000)),
            1 => json!(1e308),
            2 => json!(-1e38_f64),
            3 => json!({"nested": {"deeper": [1, 2, {"x": null}]}}),
            4 => {
                let mut v = json!(1);
                for _ in 0..(60 - depth.min(60)) {
                    v = json!([v]);
                }
                v
            }
            5 => Value::Null,
            6 => json!(true),
            _ => json!("\u{0}\u{0}\u{0}"),
        }
    }

    /// The arguments of `field`, as literals or variables.
    fn args(&mut self, args: &[InputValue], evil: bool) -> String {
        let mut out = Vec::new();
        for arg in args {
            if !(arg.required() || self.chance(0.4)) {
                continue;
            }
            let value = self.value(&arg.ty, evil, 0);
            let var = format!("v{}", self.vars.len());
            let declared = if evil && self.chance(0.15) {
                ["Int", "String!", "[ID!]!", "Boolean", "NoSuchType"][self.rng.gen_range(0..5)].to_owned()
            } else {
                arg.ty.sdl()
            };
            self.defs.push(format!("${var}: {declared}"));
            self.vars.insert(var.clone(), value);
            out.push(format!("{}: ${var}", arg.name));
        }
        if evil && self.chance(0.1) {
            out.push("bogus: 1".into());
        }
        if out.is_empty() {
            String::new()
        } else {
            format!("({})", out.join(", "))
        }
    }

    /// A selection set for a value of `ty`.
    fn selection(&mut self, ty: &TypeRef, budget: usize, evil: bool) -> String {
        let Some(t) = self.model.type_def(ty.named()).cloned() else {
            return String::new();
        };
        match t.kind {
            Kind::Object | Kind::Interface => {
                if budget == 0 {
                    return " { __typename }".into();
                }
                let mut parts = vec!["__typename".to_owned()];
                let n = self.rng.gen_range(1..4);
                for i in 0..n {
                    let Some(f) = self.pick(&t.fields).cloned() else { break };
                    // Deep runs follow composite fields down.
                    let f = if budget > 6 {
                        t.fields.iter().find(|g| self.model.is_composite(&g.ty) && g.args.iter().all(|a| !a.required())).cloned().unwrap_or(f)
                    } else {
                        f
                    };
                    let alias = if i > 0 && self.chance(0.3) { format!("a{i}: ") } else { String::new() };
                    let args = self.args(&f.args, evil);
                    let sub = if self.model.is_composite(&f.ty) { self.selection(&f.ty, budget - 1, evil) } else { String::new() };
                    parts.push(format!("{alias}{}{args}{sub}", f.name));
                }
                if t.kind == Kind::Interface {
                    if let Some(p) = self.pick(&t.possible_types).cloned() {
                        parts.push(format!("... on {p} {{ __typename }}"));
                    }
                }
                format!(" {{ {} }}", parts.join(" "))
            }
            Kind::Union => {
                let mut parts = vec!["__typename".to_owned()];
                for p in t.possible_types.clone() {
                    if self.chance(0.5) && budget > 0 {
                        let sub = self.selection(&TypeRef::Named(p.clone()), budget - 1, evil);
                        parts.push(format!("... on {p}{sub}"));
                    }
                }
                format!(" {{ {} }}", parts.join(" "))
            }
            _ => String::new(),
        }
    }

    /// A document, its variables, and the root it targets.
    fn document(&mut self) -> (String, Value, Root) {
        self.vars = Map::new();
        self.defs = Vec::new();
        let root = match self.rng.gen_range(0..20) {
            0..=10 => Root::Query,
            11..=16 => Root::Mutation,
            _ => Root::Subscription,
        };
        let evil = self.chance(0.35);
        let budget = if self.chance(0.08) { 40 } else { self.rng.gen_range(0..4) };
        let fields: Vec<Field> = self.model.root_fields(root).to_vec();
        let mut parts = Vec::new();
        let count = if root == Root::Subscription { 1 } else { self.rng.gen_range(1..3) };
        for i in 0..count {
            let Some(f) = self.pick(&fields).cloned() else { break };
            let args = self.args(&f.args, evil);
            let sub = if self.model.is_composite(&f.ty) { self.selection(&f.ty, budget, evil) } else { String::new() };
            parts.push(format!("f{i}: {}{args}{sub}", f.name));
        }
        let defs = if self.defs.is_empty() { String::new() } else { format!("({})", self.defs.join(", ")) };
        let mut doc = format!("{}{defs} {{ {} }}", root.keyword(), parts.join(" "));
        if self.chance(0.1) {
            doc = self.corrupt(doc);
        }
        (doc, Value::Object(self.vars.clone()), root)
    }

    /// Breaks the text of a document the way a careless client or an attacker would.
    fn corrupt(&mut self, doc: String) -> String {
        let chars: Vec<char> = doc.chars().collect();
        let at = self.rng.gen_range(0..chars.len().max(1));
        let (head, tail): (String, String) = (chars[..at].iter().collect(), chars[at..].iter().collect());
        match self.rng.gen_range(0..7) {
            0 => head,
            1 => format!("{head}\u{0}{tail}"),
            2 => format!("{head}{{{{{{{tail}"),
            3 => format!("{head}}}{tail}"),
            4 => format!("{doc} fragment F on Query {{ ...F }}"),
            5 => format!("{head}\"unterminated{tail}"),
            _ => format!("{doc}{}", " ".repeat(3)).replace(':', "::"),
        }
    }
}

/// What is wrong with an answer, if anything.
fn check_errors(errors: &Value) -> Option<String> {
    let Some(errors) = errors.as_array() else {
        return Some("`errors` is not a list".into());
    };
    for e in errors {
        if !e["message"].is_string() {
            return Some(format!("an error without a message: {e}"));
        }
        let Some(code) = e["extensions"]["code"].as_str() else {
            return Some(format!("an error without extensions.code: {e}"));
        };
        if code == "INTERNAL" || !CODES.contains(&code) {
            return Some(format!("code {code}: {e}"));
        }
    }
    None
}

fn check_http(status: u16, content_type: &str, text: &str) -> Option<String> {
    if status >= 500 {
        return Some(format!("HTTP {status}"));
    }
    if !content_type.starts_with("application/json") && !content_type.starts_with("application/graphql-response+json") {
        return Some(format!("HTTP {status} with content type {content_type:?}"));
    }
    let body: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON ({e})")),
    };
    if !body.is_object() || (body.get("data").is_none() && body.get("errors").is_none()) {
        return Some("neither data nor errors".into());
    }
    match body.get("errors") {
        Some(errors) => check_errors(errors),
        None => None,
    }
}

fn check_ws(message: &Value) -> Option<String> {
    match message["type"].as_str() {
        Some("next") => message["payload"].get("errors").and_then(check_errors),
        Some("error") => check_errors(&message["payload"]),
        Some("complete") => None,
        other => Some(format!("unexpected message type {other:?}")),
    }
}

async fn the_server_answers_every_generated_document_with_graphql_json(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let model = SchemaModel::fetch(&app).await;
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 50_000, 1).await;
    let ids = vec![p.listing_id.clone(), order["id"].as_str().unwrap_or_default().to_owned(), p.buyer.user_id.clone(), p.provider.user_id.clone()];
    let tokens = [None, Some(p.buyer.access_token.clone()), Some(p.provider.access_token.clone())];
    let mut gen = Gen::new(&model, SEED, ids);
    let mut failures = Vec::new();

    for case in 0..HTTP_CASES {
        let (doc, vars, root) = gen.document();
        let token = tokens[case % tokens.len()].clone();
        let vars_text = vars.to_string();
        // GET only while the URL stays a size a client would send.
        let use_get = root == Root::Query && gen.chance(0.15) && doc.len() + vars_text.len() < 4000;
        let mut req = if use_get {
            app.client
                .get(format!("{}/graphql", app.address))
                .query(&[("query", doc.as_str()), ("variables", vars_text.as_str())])
        } else if gen.chance(0.03) {
            // Not even a GraphQL request.
            let body = [r#"{"query": 5}"#, "[]", r#"{"query": "{ categories }", "variables": "nope"}"#, "\u{0}", "{"][case % 5];
            app.client.post(format!("{}/graphql", app.address)).header("content-type", "application/json").body(body)
        } else {
            app.client.post(format!("{}/graphql", app.address)).json(&json!({"query": doc, "variables": vars}))
        };
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = resp.text().await.unwrap_or_default();
        if let Some(why) = check_http(status, &content_type, &text) {
            failures.push(format!("HTTP case {case}: {why}\n  document: {doc}\n  variables: {}\n  answer: {}",
                vars.to_string().chars().take(300).collect::<String>(), text.chars().take(400).collect::<String>()));
        }
    }

    const WS_FRAME_LIMIT: usize = 64 * 1024;
    let mut sockets = Vec::new();
    for t in &tokens {
        sockets.push(ws::connect(&app, t.as_deref()).await);
    }
    for case in 0..WS_CASES {
        let (doc, vars, _) = gen.document();
        let which = case % sockets.len();
        let socket = &mut sockets[which];
        let id = format!("c{case}");
        let sentinel = format!("s{case}");
        // The socket's frames are at most 64 KiB (the WebSocket codec's
        // limit, documented in the README): a larger message ends the
        // connection, so it is checked that the server survives it and a new
        // socket works, not that it answers.
        let size = json!({"id": id, "type": "subscribe", "payload": {"query": doc, "variables": vars}}).to_string().len();
        if size > WS_FRAME_LIMIT {
            ws::subscribe(socket, &id, &doc, vars.clone()).await;
            let _ = ws::next(socket).await;
            sockets[which] = ws::connect(&app, tokens[which].as_deref()).await;
            continue;
        }
        ws::subscribe(socket, &id, &doc, vars.clone()).await;
        // A query behind it: its `complete` bounds the wait, whether or not
        // the fuzzed subscription ever sends anything.
        ws::subscribe(socket, &sentinel, "{ __typename }", json!({})).await;
        loop {
            let message = match ws::next(socket).await {
                Ok(m) => m,
                Err(e) => {
                    failures.push(format!("WS case {case}: {e}\n  document: {doc}\n  variables: {vars}"));
                    sockets[which] = ws::connect(&app, tokens[which].as_deref()).await;
                    break;
                }
            };
            if let Some(why) = check_ws(&message) {
                failures.push(format!("WS case {case}: {why}\n  document: {doc}\n  message: {}", message.to_string().chars().take(400).collect::<String>()));
            }
            if message["id"] == json!(sentinel) && message["type"] == "complete" {
                break;
            }
        }
        ws::send(&mut sockets[which], json!({"id": id, "type": "complete"})).await;
        if failures.len() > 20 {
            break;
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// async-graphql's own errors on the socket (a document that does not parse,
/// one that does not validate, a variable of the wrong type) carry the codes
/// they carry over HTTP.
async fn socket_errors_carry_the_codes_http_errors_carry(app: TestApp) {
    let mut socket = ws::connect(&app, None).await;
    let cases = [
        ("subscription { myNotifications { kind }", json!({}), "GRAPHQL_PARSE_FAILED"),
        ("subscription { noSuchField }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
        ("query($id: ID!) { order(id: $id) { id } }", json!({"id": {"not": "an id"}}), "GRAPHQL_VALIDATION_FAILED"),
        ("{ nodes(ids: [\"a\"]) { id } categories(x: 1) }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
    ];
    for (i, (query, variables, code)) in cases.into_iter().enumerate() {
        ws::subscribe(&mut socket, &i.to_string(), query, variables.clone()).await;
        let mut message = ws::next(&mut socket).await.expect("an answer");
        while message["type"] == "complete" {
            message = ws::next(&mut socket).await.expect("an answer");
        }
        let errors = if message["type"] == "error" { &message["payload"] } else { &message["payload"]["errors"] };
        assert_eq!(errors[0]["extensions"]["code"], code, "{query}: {message}");
        let http = app.gql(query, variables, None).await;
        assert_eq!(http.error_code(), Some(code), "{query} over HTTP: {:?}", http.body);
    }
}

agora_tests::on_both_backends!(socket_errors_carry_the_codes_http_errors_carry);
agora_tests::for_both_backends!(the_server_answers_every_generated_document_with_graphql_json);
