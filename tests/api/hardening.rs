#![allow(clippy::unwrap_used)] // test code: a failed set-up should stop the test loudly

//! What an attacker or a careless client tries: documents that expand
//! exponentially, floods of password hashes, guessing passwords, odd input.

use futures_util::future::join_all;
use serde_json::{json, Value};

use agora_tests::{for_both_backends, on_both_backends, Backend, GqlResponse, TestApp, PASSWORD};

/// `query{...F0}` where each fragment spreads the next twice: 2^(levels-1) fields once expanded.
pub fn doubling_query(root: &str, levels: usize, leaf: &str) -> String {
    let mut q = format!("{}{{...F0}}", root.to_lowercase());
    for i in 0..levels - 1 {
        q.push_str(&format!(" fragment F{i} on {root}{{...F{n} ...F{n}}}", n = i + 1));
    }
    q.push_str(&format!(" fragment F{} on {root}{{{leaf}}}", levels - 1));
    q
}

fn reason(r: &GqlResponse) -> &str {
    r.error()["extensions"]["reason"].as_str().unwrap_or_default()
}

async fn login_from(app: &TestApp, email: &str, password: &str, client: Option<&str>) -> GqlResponse {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("accept", "application/graphql-response+json")
        .json(&json!({
            "query": "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
            "variables": { "i": { "email": email, "password": password } }
        }));
    if let Some(client) = client {
        req = req.header("x-forwarded-for", client);
    }
    TestApp::read(req.send().await.unwrap()).await
}

async fn fragment_fan_out_is_refused_before_validation(app: TestApp) {
    let query = doubling_query("Query", 24, "categories");
    assert!(query.len() < 1_000);
    let refused = app.gql(&query, json!({}), None).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.error_code(), Some("GRAPHQL_VALIDATION_FAILED"), "{:?}", refused.body);
    assert_eq!(reason(&refused), "TOO_COMPLEX");
    // Over GET too.
    let resp = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[("query", query.as_str())])
        .header("accept", "application/graphql-response+json")
        .send()
        .await
        .unwrap();
    let refused = TestApp::read(resp).await;
    assert_eq!((refused.status, reason(&refused)), (400, "TOO_COMPLEX"), "{:?}", refused.body);
    // A document that expands within the limits still runs, fragments and all.
    let fine = app.gql(&doubling_query("Query", 4, "categories"), json!({}), None).await.ok();
    assert!(fine["categories"].is_array());
    let data = app
        .gql("query { ...A ...B } fragment A on Query { categories } fragment B on Query { ...A meteredUnits }", json!({}), None)
        .await
        .ok();
    assert!(data["meteredUnits"].is_array());
}

async fn a_request_hashes_at_most_one_password(app: TestApp) {
    app.register("one@example.org").await;
    let q = "mutation($a: LoginInput!, $b: LoginInput!) { a: login(input: $a) { accessToken } b: login(input: $b) { accessToken } }";
    let creds = json!({ "email": "one@example.org", "password": PASSWORD });
    let refused = app.gql(q, json!({ "a": creds, "b": creds }), None).await;
    assert_eq!((refused.error_code(), reason(&refused)), (Some("BAD_USER_INPUT"), "TOO_MANY"), "{:?}", refused.body);
    assert!(refused.body.get("data").is_none_or(Value::is_null));
    // One is fine.
    let q = "mutation($a: LoginInput!) { a: login(input: $a) { accessToken } }";
    assert!(app.gql(q, json!({ "a": creds }), None).await.ok()["a"]["accessToken"].is_string());
}

async fn a_full_hashing_queue_answers_rate_limited_with_a_retry_time(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.auth.hashing_concurrency = Some(1);
        s.auth.hashing_queue_timeout_ms = 50;
    })
    .await;
    app.register("busy@example.org").await;
    let slot = app.state.hashing.acquire().await.unwrap();
    let refused = login_from(&app, "busy@example.org", PASSWORD, None).await;
    assert_eq!(refused.error_code(), Some("RATE_LIMITED"), "{:?}", refused.body);
    assert!(refused.error()["extensions"]["retryAfterSeconds"].as_u64() >= Some(1));
    drop(slot);
    let ok = login_from(&app, "busy@example.org", PASSWORD, None).await;
    assert!(ok.ok()["login"]["accessToken"].is_string());
}

fn codes(responses: &[GqlResponse]) -> (usize, usize) {
    let count = |code: &str| responses.iter().filter(|r| r.error_code() == Some(code)).count();
    (count("UNAUTHENTICATED"), count("RATE_LIMITED"))
}

async fn parallel_guesses_are_counted_before_they_are_checked_and_the_owner_is_not_locked_out(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1".into()];
        s.auth.login_attempts_per_window = 10;
    })
    .await;
    app.register("victim@example.org").await;
    let guesses = join_all((0..30).map(|i| {
        let app = &app;
        async move { login_from(app, "victim@example.org", &format!("wrong guess number {i}"), Some("198.51.100.1")).await }
    }))
    .await;
    assert_eq!(codes(&guesses), (10, 20));
    let limited = guesses.iter().find(|r| r.error_code() == Some("RATE_LIMITED")).unwrap();
    assert!(limited.error()["extensions"]["retryAfterSeconds"].as_u64() >= Some(1));
    // The attacker's address stays limited, even with the right password…
    let attacker = login_from(&app, "victim@example.org", PASSWORD, Some("198.51.100.1")).await;
    assert_eq!(attacker.error_code(), Some("RATE_LIMITED"));
    // …but the owner, elsewhere, logs in.
    let owner = login_from(&app, "victim@example.org", PASSWORD, Some("203.0.113.7")).await;
    assert!(owner.ok()["login"]["accessToken"].is_string());
}

async fn one_client_cannot_try_many_accounts_nor_spoof_its_address(backend: Backend) {
    // No trusted proxies: X-Forwarded-For is the client's own claim and ignored.
    let app = TestApp::spawn_with(backend, |s| {
        s.auth.login_attempts_per_client_per_window = 5;
    })
    .await;
    let mut responses = Vec::new();
    for i in 0..6 {
        let spoofed = format!("192.0.2.{i}");
        responses.push(login_from(&app, &format!("user{i}@example.org"), "not the password", Some(&spoofed)).await);
    }
    assert_eq!(codes(&responses[..5]), (5, 0));
    assert_eq!(responses[5].error_code(), Some("RATE_LIMITED"), "{:?}", responses[5].body);
}

async fn sign_up_is_limited_per_client(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.auth.signups_per_client_per_window = 2).await;
    let q = "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }";
    for i in 0..2 {
        app.gql(q, json!({"i": {"email": format!("new{i}@example.org"), "password": PASSWORD}}), None).await.ok();
    }
    let third = app.gql(q, json!({"i": {"email": "new2@example.org", "password": PASSWORD}}), None).await;
    assert_eq!(third.error_code(), Some("RATE_LIMITED"), "{:?}", third.body);
}

async fn weak_passwords_are_refused(app: TestApp) {
    let q = "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }";
    for weak in ["            ", "password1234", "Password 1234", "aaaaaaaaaaaaaaaa"] {
        let r = app.gql(q, json!({"i": {"email": "weak@example.org", "password": weak}}), None).await;
        assert_eq!(r.error_code(), Some("BAD_USER_INPUT"), "{weak:?}: {:?}", r.body);
    }
    app.gql(q, json!({"i": {"email": "weak@example.org", "password": PASSWORD}}), None).await.ok();
}

async fn nul_bytes_and_out_of_range_numbers_are_bad_input(app: TestApp) {
    let q = "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }";
    let r = app.gql(q, json!({"i": {"email": "a\u{0}@example.org", "password": PASSWORD}}), None).await;
    assert_eq!((r.error_code(), reason(&r)), (Some("BAD_USER_INPUT"), "NUL_BYTE"), "{:?}", r.body);
    let r = app
        .gql("query($t: String) { listings(filter: {text: $t}) { totalCount } }", json!({"t": "rust\u{0}"}), None)
        .await;
    assert_eq!(r.error_code(), Some("BAD_USER_INPUT"), "{:?}", r.body);
    let r = app.gql("{ listings(filter: {text: \"a\\u0000\"}) { totalCount } }", json!({}), None).await;
    assert_eq!(r.error_code(), Some("BAD_USER_INPUT"), "{:?}", r.body);
    let s = app.new_user("numbers").await;
    let q = "mutation($i: DecideDisputeInput!) { decideDispute(input: $i) { dispute { id } } }";
    let r = app
        .gql(q, json!({"i": {"disputeId": "x", "providerBps": 99_999_999_999_i64, "rationale": "r"}}), Some(&s.access_token))
        .await;
    assert_eq!(r.error_code(), Some("BAD_USER_INPUT"), "{:?}", r.body);
    let q = "mutation($i: AddStatementInput!) { addDisputeStatement(input: $i) { dispute { id } } }";
    let attachment = json!({"contentHash": "ab".repeat(32), "size": -1, "mediaType": "image/png", "name": "x.png"});
    let r = app
        .gql(q, json!({"i": {"disputeId": "x", "statement": "s", "attachments": [attachment]}}), Some(&s.access_token))
        .await;
    assert_eq!(r.error_code(), Some("BAD_USER_INPUT"), "{:?}", r.body);
}

async fn every_response_carries_security_headers_and_cors_follows_the_allow_list(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.http.cors_allowed_origins = vec!["https://app.example.org".into()]).await;
    for path in ["/healthz", "/graphql?query=%7Bcategories%7D", "/nowhere"] {
        let resp = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example.org").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.org");
    let other = preflight("https://evil.example.net").await.unwrap();
    assert_eq!(other.status(), 403);
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let resp = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("origin", "https://evil.example.net")
        .json(&json!({"query": "{ categories }"}))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

async fn graphiql_and_suggestions_can_be_switched_off(backend: Backend) {
    let html = |app: &TestApp| {
        app.client
            .get(format!("{}/graphql", app.address))
            .header("accept", "text/html")
            .send()
    };
    let dev = TestApp::spawn(backend).await;
    let page = html(&dev).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let script_src = csp.split(';').map(str::trim).find(|d| d.starts_with("script-src ")).unwrap().to_owned();
    assert!(!script_src.contains("unsafe-inline") && !script_src.contains("https://unpkg.com "), "{csp}");
    let body = page.text().await.unwrap();
    for asset in agora_api::http::graphiql::SCRIPTS {
        assert!(script_src.contains(asset.url), "{csp}");
        assert!(body.contains(&format!("src=\"{}\" integrity=\"{}\"", asset.url, asset.integrity)), "{body}");
    }
    let typo = dev.gql("{ categorie }", json!({}), None).await;
    assert!(typo.error()["message"].as_str().unwrap().contains("Did you mean"), "{:?}", typo.body);
    let locked = TestApp::spawn_with(backend, |s| {
        s.http.graphiql = Some(false);
        s.graphql.suggestions = Some(false);
    })
    .await;
    assert_eq!(html(&locked).await.unwrap().status(), 404);
    let typo = locked.gql("{ categorie }", json!({}), None).await;
    assert_eq!(typo.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(!typo.error()["message"].as_str().unwrap().contains("Did you mean"), "{:?}", typo.body);
}

on_both_backends!(
    fragment_fan_out_is_refused_before_validation,
    a_request_hashes_at_most_one_password,
    weak_passwords_are_refused,
    nul_bytes_and_out_of_range_numbers_are_bad_input,
);

for_both_backends!(
    a_full_hashing_queue_answers_rate_limited_with_a_retry_time,
    parallel_guesses_are_counted_before_they_are_checked_and_the_owner_is_not_locked_out,
    one_client_cannot_try_many_accounts_nor_spoof_its_address,
    sign_up_is_limited_per_client,
    every_response_carries_security_headers_and_cors_follows_the_allow_list,
    graphiql_and_suggestions_can_be_switched_off,
);

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_mail_files_are_readable_by_their_owner_only() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let p = crate::orders_btc::parties(&app, json!({})).await;
    crate::orders_btc::place(&app, &p).await;
    assert!(agora_api::notifications::dispatch_once(&app.state).await.unwrap() > 0);
    assert_eq!(mode(&app.data_dir), 0o700);
    let mail = app.data_dir.join("mail");
    assert_eq!(mode(&mail), 0o700);
    let mails: Vec<_> = std::fs::read_dir(&mail).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!mails.is_empty());
    for file in &mails {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let url = app.database_url();
    let db = std::path::PathBuf::from(url.trim_start_matches("sqlite://").split('?').next().unwrap());
    assert_eq!(mode(&db), 0o600, "{}", db.display());
    let wal = db.with_file_name(format!("{}-wal", db.file_name().unwrap().to_string_lossy()));
    assert!(wal.exists(), "the database runs in WAL mode");
    assert_eq!(mode(&wal), 0o600, "{}", wal.display());
}
