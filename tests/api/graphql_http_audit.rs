//! The GraphQL-over-HTTP spec audit of graphql-http (`auditServer`, from npm)
//! against the real server: every audit must be `ok`, warnings included.
//! `./scripts/test` installs the npm packages into `client/node_modules`.

use std::path::PathBuf;
use std::process::Command;

use agora_tests::{Backend, TestApp};

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_over_http_audit_passes_every_check() {
    let dir = client_dir();
    assert!(
        dir.join("node_modules").join("graphql-http").exists(),
        "graphql-http is not installed: run ./scripts/test (or `npm ci --prefix client`)"
    );
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = format!("{}/graphql", app.address);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("scripts/audit.mjs")
            .arg(url)
            .current_dir(dir)
            .output()
            .expect("node runs (Node.js 18 or later is needed for the audit)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("audit: "))
        .unwrap_or_else(|| panic!("no audit summary\n{stdout}\n{stderr}"));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(summary.contains(" 0 warn, 0 error"), "{summary}\n{stdout}");
    let ok: usize = summary
        .trim_start_matches("audit: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(ok >= 61, "{summary}");
}
