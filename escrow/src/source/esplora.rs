//! Esplora HTTP adapter of the Bitcoin source port (Blockstream's electrs API,
//! as served by blockstream.info, mempool.space and Agora's devnet).
//!
//! Written on reqwest rather than `esplora-client`: that crate brings its own
//! HTTP stacks (blocking `minreq` or an async reqwest of its own features and
//! version pin) for the six calls this port needs; here they share the
//! workspace's reqwest, timeouts and error mapping.
//!
//! Mapping: transport errors, timeouts, 429 and 5xx are `Unavailable`; 404 is
//! `NotFound`; a broadcast answered 400 is `Rejected` with the node's reason,
//! unless the node already knows the transaction, which counts as sent.

use std::collections::HashMap;
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::{Block, BlockHash, Transaction, Txid};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{BitcoinSource, BlockId, SourceError, TxStatus};

/// How long a request may take in all; a block of a few MB arrives well within it.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Core's `RPC_VERIFY_ALREADY_IN_CHAIN`, which Esplora passes through from its node.
const ALREADY_IN_CHAIN: i64 = -27;

/// The HTTP client both Bitcoin adapters use. Building it fails only when the
/// TLS backend cannot start; the error is kept and reported on every call, so
/// the constructors stay infallible.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A transport failure with its causes (reqwest's own message alone is "error
/// sending request"), without the URL, which may carry credentials.
pub(crate) fn transport_error(e: reqwest::Error) -> SourceError {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    SourceError::Unavailable(message)
}

/// Converts a fee rate in sat/vB, possibly fractional, to the whole sat/vB the
/// port promises: rounded up (paying a fraction more beats missing the target),
/// never below 1. `None` for a value no fee market produces.
pub(crate) fn whole_sat_per_vb(rate: f64) -> Option<u64> {
    if !rate.is_finite() || !(0.0..=1e9).contains(&rate) {
        return None;
    }
    // To millisat/vB first, so float noise (2.0000000001) does not round up a whole rate.
    let milli = (rate * 1000.0).round() as u64;
    Some(milli.div_ceil(1000).max(1))
}

/// An Esplora server, e.g. `https://blockstream.info/api` or the devnet's URL.
#[derive(Debug, Clone)]
pub struct Esplora {
    client: Result<reqwest::Client, String>,
    base: String,
}

#[derive(Deserialize)]
struct BlockSummary {
    id: BlockHash,
    height: u64,
}

#[derive(Deserialize)]
struct EsploraTx {
    status: EsploraTxStatus,
}

#[derive(Deserialize)]
struct EsploraTxStatus {
    confirmed: bool,
    #[serde(default)]
    block_height: Option<u64>,
}

/// The `{"code":..,"message":..}` inside a refused broadcast's body.
#[derive(Deserialize)]
struct NodeError {
    code: i64,
    message: String,
}

impl Esplora {
    /// `base_url` is the API root, without a trailing slash or with one.
    pub fn new(base_url: &str) -> Self {
        Self {
            client: http_client(),
            base: base_url.trim_end_matches('/').to_owned(),
        }
    }

    fn client(&self) -> Result<&reqwest::Client, SourceError> {
        self.client
            .as_ref()
            .map_err(|e| SourceError::Unavailable(e.clone()))
    }

    /// GETs `path`, mapping statuses to the port's errors.
    async fn get(&self, path: &str) -> Result<reqwest::Response, SourceError> {
        let response = self
            .client()?
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(transport_error)?;
        check_status(response).await
    }

    async fn get_text(&self, path: &str) -> Result<String, SourceError> {
        let body = self
            .get(path)
            .await?
            .text()
            .await
            .map_err(transport_error)?;
        Ok(body.trim().to_owned())
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, SourceError> {
        let body = self
            .get(path)
            .await?
            .bytes()
            .await
            .map_err(transport_error)?;
        serde_json::from_slice(&body).map_err(|e| SourceError::Protocol(format!("GET {path}: {e}")))
    }
}

/// 2xx passes; 404 is `NotFound`; 429 and 5xx `Unavailable`; anything else `Protocol`.
async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, SourceError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(SourceError::NotFound);
    }
    let body = response.text().await.unwrap_or_default();
    let body = body.trim();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(SourceError::Unavailable(format!("HTTP {status}: {body}")));
    }
    Err(SourceError::Protocol(format!("HTTP {status}: {body}")))
}

fn parse_hash<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, SourceError> {
    text.parse()
        .map_err(|_| SourceError::Protocol(format!("{what} is not a hash: {text:?}")))
}

/// The node's error inside an Esplora broadcast refusal
/// (`sendrawtransaction RPC error: {"code":-26,"message":"…"}`), if it has one.
fn node_error(body: &str) -> Option<NodeError> {
    let start = body.find('{')?;
    serde_json::from_str(&body[start..]).ok()
}

impl BitcoinSource for Esplora {
    async fn tip(&self) -> Result<BlockId, SourceError> {
        let hash: BlockHash =
            parse_hash(&self.get_text("/blocks/tip/hash").await?, "the tip hash")?;
        // The height of that very block, so the pair is consistent even if the tip moves.
        match self
            .get_json::<BlockSummary>(&format!("/block/{hash}"))
            .await
        {
            Ok(block) if block.id == hash => Ok(BlockId {
                height: block.height,
                hash,
            }),
            Ok(block) => Err(SourceError::Protocol(format!(
                "asked for block {hash}, got {}",
                block.id
            ))),
            Err(SourceError::NotFound) => Err(SourceError::Unavailable(format!(
                "the tip {hash} vanished while it was read"
            ))),
            Err(e) => Err(e),
        }
    }

    async fn block_hash(&self, height: u64) -> Result<BlockHash, SourceError> {
        parse_hash(
            &self.get_text(&format!("/block-height/{height}")).await?,
            "the block hash",
        )
    }

    async fn block(&self, hash: BlockHash) -> Result<Block, SourceError> {
        let path = format!("/block/{hash}/raw");
        let bytes = self
            .get(&path)
            .await?
            .bytes()
            .await
            .map_err(transport_error)?;
        let block: Block =
            deserialize(&bytes).map_err(|e| SourceError::Protocol(format!("GET {path}: {e}")))?;
        // Only the header's hash is checked: recomputing the merkle root would cost
        // as much as decoding the block, and the server is one we chose to trust.
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
        let response = self
            .client()?
            .post(format!("{}/tx", self.base))
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(serialize_hex(tx))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let body = response.text().await.map_err(transport_error)?;
        let body = body.trim();
        if status.is_success() {
            let answered: Txid = parse_hash(body, "the broadcast's txid")?;
            if answered != txid {
                return Err(SourceError::Protocol(format!(
                    "broadcast {txid}, the server answered {answered}"
                )));
            }
            return Ok(txid);
        }
        if status != StatusCode::BAD_REQUEST {
            return Err(
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    SourceError::Unavailable(format!("HTTP {status}: {body}"))
                } else {
                    SourceError::Protocol(format!("HTTP {status}: {body}"))
                },
            );
        }
        let refusal = node_error(body);
        if refusal.as_ref().is_some_and(|e| e.code == ALREADY_IN_CHAIN) {
            return Ok(txid);
        }
        // Refused, but perhaps because it is already mined and its outputs spent
        // (then the node reports its inputs missing): one the node knows counts as sent.
        if self.tx_status(txid).await?.is_some() {
            return Ok(txid);
        }
        Err(SourceError::Rejected(
            refusal.map_or_else(|| body.to_owned(), |e| e.message),
        ))
    }

    async fn fee_rate(&self, target_blocks: u16) -> Result<u64, SourceError> {
        let estimates: HashMap<String, f64> = self.get_json("/fee-estimates").await?;
        let estimates: Vec<(u16, f64)> = estimates
            .into_iter()
            .filter_map(|(target, rate)| Some((target.parse().ok()?, rate)))
            .collect();
        // The estimate for the longest target not beyond ours; when ours is below
        // every target, the most urgent one.
        let chosen = estimates
            .iter()
            .filter(|(t, _)| *t <= target_blocks)
            .max_by_key(|(t, _)| *t)
            .or_else(|| estimates.iter().min_by_key(|(t, _)| *t));
        let (_, rate) = chosen.ok_or_else(|| {
            SourceError::Unavailable("the server has no fee estimates".to_owned())
        })?;
        whole_sat_per_vb(*rate)
            .ok_or_else(|| SourceError::Protocol(format!("fee estimate {rate} sat/vB")))
    }

    async fn tx_status(&self, txid: Txid) -> Result<Option<TxStatus>, SourceError> {
        // `/tx/:txid` rather than `/tx/:txid/status`: electrs answers the latter
        // "unconfirmed" for a transaction it has never seen.
        match self.get_json::<EsploraTx>(&format!("/tx/{txid}")).await {
            Ok(EsploraTx {
                status: EsploraTxStatus {
                    confirmed: false, ..
                },
            }) => Ok(Some(TxStatus::Mempool)),
            Ok(EsploraTx {
                status:
                    EsploraTxStatus {
                        block_height: Some(height),
                        ..
                    },
            }) => Ok(Some(TxStatus::Confirmed { height })),
            Ok(_) => Err(SourceError::Protocol(format!(
                "{txid} is confirmed without a block height"
            ))),
            Err(SourceError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot HTTP server answering every request with `status` and `body`;
    /// returns its base URL.
    pub(crate) async fn canned_server(status: u16, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn fee_rates_round_up_to_whole_sats_and_never_below_one() {
        assert_eq!(whole_sat_per_vb(0.0), Some(1));
        assert_eq!(whole_sat_per_vb(0.2), Some(1));
        assert_eq!(whole_sat_per_vb(1.0), Some(1));
        assert_eq!(whole_sat_per_vb(1.004), Some(2));
        assert_eq!(whole_sat_per_vb(2.000_000_000_1), Some(2));
        assert_eq!(whole_sat_per_vb(17.5), Some(18));
        assert_eq!(whole_sat_per_vb(f64::NAN), None);
        assert_eq!(whole_sat_per_vb(-1.0), None);
        assert_eq!(whole_sat_per_vb(f64::INFINITY), None);
    }

    #[test]
    fn the_node_error_is_read_from_a_broadcast_refusal() {
        let e =
            node_error(r#"sendrawtransaction RPC error: {"code":-26,"message":"dust"}"#).unwrap();
        assert_eq!((e.code, e.message.as_str()), (-26, "dust"));
        assert!(node_error("bad request").is_none());
    }

    #[tokio::test]
    async fn server_errors_and_rate_limits_are_unavailable_and_404_is_not_found() {
        for status in [500, 502, 503, 429] {
            let esplora = Esplora::new(&canned_server(status, "busy").await);
            assert!(
                matches!(
                    esplora.block_hash(1).await,
                    Err(SourceError::Unavailable(_))
                ),
                "HTTP {status}"
            );
        }
        let esplora = Esplora::new(&canned_server(404, "Block not found").await);
        assert_eq!(esplora.block_hash(7).await, Err(SourceError::NotFound));
        assert_eq!(
            esplora
                .tx_status(Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros()))
                .await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        // Bound and dropped: nothing listens there any more.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let esplora = Esplora::new(&format!("http://{addr}/"));
        assert!(matches!(
            esplora.tip().await,
            Err(SourceError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let esplora = Esplora::new(&canned_server(200, "not a hash").await);
        assert!(matches!(
            esplora.block_hash(1).await,
            Err(SourceError::Protocol(_))
        ));
        let esplora = Esplora::new(&canned_server(200, "{}").await);
        assert!(matches!(
            esplora.fee_rate(6).await,
            Err(SourceError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn fee_estimates_pick_the_longest_target_within_the_one_asked() {
        let esplora = Esplora::new(
            &canned_server(200, r#"{"1": 30.2, "6": 10.0, "144": 1.5, "1008": 0.8}"#).await,
        );
        assert_eq!(esplora.fee_rate(1).await, Ok(31));
        assert_eq!(esplora.fee_rate(5).await, Ok(31));
        assert_eq!(esplora.fee_rate(6).await, Ok(10));
        assert_eq!(esplora.fee_rate(200).await, Ok(2));
        assert_eq!(esplora.fee_rate(2000).await, Ok(1));
        assert_eq!(esplora.fee_rate(0).await, Ok(31));
    }
}
