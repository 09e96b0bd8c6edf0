#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed set-up should stop the test loudly

//! Process-level faults, with real processes and signals rather than hooks:
//! the database server stopped and started again under load, and the `agora`
//! process killed with SIGKILL at moments drawn from a fixed seed while orders
//! are funded, paid out and mailed.
//!
//! PostgreSQL only (SQLite is a single process by design): the restart is of a
//! private cluster (`initdb` into a temp directory, its own port and socket
//! directory), so stopping it disturbs no other test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_api::chains::{DEVNET_RPC_PASSWORD, DEVNET_RPC_USER};
use agora_api::config::{Overrides, Secret, Settings};
use agora_api::graphql::errors::UNAVAILABLE_RETRY_AFTER_SECS;
use agora_api::notifications::message_id;
use agora_api::startup::Application;
use agora_migrations::{Migrator, MigratorTrait};
use agora_persistence::notifications as store;
use agora_tests::{Backend, GqlResponse, TestApp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::chains_btc::escrow_address;
use crate::orders_btc::{get_order, order_uuid, parties, place, Parties};

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
    // What operators alert on (docs/operations.md): the outage is counted
    // as SERVICE_UNAVAILABLE, and INTERNAL never moved.
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("agora_graphql_errors_total{code=\"SERVICE_UNAVAILABLE\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("agora_graphql_errors_total{code=\"INTERNAL\"}"),
        "{metrics}"
    );
    assert!(
        memory.iter().all(Outcome::ok),
        "in-memory answers never depended on the database"
    );
}

// ---------------------------------------------------------------------------
// kill -9 at moments drawn from a fixed seed
// ---------------------------------------------------------------------------

const CHILD_FLAG: &str = "AGORA_TEST_FAULTS_CHILD";
/// The kills' moments come from this seed, so a failure replays.
const KILL_SEED: u64 = 0x5EED_4B11;
const KILLS: usize = 10;
/// Orders start one every `STAGGER`, so their steps spread over the kills.
const ORDERS: usize = 8;
const STAGGER: Duration = Duration::from_millis(1_200);

/// The entry point of the killed process: serves with the configuration from
/// the environment until it is killed. Run only by the tests below, which
/// start this binary again with `--ignored` and the child flag set: ignored,
/// because on its own (without the flag) it has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of orders_funded_paid_out_and_mailed_survive_kill_9_at_random_moments"]
async fn child() {
    if std::env::var_os(CHILD_FLAG).is_none() {
        return;
    }
    let settings = Settings::load(None, &Overrides::default()).expect("configuration");
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    println!("AGORA_CHILD_PORT={}", app.port());
    app.run_until_stopped().await.expect("serves");
}

/// How to start `agora serve` as a child on the host's database, data
/// directory (the same development keys, JWT keys included, and the same mail
/// directory) and chains.
#[derive(Clone)]
struct ChildEnv {
    data_dir: PathBuf,
    database_url: String,
    bitcoin_rpc_url: String,
    xrpl_ws_url: String,
    xrpl_rpc_url: String,
}

impl ChildEnv {
    fn of(host: &TestApp) -> ChildEnv {
        let chains = host.chains();
        ChildEnv {
            data_dir: host.data_dir.clone(),
            database_url: host.database_url(),
            bitcoin_rpc_url: chains.bitcoin_rpc_url.clone(),
            xrpl_ws_url: chains.xrpl_ws_url.clone(),
            xrpl_rpc_url: chains.xrpl_rpc_url.clone(),
        }
    }

    /// Starts a child and waits (on a blocking thread) until it listens.
    async fn start_blocking(&self) -> (Child, String) {
        let env = self.clone();
        tokio::task::spawn_blocking(move || env.start())
            .await
            .expect("the child starts")
    }

    /// Starts a child and kills it `after`, typically while it is still
    /// starting: connecting, loading or generating keys, campaigning for
    /// the watchers.
    async fn start_and_kill_early(&self, after: Duration) {
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .spawn()
            .expect("the test binary runs again as a child");
        tokio::time::sleep(after).await;
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a child; returns it with its base URL once it listens.
    fn start(&self) -> (Child, String) {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .spawn()
            .expect("the test binary runs again as a child");
        // libtest prints its own text on the same line; read on until the
        // port, then keep draining so the child never writes into a closed pipe.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.split("AGORA_CHILD_PORT=").nth(1) {
                    let _ = tx.send(port.trim().to_owned());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the child listens");
        (child, format!("http://127.0.0.1:{port}"))
    }

    /// `agora serve`: the test binary running only the `child` test,
    /// configured through `AGORA__*` variables as an operator would.
    fn command(&self) -> Command {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([
                "faults::child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_FLAG, "1")
            .env("AGORA__MODE", "development")
            .env("AGORA__DATA_DIR", &self.data_dir)
            .env("AGORA__SERVER__BIND", "127.0.0.1:0")
            .env("AGORA__SERVER__WORKERS", "1")
            .env("AGORA__DATABASE__URL", &self.database_url)
            .env("AGORA__DATABASE__MAX_CONNECTIONS", "5")
            .env("AGORA__DEVNET__ENABLED", "false")
            .env("AGORA__WATCHERS__ENABLED", "true")
            .env("AGORA__WATCHERS__POLL_INTERVAL_MS", "100")
            .env("AGORA__WATCHERS__BITCOIN_RPC_URL", &self.bitcoin_rpc_url)
            .env("AGORA__WATCHERS__BITCOIN_RPC_USER", DEVNET_RPC_USER)
            .env("AGORA__WATCHERS__BITCOIN_RPC_PASSWORD", DEVNET_RPC_PASSWORD)
            .env("AGORA__WATCHERS__XRPL_WS_URL", &self.xrpl_ws_url)
            .env("AGORA__WATCHERS__XRPL_RPC_URL", &self.xrpl_rpc_url)
            // E-mail as files into <data_dir>/mail, often, with a short lease
            // so an e-mail claimed by a killed process is sent again soon.
            .env("AGORA__NOTIFICATIONS__DISPATCHER_INTERVAL_MS", "100")
            .env("AGORA__NOTIFICATIONS__SEND_TIMEOUT_SECS", "1")
            .env("AGORA__NOTIFICATIONS__CLAIM_LEASE_SECS", "2")
            .env("AGORA__ORDERS__SCHEDULER_INTERVAL_SECS", "86400")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
        command
    }
}

/// The current child, replaced by the killer; killed when dropped.
struct Victim {
    child: Mutex<Option<Child>>,
    address: Mutex<String>,
}

impl Victim {
    fn address(&self) -> String {
        self.address.lock().expect("address lock").clone()
    }

    fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("child lock").take() {
            // `Child::kill` is SIGKILL on Unix: nothing is flushed or closed politely.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn replace(&self, (child, address): (Child, String)) {
        *self.child.lock().expect("child lock") = Some(child);
        *self.address.lock().expect("address lock") = address;
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        self.kill();
    }
}

/// POSTs to the child; `None` when the connection failed (it is being killed
/// or restarting).
async fn child_gql(
    client: &reqwest::Client,
    victim: &Victim,
    query: &str,
    variables: Value,
    token: &str,
) -> Option<GqlResponse> {
    let resp = client
        .post(format!("{}/graphql", victim.address()))
        .header("accept", "application/graphql-response+json")
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().await.ok()?;
    Some(GqlResponse {
        status,
        content_type: String::new(),
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    })
}

/// Runs a mutation on the child until `done` holds for the order as the
/// (never killed) host reads it. A request lost to a kill is simply sent
/// again; one that was applied before the kill is recognised by `done`.
async fn on_child_until(
    host: &TestApp,
    victim: &Victim,
    order: &Value,
    token: &str,
    mutation: &str,
    variables: impl Fn(&Value) -> Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let current = get_order(host, order, token).await;
        if done(&current) {
            return current;
        }
        bound(
            &format!("{mutation} taking effect"),
            start,
            Duration::from_secs(60),
        );
        if let Some(r) = child_gql(&host.client, victim, mutation, variables(&current), token).await
        {
            let code = r.error_code().unwrap_or("");
            let reason = r.error()["extensions"]["reason"].as_str().unwrap_or("");
            // Refusals that mean "already done" (the killed process committed
            // it after all) are judged by `done` above; anything else means
            // the test (or the service) is wrong.
            assert!(
                r.body.get("errors").is_none()
                    || matches!(code, "SERVICE_UNAVAILABLE" | "CONFLICT")
                    || reason == "NO_NEW_SIGNATURES",
                "{mutation}: {}",
                r.body
            );
            assert_ne!(r.status, 500, "{mutation}: {}", r.body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_status(
    host: &TestApp,
    order: &Value,
    token: &str,
    status: &str,
    limit: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        let current = get_order(host, order, token).await;
        if current["status"] == status {
            return current;
        }
        bound(
            &format!(
                "{} reaching {status} (at {})",
                order["id"], current["status"]
            ),
            start,
            limit,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signed_by(order: &Value, who: &str) -> bool {
    order["payout"]["signedBy"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x == who))
}

/// One placed order to SETTLED, its API calls on the child.
async fn settle_one(
    host: &TestApp,
    victim: &Victim,
    p: &Parties,
    order: Value,
    after: Duration,
) -> Value {
    tokio::time::sleep(after).await;
    host.chains()
        .bitcoin
        .faucet(&escrow_address(&order), 50_000)
        .expect("faucet");
    // The miner task confirms it; the child's watcher sees it.
    wait_for_status(
        host,
        &order,
        &p.buyer.access_token,
        "FUNDED",
        Duration::from_secs(60),
    )
    .await;
    let action = |name: &str| {
        format!(
            "mutation($i: OrderActionInput!) {{ {name}(input: $i) {{ order {{ id status }} }} }}"
        )
    };
    let by_id = |o: &Value| json!({ "i": { "orderId": o["id"] } });
    on_child_until(
        host,
        victim,
        &order,
        &p.provider.access_token,
        &action("markDelivered"),
        by_id,
        |o| o["status"] != "FUNDED",
    )
    .await;
    let releasing = on_child_until(
        host,
        victim,
        &order,
        &p.buyer.access_token,
        &action("releaseFunds"),
        by_id,
        |o| o["status"] != "DELIVERED" && o["payout"]["psbt"].is_string(),
    )
    .await;
    let psbt = releasing["payout"]["psbt"]
        .as_str()
        .expect("a payout to sign")
        .to_owned();
    let escrow = releasing["bitcoinEscrow"].clone();
    let submit = "mutation($i: SubmitPayoutSignatureInput!) { submitPayoutSignature(input: $i) { payout { complete signedBy } } }";
    for (wallet, session, role) in [
        (&p.buyer_wallet, &p.buyer, "BUYER"),
        (&p.provider_wallet, &p.provider, "PROVIDER"),
    ] {
        let signed = wallet.sign(&escrow, &psbt);
        on_child_until(
            host,
            victim,
            &order,
            &session.access_token,
            submit,
            |o| json!({ "i": { "orderId": o["id"], "psbt": signed } }),
            |o| signed_by(o, role) || o["status"] == "SETTLED",
        )
        .await;
    }
    let settled = wait_for_status(
        host,
        &order,
        &p.buyer.access_token,
        "SETTLED",
        Duration::from_secs(90),
    )
    .await;
    println!("settled {}", order["id"]);
    settled
}

/// Every e-mail file in `dir`: (Message-ID, the message without its `Date:`
/// header, which differs between two sends of the same e-mail).
fn mail_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("an e-mail file");
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap_or_else(|| panic!("an e-mail without a Message-ID: {text}"))
            .trim()
            .to_owned();
        let content: Vec<&str> = text.lines().filter(|l| !l.starts_with("Date: ")).collect();
        out.push((id, content.join("\n")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_funded_paid_out_and_mailed_survive_kill_9_at_random_moments() {
    // The chains and the database; this process neither watches nor mails.
    let host = TestApp::spawn_with_chains(Backend::Postgres).await;
    let chains = host.chains().clone();
    chains.bitcoin.mine(1);
    let p = parties(&host, json!({ "deliveryWindowHours": 1 })).await;
    let env = ChildEnv::of(&host);
    let victim = Arc::new(Victim {
        child: Mutex::new(None),
        address: Mutex::new(String::new()),
    });
    // Placed one after another (concurrent placements race for a key index
    // and are told to retry), then driven concurrently.
    let mut placed = Vec::new();
    for _ in 0..ORDERS {
        placed.push(place(&host, &p).await);
    }
    victim.replace(env.start_blocking().await);

    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // A block every 300 ms: fundings and payouts confirm while kills go on.
    let miner = {
        let (chains, stop) = (chains.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                chains.bitcoin.mine(1);
            }
        })
    };
    // `FAULTS_SEED` replays or explores another schedule; the default is fixed.
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILL_SEED);
    let kills_n: usize = std::env::var("FAULTS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS);
    let mut rng = StdRng::seed_from_u64(seed);
    // Per kill: how long the serving child lives, and (one time in three)
    // how soon a replacement is killed again while it is still starting.
    let schedule: Vec<(u64, Option<u64>)> = (0..kills_n)
        .map(|_| {
            let serving = rng.gen_range(100..1_200);
            let early = rng.gen_bool(1.0 / 3.0).then(|| rng.gen_range(0..400));
            (serving, early)
        })
        .collect();
    let kills = async {
        for (serving, early) in &schedule {
            tokio::time::sleep(Duration::from_millis(*serving)).await;
            victim.kill();
            println!("killed at {:?}", began.elapsed());
            if let Some(early) = early {
                env.start_and_kill_early(Duration::from_millis(*early))
                    .await;
                println!("killed while starting after {early} ms");
            }
            victim.replace(env.start_blocking().await);
        }
    };
    let orders = futures_util::future::join_all(
        placed
            .into_iter()
            .enumerate()
            .map(|(i, o)| settle_one(&host, &victim, &p, o, STAGGER * i as u32)),
    );
    let (settled, ()) = tokio::join!(orders, kills);
    stop.store(true, Ordering::Relaxed);
    miner.await.expect("the miner ran");
    // No order is stuck: each reached SETTLED (settle_one waits for it, bounded).
    assert_eq!(
        settled.iter().filter(|o| o["status"] == "SETTLED").count(),
        ORDERS
    );
    // ... by a payout the chain holds.
    for o in &settled {
        let txid = o["settlement"]["txid"]
            .as_str()
            .unwrap_or_else(|| panic!("a settlement txid: {o}"));
        let txid = bitcoin::Txid::from_str(txid).expect("a txid");
        assert!(
            chains.bitcoin.transaction(&txid).is_some(),
            "the payout is on the chain"
        );
    }

    // Every chain-driven change was applied exactly once per order.
    let db = agora_persistence::db::connect(&host.database_url(), 1)
        .await
        .expect("connect");
    let ids: Vec<uuid::Uuid> = settled.iter().map(order_uuid).collect();
    let events = agora_persistence::orders::order_events_of_many(&db, &ids)
        .await
        .expect("order events");
    for id in &ids {
        let mine: Vec<_> = events.iter().filter(|e| e.order_id == *id).collect();
        let transitions = |to: &str| {
            mine.iter()
                .filter(|e| e.to_status == to && e.from_status != to)
                .count()
        };
        let by_chain = |name: &str| {
            mine.iter()
                .filter(|e| e.actor == "chain" && e.event == name)
                .count()
        };
        let history: Vec<String> = mine
            .iter()
            .map(|e| {
                format!(
                    "{} {}→{} by {}",
                    e.event, e.from_status, e.to_status, e.actor
                )
            })
            .collect();
        assert_eq!(transitions("Funded"), 1, "funded once: {history:#?}");
        assert_eq!(transitions("Settled"), 1, "settled once: {history:#?}");
        // At most once: a process killed after the node accepted the payout
        // but before recording it leaves the record to the next one, which
        // may first see the payout mined (then only the confirmation shows).
        assert!(
            by_chain("PayoutBroadcast") <= 1,
            "the broadcast recorded once: {history:#?}"
        );
        assert_eq!(
            by_chain("PayoutRejected"),
            0,
            "a re-sent payout is not a rejection: {history:#?}"
        );
        assert_eq!(
            by_chain("PayoutConfirmed"),
            1,
            "the confirmation applied once: {history:#?}"
        );
    }

    // Every e-mail is delivered: none left pending once the last process has
    // had time to send (bounded), none lost, none sent twice under a new
    // Message-ID, and one Message-ID never names two different messages.
    let users: Vec<uuid::Uuid> = [&p.buyer, &p.provider]
        .iter()
        .map(|s| {
            agora_api::graphql::node::decode(&s.user_id)
                .expect("a user id")
                .1
        })
        .collect();
    let start = Instant::now();
    let notifications = loop {
        let mut all = Vec::new();
        for user in &users {
            all.extend(
                store::notifications_of(&db, *user, None, 1_000)
                    .await
                    .expect("notifications"),
            );
        }
        if all
            .iter()
            .all(|n| n.email_state != store::EmailState::Pending)
        {
            break all;
        }
        bound("every e-mail sent", start, Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every order took the same path, so each was told the same things: a
    // notice lost with a killed transaction would leave one order short.
    let mut kinds_per_order: HashMap<uuid::Uuid, Vec<String>> = HashMap::new();
    for n in &notifications {
        let order = n.order_id.expect("order notifications");
        let party = if n.user_id == users[0] {
            "buyer"
        } else {
            "provider"
        };
        kinds_per_order
            .entry(order)
            .or_default()
            .push(format!("{party}:{}", n.kind));
    }
    let mut shapes: Vec<Vec<String>> = kinds_per_order
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    assert_eq!(shapes.len(), ORDERS, "every order notified its parties");
    shapes.dedup();
    assert_eq!(
        shapes.len(),
        1,
        "every order got the same notices: {shapes:#?}"
    );
    assert!(
        shapes[0].len() >= 2,
        "both parties were notified: {shapes:?}"
    );
    let expected: HashMap<String, uuid::Uuid> = notifications
        .iter()
        .filter(|n| n.email_state == store::EmailState::Sent)
        .map(|n| {
            (
                n.message_id.clone().unwrap_or_else(|| message_id(n.id)),
                n.id,
            )
        })
        .collect();
    let failed: Vec<_> = notifications
        .iter()
        .filter(|n| n.email_state == store::EmailState::Failed)
        .collect();
    assert!(failed.is_empty(), "no e-mail given up: {failed:#?}");
    let files = mail_files(&host.data_dir.join("mail"));
    let mut by_id: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, content) in &files {
        by_id.entry(id.as_str()).or_default().push(content.as_str());
    }
    let unknown: Vec<&&str> = by_id
        .keys()
        .filter(|id| !expected.contains_key(**id))
        .collect();
    assert!(
        unknown.is_empty(),
        "e-mails under a Message-ID no notification has: {unknown:?}"
    );
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !by_id.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "notifications marked sent without an e-mail: {missing:?}"
    );
    for (id, copies) in &by_id {
        assert!(
            copies.windows(2).all(|w| w[0] == w[1]),
            "{id} names different messages: {copies:#?}"
        );
    }
    let resent = files.len() - by_id.len();
    println!(
        "{} e-mails, {resent} sent again after a kill under the same Message-ID",
        by_id.len()
    );
}

/// XRP orders placed at once whose accounts the child sets up, and which are
/// funded, released, signed and settled on the local XRP Ledger while the
/// child is killed at seeded moments: every order settles, each chain-driven
/// change is applied once, and the provider is paid exactly its shares (no
/// Payment applied twice, none lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xrp_orders_set_up_and_paid_out_survive_kill_9_at_random_moments() {
    use agora_tests::xrpl::{BUYER_ADDRESS, BUYER_SEED, PROVIDER_ADDRESS, PROVIDER_SEED};
    const XRP_ORDERS: usize = 3;
    const XRP_KILLS: usize = 6;
    if !agora_tests::xrpl::available() {
        return;
    }
    let host = TestApp::spawn_with_chains(Backend::Postgres).await;
    let chains = host.chains().clone();
    chains.xrpl.faucet(BUYER_ADDRESS, 200_000_000).expect("faucet");
    chains.xrpl.faucet(PROVIDER_ADDRESS, 20_000_000).expect("faucet");
    chains.xrpl.close_ledger();
    let p = crate::orders_xrpl::parties(&host).await;
    let env = ChildEnv::of(&host);
    let victim = Arc::new(Victim {
        child: Mutex::new(None),
        address: Mutex::new(String::new()),
    });
    let mut placed = Vec::new();
    for _ in 0..XRP_ORDERS {
        placed.push(crate::orders_xrpl::place(&host, &p).await);
    }
    let provider_before = chains.xrpl.account(PROVIDER_ADDRESS).expect("provider").balance_drops;
    victim.replace(env.start_blocking().await);
    let stop = Arc::new(AtomicBool::new(false));
    let closer = {
        let (chains, stop) = (chains.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                chains.xrpl.close_ledger();
            }
        })
    };
    let mut rng = StdRng::seed_from_u64(KILL_SEED ^ 0x0058_5250);
    let schedule: Vec<u64> = (0..XRP_KILLS).map(|_| rng.gen_range(200..1_500)).collect();
    let kills = async {
        for serving in &schedule {
            tokio::time::sleep(Duration::from_millis(*serving)).await;
            victim.kill();
            victim.replace(env.start_blocking().await);
        }
    };
    // The buyer's account sends one deposit at a time (one Sequence each).
    let deposits = tokio::sync::Mutex::new(());
    let settle = |order: Value, after: Duration| {
        let (host, victim, p, deposits) = (&host, &victim, &p, &deposits);
        async move {
            tokio::time::sleep(after).await;
            let token = &p.buyer.access_token;
            let start = Instant::now();
            let escrow = loop {
                let v = crate::orders_xrpl::view(host, &order, token).await;
                if v["xrplEscrow"]["setupStatus"] == "READY" {
                    break v["xrplEscrow"]["account"].as_str().expect("account").to_owned();
                }
                bound("the escrow account locked", start, Duration::from_secs(90));
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            {
                let _one = deposits.lock().await;
                crate::chains_xrpl::pay_deposit(host, &escrow, 25_000_000).await;
                // Its Sequence is consumed once the next ledger closes.
                let seq = host.chains().xrpl.account(BUYER_ADDRESS).expect("buyer").sequence;
                while host.chains().xrpl.account(BUYER_ADDRESS).expect("buyer").sequence == seq {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            wait_for_status(host, &order, token, "FUNDED", Duration::from_secs(90)).await;
            let action = |name: &str| format!("mutation($i: OrderActionInput!) {{ {name}(input: $i) {{ order {{ id status }} }} }}");
            let by_id = |o: &Value| json!({ "i": { "orderId": o["id"] } });
            on_child_until(host, victim, &order, &p.provider.access_token, &action("markDelivered"), by_id, |o| o["status"] != "FUNDED").await;
            on_child_until(host, victim, &order, token, &action("releaseFunds"), by_id, |o| o["status"] != "DELIVERED").await;
            let releasing = crate::orders_xrpl::view(host, &order, token).await;
            let share: u64 = releasing["payout"]["breakdown"]["provider"].as_str().expect("share").parse().expect("drops");
            let submit = "mutation($i: SubmitPayoutSignatureInput!) { submitPayoutSignature(input: $i) { payout { complete signedBy } } }";
            for (seed, session, role) in [(BUYER_SEED, &p.buyer, "BUYER"), (PROVIDER_SEED, &p.provider, "PROVIDER")] {
                let blobs = crate::orders_xrpl::sign_all(&releasing, seed);
                on_child_until(
                    host,
                    victim,
                    &order,
                    &session.access_token,
                    submit,
                    |o| json!({ "i": { "orderId": o["id"], "signedTransactions": blobs } }),
                    |o| signed_by(o, role) || o["status"] == "SETTLED",
                )
                .await;
            }
            let settled = wait_for_status(host, &order, token, "SETTLED", Duration::from_secs(90)).await;
            (settled, share)
        }
    };
    let orders = futures_util::future::join_all(
        placed.into_iter().enumerate().map(|(i, o)| settle(o, STAGGER * i as u32)),
    );
    let (settled, ()) = tokio::join!(orders, kills);
    stop.store(true, Ordering::Relaxed);
    closer.await.expect("the ledger closer ran");

    let db = agora_persistence::db::connect(&host.database_url(), 1).await.expect("connect");
    let ids: Vec<uuid::Uuid> = settled.iter().map(|(o, _)| order_uuid(o)).collect();
    let events = agora_persistence::orders::order_events_of_many(&db, &ids).await.expect("order events");
    for id in &ids {
        let mine: Vec<_> = events.iter().filter(|e| e.order_id == *id).collect();
        let history: Vec<String> = mine.iter().map(|e| format!("{} {}→{} by {}", e.event, e.from_status, e.to_status, e.actor)).collect();
        let transitions = |to: &str| mine.iter().filter(|e| e.to_status == to && e.from_status != to).count();
        let named = |name: &str| mine.iter().filter(|e| e.event == name).count();
        assert_eq!(transitions("Funded"), 1, "funded once: {history:#?}");
        assert_eq!(transitions("Settled"), 1, "settled once: {history:#?}");
        assert_eq!(named("EscrowAccountCreated"), 1, "the reserve arrived once: {history:#?}");
        assert_eq!(named("EscrowAccountReady"), 1, "the lock recorded once: {history:#?}");
        assert_eq!(named("PayoutConfirmed"), 1, "the payout confirmed once: {history:#?}");
        assert_eq!(named("UnexpectedSpend"), 0, "nothing left the escrow but its payout: {history:#?}");
    }
    let provider_after = chains.xrpl.account(PROVIDER_ADDRESS).expect("provider").balance_drops;
    let shares: u64 = settled.iter().map(|(_, s)| s).sum();
    assert_eq!(provider_after - provider_before, shares, "the provider is paid each share exactly once");
}
