//! Rippled WebSocket/JSON-RPC adapter of the XRPL source port.
//!
//! The `ledger` stream comes over WebSocket; look-ups and submissions go over
//! JSON-RPC (reqwest), so a slow or reconnecting stream never delays them.
//!
//! Written by hand on tokio-tungstenite and serde_json rather than with
//! xrpl-rust's client, which mishandles Ping frames and stalls on bursts of
//! stream messages. Here one reader task owns the socket: it answers Pings (and
//! sends its own, to notice a dead peer), reconnects with capped exponential
//! backoff and subscribes again, and keeps only the latest validated ledger index
//! in a `tokio::sync::watch`, so a burst of `ledgerClosed` messages costs one
//! small parse each and no memory. The stream is only a wake-up signal: the
//! watcher reads every ledger it needs by index over JSON-RPC, so a message lost
//! during a reconnection loses nothing.
//!
//! Only validated ledgers are reported: `ledger(i)` answers `NotFound` until
//! ledger `i` is validated, and its transactions come sorted by their
//! `TransactionIndex` (rippled lists them in hash order, not the order they
//! were applied in).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{AccountInfo, ChannelInfo, Ledger, LedgerId, LedgerTx, SourceError, SubmitOutcome, XrplSource};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `lsfDisableMaster` in an AccountRoot's Flags.
const LSF_DISABLE_MASTER: u64 = 0x0010_0000;
/// Largest WebSocket message accepted: stream messages are a few hundred bytes.
const MAX_WS_MESSAGE: usize = 4 * 1024 * 1024;
/// rippled errors that mean "not now" rather than "no".
const TRANSIENT_ERRORS: &[&str] = &[
    "noNetwork",
    "noCurrent",
    "noClosed",
    "notReady",
    "notSynced",
    "tooBusy",
    "slowDown",
    "amendmentBlocked",
    "failedToForward",
    "internal",
];

/// Timeouts and reconnection pacing.
#[derive(Debug, Clone)]
pub struct RippledOptions {
    /// Per JSON-RPC call.
    pub request_timeout: Duration,
    /// Per WebSocket connection attempt, handshake and subscription included.
    pub connect_timeout: Duration,
    /// How often the reader pings the node.
    pub ping_interval: Duration,
    /// A connection with no frame at all for this long is dead: reconnect.
    pub idle_timeout: Duration,
    /// First wait before reconnecting; doubled after each failure.
    pub backoff_initial: Duration,
    /// Longest wait between attempts. A connection that lasted this long resets
    /// the backoff.
    pub backoff_max: Duration,
}

impl Default for RippledOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// A rippled node (or anything speaking its API, such as Agora's devnet).
/// Clones share the connection; the reader task stops with the last clone.
#[derive(Clone)]
pub struct RippledSource {
    inner: Arc<Inner>,
}

struct Inner {
    rpc_url: reqwest::Url,
    http: reqwest::Client,
    /// The latest validated ledger index the stream reported (0: none yet).
    validated: watch::Receiver<u32>,
    status: Arc<StreamStatus>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Default)]
struct StreamStatus {
    connected: AtomicBool,
    connections: AtomicU64,
}

impl std::fmt::Debug for RippledSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RippledSource")
            .field("rpc_url", &self.inner.rpc_url.as_str())
            .field("validated", &*self.inner.validated.borrow())
            .finish()
    }
}

impl RippledSource {
    /// Connects the ledger stream (failing if the node cannot be reached now) and
    /// starts the reader task, which reconnects from then on. Needs a Tokio runtime.
    pub async fn connect(ws_url: &str, rpc_url: &str) -> Result<Self, SourceError> {
        Self::connect_with(ws_url, rpc_url, RippledOptions::default()).await
    }

    pub async fn connect_with(
        ws_url: &str,
        rpc_url: &str,
        options: RippledOptions,
    ) -> Result<Self, SourceError> {
        if !(ws_url.starts_with("ws://") || ws_url.starts_with("wss://")) {
            return Err(SourceError::Protocol(format!(
                "not a WebSocket URL: {ws_url}"
            )));
        }
        let rpc_url = reqwest::Url::parse(rpc_url)
            .map_err(|e| SourceError::Protocol(format!("bad JSON-RPC URL {rpc_url}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        let (ws, index) = open_stream(ws_url, &options)
            .await
            .map_err(SourceError::Unavailable)?;
        let (sender, validated) = watch::channel(index.unwrap_or(0));
        let status = Arc::new(StreamStatus::default());
        status.connections.store(1, Ordering::Relaxed);
        let reader = tokio::spawn(read_stream(
            ws_url.to_owned(),
            options,
            ws,
            sender,
            status.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                rpc_url,
                http,
                validated,
                status,
                reader,
            }),
        })
    }

    /// Whether the ledger stream is connected right now.
    pub fn stream_connected(&self) -> bool {
        self.inner.status.connected.load(Ordering::Relaxed)
    }

    /// How many times the stream has (re)connected, the first time included.
    pub fn stream_connections(&self) -> u64 {
        self.inner.status.connections.load(Ordering::Relaxed)
    }

    /// The latest validated ledger index the stream reported, if any.
    pub fn streamed_validated(&self) -> Option<u32> {
        Some(*self.inner.validated.borrow()).filter(|i| *i > 0)
    }

    /// One JSON-RPC call; the `result` object on success.
    async fn call(&self, method: &str, params: Json) -> Result<Json, CallError> {
        let body = json!({"method": method, "params": [params]});
        let response = self
            .inner
            .http
            .post(self.inner.rpc_url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| CallError::Source(SourceError::Unavailable(format!("{method}: {e}"))))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(CallError::Source(SourceError::Unavailable(format!(
                "{method}: HTTP {status}"
            ))));
        }
        if !status.is_success() {
            return Err(CallError::Source(SourceError::Protocol(format!(
                "{method}: HTTP {status}"
            ))));
        }
        let mut reply: Json = response
            .json()
            .await
            .map_err(|e| CallError::Source(SourceError::Protocol(format!("{method}: {e}"))))?;
        let result = reply.get_mut("result").map(Json::take).ok_or_else(|| {
            CallError::Source(SourceError::Protocol(format!("{method}: no result")))
        })?;
        if let Some(error) = result.get("error").and_then(Json::as_str) {
            let message = ["error_exception", "error_message"]
                .iter()
                .find_map(|k| result.get(*k).and_then(Json::as_str))
                .unwrap_or(error)
                .to_owned();
            if TRANSIENT_ERRORS.contains(&error) {
                return Err(CallError::Source(SourceError::Unavailable(format!(
                    "{method}: {error}: {message}"
                ))));
            }
            return Err(CallError::Api {
                error: error.to_owned(),
                message,
            });
        }
        if result.get("status").and_then(Json::as_str) == Some("error") {
            return Err(CallError::Source(SourceError::Protocol(format!(
                "{method}: error without a code"
            ))));
        }
        Ok(result)
    }
}

enum CallError {
    Source(SourceError),
    /// rippled's own error (`actNotFound`, `lgrNotFound`, `invalidTransaction`, …).
    Api {
        error: String,
        message: String,
    },
}

impl CallError {
    /// Any API error as a protocol error, once the expected ones are handled.
    fn into_source(self) -> SourceError {
        match self {
            CallError::Source(e) => e,
            CallError::Api { error, message } => {
                SourceError::Protocol(format!("{error}: {message}"))
            }
        }
    }
}

fn protocol(what: impl Into<String>) -> SourceError {
    SourceError::Protocol(what.into())
}

/// A ledger index written as a number (API v2, top-level) or a string (API v1).
fn index_of(value: Option<&Json>) -> Option<u32> {
    match value? {
        Json::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn hash_of(value: Option<&Json>) -> Option<String> {
    let text = value?.as_str()?;
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| text.to_uppercase())
}

fn drops_of(value: Option<&Json>) -> Option<u64> {
    value?.as_str()?.parse().ok()
}

impl XrplSource for RippledSource {
    async fn validated_ledger(&self) -> Result<LedgerId, SourceError> {
        let result = match self
            .call("ledger", json!({"ledger_index": "validated"}))
            .await
        {
            Ok(r) => r,
            // A node with no validated ledger yet.
            Err(CallError::Api { error, message }) if error == "lgrNotFound" => {
                return Err(SourceError::Unavailable(format!("{error}: {message}")))
            }
            Err(e) => return Err(e.into_source()),
        };
        if result.get("validated").and_then(Json::as_bool) != Some(true) {
            return Err(SourceError::Unavailable("no validated ledger".into()));
        }
        let ledger = result.get("ledger");
        let index = index_of(result.get("ledger_index"))
            .or_else(|| index_of(ledger.and_then(|l| l.get("ledger_index"))))
            .ok_or_else(|| protocol("ledger: no ledger_index"))?;
        let hash = hash_of(result.get("ledger_hash"))
            .or_else(|| hash_of(ledger.and_then(|l| l.get("ledger_hash"))))
            .ok_or_else(|| protocol("ledger: no ledger_hash"))?;
        let close_time = ledger
            .and_then(|l| l.get("close_time"))
            .and_then(Json::as_u64)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(0);
        Ok(LedgerId { index, hash, close_time })
    }

    async fn channel(&self, channel_id: &str) -> Result<Option<ChannelInfo>, SourceError> {
        let params = json!({"payment_channel": channel_id, "ledger_index": "validated"});
        let result = match self.call("ledger_entry", params).await {
            Ok(r) => r,
            Err(CallError::Api { error, .. }) if error == "entryNotFound" => return Ok(None),
            Err(e) => return Err(e.into_source()),
        };
        if result.get("validated").and_then(Json::as_bool) != Some(true) {
            return Err(SourceError::Unavailable("no validated ledger".into()));
        }
        let node = result.get("node").ok_or_else(|| protocol("ledger_entry: no node"))?;
        parse_channel(node).map(Some)
    }

    async fn ledger(&self, index: u32) -> Result<Ledger, SourceError> {
        let params = json!({"ledger_index": index, "transactions": true, "expand": true});
        let result = match self.call("ledger", params).await {
            Ok(r) => r,
            Err(CallError::Api { error, .. }) if error == "lgrNotFound" => {
                return Err(SourceError::NotFound)
            }
            Err(e) => return Err(e.into_source()),
        };
        if result.get("validated").and_then(Json::as_bool) != Some(true) {
            return Err(SourceError::NotFound);
        }
        parse_ledger(&result, index)
    }

    async fn submit(&self, blob_hex: &str) -> Result<SubmitOutcome, SourceError> {
        let result = match self.call("submit", json!({"tx_blob": blob_hex})).await {
            Ok(r) => r,
            Err(CallError::Api { error, message })
                if error == "invalidTransaction" || error == "highFee" =>
            {
                return Err(SourceError::Rejected(message))
            }
            Err(e) => return Err(e.into_source()),
        };
        let engine_result = result
            .get("engine_result")
            .and_then(Json::as_str)
            .ok_or_else(|| protocol("submit: no engine_result"))?
            .to_owned();
        let hash = hash_of(result.get("tx_json").and_then(|t| t.get("hash")))
            .ok_or_else(|| protocol("submit: no transaction hash"))?;
        Ok(SubmitOutcome {
            engine_result,
            hash,
        })
    }

    async fn account_info(&self, address: &str) -> Result<Option<AccountInfo>, SourceError> {
        let params = json!({"account": address, "ledger_index": "validated", "signer_lists": true});
        let result = match self.call("account_info", params).await {
            Ok(r) => r,
            Err(CallError::Api { error, .. }) if error == "actNotFound" => return Ok(None),
            Err(e) => return Err(e.into_source()),
        };
        if result.get("validated").and_then(Json::as_bool) != Some(true) {
            return Err(SourceError::Unavailable("no validated ledger".into()));
        }
        parse_account_info(&result).map(Some)
    }

    async fn base_fee(&self) -> Result<u64, SourceError> {
        let result = self
            .call("fee", json!({}))
            .await
            .map_err(CallError::into_source)?;
        let drops = result.get("drops");
        let base = drops_of(drops.and_then(|d| d.get("base_fee")))
            .ok_or_else(|| protocol("fee: no drops.base_fee"))?;
        // Under load the open ledger asks more than the base fee.
        let open = drops_of(drops.and_then(|d| d.get("open_ledger_fee"))).unwrap_or(base);
        Ok(base.max(open).max(1))
    }

    async fn wait_for_ledger(&self, after: u32, timeout: Duration) -> Result<u32, SourceError> {
        let mut validated = self.inner.validated.clone();
        let waited = tokio::time::timeout(timeout, validated.wait_for(|v| *v > after))
            .await
            .map(|r| r.map(|index| *index));
        match waited {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(_)) => Err(SourceError::Unavailable(
                "the ledger stream reader stopped".into(),
            )),
            Err(_) => {
                let streamed = *validated.borrow();
                if self.stream_connected() && streamed > 0 {
                    return Ok(streamed);
                }
                // The stream is down: ask over JSON-RPC instead.
                match self.validated_ledger().await {
                    Ok(id) => Ok(id.index.max(streamed)),
                    Err(_) if streamed > 0 => Ok(streamed),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// The API v1 (`metaData`, fields inline) and v2 (`tx_json`, `meta`) shapes of an
/// expanded ledger transaction.
fn parse_ledger_tx(entry: &Json) -> Result<(u64, LedgerTx), SourceError> {
    let hash =
        hash_of(entry.get("hash")).ok_or_else(|| protocol("ledger: transaction without hash"))?;
    let (tx, meta) = if let Some(tx) = entry.get("tx_json") {
        (tx.clone(), entry.get("meta"))
    } else {
        let mut tx = entry.clone();
        if let Some(m) = tx.as_object_mut() {
            for key in [
                "hash",
                "metaData",
                "meta",
                "validated",
                "ledger_index",
                "inLedger",
                "date",
            ] {
                m.remove(key);
            }
        }
        (tx, entry.get("metaData").or_else(|| entry.get("meta")))
    };
    let meta = meta
        .filter(|m| m.is_object())
        .ok_or_else(|| protocol(format!("ledger: transaction {hash} without metadata")))?;
    let result = meta
        .get("TransactionResult")
        .and_then(Json::as_str)
        .ok_or_else(|| protocol(format!("ledger: transaction {hash} without a result")))?
        .to_owned();
    let position = meta
        .get("TransactionIndex")
        .and_then(Json::as_u64)
        .ok_or_else(|| {
            protocol(format!(
                "ledger: transaction {hash} without TransactionIndex"
            ))
        })?;
    // An object is an issued currency, "unavailable" an old ledger: no XRP figure.
    let delivered_drops =
        drops_of(meta.get("delivered_amount")).or_else(|| drops_of(meta.get("DeliveredAmount")));
    Ok((
        position,
        LedgerTx {
            hash,
            tx,
            result,
            delivered_drops,
        },
    ))
}

fn parse_ledger(result: &Json, index: u32) -> Result<Ledger, SourceError> {
    let ledger = result
        .get("ledger")
        .ok_or_else(|| protocol("ledger: no ledger object"))?;
    let got = index_of(ledger.get("ledger_index"))
        .or_else(|| index_of(result.get("ledger_index")))
        .ok_or_else(|| protocol("ledger: no ledger_index"))?;
    if got != index {
        return Err(protocol(format!("asked for ledger {index}, got {got}")));
    }
    let hash = hash_of(ledger.get("ledger_hash"))
        .or_else(|| hash_of(result.get("ledger_hash")))
        .ok_or_else(|| protocol("ledger: no ledger_hash"))?;
    let parent_hash =
        hash_of(ledger.get("parent_hash")).ok_or_else(|| protocol("ledger: no parent_hash"))?;
    let entries = match ledger.get("transactions") {
        None => &Vec::new(),
        Some(Json::Array(list)) => list,
        Some(_) => return Err(protocol("ledger: transactions is not a list")),
    };
    let mut transactions = entries
        .iter()
        .map(parse_ledger_tx)
        .collect::<Result<Vec<_>, _>>()?;
    transactions.sort_by_key(|(position, _)| *position);
    Ok(Ledger {
        index,
        hash,
        parent_hash,
        transactions: transactions.into_iter().map(|(_, tx)| tx).collect(),
    })
}

fn parse_account_info(result: &Json) -> Result<AccountInfo, SourceError> {
    let data = result
        .get("account_data")
        .ok_or_else(|| protocol("account_info: no account_data"))?;
    let balance_drops =
        drops_of(data.get("Balance")).ok_or_else(|| protocol("account_info: bad Balance"))?;
    let sequence = data
        .get("Sequence")
        .and_then(Json::as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| protocol("account_info: bad Sequence"))?;
    let flags = data.get("Flags").and_then(Json::as_u64).unwrap_or(0);
    let regular_key = data
        .get("RegularKey")
        .and_then(Json::as_str)
        .map(str::to_owned);
    // API v2 puts signer_lists beside account_data, v1 inside it.
    let lists = result
        .get("signer_lists")
        .or_else(|| data.get("signer_lists"))
        .and_then(Json::as_array);
    let list = lists.and_then(|l| l.first());
    let signer_quorum = list
        .map(|l| {
            l.get("SignerQuorum")
                .and_then(Json::as_u64)
                .and_then(|q| u32::try_from(q).ok())
                .ok_or_else(|| protocol("account_info: bad SignerQuorum"))
        })
        .transpose()?;
    let signer_entries = match list.and_then(|l| l.get("SignerEntries")) {
        None => Vec::new(),
        Some(entries) => entries
            .as_array()
            .ok_or_else(|| protocol("account_info: bad SignerEntries"))?
            .iter()
            .map(|e| {
                #[derive(Deserialize)]
                #[serde(rename_all = "PascalCase")]
                struct Entry {
                    account: String,
                    signer_weight: u16,
                }
                let entry: Entry =
                    serde_json::from_value(e.get("SignerEntry").cloned().unwrap_or_default())
                        .map_err(|err| protocol(format!("account_info: bad SignerEntry: {err}")))?;
                Ok((entry.account, entry.signer_weight))
            })
            .collect::<Result<Vec<_>, SourceError>>()?,
    };
    Ok(AccountInfo {
        balance_drops,
        sequence,
        master_disabled: flags & LSF_DISABLE_MASTER != 0,
        regular_key,
        signer_quorum,
        signer_entries,
        owner_count: data
            .get("OwnerCount")
            .and_then(Json::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
    })
}

/// A `PayChannel` ledger entry, as `ledger_entry` returns it.
fn parse_channel(node: &Json) -> Result<ChannelInfo, SourceError> {
    if node.get("LedgerEntryType").and_then(Json::as_str) != Some("PayChannel") {
        return Err(protocol("ledger_entry: not a PayChannel"));
    }
    let text = |field: &str| {
        node.get(field)
            .and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| protocol(format!("ledger_entry: bad {field}")))
    };
    let time = |field: &str| node.get(field).and_then(Json::as_u64).and_then(|t| u32::try_from(t).ok());
    Ok(ChannelInfo {
        account: text("Account")?,
        destination: text("Destination")?,
        amount_drops: drops_of(node.get("Amount")).ok_or_else(|| protocol("ledger_entry: bad Amount"))?,
        balance_drops: drops_of(node.get("Balance")).ok_or_else(|| protocol("ledger_entry: bad Balance"))?,
        settle_delay: time("SettleDelay").ok_or_else(|| protocol("ledger_entry: bad SettleDelay"))?,
        public_key: text("PublicKey")?.to_uppercase(),
        expiration: time("Expiration"),
        cancel_after: time("CancelAfter"),
    })
}

/// Connects, subscribes to the `ledger` stream, and returns the socket with the
/// validated ledger index the subscription reported.
async fn open_stream(url: &str, options: &RippledOptions) -> Result<(Ws, Option<u32>), String> {
    let attempt = async {
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_WS_MESSAGE))
            .max_frame_size(Some(MAX_WS_MESSAGE));
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let request =
            json!({"id": "agora-subscribe", "command": "subscribe", "streams": ["ledger"]});
        ws.send(Message::text(request.to_string()))
            .await
            .map_err(|e| format!("cannot subscribe: {e}"))?;
        // Stream messages may come before the reply; skip them.
        loop {
            let Some(message) = ws.next().await else {
                return Err("the node closed the connection while subscribing".to_owned());
            };
            let text = match message.map_err(|e| format!("while subscribing: {e}"))? {
                Message::Text(text) => text,
                Message::Close(_) => {
                    return Err("the node closed the connection while subscribing".to_owned())
                }
                _ => continue,
            };
            let Ok(reply) = serde_json::from_str::<Json>(text.as_str()) else {
                continue;
            };
            if reply.get("id").and_then(Json::as_str) != Some("agora-subscribe") {
                continue;
            }
            if reply.get("status").and_then(Json::as_str) != Some("success") {
                return Err(format!("the node refused the subscription: {reply}"));
            }
            let index = index_of(reply.get("result").and_then(|r| r.get("ledger_index")));
            return Ok((ws, index));
        }
    };
    tokio::time::timeout(options.connect_timeout, attempt)
        .await
        .map_err(|_| format!("connecting to {url} timed out"))?
}

/// The part of a stream message the reader looks at.
#[derive(Deserialize)]
struct StreamMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    ledger_index: Option<u32>,
}

/// Owns the socket for the source's lifetime: reads, pings, reconnects.
async fn read_stream(
    url: String,
    options: RippledOptions,
    first: Ws,
    validated: watch::Sender<u32>,
    status: Arc<StreamStatus>,
) {
    let mut socket = Some(first);
    let mut delay = options.backoff_initial;
    loop {
        if let Some(ws) = socket.take() {
            status.connected.store(true, Ordering::Relaxed);
            let started = Instant::now();
            let reason = run_connection(ws, &validated, &options).await;
            status.connected.store(false, Ordering::Relaxed);
            tracing::warn!(xrpl.ws = %url, reason = %reason, "XRPL ledger stream lost; reconnecting");
            if started.elapsed() >= options.backoff_max {
                delay = options.backoff_initial;
            }
        }
        tokio::time::sleep(with_jitter(delay)).await;
        match open_stream(&url, &options).await {
            Ok((ws, index)) => {
                // After a gap the node's word is the truth, even if lower (a
                // restarted development chain): the watcher works from its own
                // cursor and only uses this as a wake-up.
                if let Some(index) = index {
                    validated.send_replace(index);
                }
                status.connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(xrpl.ws = %url, "XRPL ledger stream reconnected");
                socket = Some(ws);
            }
            Err(e) => {
                tracing::debug!(xrpl.ws = %url, error = %e, "XRPL ledger stream reconnection failed")
            }
        }
        delay = (delay * 2).min(options.backoff_max);
    }
}

/// Up to 10 % more, so many clients of one node do not reconnect in lockstep.
fn with_jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    delay + delay / 10 * (nanos % 1000) / 1000
}

/// Reads one connection until it fails; returns why.
async fn run_connection(
    mut ws: Ws,
    validated: &watch::Sender<u32>,
    options: &RippledOptions,
) -> String {
    let mut pings = tokio::time::interval(options.ping_interval);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pings.tick().await;
    let mut last_frame = Instant::now();
    loop {
        tokio::select! {
            message = ws.next() => {
                last_frame = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => note_stream_message(text.as_str(), validated),
                    // tungstenite answers Pings on the next read.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e.to_string(),
                    None => return "the connection ended".into(),
                }
            }
            _ = pings.tick() => {
                if last_frame.elapsed() >= options.idle_timeout {
                    return format!("nothing received for {:?}", options.idle_timeout);
                }
                match tokio::time::timeout(options.request_timeout, ws.send(Message::Ping(Vec::new().into()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return "sending a ping timed out".into(),
                }
            }
        }
    }
}

fn note_stream_message(text: &str, validated: &watch::Sender<u32>) {
    let Ok(message) = serde_json::from_str::<StreamMessage<'_>>(text) else {
        return;
    };
    // The `ledger` stream reports each newly validated ledger.
    if message.kind != Some("ledgerClosed") {
        return;
    }
    if let Some(index) = message.ledger_index {
        validated.send_if_modified(|latest| {
            if index > *latest {
                *latest = index;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_api_versions_of_an_expanded_ledger_parse_in_application_order() {
        let hash = |c: char| c.to_string().repeat(64);
        let v1 = json!({
            "ledger": {
                "ledger_index": "7",
                "ledger_hash": hash('a'),
                "parent_hash": hash('b'),
                "transactions": [
                    {"TransactionType": "Payment", "Account": "r1", "hash": hash('d'),
                     "metaData": {"TransactionIndex": 1, "TransactionResult": "tecUNFUNDED_PAYMENT"}},
                    {"TransactionType": "Payment", "Account": "r2", "hash": hash('c'),
                     "metaData": {"TransactionIndex": 0, "TransactionResult": "tesSUCCESS", "delivered_amount": "25"}},
                ],
            },
            "ledger_index": 7,
            "validated": true,
        });
        let ledger = parse_ledger(&v1, 7).unwrap();
        assert_eq!(ledger.hash, hash('A'));
        assert_eq!(ledger.parent_hash, hash('B'));
        assert_eq!(ledger.transactions[0].hash, hash('C'));
        assert_eq!(ledger.transactions[0].delivered_drops, Some(25));
        assert_eq!(
            ledger.transactions[0].tx,
            json!({"TransactionType": "Payment", "Account": "r2"})
        );
        assert_eq!(ledger.transactions[1].result, "tecUNFUNDED_PAYMENT");
        assert_eq!(ledger.transactions[1].delivered_drops, None);
        assert!(parse_ledger(&v1, 8).is_err());

        let v2 = json!({
            "ledger": {
                "ledger_index": 7, "ledger_hash": hash('a'), "parent_hash": hash('b'),
                "transactions": [{"hash": hash('c'), "tx_json": {"TransactionType": "Payment"},
                    "meta": {"TransactionIndex": 0, "TransactionResult": "tesSUCCESS",
                             "delivered_amount": {"currency": "USD", "value": "1", "issuer": "r"}}}],
            },
            "validated": true,
        });
        let ledger = parse_ledger(&v2, 7).unwrap();
        assert_eq!(
            ledger.transactions[0].tx,
            json!({"TransactionType": "Payment"})
        );
        assert_eq!(ledger.transactions[0].delivered_drops, None);
    }

    #[test]
    fn account_info_reads_signer_lists_in_either_place() {
        let list = json!([{"SignerQuorum": 2, "SignerEntries": [
            {"SignerEntry": {"Account": "rA", "SignerWeight": 1}},
            {"SignerEntry": {"Account": "rB", "SignerWeight": 1}}]}]);
        let v1 = json!({"account_data": {"Balance": "1200000", "Sequence": 9, "Flags": 1_048_576,
            "signer_lists": list}, "validated": true});
        let info = parse_account_info(&v1).unwrap();
        assert_eq!(info.balance_drops, 1_200_000);
        assert_eq!(info.sequence, 9);
        assert!(info.master_disabled);
        assert_eq!(info.signer_quorum, Some(2));
        assert_eq!(
            info.signer_entries,
            vec![("rA".to_owned(), 1), ("rB".to_owned(), 1)]
        );
        let v2 = json!({"account_data": {"Balance": "5", "Sequence": 3, "Flags": 0, "RegularKey": "rK"},
            "signer_lists": [], "validated": true});
        let info = parse_account_info(&v2).unwrap();
        assert!(!info.master_disabled);
        assert_eq!(info.regular_key.as_deref(), Some("rK"));
        assert_eq!(info.signer_quorum, None);
        assert!(parse_account_info(&json!({"account_data": {"Balance": 5}})).is_err());
    }

    #[test]
    fn stream_messages_only_move_the_index_forward() {
        let (sender, receiver) = watch::channel(0);
        note_stream_message(r#"{"type":"ledgerClosed","ledger_index":5}"#, &sender);
        note_stream_message(r#"{"type":"ledgerClosed","ledger_index":4}"#, &sender);
        note_stream_message(r#"{"type":"transaction","ledger_index":9}"#, &sender);
        note_stream_message("not json", &sender);
        assert_eq!(*receiver.borrow(), 5);
    }
}
