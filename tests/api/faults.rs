#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed set-up should stop the test loudly

//! Process-level faults, with real processes and signals rather than hooks:
//! the database server stopped and started again under load.
//!
//! PostgreSQL only (SQLite is a single process by design): the restart is of a
//! private cluster (`initdb` into a temp directory, its own port and socket
//! directory), so stopping it disturbs no other test.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_api::config::Secret;
use agora_api::graphql::errors::UNAVAILABLE_RETRY_AFTER_SECS;
use agora_migrations::{Migrator, MigratorTrait};
use agora_tests::{Backend, GqlResponse, TestApp};
use serde_json::{json, Value};

/// A read that needs the database (`categories` is answered from memory).
const LISTINGS: &str = "{ listings(first: 5) { edges { node { id title } } } }";

/// The directory holding `initdb` and `pg_ctl`: `PG_BIN` when set, else the
/// newest `/usr/lib/postgresql/*/bin` (Debian's layout), else `pg_config --bindir`.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL's server binaries (initdb, pg_ctl) are installed; set PG_BIN to their directory");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// PostgreSQL refuses to run as root: when the tests do, the server's
/// commands run as the `postgres` OS user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

/// A PostgreSQL cluster of its own, stopped (immediately) when dropped.
struct PrivateCluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateCluster {
    fn start() -> PrivateCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        if running_as_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(
                status.success(),
                "chown the cluster's directory to postgres"
            );
        }
        let cluster = PrivateCluster {
            bin: pg_bin(),
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            port: free_port(),
            dir,
        };
        let data = cluster.data.display().to_string();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.pg_ctl_start();
        cluster
    }

    /// Runs one of the server's programs, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .expect("the PostgreSQL program runs");
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (
            self.data.display().to_string(),
            self.log.display().to_string(),
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        );
    }

    /// Stops the server the way an operator's restart does: sessions are
    /// terminated (57P01), new connections refused, then the port closes.
    fn stop_fast(&self) {
        let data = self.data.display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"],
        );
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A database migrated the way the test harness migrates its template.
    async fn migrated_database(&self, name: &str) -> String {
        let admin = sea_orm::Database::connect(self.url("postgres"))
            .await
            .expect("connect the private cluster");
        sea_orm::ConnectionTrait::execute_unprepared(
            &admin,
            &format!("CREATE DATABASE \"{name}\""),
        )
        .await
        .expect("create database");
        let _ = admin.close().await;
        let db = sea_orm::Database::connect(self.url(name))
            .await
            .expect("connect the new database");
        Migrator::up(&db, None).await.expect("migrate");
        let _ = db.close().await;
        self.url(name)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn bound(what: &str, start: Instant, limit: Duration) {
    assert!(
        start.elapsed() < limit,
        "{what} did not happen within {limit:?}"
    );
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let resp = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("readyz answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// What a request under load got back.
#[derive(Debug, Clone)]
struct Outcome {
    status: u16,
    body: Value,
}

impl Outcome {
    fn from(r: &GqlResponse) -> Outcome {
        Outcome {
            status: r.status,
            body: r.body.clone(),
        }
    }

    fn ok(&self) -> bool {
        self.status == 200 && self.body.get("errors").is_none()
    }

    fn unavailable(&self) -> bool {
        let error = &self.body["errors"][0];
        self.status == 200
            && error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            && error["extensions"]["retryAfterSeconds"] == json!(UNAVAILABLE_RETRY_AFTER_SECS)
    }
}

/// Sends `query` anonymously over and over until `stop`, keeping every outcome.
fn load(
    app: &Arc<TestApp>,
    query: &'static str,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Outcome>> {
    let (app, stop) = (app.clone(), stop.clone());
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let r = app.gql(query, json!({}), None).await;
            seen.push(Outcome::from(&r));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_gives_service_unavailable_then_recovers_without_a_restart() {
    let cluster = PrivateCluster::start();
    let url = cluster.migrated_database("agora").await;
    let app = Arc::new(
        TestApp::spawn_with(Backend::Postgres, |s| {
            s.database.url = Some(Secret::new(url.clone()));
        })
        .await,
    );
    let (provider, _) = app.new_provider("faults-provider").await;
    app.new_listing(&provider.access_token, json!({})).await;
    let listed = app.gql(LISTINGS, json!({}), None).await.ok();
    assert_eq!(
        listed["listings"]["edges"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(readyz(&app).await.0, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let reads = load(&app, LISTINGS, &stop);
    let memory = load(&app, "{ categories }", &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;

    cluster.stop_fast();
    // While it is down: a clear, retryable error, never INTERNAL.
    let start = Instant::now();
    let down = loop {
        let r = app.gql(LISTINGS, json!({}), None).await;
        let outcome = Outcome::from(&r);
        if !outcome.ok() {
            break outcome;
        }
        bound(
            "a request failing after the stop",
            start,
            Duration::from_secs(30),
        );
    };
    assert!(down.unavailable(), "{down:?}");
    let error = &down.body["errors"][0];
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("unavailable")),
        "{error}"
    );
    assert_eq!(down.body["data"], Value::Null, "{down:?}");
    let (status, body) = readyz(&app).await;
    assert_eq!(
        (status, &body["database"]),
        (503, &json!("unreachable")),
        "{body}"
    );
    // The process itself is fine: what needs no database still answers.
    assert_eq!(
        app.gql("{ categories }", json!({}), None).await.ok()["categories"]
            .as_array()
            .map(Vec::is_empty),
        Some(false)
    );

    // Back up: the same process serves again, and says so, within a bound.
    cluster.pg_ctl_start();
    let start = Instant::now();
    loop {
        let r = app.gql(LISTINGS, json!({}), None).await;
        if Outcome::from(&r).ok() && readyz(&app).await.0 == 200 {
            break;
        }
        bound(
            "recovery after the database came back",
            start,
            Duration::from_secs(60),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = app.gql(LISTINGS, json!({}), None).await.ok();
    assert_eq!(
        listed["listings"]["edges"].as_array().map(Vec::len),
        Some(1),
        "the data survived: {listed}"
    );
    // Writes work again too (a transaction on a fresh pooled connection).
    app.new_listing(
        &provider.access_token,
        json!({ "title": "After the restart" }),
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    let reads = reads.await.expect("the read load ran");
    let memory = memory.await.expect("the in-memory load ran");
    // Under load every answer was either data or SERVICE_UNAVAILABLE.
    let wrong: Vec<&Outcome> = reads
        .iter()
        .chain(&memory)
        .filter(|o| !o.ok() && !o.unavailable())
        .collect();
    assert!(
        wrong.is_empty(),
        "answers that are neither data nor SERVICE_UNAVAILABLE: {wrong:#?}"
    );
    assert!(
        reads.iter().any(Outcome::unavailable),
        "the load saw the outage"
    );
    assert!(
        reads.last().is_some_and(Outcome::ok),
        "the load ended with a success: {:?}",
        reads.last()
    );
    assert!(
        memory.iter().all(Outcome::ok),
        "in-memory answers never depended on the database"
    );
}
