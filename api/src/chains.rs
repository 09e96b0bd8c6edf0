//! Starting the chains' side of the application: the in-process devnets (in
//! development) and the leader-elected watchers, each reading its chain
//! through the configured source.

use std::sync::Arc;
use std::time::Duration;

use agora_escrow::source::bitcoin_rpc::BitcoinCoreRpc;
use agora_escrow::source::esplora::Esplora;
use agora_escrow::source::rippled::RippledSource;
use anyhow::Context as _;

use crate::config::{Mode, Settings};
use crate::devnet::bitcoin::{BitcoinDevnet, BitcoinDevnetServers};
use crate::devnet::xrpl::{XrplDevnet, XrplDevnetServers};
use crate::graphql::context::AppState;
use crate::watcher::bitcoin::BitcoinWatcher;
use crate::watcher::lock::WatcherLock;
use crate::watcher::xrpl::XrplWatcher;

/// Running devnets; dropping this stops their servers.
pub struct Devnets {
    pub bitcoin: BitcoinDevnet,
    pub bitcoin_servers: BitcoinDevnetServers,
    pub xrpl: XrplDevnet,
    pub xrpl_servers: XrplDevnetServers,
}

/// Development-only RPC credentials of the devnet's Bitcoin node.
pub const DEVNET_RPC_USER: &str = "agora";
pub const DEVNET_RPC_PASSWORD: &str = "devnet";

/// Starts both devnets on the configured addresses and funds the marketplace's
/// XRPL operating account from the faucet.
pub async fn start_devnets(settings: &Settings, operating_address: &str) -> anyhow::Result<Devnets> {
    if settings.mode == Mode::Production {
        anyhow::bail!("the devnets are for development; turn devnet.enabled off in production");
    }
    let d = &settings.devnet;
    let bitcoin = BitcoinDevnet::new();
    let bitcoin_servers = bitcoin
        .serve(
            &d.bitcoin_rpc_bind,
            &d.bitcoin_esplora_bind,
            Some((DEVNET_RPC_USER.to_owned(), DEVNET_RPC_PASSWORD.to_owned())),
        )
        .await
        .context("cannot start the Bitcoin devnet")?;
    let xrpl = XrplDevnet::new();
    let xrpl_servers = xrpl
        .serve(&d.xrpl_ws_bind, &d.xrpl_rpc_bind)
        .await
        .context("cannot start the XRPL devnet")?;
    xrpl.faucet(operating_address, 10_000_000_000)
        .map_err(|e| anyhow::anyhow!("cannot fund the operating account: {e:?}"))?;
    xrpl.close_ledger();
    if d.block_interval_secs > 0 {
        bitcoin.start_auto_mining(Duration::from_secs(d.block_interval_secs));
    }
    if d.ledger_interval_secs > 0 {
        xrpl.start_auto_close(Duration::from_secs(d.ledger_interval_secs));
    }
    tracing::info!(
        bitcoin.rpc = %bitcoin_servers.rpc_url,
        bitcoin.esplora = %bitcoin_servers.esplora_url,
        xrpl.ws = %xrpl_servers.ws_url,
        xrpl.rpc = %xrpl_servers.rpc_url,
        "devnets running"
    );
    Ok(Devnets {
        bitcoin,
        bitcoin_servers,
        xrpl,
        xrpl_servers,
    })
}

/// How often a standby process tries to take over a chain nobody watches.
/// A killed watcher's PostgreSQL session ends with its connection, which
/// frees the lock, so a standby takes over within about this long.
pub const ELECTION_RETRY: Duration = Duration::from_secs(3);

/// Where the Bitcoin watcher reads the chain.
#[derive(Clone)]
enum BitcoinEndpoint {
    Esplora(String),
    Rpc(String, Option<(String, String)>),
}

/// Runs for the watchers' election, one candidate per chain: a process that
/// wins watches the chain until it loses the lock; one that loses stands by
/// and tries again every [`ELECTION_RETRY`], so it takes over when the
/// watcher's process dies.
pub async fn start_watchers(app: Arc<AppState>, settings: &Settings, devnets: Option<&Devnets>) -> anyhow::Result<()> {
    let w = &settings.watchers;
    if !w.enabled {
        return Ok(());
    }
    let poll = Duration::from_millis(w.poll_interval_ms.max(50));
    let bitcoin = match w.bitcoin_source.as_str() {
        "esplora" => BitcoinEndpoint::Esplora(
            w.esplora_url
                .clone()
                .or_else(|| devnets.map(|d| d.bitcoin_servers.esplora_url.clone()))
                .context("set watchers.esplora_url")?,
        ),
        _ => match (&w.bitcoin_rpc_url, devnets) {
            (Some(url), _) => BitcoinEndpoint::Rpc(
                url.clone(),
                w.bitcoin_rpc_user
                    .clone()
                    .zip(w.bitcoin_rpc_password.as_ref().map(|p| p.expose().to_owned())),
            ),
            (None, Some(d)) => BitcoinEndpoint::Rpc(
                d.bitcoin_servers.rpc_url.clone(),
                Some((DEVNET_RPC_USER.to_owned(), DEVNET_RPC_PASSWORD.to_owned())),
            ),
            (None, None) => anyhow::bail!("set watchers.bitcoin_rpc_url"),
        },
    };
    let ws = w
        .xrpl_ws_url
        .clone()
        .or_else(|| devnets.map(|d| d.xrpl_servers.ws_url.clone()))
        .context("set watchers.xrpl_ws_url")?;
    let rpc = w
        .xrpl_rpc_url
        .clone()
        .or_else(|| devnets.map(|d| d.xrpl_servers.rpc_url.clone()))
        .context("set watchers.xrpl_rpc_url")?;
    let data_dir = settings.data_dir.clone();
    tokio::spawn(campaign(app.clone(), data_dir.clone(), "bitcoin", move |app, lock| {
        let endpoint = bitcoin.clone();
        async move {
            match endpoint {
                BitcoinEndpoint::Esplora(url) => BitcoinWatcher::new(app, Esplora::new(&url)).run(lock, poll).await,
                BitcoinEndpoint::Rpc(url, auth) => {
                    BitcoinWatcher::new(app, BitcoinCoreRpc::new(&url, auth)).run(lock, poll).await
                }
            }
            Ok(())
        }
    }));
    tokio::spawn(campaign(app, data_dir, "xrpl", move |app, lock| {
        let (ws, rpc) = (ws.clone(), rpc.clone());
        async move {
            let source = RippledSource::connect(&ws, &rpc).await?;
            XrplWatcher::new(app, source).run(lock, poll).await;
            Ok(())
        }
    }));
    Ok(())
}

/// One chain's candidate: wins and watches, or stands by and retries.
async fn campaign<F, Fut>(app: Arc<AppState>, data_dir: std::path::PathBuf, chain: &'static str, watch: F)
where
    F: Fn(Arc<AppState>, WatcherLock) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut standing_by = false;
    loop {
        match WatcherLock::try_acquire(&app.db, &data_dir, chain).await {
            Ok(Some(lock)) => {
                tracing::info!(chain, "this process watches the chain");
                standing_by = false;
                if let Err(e) = watch(app.clone(), lock).await {
                    tracing::warn!(chain, error.cause = %e, "the watcher stopped; running for the election again");
                }
            }
            Ok(None) if !standing_by => {
                tracing::info!(chain, "another process watches the chain; standing by");
                standing_by = true;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(chain, error.cause = %e, "cannot run for the watcher election"),
        }
        tokio::time::sleep(ELECTION_RETRY).await;
    }
}
