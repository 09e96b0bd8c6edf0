//! Chain sources: the ports the chain watchers read the chains through, one per
//! chain, with their adapters (Bitcoin Core JSON-RPC, Esplora HTTP, rippled
//! WebSocket/JSON-RPC). The watcher is generic over these traits, so the same
//! scanner runs against a production node, a public Esplora, or Agora's devnet.

pub mod bitcoin_rpc;
pub mod esplora;
pub mod rippled;

use std::future::Future;

use bitcoin::{Block, BlockHash, Transaction, Txid};
use serde::{Deserialize, Serialize};

/// Why a chain source call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The node is unreachable, timed out or answered 5xx: retry with backoff.
    #[error("the chain source is unavailable: {0}")]
    Unavailable(String),
    /// The block, ledger or transaction does not exist (yet).
    #[error("not found")]
    NotFound,
    /// The node refused a transaction; the reason is the node's own.
    #[error("rejected by the node: {0}")]
    Rejected(String),
    /// The node answered something this adapter cannot read.
    #[error("unexpected answer from the chain source: {0}")]
    Protocol(String),
}

/// A block by height and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockId {
    pub height: u64,
    pub hash: BlockHash,
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxStatus {
    Mempool,
    Confirmed { height: u64 },
}

/// Reading and writing the Bitcoin chain.
pub trait BitcoinSource: Send + Sync + 'static {
    /// The best block.
    fn tip(&self) -> impl Future<Output = Result<BlockId, SourceError>> + Send;
    /// The hash of the best chain's block at `height` (`NotFound` above the tip).
    fn block_hash(&self, height: u64) -> impl Future<Output = Result<BlockHash, SourceError>> + Send;
    fn block(&self, hash: BlockHash) -> impl Future<Output = Result<Block, SourceError>> + Send;
    /// Sends a transaction; one the node already has counts as sent.
    fn broadcast(&self, tx: &Transaction) -> impl Future<Output = Result<Txid, SourceError>> + Send;
    /// Fee rate (sat/vB, at least 1) to confirm within `target_blocks`.
    fn fee_rate(&self, target_blocks: u16) -> impl Future<Output = Result<u64, SourceError>> + Send;
    /// `None` when the node knows nothing of the transaction.
    fn tx_status(&self, txid: Txid) -> impl Future<Output = Result<Option<TxStatus>, SourceError>> + Send;
}

/// A validated ledger by index and hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LedgerId {
    pub index: u32,
    /// Upper-case hex.
    pub hash: String,
    /// When the ledger closed, in seconds since the XRPL epoch (0 if the node
    /// did not say): what a channel's `Expiration` is compared with.
    #[serde(default)]
    pub close_time: u32,
}

/// One transaction of a validated ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerTx {
    /// Upper-case hex.
    pub hash: String,
    /// The transaction in rippled's JSON form.
    pub tx: serde_json::Value,
    /// `TransactionResult` from the metadata (`tesSUCCESS`, `tec…`).
    pub result: String,
    /// XRP actually delivered by a Payment (`delivered_amount`), in drops.
    pub delivered_drops: Option<u64>,
}

/// A validated ledger with its transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub index: u32,
    pub hash: String,
    pub parent_hash: String,
    pub transactions: Vec<LedgerTx>,
}

/// An account as the validated ledger shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub balance_drops: u64,
    /// The next Sequence to use.
    pub sequence: u32,
    pub master_disabled: bool,
    pub regular_key: Option<String>,
    pub signer_quorum: Option<u32>,
    /// (account, weight) of the signer list, if any.
    pub signer_entries: Vec<(String, u16)>,
    /// Objects the account owns (signer list, payment channels…): each holds
    /// one owner reserve.
    #[serde(default)]
    pub owner_count: u32,
}

/// A payment channel as the validated ledger shows it (`ledger_entry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The source (owner) account.
    pub account: String,
    pub destination: String,
    pub amount_drops: u64,
    /// What the channel delivered to the destination so far.
    pub balance_drops: u64,
    pub settle_delay: u32,
    /// Upper-case hex of the claim key.
    pub public_key: String,
    /// Set once the source asked to close: the channel closes at the first
    /// transaction on it after this time (seconds since the XRPL epoch).
    pub expiration: Option<u32>,
    pub cancel_after: Option<u32>,
}

/// What the node said of a submitted blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOutcome {
    /// rippled's `engine_result` (`tesSUCCESS`, `terQUEUED`, `tefPAST_SEQ`, …).
    pub engine_result: String,
    /// Upper-case hex.
    pub hash: String,
}

impl SubmitOutcome {
    /// Whether the transaction may still make it into a validated ledger.
    pub fn accepted(&self) -> bool {
        self.engine_result.starts_with("tes") || self.engine_result.starts_with("ter")
    }
}

/// Reading and writing the XRP Ledger (validated ledgers only).
pub trait XrplSource: Send + Sync + 'static {
    /// The latest validated ledger.
    fn validated_ledger(&self) -> impl Future<Output = Result<LedgerId, SourceError>> + Send;
    /// Validated ledger `index` with its transactions (`NotFound` if not validated yet).
    fn ledger(&self, index: u32) -> impl Future<Output = Result<Ledger, SourceError>> + Send;
    fn submit(&self, blob_hex: &str) -> impl Future<Output = Result<SubmitOutcome, SourceError>> + Send;
    /// The payment channel `channel_id` (64 hex digits) in the validated
    /// ledger; `None` once it is closed (or if it never existed).
    fn channel(&self, channel_id: &str) -> impl Future<Output = Result<Option<ChannelInfo>, SourceError>> + Send;
    /// `None` when the account does not exist in the validated ledger.
    fn account_info(&self, address: &str) -> impl Future<Output = Result<Option<AccountInfo>, SourceError>> + Send;
    /// The open ledger's base fee, in drops.
    fn base_fee(&self) -> impl Future<Output = Result<u64, SourceError>> + Send;
    /// Resolves once a validated ledger above `after` exists, or after
    /// `timeout` (whichever first); returns the latest validated ledger index.
    fn wait_for_ledger(
        &self,
        after: u32,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<u32, SourceError>> + Send;
}
