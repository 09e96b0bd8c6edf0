//! Two `agora` processes on one PostgreSQL database: exactly one watches each
//! chain, and when it is killed (SIGKILL, so nothing is cleaned up politely)
//! the other takes over within a bound. The processes are this test binary
//! run again as `agora serve` (the ignored `child` test below), configured the
//! way an operator would: through `AGORA__*` variables only.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_api::chains::{DEVNET_RPC_PASSWORD, DEVNET_RPC_USER, ELECTION_RETRY};
use agora_api::config::{Overrides, Settings};
use agora_api::startup::Application;
use agora_tests::{Backend, TestApp};

const CHILD_FLAG: &str = "AGORA_TEST_WATCHER_CHILD";

/// The entry point of a child process: serves with the configuration from the
/// environment until it is killed. Run only by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of two_processes_elect_one_watcher_per_chain_and_the_survivor_takes_over"]
async fn child() {
    if std::env::var_os(CHILD_FLAG).is_none() {
        return;
    }
    let settings = Settings::load(None, &Overrides::default()).expect("configuration");
    let app = Application::build(settings).await.expect("the application builds");
    println!("AGORA_CHILD_PORT={}", app.port());
    app.run_until_stopped().await.expect("serves");
}

/// A child process, killed when dropped.
struct Process {
    child: Child,
    metrics_url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(app: &TestApp, name: &str) -> Process {
    let chains = app.chains();
    // Both share one data directory, so they hold the same development keys,
    // as replicas share their mounted secrets.
    let data_dir = app.data_dir.join("replicas");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["watcher_election::child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CHILD_FLAG, "1")
        .env("AGORA__MODE", "development")
        .env("AGORA__DATA_DIR", &data_dir)
        .env("AGORA__SERVER__BIND", "127.0.0.1:0")
        .env("AGORA__SERVER__WORKERS", "1")
        .env("AGORA__DATABASE__URL", app.database_url())
        .env("AGORA__DATABASE__MAX_CONNECTIONS", "4")
        .env("AGORA__DEVNET__ENABLED", "false")
        .env("AGORA__WATCHERS__ENABLED", "true")
        .env("AGORA__WATCHERS__POLL_INTERVAL_MS", "100")
        .env("AGORA__WATCHERS__BITCOIN_RPC_URL", &chains.bitcoin_rpc_url)
        .env("AGORA__WATCHERS__BITCOIN_RPC_USER", DEVNET_RPC_USER)
        .env("AGORA__WATCHERS__BITCOIN_RPC_PASSWORD", DEVNET_RPC_PASSWORD)
        .env("AGORA__WATCHERS__XRPL_WS_URL", &chains.xrpl_ws_url)
        .env("AGORA__WATCHERS__XRPL_RPC_URL", &chains.xrpl_rpc_url)
        .env("AGORA__NOTIFICATIONS__DISPATCHER_INTERVAL_MS", "0")
        .env("AGORA__ORDERS__SCHEDULER_INTERVAL_SECS", "86400")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary runs again as a child");
    // libtest prints its own text on the same line; read on until the port,
    // then keep draining so the child never writes into a closed pipe.
    let stdout = child.stdout.take().unwrap();
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
        .unwrap_or_else(|_| panic!("{name} did not start"));
    Process {
        child,
        metrics_url: format!("http://127.0.0.1:{port}/metrics"),
    }
}

/// The chain tip a process's watcher last saw, per chain (absent: not watching).
async fn tips(client: &reqwest::Client, p: &Process) -> (Option<u64>, Option<u64>) {
    let text = client.get(&p.metrics_url).send().await.unwrap().text().await.unwrap();
    let tip = |chain: &str| {
        let prefix = format!("agora_watcher_tip_height{{chain=\"{chain}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
    };
    (tip("bitcoin"), tip("xrpl"))
}

/// Waits (bounded) until `done` holds for the pair of processes' tips.
async fn wait_until<F>(what: &str, bound: Duration, mut probe: impl FnMut() -> F)
where
    F: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !probe().await {
        assert!(start.elapsed() < bound, "{what} did not happen within {bound:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_elect_one_watcher_per_chain_and_the_survivor_takes_over() {
    // The chains and the database; this process itself does not watch.
    let host = TestApp::spawn_with_chains(Backend::Postgres).await;
    let chains = host.chains().clone();
    chains.bitcoin.mine(3);
    chains.xrpl.close_ledger();
    let client = reqwest::Client::new();

    let first = start(&host, "first");
    wait_until("the first process watching both chains", Duration::from_secs(30), || async {
        matches!(tips(&client, &first).await, (Some(b), Some(x)) if b > 0 && x > 0)
    })
    .await;
    let second = start(&host, "second");
    // The second has stood by for several election rounds: it never watches.
    chains.bitcoin.mine(2);
    let bitcoin_height = chains.bitcoin.tip().height;
    wait_until("the first process following new blocks", Duration::from_secs(30), || async {
        tips(&client, &first).await.0 >= Some(bitcoin_height)
    })
    .await;
    tokio::time::sleep(ELECTION_RETRY * 2).await;
    assert_eq!(tips(&client, &second).await, (None, None), "exactly one watcher per chain");
    assert!(matches!(tips(&client, &first).await, (Some(_), Some(_))));

    // Kill the watcher; the survivor takes both chains over within a bound:
    // the lock is free once PostgreSQL sees the session's socket close, and
    // a standby retries every ELECTION_RETRY.
    drop(first);
    let killed_at = Instant::now();
    let ledger = chains.xrpl.close_ledger().index;
    let height = chains.bitcoin.tip().height;
    let bound = ELECTION_RETRY * 3 + Duration::from_secs(10);
    wait_until("the second process taking over both chains", bound, || async {
        let (b, x) = tips(&client, &second).await;
        b >= Some(height) && x >= Some(u64::from(ledger))
    })
    .await;
    assert!(killed_at.elapsed() < bound);
}
