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

/// Starts a watcher per chain for which this process wins the election.
pub async fn start_watchers(app: Arc<AppState>, settings: &Settings, devnets: Option<&Devnets>) -> anyhow::Result<()> {
    let w = &settings.watchers;
    if !w.enabled {
        return Ok(());
    }
    let poll = Duration::from_millis(w.poll_interval_ms.max(50));
    if let Some(lock) = WatcherLock::try_acquire(&app.db, &settings.data_dir, "bitcoin").await? {
        match w.bitcoin_source.as_str() {
            "esplora" => {
                let url = w
                    .esplora_url
                    .clone()
                    .or_else(|| devnets.map(|d| d.bitcoin_servers.esplora_url.clone()))
                    .context("set watchers.esplora_url")?;
                let watcher = BitcoinWatcher::new(app.clone(), Esplora::new(&url));
                tokio::spawn(watcher.run(lock, poll));
            }
            _ => {
                let (url, auth) = match (&w.bitcoin_rpc_url, devnets) {
                    (Some(url), _) => (
                        url.clone(),
                        w.bitcoin_rpc_user
                            .clone()
                            .zip(w.bitcoin_rpc_password.as_ref().map(|p| p.expose().to_owned())),
                    ),
                    (None, Some(d)) => (
                        d.bitcoin_servers.rpc_url.clone(),
                        Some((DEVNET_RPC_USER.to_owned(), DEVNET_RPC_PASSWORD.to_owned())),
                    ),
                    (None, None) => anyhow::bail!("set watchers.bitcoin_rpc_url"),
                };
                let watcher = BitcoinWatcher::new(app.clone(), BitcoinCoreRpc::new(&url, auth));
                tokio::spawn(watcher.run(lock, poll));
            }
        }
        tracing::info!(chain = "bitcoin", "this process watches the chain");
    } else {
        tracing::info!(chain = "bitcoin", "another process watches the chain");
    }
    if let Some(lock) = WatcherLock::try_acquire(&app.db, &settings.data_dir, "xrpl").await? {
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
        let source = RippledSource::connect(&ws, &rpc).await?;
        tokio::spawn(XrplWatcher::new(app, source).run(lock, poll));
        tracing::info!(chain = "xrpl", "this process watches the ledger");
    } else {
        tracing::info!(chain = "xrpl", "another process watches the ledger");
    }
    Ok(())
}
