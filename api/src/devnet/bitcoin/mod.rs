//! The Bitcoin regtest devnet: an in-memory chain that accepts only what a
//! default Bitcoin Core node would (scripts run by `bitcoinconsensus`, coinbase
//! maturity, BIP68/nLockTime, standardness, dust, fees), mines on demand or on a
//! timer, reorgs when told, and serves the Bitcoin Core JSON-RPC and Esplora
//! HTTP subsets Agora's chain sources read.
//!
//! - `chain`: blocks, UTXO set, mempool, mining, reorgs, the faucet;
//! - `validate`: the consensus and policy checks, with Core's reject reasons;
//! - `rpc` and `esplora`: the two HTTP front ends (actix-web).
//!
//! Development only: the network is `regtest` and the faucet key is random.
//! Written in process rather than with the `bitcoind`/`electrsd` crates: those
//! download and run Core and electrs binaries, and `cargo run` must work offline
//! on a fresh machine.

mod chain;
mod esplora;
mod rpc;
#[cfg(test)]
mod tests;
mod validate;
mod wallet;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use agora_escrow::source::{BlockId, TxStatus};
use bitcoin::{Address, BlockHash, Network, Transaction, Txid};

use chain::{Chain, TxPlace};
pub use validate::{RejectCode, Rejection};

/// Largest request body the servers read: a standard transaction is at most
/// 400 kWU, 800 kB in hex.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why the devnet refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevnetError {
    /// The transaction breaks a rule a Core node enforces; `code` is Core's RPC code.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("the devnet wallet has {available} sats of spendable coins, {needed} needed")]
    InsufficientFunds { available: u64, needed: u64 },
    #[error("{0} is not a regtest address")]
    WrongNetwork(String),
    #[error("{sats} sats is below the dust limit of the address ({limit} sats)")]
    Dust { sats: u64, limit: u64 },
    #[error("a reorg replaces at least one block")]
    EmptyReorg,
    #[error("cannot replace {requested} blocks of a chain {height} blocks above genesis")]
    ReorgTooDeep { requested: u32, height: u32 },
    #[error("{txid} is neither in the last {blocks} blocks nor in the mempool, so the reorg cannot drop it")]
    NotReorgable { txid: Txid, blocks: u32 },
    #[error("the devnet wallet could not sign: {0}")]
    Wallet(String),
}

struct Shared {
    chain: Mutex<Chain>,
    /// Bumped by every start or stop of auto-mining; a miner thread runs while it
    /// still sees the value it started with.
    auto_mining: AtomicU64,
}

impl Shared {
    fn chain(&self) -> MutexGuard<'_, Chain> {
        // Chain methods do not panic, so a poisoned lock holds a consistent chain.
        self.chain.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A handle on one devnet chain; clones share it.
#[derive(Clone)]
pub struct BitcoinDevnet {
    shared: Arc<Shared>,
}

impl Default for BitcoinDevnet {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for BitcoinDevnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinDevnet")
            .field("tip", &self.tip())
            .finish()
    }
}

impl BitcoinDevnet {
    /// Regtest genesis plus 101 blocks paying a fresh devnet wallet, so the
    /// faucet starts with mature coins.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                chain: Mutex::new(Chain::new(wallet::DevnetWallet::random())),
                auto_mining: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn chain(&self) -> MutexGuard<'_, Chain> {
        self.shared.chain()
    }

    /// Mines `n` blocks paying the devnet wallet; each takes the whole mempool
    /// (up to the block weight limit).
    pub fn mine(&self, n: u32) -> Vec<BlockHash> {
        self.chain().mine(n, None)
    }

    /// Mines `n` blocks whose coinbase pays `address` (`generatetoaddress`).
    pub fn mine_to(&self, address: &Address, n: u32) -> Result<Vec<BlockHash>, DevnetError> {
        check_network(address)?;
        Ok(self.chain().mine(n, Some(&address.script_pubkey())))
    }

    /// Pays `sats` to `address` from the devnet wallet; the payment waits in the
    /// mempool for the next block.
    pub fn faucet(&self, address: &Address, sats: u64) -> Result<Txid, DevnetError> {
        check_network(address)?;
        self.chain().faucet(&address.script_pubkey(), sats)
    }

    /// Adds `tx` to the mempool after the checks of Core's `sendrawtransaction`
    /// (default `maxfeerate` included). One already in the mempool is accepted again.
    pub fn submit(&self, tx: &Transaction) -> Result<Txid, DevnetError> {
        Ok(self
            .chain()
            .accept(tx, Some(validate::DEFAULT_MAX_FEE_RATE_SAT_PER_KVB))?)
    }

    /// Replaces the last `n` blocks with `n + 1` new ones, which take back the
    /// replaced blocks' transactions and the mempool except `drop` and whatever
    /// spends from it. Afterwards a dropped transaction is unknown to the devnet
    /// (`tx_status` answers `None`) until someone broadcasts it again.
    pub fn reorg(&self, n: u32, drop: &[Txid]) -> Result<Vec<BlockHash>, DevnetError> {
        self.chain().reorg(n, drop)
    }

    pub fn tip(&self) -> BlockId {
        let chain = self.chain();
        BlockId {
            height: u64::from(chain.height()),
            hash: chain.tip_hash(),
        }
    }

    /// A transaction of the active chain or the mempool.
    pub fn transaction(&self, txid: &Txid) -> Option<Transaction> {
        self.chain().find_tx(txid).map(|p| p.tx().clone())
    }

    /// Where `txid` is, as the chain sources report it.
    pub fn tx_status(&self, txid: &Txid) -> Option<TxStatus> {
        match self.chain().find_tx(txid)? {
            TxPlace::Mempool(_) => Some(TxStatus::Mempool),
            TxPlace::Block { block, .. } => Some(TxStatus::Confirmed {
                height: u64::from(block.height),
            }),
        }
    }

    /// The address the block rewards go to.
    pub fn wallet_address(&self) -> Address {
        self.chain().wallet().address()
    }

    /// The fee rate both servers estimate, whatever the target (default 2 sat/vB).
    pub fn set_fee_rate(&self, sat_per_vb: u64) {
        self.chain().set_fee_rate_sat_vb(sat_per_vb);
    }

    /// Mines one block every `interval` on a background thread until
    /// [`Self::stop_auto_mining`], another call to this, or the last handle is dropped.
    pub fn start_auto_mining(&self, interval: Duration) {
        let generation = self.shared.auto_mining.fetch_add(1, Ordering::SeqCst) + 1;
        let shared = Arc::downgrade(&self.shared);
        let interval = interval.max(Duration::from_millis(10));
        let spawned = std::thread::Builder::new()
            .name("bitcoin-devnet-miner".to_owned())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if shared.auto_mining.load(Ordering::SeqCst) != generation {
                    return;
                }
                let mined = shared.chain().mine(1, None);
                tracing::debug!(devnet.block = ?mined.first(), "bitcoin devnet mined a block");
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "bitcoin devnet could not start auto-mining");
        }
    }

    pub fn stop_auto_mining(&self) {
        self.shared.auto_mining.fetch_add(1, Ordering::SeqCst);
    }

    /// Serves the Bitcoin Core JSON-RPC subset on `rpc_bind` (HTTP Basic auth
    /// when `rpc_auth` is set) and the Esplora subset on `esplora_bind`; port 0
    /// picks a free port. The servers run until [`BitcoinDevnetServers::stop`]
    /// or until the returned value is dropped.
    pub async fn serve(
        &self,
        rpc_bind: &str,
        esplora_bind: &str,
        rpc_auth: Option<(String, String)>,
    ) -> std::io::Result<BitcoinDevnetServers> {
        let rpc_listener = TcpListener::bind(rpc_bind)?;
        let esplora_listener = TcpListener::bind(esplora_bind)?;
        let rpc_addr = rpc_listener.local_addr()?;
        let esplora_addr = esplora_listener.local_addr()?;

        let rpc_state = web::Data::new(rpc::RpcState::new(self.clone(), rpc_auth));
        let rpc_server = HttpServer::new(move || {
            App::new()
                .app_data(rpc_state.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .configure(rpc::routes)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(rpc_listener)?
        .run();

        let devnet = web::Data::new(self.clone());
        let esplora_server = HttpServer::new(move || {
            App::new()
                .app_data(devnet.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .configure(esplora::routes)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(esplora_listener)?
        .run();

        let handles = vec![rpc_server.handle(), esplora_server.handle()];
        tokio::spawn(rpc_server);
        tokio::spawn(esplora_server);
        Ok(BitcoinDevnetServers {
            rpc_url: format!("http://{}", connectable(rpc_addr)),
            esplora_url: format!("http://{}", connectable(esplora_addr)),
            handles,
        })
    }
}

fn check_network(address: &Address) -> Result<(), DevnetError> {
    if address
        .as_unchecked()
        .is_valid_for_network(Network::Regtest)
    {
        Ok(())
    } else {
        Err(DevnetError::WrongNetwork(address.to_string()))
    }
}

/// A wildcard bind address is not one a client can connect to; use loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// The running JSON-RPC and Esplora servers of a devnet. Dropping it stops them,
/// so keep it in a named binding (a field an `async move` block never reads is
/// not captured by it, and is dropped early).
#[must_use = "the servers stop when this is dropped"]
pub struct BitcoinDevnetServers {
    /// `http://host:port`, the JSON-RPC endpoint (POST `/`).
    pub rpc_url: String,
    /// `http://host:port`, the Esplora API root (`/blocks/tip/height`, …).
    pub esplora_url: String,
    handles: Vec<ServerHandle>,
}

impl BitcoinDevnetServers {
    /// Stops both servers and waits until they have.
    pub async fn stop(mut self) {
        for handle in std::mem::take(&mut self.handles) {
            handle.stop(false).await;
        }
    }
}

impl Drop for BitcoinDevnetServers {
    fn drop(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        // Stopping needs the runtime the servers were spawned on; without one
        // they are going away with it anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            for handle in std::mem::take(&mut self.handles) {
                runtime.spawn(async move { handle.stop(false).await });
            }
        }
    }
}
