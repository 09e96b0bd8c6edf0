//! GraphQL over HTTP: content negotiation, status codes for request errors,
//! body, depth and complexity limits, GET and GraphiQL, health and readiness.

use agora_api::graphql::errors::CODES;
use agora_tests::{for_both_backends, on_both_backends, Backend, GqlResponse, TestApp};
use reqwest::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// POSTs `body` as JSON with `accept` (reqwest sends `Accept: */*` when it is `None`).
async fn post(app: &TestApp, accept: Option<&str>, body: Value) -> GqlResponse {
    let mut req = app.client.post(format!("{}/graphql", app.address)).json(&body);
    if let Some(accept) = accept {
        req = req.header(ACCEPT, accept);
    }
    TestApp::read(req.send().await.unwrap()).await
}

async fn get(app: &TestApp, accept: &str, params: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .get(format!("{}/graphql", app.address))
        .header(ACCEPT, accept)
        .query(params)
        .send()
        .await
        .unwrap()
}

/// A POST written by hand, because reqwest always sends an `Accept` header.
async fn post_without_accept(app: &TestApp, body: &str) -> GqlResponse {
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    GqlResponse {
        status,
        content_type,
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    }
}

/// Asserts the body is a list of errors, each with a non-empty `extensions.code`.
#[track_caller]
fn assert_every_error_has_a_code(body: &Value) {
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("no errors in {body}"));
    assert!(!errors.is_empty());
    for e in errors {
        assert!(e["extensions"]["code"].as_str().is_some_and(|c| !c.is_empty()), "no code: {e}");
    }
}

async fn responses_are_in_the_negotiated_media_type(app: TestApp) {
    let query = json!({ "query": "{ categories }" });
    for (accept, expected) in [
        (Some(GRAPHQL_RESPONSE), GRAPHQL_RESPONSE),
        (Some(JSON), JSON),
        (Some("application/json, application/graphql-response+json"), GRAPHQL_RESPONSE),
        (Some("application/graphql-response+json;q=0.5, application/json"), JSON),
        (Some("text/html, application/*;q=0.8"), JSON),
        (Some("*/*, application/graphql-response+json"), GRAPHQL_RESPONSE),
        (None, JSON), // reqwest's `*/*`: a wildcard gets the legacy type
    ] {
        let resp = post(&app, accept, query.clone()).await;
        assert_eq!(resp.status, 200, "{accept:?}");
        assert!(resp.content_type.starts_with(expected), "{accept:?} gave {}", resp.content_type);
        let categories = resp.ok()["categories"].clone();
        assert!(categories.as_array().unwrap().contains(&json!("expert-session")));
    }
    // No Accept header at all means the legacy type.
    let bare = post_without_accept(&app, r#"{"query":"{ categories }"}"#).await;
    assert_eq!(bare.status, 200);
    assert!(bare.content_type.starts_with(JSON), "{}", bare.content_type);
    assert_eq!(bare.data()["categories"][0], "expert-session");
}

async fn a_document_that_does_not_parse_is_a_request_error_without_data(app: TestApp) {
    let broken = json!({ "query": "{ categories" });
    let strict = post(&app, Some(GRAPHQL_RESPONSE), broken.clone()).await;
    assert_eq!(strict.status, 400);
    assert!(strict.content_type.starts_with(GRAPHQL_RESPONSE));
    assert_eq!(strict.error_code(), Some("GRAPHQL_PARSE_FAILED"));
    assert_every_error_has_a_code(&strict.body);
    assert!(strict.body.get("data").is_none(), "a request error has no data entry: {}", strict.body);
    // The legacy type answers 200, but it is still a request error.
    let legacy = post(&app, Some(JSON), broken).await;
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.error_code(), Some("GRAPHQL_PARSE_FAILED"));
    assert_every_error_has_a_code(&legacy.body);
    assert!(legacy.body.get("data").is_none(), "{}", legacy.body);
}

async fn a_document_that_fails_validation_is_a_400_only_for_the_graphql_response_type(app: TestApp) {
    let unknown_field = json!({ "query": "{ categories nope }" });
    let strict = post(&app, Some(GRAPHQL_RESPONSE), unknown_field.clone()).await;
    assert_eq!(strict.status, 400);
    assert_eq!(strict.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert_every_error_has_a_code(&strict.body);
    assert!(strict.body.get("data").is_none(), "{}", strict.body);

    let legacy = post(&app, Some(JSON), unknown_field).await;
    assert_eq!(legacy.status, 200);
    assert!(legacy.content_type.starts_with(JSON));
    assert_eq!(legacy.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert_every_error_has_a_code(&legacy.body);

    let bare = post_without_accept(&app, r#"{"query":"{ categories nope }"}"#).await;
    assert_eq!(bare.status, 200);
    assert!(bare.content_type.starts_with(JSON), "{}", bare.content_type);
    assert_eq!(bare.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));

    // Variables that do not coerce are request errors too.
    let q = "query($n: Int!) { listings(first: $n) { totalCount } }";
    for variables in [json!({ "n": "seven" }), json!({})] {
        let bad = post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": q, "variables": variables })).await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert_eq!(bad.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
        assert!(bad.body.get("data").is_none(), "{}", bad.body);
    }

    // An error while executing is not a request error: 200, with `data`.
    let me = post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": "{ me { id } }" })).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(me.body.get("data"), Some(&Value::Null));
    assert_eq!(me.error()["path"], json!(["me"]));
}

async fn an_unacceptable_accept_header_is_406(app: TestApp) {
    for accept in ["text/plain", "text/html", "application/json;q=0", "application/xml"] {
        let resp = post(&app, Some(accept), json!({ "query": "{ categories }" })).await;
        assert_eq!(resp.status, 406, "{accept}");
    }
}

async fn a_body_that_is_not_a_json_graphql_request_is_rejected(app: TestApp) {
    let plain = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .header(CONTENT_TYPE, "text/plain")
        .body(r#"{"query":"{ categories }"}"#)
        .send()
        .await
        .unwrap();
    let plain = TestApp::read(plain).await;
    assert_eq!(plain.status, 415);
    assert_every_error_has_a_code(&plain.body);

    for body in [r#"{"query": "#, "not json", r#"{"variables": {}}"#] {
        let malformed = app
            .client
            .post(format!("{}/graphql", app.address))
            .header(ACCEPT, GRAPHQL_RESPONSE)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let malformed = TestApp::read(malformed).await;
        assert_eq!(malformed.status, 400, "{body}");
        assert!(malformed.content_type.starts_with(GRAPHQL_RESPONSE));
        assert_every_error_has_a_code(&malformed.body);
        assert!(malformed.body.get("data").is_none());
    }
    // A charset parameter is fine.
    let with_charset = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(r#"{"query":"{ categories }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(with_charset.status(), 200);
}

/// serde reads a struct from a JSON array too, so `["{ categories }"]` must be
/// refused on purpose: a GraphQL request is a JSON object.
async fn a_json_array_is_not_a_graphql_request(app: TestApp) {
    let array = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .header(CONTENT_TYPE, JSON)
        .body(r#"["{ categories }"]"#)
        .send()
        .await
        .unwrap();
    let array = TestApp::read(array).await;
    assert_eq!(array.status, 400, "{}", array.body);
    assert_every_error_has_a_code(&array.body);
}

async fn a_body_above_the_limit_is_413(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.server.body_limit_bytes = 1024).await;
    // Comments are valid GraphQL, so padding keeps the query itself valid.
    let padded = |n: usize| json!({ "query": format!("# {}\n{{ categories }}", "x".repeat(n)) });
    let small = post(&app, Some(GRAPHQL_RESPONSE), padded(800)).await;
    assert_eq!(small.status, 200);
    small.ok();
    let large = post(&app, Some(GRAPHQL_RESPONSE), padded(2_000)).await;
    assert_eq!(large.status, 413);
}

/// The 413 comes from the body extractor, before the GraphQL handler, but a
/// client that asked for JSON should still get an error it can switch on.
async fn an_oversized_body_gets_a_json_error_with_a_code(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.server.body_limit_bytes = 1024).await;
    let large = json!({ "query": format!("# {}\n{{ categories }}", "x".repeat(2_000)) });
    let resp = post(&app, Some(GRAPHQL_RESPONSE), large).await;
    assert_eq!(resp.status, 413);
    assert!(resp.content_type.starts_with(GRAPHQL_RESPONSE), "{:?}: {}", resp.content_type, resp.body);
    assert_every_error_has_a_code(&resp.body);
}

async fn queries_nested_deeper_than_the_limit_are_rejected(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.graphql.depth_limit = 5).await;
    let shallow = "{ listings { edges { node { id } } } }";
    let shallow = post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": shallow })).await;
    assert_eq!(shallow.status, 200);
    shallow.ok();
    let deep = "{ listings { edges { node { provider { listings { edges { node { id } } } } } } } }";
    let rejected = post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": deep })).await;
    assert_eq!(rejected.status, 400);
    assert_eq!(rejected.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert_every_error_has_a_code(&rejected.body);
    assert!(rejected.body.get("data").is_none());
}

async fn queries_above_the_complexity_limit_are_rejected(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.graphql.complexity_limit = 50).await;
    let small = "{ listings(first: 2) { edges { node { title } } } }";
    let ok = post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": small })).await;
    assert_eq!(ok.status, 200);
    ok.ok();
    let big = "{ listings(first: 100) { edges { node { title description tags provider { displayName } } } } }";
    let rejected = post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": big })).await;
    assert_eq!(rejected.status, 400);
    assert_eq!(rejected.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert_every_error_has_a_code(&rejected.body);
    // The page size counts even when it is left to the default (20).
    let implicit = "{ listings { edges { node { title description tags provider { displayName } } } } }";
    let rejected = post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": implicit })).await;
    assert_eq!(rejected.status, 400);
}

async fn get_runs_queries_but_never_mutations(app: TestApp) {
    let resp = TestApp::read(get(&app, JSON, &[("query", "{categories}")]).await).await;
    assert_eq!(resp.status, 200);
    assert!(resp.content_type.starts_with(JSON));
    assert!(resp.ok()["categories"].as_array().unwrap().contains(&json!("compute")));

    let with_variables = get(
        &app,
        GRAPHQL_RESPONSE,
        &[("query", "query($n: Int) { listings(first: $n) { totalCount } }"), ("variables", r#"{"n":1}"#)],
    )
    .await;
    assert_eq!(TestApp::read(with_variables).await.ok()["listings"]["totalCount"], 0);

    let mutation = get(&app, GRAPHQL_RESPONSE, &[("query", "mutation { logout(input: {}) { ok } }")]).await;
    assert_eq!(mutation.status(), 405);
    assert_eq!(mutation.headers()[ALLOW], "POST");
    assert_every_error_has_a_code(&TestApp::read(mutation).await.body);

    // With several operations, what counts is the one selected.
    let doc = "query Q { categories } mutation M { logout(input: {}) { ok } }";
    let q = get(&app, GRAPHQL_RESPONSE, &[("query", doc), ("operationName", "Q")]).await;
    assert_eq!(q.status(), 200);
    let m = get(&app, GRAPHQL_RESPONSE, &[("query", doc), ("operationName", "M")]).await;
    assert_eq!(m.status(), 405);

    let bad_variables = get(&app, GRAPHQL_RESPONSE, &[("query", "{ categories }"), ("variables", "{nope")]).await;
    assert_eq!(bad_variables.status(), 400);
    assert_every_error_has_a_code(&TestApp::read(bad_variables).await.body);
    let unacceptable = get(&app, "text/plain", &[("query", "{ categories }")]).await;
    assert_eq!(unacceptable.status(), 406);
}

async fn a_browser_gets_graphiql(app: TestApp) {
    for params in [&[][..], &[("query", "{ categories }")][..]] {
        let page = get(&app, "text/html,application/xhtml+xml,*/*;q=0.8", params).await;
        assert_eq!(page.status(), 200);
        let content_type = page.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        let html = page.text().await.unwrap();
        assert!(html.to_lowercase().contains("graphiql"));
        assert!(html.contains("/graphql"));
    }
}

async fn health_and_readiness_are_reported(app: TestApp) {
    let health = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let ready = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["pendingMigrations"], 0);
}

/// Clients switch on `extensions.code`, so every code the server sends must be
/// one of the documented `CODES`.
async fn every_error_code_sent_over_http_is_a_documented_code(app: TestApp) {
    let url = format!("{}/graphql", app.address);
    let mut responses = vec![
        post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": "{ categories" })).await,
        post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": "{ nope }" })).await,
        post(&app, Some(GRAPHQL_RESPONSE), json!({ "query": "{ me { id } }" })).await,
    ];
    let unsupported = app
        .client
        .post(&url)
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .header(CONTENT_TYPE, "text/plain")
        .body("{ categories }")
        .send()
        .await
        .unwrap();
    responses.push(TestApp::read(unsupported).await);
    let malformed = app
        .client
        .post(&url)
        .header(ACCEPT, GRAPHQL_RESPONSE)
        .header(CONTENT_TYPE, JSON)
        .body("{")
        .send()
        .await
        .unwrap();
    responses.push(TestApp::read(malformed).await);
    let mutation = get(&app, GRAPHQL_RESPONSE, &[("query", "mutation { logout(input: {}) { ok } }")]).await;
    responses.push(TestApp::read(mutation).await);
    let undocumented: Vec<(u16, String)> = responses
        .iter()
        .flat_map(|r| {
            r.body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |e| (r.status, e["extensions"]["code"].as_str().unwrap_or("<none>").to_owned()))
        })
        .filter(|(_, code)| !CODES.contains(&code.as_str()))
        .collect();
    assert!(undocumented.is_empty(), "codes missing from errors::CODES: {undocumented:?}");
}

on_both_backends!(
    responses_are_in_the_negotiated_media_type,
    a_document_that_does_not_parse_is_a_request_error_without_data,
    a_document_that_fails_validation_is_a_400_only_for_the_graphql_response_type,
    an_unacceptable_accept_header_is_406,
    a_body_that_is_not_a_json_graphql_request_is_rejected,
    a_json_array_is_not_a_graphql_request,
    get_runs_queries_but_never_mutations,
    a_browser_gets_graphiql,
    health_and_readiness_are_reported,
    every_error_code_sent_over_http_is_a_documented_code,
);

for_both_backends!(
    a_body_above_the_limit_is_413,
    an_oversized_body_gets_a_json_error_with_a_code,
    queries_nested_deeper_than_the_limit_are_rejected,
    queries_above_the_complexity_limit_are_rejected,
);

