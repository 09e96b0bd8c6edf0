//! Bitcoin Core JSON-RPC adapter of the Bitcoin source port.
//!
//! Written on reqwest rather than `bdk_bitcoind_rpc`/`bitcoincore-rpc`: those
//! sit on the blocking `jsonrpc` client (a second HTTP stack, and a thread per
//! call in an async service) for the seven calls this port needs.
//!
//! `tx_status` of a confirmed transaction needs a node run with `-txindex=1`;
//! without it Core finds mempool transactions only and the answer is `None`.
//!
//! Mapping: transport errors, timeouts, refused credentials, a node warming up
//! and non-JSON 5xx answers are `Unavailable`; unknown blocks and heights above
//! the tip are `NotFound`; a refused transaction is `Rejected` with Core's
//! reason, unless the node already knows it, which counts as sent. Core answers
//! RPC errors with HTTP 500 (JSON-RPC 1.0) or 200 (2.0), so the body is read
//! whatever the status.

use std::sync::atomic::{AtomicU64, Ordering};

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Block, BlockHash, Transaction, Txid};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::esplora::{http_client, transport_error};
use super::{BitcoinSource, BlockId, SourceError, TxStatus};

// Core's error codes this adapter tells apart (`src/rpc/protocol.h`).
const INVALID_ADDRESS_OR_KEY: i64 = -5;
const INVALID_PARAMETER: i64 = -8;
const DESERIALIZATION_ERROR: i64 = -22;
const VERIFY_ERROR: i64 = -25;
const VERIFY_REJECTED: i64 = -26;
const VERIFY_ALREADY_IN_CHAIN: i64 = -27;
const IN_WARMUP: i64 = -28;

/// `estimatesmartfee` accepts targets in this range.
const MAX_FEE_TARGET: u16 = 1008;
/// Tries of `tx_status` when its block leaves the best chain between two calls.
const STATUS_ATTEMPTS: usize = 3;

/// A Bitcoin Core node's JSON-RPC endpoint, e.g. `http://127.0.0.1:8332`.
pub struct BitcoinCoreRpc {
    client: Result<reqwest::Client, String>,
    url: String,
    auth: Option<(String, String)>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for BitcoinCoreRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinCoreRpc")
            .field("url", &self.url)
            .field("user", &self.auth.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// A failed call: the transport's error or the node's RPC error.
#[derive(Debug)]
enum CallError {
    Source(SourceError),
    Rpc { code: i64, message: String },
}

impl From<SourceError> for CallError {
    fn from(e: SourceError) -> Self {
        CallError::Source(e)
    }
}

impl CallError {
    /// For RPC errors the caller has no special meaning for.
    fn into_source(self, method: &str) -> SourceError {
        match self {
            CallError::Source(e) => e,
            CallError::Rpc {
                code: IN_WARMUP,
                message,
            } => SourceError::Unavailable(format!("the node is starting: {message}")),
            CallError::Rpc { code, message } => {
                SourceError::Protocol(format!("{method}: RPC error {code}: {message}"))
            }
        }
    }
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Option<RpcErrorObject>,
    #[serde(default)]
    id: Value,
}

#[derive(Deserialize)]
struct RpcErrorObject {
    code: i64,
    message: String,
}

#[derive(Deserialize)]
struct ChainInfo {
    blocks: u64,
    bestblockhash: BlockHash,
}

#[derive(Deserialize)]
struct RawTxInfo {
    #[serde(default)]
    blockhash: Option<BlockHash>,
}

#[derive(Deserialize)]
struct HeaderInfo {
    height: u64,
    confirmations: i64,
}

#[derive(Deserialize)]
struct FeeEstimate {
    /// BTC/kvB; absent when the node has no estimate.
    #[serde(default)]
    feerate: Option<f64>,
    #[serde(default)]
    errors: Vec<String>,
}

impl BitcoinCoreRpc {
    /// `auth` is the (user, password) of `-rpcuser`/`-rpcauth` or the cookie file.
    pub fn new(url: &str, auth: Option<(String, String)>) -> Self {
        Self {
            client: http_client(),
            url: url.to_owned(),
            auth,
            next_id: AtomicU64::new(1),
        }
    }

    async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, CallError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| SourceError::Unavailable(e.clone()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = client
            .post(&self.url)
            .json(&json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params}));
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(SourceError::Unavailable(format!(
                "the node refused the RPC credentials (HTTP {status})"
            ))
            .into());
        }
        let body = response.bytes().await.map_err(transport_error)?;
        let reply: Reply = match serde_json::from_slice(&body) {
            Ok(reply) => reply,
            Err(_) if status.is_server_error() => {
                return Err(SourceError::Unavailable(format!("{method}: HTTP {status}")).into())
            }
            Err(e) => {
                return Err(SourceError::Protocol(format!(
                    "{method}: HTTP {status}, not a JSON-RPC reply: {e}"
                ))
                .into())
            }
        };
        if reply.id != json!(id) {
            return Err(
                SourceError::Protocol(format!("{method}: reply to another request")).into(),
            );
        }
        if let Some(error) = reply.error {
            return Err(CallError::Rpc {
                code: error.code,
                message: error.message,
            });
        }
        serde_json::from_value(reply.result)
            .map_err(|e| SourceError::Protocol(format!("{method}: {e}")).into())
    }
}

/// Core's `estimatesmartfee` rate (BTC/kvB) in whole sat/vB, rounded up, at least 1.
fn btc_per_kvb_to_sat_per_vb(rate: f64) -> Option<u64> {
    if !rate.is_finite() || !(0.0..=21e6).contains(&rate) {
        return None;
    }
    // Whole sat/kvB first: the node computed it in satoshis, the float only carried it.
    let sat_per_kvb = (rate * 1e8).round() as u64;
    Some(sat_per_kvb.div_ceil(1000).max(1))
}

impl BitcoinSource for BitcoinCoreRpc {
    async fn tip(&self) -> Result<BlockId, SourceError> {
        // One call answers both, so height and hash belong together.
        let info: ChainInfo = self
            .call("getblockchaininfo", json!([]))
            .await
            .map_err(|e| e.into_source("getblockchaininfo"))?;
        Ok(BlockId {
            height: info.blocks,
            hash: info.bestblockhash,
        })
    }

    async fn block_hash(&self, height: u64) -> Result<BlockHash, SourceError> {
        // Core takes a 32-bit int; anything larger is above any tip.
        if height > i32::MAX as u64 {
            return Err(SourceError::NotFound);
        }
        match self.call("getblockhash", json!([height])).await {
            Ok(hash) => Ok(hash),
            Err(CallError::Rpc {
                code: INVALID_PARAMETER,
                ..
            }) => Err(SourceError::NotFound),
            Err(e) => Err(e.into_source("getblockhash")),
        }
    }

    async fn block(&self, hash: BlockHash) -> Result<Block, SourceError> {
        let hex: String = match self.call("getblock", json!([hash, 0])).await {
            Ok(hex) => hex,
            Err(CallError::Rpc {
                code: INVALID_ADDRESS_OR_KEY,
                ..
            }) => return Err(SourceError::NotFound),
            Err(e) => return Err(e.into_source("getblock")),
        };
        let block: Block = deserialize_hex(&hex)
            .map_err(|e| SourceError::Protocol(format!("getblock {hash}: {e}")))?;
        // Only the header's hash is checked: recomputing the merkle root would cost
        // as much as decoding the block, and the node is one we chose to trust.
        if block.block_hash() != hash {
            return Err(SourceError::Protocol(format!(
                "asked for block {hash}, got {}",
                block.block_hash()
            )));
        }
        Ok(block)
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, SourceError> {
        let txid = tx.compute_txid();
        match self
            .call::<Txid>("sendrawtransaction", json!([serialize_hex(tx)]))
            .await
        {
            Ok(answered) if answered == txid => Ok(txid),
            Ok(answered) => Err(SourceError::Protocol(format!(
                "broadcast {txid}, the node answered {answered}"
            ))),
            Err(CallError::Rpc {
                code: VERIFY_ALREADY_IN_CHAIN,
                ..
            }) => Ok(txid),
            Err(CallError::Rpc { code, message })
                if matches!(code, VERIFY_ERROR | VERIFY_REJECTED | DESERIALIZATION_ERROR) =>
            {
                // Refused, but perhaps because it is already mined and all its
                // outputs spent (Core then reports its inputs missing): one the
                // node knows counts as sent.
                if self.tx_status(txid).await?.is_some() {
                    Ok(txid)
                } else {
                    Err(SourceError::Rejected(message))
                }
            }
            Err(e) => Err(e.into_source("sendrawtransaction")),
        }
    }

    async fn fee_rate(&self, target_blocks: u16) -> Result<u64, SourceError> {
        let target = target_blocks.clamp(1, MAX_FEE_TARGET);
        let estimate: FeeEstimate = self
            .call("estimatesmartfee", json!([target]))
            .await
            .map_err(|e| e.into_source("estimatesmartfee"))?;
        match estimate.feerate {
            Some(rate) => btc_per_kvb_to_sat_per_vb(rate)
                .ok_or_else(|| SourceError::Protocol(format!("fee rate {rate} BTC/kvB"))),
            // A node without enough blocks seen has no estimate; guessing one
            // could strand a payout, so the caller retries or uses its own floor.
            None => Err(SourceError::Unavailable(format!(
                "the node has no fee estimate for {target} blocks: {}",
                estimate.errors.join("; ")
            ))),
        }
    }

    async fn tx_status(&self, txid: Txid) -> Result<Option<TxStatus>, SourceError> {
        for _ in 0..STATUS_ATTEMPTS {
            let info: RawTxInfo = match self.call("getrawtransaction", json!([txid, true])).await {
                Ok(info) => info,
                Err(CallError::Rpc {
                    code: INVALID_ADDRESS_OR_KEY,
                    ..
                }) => return Ok(None),
                Err(e) => return Err(e.into_source("getrawtransaction")),
            };
            let Some(block) = info.blockhash else {
                return Ok(Some(TxStatus::Mempool));
            };
            let header: HeaderInfo = match self.call("getblockheader", json!([block, true])).await {
                Ok(header) => header,
                // The block went away between the two calls: ask again.
                Err(CallError::Rpc {
                    code: INVALID_ADDRESS_OR_KEY,
                    ..
                }) => continue,
                Err(e) => return Err(e.into_source("getblockheader")),
            };
            if header.confirmations > 0 {
                return Ok(Some(TxStatus::Confirmed {
                    height: header.height,
                }));
            }
            // A reorg took the block out of the best chain between the two calls.
        }
        Err(SourceError::Unavailable(format!(
            "{txid}: its block kept leaving the best chain while it was looked up"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::esplora::tests::canned_server;

    #[test]
    fn core_fee_rates_become_whole_sats_per_vbyte() {
        assert_eq!(btc_per_kvb_to_sat_per_vb(0.00001), Some(1));
        assert_eq!(btc_per_kvb_to_sat_per_vb(0.00002), Some(2));
        assert_eq!(btc_per_kvb_to_sat_per_vb(0.00001001), Some(2));
        assert_eq!(btc_per_kvb_to_sat_per_vb(0.000005), Some(1));
        assert_eq!(btc_per_kvb_to_sat_per_vb(0.0), Some(1));
        assert_eq!(btc_per_kvb_to_sat_per_vb(0.00123456), Some(124));
        assert_eq!(btc_per_kvb_to_sat_per_vb(f64::NAN), None);
        assert_eq!(btc_per_kvb_to_sat_per_vb(-0.1), None);
    }

    #[test]
    fn the_password_is_not_in_the_debug_output() {
        let rpc = BitcoinCoreRpc::new(
            "http://127.0.0.1:1",
            Some(("agora".into(), "s3cret".into())),
        );
        let shown = format!("{rpc:?}");
        assert!(
            shown.contains("agora") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn transport_failures_and_refused_credentials_are_unavailable() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let rpc = BitcoinCoreRpc::new(&format!("http://{addr}"), None);
        assert!(matches!(rpc.tip().await, Err(SourceError::Unavailable(_))));

        let rpc = BitcoinCoreRpc::new(&canned_server(401, "").await, None);
        assert!(matches!(rpc.tip().await, Err(SourceError::Unavailable(_))));
        let rpc = BitcoinCoreRpc::new(&canned_server(502, "<html>bad gateway</html>").await, None);
        assert!(matches!(rpc.tip().await, Err(SourceError::Unavailable(_))));
        let rpc = BitcoinCoreRpc::new(&canned_server(200, "hello").await, None);
        assert!(matches!(rpc.tip().await, Err(SourceError::Protocol(_))));
    }

    #[tokio::test]
    async fn rpc_errors_in_an_http_500_are_read_from_the_body() {
        // Core's JSON-RPC 1.0 error answers. A fresh client's first request has id 1,
        // which the canned replies carry.
        let rpc = BitcoinCoreRpc::new(
            &canned_server(
                500,
                r#"{"result":null,"error":{"code":-28,"message":"Loading block index..."},"id":1}"#,
            )
            .await,
            None,
        );
        assert!(
            matches!(rpc.tip().await, Err(SourceError::Unavailable(_))),
            "warm-up is retryable"
        );
        let rpc = BitcoinCoreRpc::new(
            &canned_server(500, r#"{"result":null,"error":{"code":-8,"message":"Block height out of range"},"id":1}"#).await,
            None,
        );
        assert_eq!(rpc.block_hash(1_000).await, Err(SourceError::NotFound));
        assert_eq!(rpc.block_hash(u64::MAX).await, Err(SourceError::NotFound));
    }
}
