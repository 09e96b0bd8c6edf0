//! The XRPL devnet: an in-process XRP Ledger for development and tests that speaks
//! the rippled WebSocket and JSON-RPC subsets Agora's `RippledSource` uses, closes
//! ledgers on demand (`ledger_accept`, [`XrplDevnet::close_ledger`]) or on a timer,
//! and accepts only transactions that pass rippled's checks: strict decoding,
//! signatures, master/regular key and signer-list quorum, Sequence,
//! LastLedgerSequence, fees and reserves (see [`apply`]). Every closed ledger is
//! validated at once; there is no consensus and no second node.
//!
//! Like rippled, a submitted transaction is applied at once to the *open* ledger
//! (its result is the submit's `engine_result`) and becomes final when that ledger
//! closes; one whose Sequence is ahead (`terPRE_SEQ`) is held and retried after
//! each transaction of its account and each close. A development chain only
//! (network "devnet"): the genesis account's key is public.

mod apply;
mod channel;
mod commands;
mod ledger;
mod rpc;
mod ws;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use agora_escrow::source::{AccountInfo, LedgerId, SubmitOutcome};
use agora_escrow::xrpl::{sign_xrp_payment, Reserves, SigningKey, XrpPayment, XrplAddress};
use serde_json::{json, Value as Json};
use tokio::sync::{broadcast, watch};

use apply::{apply, CheckedTx, LocalCheckError, Verdict};
use ledger::{AccountId, AccountRoot, LedgerRecord, State, TxRecord};

/// The base fee of a reference transaction, in drops.
pub const BASE_FEE_DROPS: u64 = 10;
/// What every account must keep: 1 XRP.
pub const BASE_RESERVE_DROPS: u64 = 1_000_000;
/// What each owned object (a signer list counts one) adds: 0.2 XRP.
pub const OWNER_RESERVE_DROPS: u64 = 200_000;
/// The genesis account holding all XRP, rippled's well-known "masterpassphrase"
/// account. The faucet pays from it.
pub const GENESIS_ADDRESS: &str = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh";
/// The genesis account's seed: public, as on any rippled test network.
pub const GENESIS_SEED: &str = "snoPBrXtMeMyMHUVTgbuqAfg1SUTb";
/// All XRP, in drops.
pub const TOTAL_DROPS: u64 = 100_000_000_000_000_000;
/// [`GENESIS_ADDRESS`]'s AccountID (a unit test checks they agree).
const GENESIS_ACCOUNT_ID: AccountId = [
    0xB5, 0xF7, 0x62, 0x79, 0x8A, 0x53, 0xD5, 0x43, 0xA0, 0x14, 0xCA, 0xF8, 0xB2, 0x97, 0xCF, 0xF8,
    0xF2, 0xF9, 0x37, 0xE8,
];

/// Closed ledgers kept for look-ups; older ones answer `lgrNotFound`.
const HISTORY_LEDGERS: usize = 200_000;
/// Transactions held for a missing prior Sequence, at most.
const MAX_HELD: usize = 1_000;
/// Closes after which a held transaction is dropped.
const HELD_LEDGERS: u32 = 10;
/// How often the WebSocket server pings its clients, unless set otherwise.
const DEFAULT_WS_PING: Duration = Duration::from_secs(20);
/// `ledgerClosed` messages buffered per WebSocket client before the oldest are
/// skipped for a client that does not keep up.
const STREAM_BUFFER: usize = 1_024;

/// The devnet's reserves, as the escrow library takes them.
pub fn reserves() -> Reserves {
    Reserves {
        base_drops: BASE_RESERVE_DROPS,
        owner_drops: OWNER_RESERVE_DROPS,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevnetError {
    #[error("not a classic XRPL address: {0}")]
    InvalidAddress(String),
    #[error("the faucet cannot send {0} drops")]
    InvalidAmount(u64),
    #[error("the faucet's Payment was not applied: {0}")]
    Rejected(String),
    #[error("the faucet could not sign: {0}")]
    Signing(String),
}

/// The XRPL devnet. Cheap to clone; clones share one ledger.
#[derive(Clone)]
pub struct XrplDevnet {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// `ledgerClosed` stream messages, for the WebSocket clients.
    events: broadcast::Sender<Arc<str>>,
    /// Bumped to make every WebSocket connection drop (a test hook).
    kick: watch::Sender<u64>,
    ws_ping_millis: AtomicU64,
    auto_close: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.auto_close).take() {
            task.abort();
        }
    }
}

/// A transaction waiting for a prior Sequence (or its account's funding).
struct Held {
    tx: CheckedTx,
    held_at: u32,
}

pub(crate) struct Inner {
    /// The faucet's key; `None` only if the constant seed failed to derive.
    genesis: Option<SigningKey>,
    /// The latest validated ledger's state.
    pub(crate) closed: State,
    /// The open ledger's state: `closed` plus `open_txs`.
    pub(crate) open: State,
    pub(crate) open_txs: Vec<TxRecord>,
    held: Vec<Held>,
    /// Validated ledgers, oldest first; never empty.
    pub(crate) ledgers: VecDeque<LedgerRecord>,
    /// Transaction hash → index of the validated ledger holding it.
    pub(crate) tx_locations: HashMap<String, u32>,
    /// Seconds added to the wall clock for close times (a test hook: channel
    /// expirations without waiting).
    time_offset: u32,
}

/// What a submission came to.
pub(crate) struct Submitted {
    pub result: &'static str,
    pub hash: String,
    pub tx_json: Json,
    /// In the open ledger (`tes`/`tec`).
    pub applied: bool,
    /// Held for later (`ter`).
    pub held: bool,
}

impl Inner {
    pub(crate) fn last(&self) -> &LedgerRecord {
        // `ledgers` is created with one ledger and only ever trimmed from the front
        // while longer than the history, so it is never empty.
        &self.ledgers[self.ledgers.len() - 1]
    }

    pub(crate) fn open_index(&self) -> u32 {
        self.last().index + 1
    }

    pub(crate) fn first_index(&self) -> u32 {
        self.ledgers.front().map_or(1, |l| l.index)
    }

    pub(crate) fn ledger(&self, index: u32) -> Option<&LedgerRecord> {
        let first = self.first_index();
        let offset = usize::try_from(index.checked_sub(first)?).ok()?;
        self.ledgers.get(offset)
    }

    fn submit(&mut self, blob: &str) -> Result<Submitted, LocalCheckError> {
        let tx = CheckedTx::from_blob(blob)?;
        let hash = tx.hash().to_owned();
        let tx_json = tx.decoded.json().clone();
        let (result, applied, held) = self.offer(tx);
        Ok(Submitted {
            result,
            hash,
            tx_json,
            applied,
            held,
        })
    }

    /// Applies `tx` to the open ledger, holds it, or drops it.
    fn offer(&mut self, tx: CheckedTx) -> (&'static str, bool, bool) {
        let index = self.open_index();
        let position = u32::try_from(self.open_txs.len()).unwrap_or(u32::MAX);
        match apply(&mut self.open, &tx, index, position) {
            Verdict::Applied { result, meta } => {
                let account = *tx.account();
                self.open_txs.push(TxRecord {
                    hash: tx.hash().to_owned(),
                    tx: tx.decoded.json().clone(),
                    meta,
                    result,
                });
                self.held.retain(|h| h.tx.hash() != tx.hash());
                self.retry_held(Some(account));
                (result, true, false)
            }
            Verdict::Retry(result) => {
                if self.held.iter().any(|h| h.tx.hash() == tx.hash()) {
                    return (result, false, true);
                }
                if self.held.len() >= MAX_HELD {
                    return ("telCAN_NOT_QUEUE_FULL", false, false);
                }
                self.held.push(Held { tx, held_at: index });
                (result, false, true)
            }
            Verdict::Refused(result) => (result, false, false),
        }
    }

    /// Retries held transactions (of `account`, or all) until none applies; drops
    /// those that can no longer apply or have waited too long.
    fn retry_held(&mut self, account: Option<AccountId>) {
        loop {
            let open_index = self.open_index();
            let mut candidates: Vec<usize> = (0..self.held.len())
                .filter(|i| account.is_none_or(|a| self.held[*i].tx.account() == &a))
                .collect();
            candidates.sort_by_key(|i| (*self.held[*i].tx.account(), self.held[*i].tx.sequence()));
            let mut progress = false;
            let mut drop: Vec<usize> = Vec::new();
            for i in candidates {
                let tx = self.held[i].tx.clone();
                let position = u32::try_from(self.open_txs.len()).unwrap_or(u32::MAX);
                match apply(&mut self.open, &tx, open_index, position) {
                    Verdict::Applied { result, meta } => {
                        self.open_txs.push(TxRecord {
                            hash: tx.hash().to_owned(),
                            tx: tx.decoded.json().clone(),
                            meta,
                            result,
                        });
                        drop.push(i);
                        progress = true;
                    }
                    Verdict::Retry(_) => {
                        let expired = tx
                            .last_ledger_sequence()
                            .is_some_and(|last| open_index > last);
                        if expired || open_index.saturating_sub(self.held[i].held_at) > HELD_LEDGERS
                        {
                            drop.push(i);
                        }
                    }
                    Verdict::Refused(result) => {
                        tracing::debug!(
                            xrpl.tx = tx.hash(),
                            xrpl.result = result,
                            "held transaction dropped"
                        );
                        drop.push(i);
                    }
                }
            }
            drop.sort_unstable();
            for i in drop.into_iter().rev() {
                self.held.remove(i);
            }
            if !progress {
                return;
            }
        }
    }

    fn close(&mut self, events: &broadcast::Sender<Arc<str>>) -> LedgerId {
        let parent = self.last();
        let index = parent.index + 1;
        let close_time = ledger::ripple_now()
            .saturating_add(self.time_offset)
            .max(parent.close_time);
        let record = LedgerRecord::seal(
            index,
            parent.hash.clone(),
            parent.close_time,
            close_time,
            self.open.total_drops,
            self.open.hash(),
            std::mem::take(&mut self.open_txs),
        );
        for tx in &record.txs {
            self.tx_locations.insert(tx.hash.clone(), index);
        }
        self.open.parent_close_time = close_time;
        self.closed = self.open.clone();
        let id = LedgerId {
            index,
            hash: record.hash.clone(),
            close_time: record.close_time,
        };
        let message = json!({
            "type": "ledgerClosed",
            "fee_base": BASE_FEE_DROPS,
            "fee_ref": BASE_FEE_DROPS,
            "ledger_hash": record.hash,
            "ledger_index": index,
            "ledger_time": record.close_time,
            "reserve_base": BASE_RESERVE_DROPS,
            "reserve_inc": OWNER_RESERVE_DROPS,
            "txn_count": record.txs.len(),
            "validated_ledgers": ledger::ledger_range(self.first_index(), index),
        });
        self.ledgers.push_back(record);
        while self.ledgers.len() > HISTORY_LEDGERS {
            if let Some(old) = self.ledgers.pop_front() {
                for tx in &old.txs {
                    self.tx_locations.remove(&tx.hash);
                }
            }
        }
        // No receivers is fine: nobody subscribed.
        let _ = events.send(Arc::from(message.to_string()));
        self.retry_held(None);
        id
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; should it, the data is still
    // consistent at every await-free step, so carry on rather than poison the node.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for XrplDevnet {
    fn default() -> Self {
        Self::new()
    }
}

impl XrplDevnet {
    /// A fresh chain: the genesis ledger (1) holding all XRP in the genesis
    /// account, and ledger 2 closed and validated on top of it.
    pub fn new() -> Self {
        let genesis = SigningKey::from_seed(GENESIS_SEED).ok();
        let mut state = State {
            total_drops: TOTAL_DROPS,
            ..State::default()
        };
        state.accounts.insert(
            GENESIS_ACCOUNT_ID,
            AccountRoot {
                balance: TOTAL_DROPS,
                sequence: 1,
                flags: 0,
                owner_count: 0,
                regular_key: None,
                signer_list: None,
                previous_txn_id: "0".repeat(64),
                previous_txn_lgr_seq: 0,
            },
        );
        let close_time = ledger::ripple_now();
        state.parent_close_time = close_time;
        let genesis_ledger = LedgerRecord::seal(
            1,
            "0".repeat(64),
            0,
            close_time,
            TOTAL_DROPS,
            state.hash(),
            Vec::new(),
        );
        let mut inner = Inner {
            genesis,
            closed: state.clone(),
            open: state,
            open_txs: Vec::new(),
            held: Vec::new(),
            ledgers: VecDeque::from([genesis_ledger]),
            tx_locations: HashMap::new(),
            time_offset: 0,
        };
        let (events, _) = broadcast::channel(STREAM_BUFFER);
        inner.close(&events);
        let (kick, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                events,
                kick,
                ws_ping_millis: AtomicU64::new(DEFAULT_WS_PING.as_millis() as u64),
                auto_close: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.shared.inner)
    }

    /// Starts the WebSocket and JSON-RPC servers (port 0 picks a free port).
    pub async fn serve(&self, ws_bind: &str, rpc_bind: &str) -> std::io::Result<XrplDevnetServers> {
        let (shutdown, shutdown_rx) = watch::channel(());
        let ws_listener = tokio::net::TcpListener::bind(ws_bind).await?;
        let ws_addr = ws_listener.local_addr()?;
        let ws_task = tokio::spawn(ws::serve(ws_listener, self.clone(), shutdown_rx));
        let rpc = match rpc::serve(rpc_bind, self.clone()) {
            Ok(rpc) => rpc,
            Err(e) => {
                ws_task.abort();
                return Err(e);
            }
        };
        tracing::info!(xrpl.ws = %ws_addr, xrpl.rpc = %rpc.addr, "XRPL devnet listening");
        Ok(XrplDevnetServers {
            ws_url: format!("ws://{ws_addr}"),
            rpc_url: format!("http://{}", rpc.addr),
            ws_task,
            rpc: rpc.handle,
            _shutdown: shutdown,
        })
    }

    /// Submits a signed blob to the open ledger, as rippled's `submit` does. A
    /// blob that fails the local checks (undecodable, bad signature, unsorted
    /// signers), for which rippled answers `invalidTransaction`, comes back as
    /// `temMALFORMED`, `temBAD_SIGNATURE` or `temBAD_SIGNER`.
    pub fn submit(&self, blob_hex: &str) -> SubmitOutcome {
        match self.inner().submit(blob_hex) {
            Ok(s) => SubmitOutcome {
                engine_result: s.result.to_owned(),
                hash: s.hash,
            },
            Err(e) => SubmitOutcome {
                engine_result: e.result.to_owned(),
                hash: agora_escrow::xrpl::DecodedTx::from_hex(blob_hex)
                    .map(|t| t.hash().to_owned())
                    .unwrap_or_default(),
            },
        }
    }

    pub(crate) fn submit_detailed(&self, blob_hex: &str) -> Result<Submitted, LocalCheckError> {
        self.inner().submit(blob_hex)
    }

    /// Closes the open ledger; it is validated at once. Held transactions are
    /// then retried against the next open ledger.
    /// Moves the devnet's clock `seconds` ahead: later ledgers close that much
    /// later (what a channel's `SettleDelay` or `CancelAfter` waits for).
    pub fn advance_time(&self, seconds: u32) {
        let mut inner = self.inner();
        inner.time_offset = inner.time_offset.saturating_add(seconds);
    }

    /// The PayChannel `id` (hex) in the validated ledger, as rippled's
    /// `ledger_entry` shows it; `None` once it is closed or if it never existed.
    pub fn channel(&self, id: &str) -> Option<Json> {
        let id = agora_escrow::xrpl::ChannelId::parse(id).ok()?;
        let inner = self.inner();
        let c = inner.closed.channels.get(id.as_bytes())?;
        let mut fields = ledger::channel_fields(c);
        fields.insert("LedgerEntryType".into(), "PayChannel".into());
        fields.insert("index".into(), id.to_hex().into());
        Some(Json::Object(fields))
    }

    pub fn close_ledger(&self) -> LedgerId {
        self.inner().close(&self.shared.events)
    }

    /// Pays `drops` from the genesis account to `address` (creating it), applied
    /// to the open ledger, final at the next close. Returns the transaction hash.
    pub fn faucet(&self, address: &str, drops: u64) -> Result<String, DevnetError> {
        let destination = XrplAddress::parse(address)
            .map_err(|_| DevnetError::InvalidAddress(address.to_owned()))?;
        if drops == 0 || drops > TOTAL_DROPS {
            return Err(DevnetError::InvalidAmount(drops));
        }
        let mut inner = self.inner();
        let Some(genesis) = &inner.genesis else {
            return Err(DevnetError::Signing("no genesis key".into()));
        };
        let sequence = inner
            .open
            .accounts
            .get(&GENESIS_ACCOUNT_ID)
            .map_or(1, |a| a.sequence);
        let signed = sign_xrp_payment(
            genesis,
            &XrpPayment {
                destination,
                destination_tag: None,
                amount_drops: drops,
                fee_drops: BASE_FEE_DROPS,
                sequence,
                last_ledger_sequence: None,
            },
        )
        .map_err(|e| DevnetError::Signing(e.to_string()))?;
        match inner.submit(&signed.blob) {
            Ok(s) if s.result == "tesSUCCESS" => Ok(s.hash),
            Ok(s) => Err(DevnetError::Rejected(s.result.to_owned())),
            Err(e) => Err(DevnetError::Rejected(e.reason)),
        }
    }

    /// The latest validated ledger.
    pub fn validated(&self) -> LedgerId {
        let inner = self.inner();
        let last = inner.last();
        LedgerId {
            index: last.index,
            hash: last.hash.clone(),
            close_time: last.close_time,
        }
    }

    /// The account as the latest validated ledger shows it.
    pub fn account(&self, address: &str) -> Option<AccountInfo> {
        let id = *XrplAddress::parse(address).ok()?.account_id();
        let inner = self.inner();
        let a = inner.closed.accounts.get(&id)?;
        Some(AccountInfo {
            balance_drops: a.balance,
            sequence: a.sequence,
            master_disabled: a.master_disabled(),
            regular_key: a.regular_key.as_ref().map(ledger::address),
            signer_quorum: a.signer_list.as_ref().map(|l| l.quorum),
            signer_entries: a
                .signer_list
                .as_ref()
                .map(|l| {
                    l.entries
                        .iter()
                        .map(|(id, w)| (ledger::address(id), *w))
                        .collect()
                })
                .unwrap_or_default(),
            owner_count: a.owner_count,
        })
    }

    /// Closes a ledger every `interval` until the devnet is dropped or this is
    /// called again. Needs a Tokio runtime.
    pub fn start_auto_close(&self, interval: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("the XRPL devnet's auto-close needs a Tokio runtime; not started");
            return;
        };
        let interval = interval.max(Duration::from_millis(10));
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                lock(&shared.inner).close(&shared.events);
            }
        });
        if let Some(previous) = lock(&self.shared.auto_close).replace(task) {
            previous.abort();
        }
    }

    /// Stops the timer started by [`Self::start_auto_close`].
    pub fn stop_auto_close(&self) {
        if let Some(task) = lock(&self.shared.auto_close).take() {
            task.abort();
        }
    }

    /// Drops every WebSocket connection at once, without a closing handshake, as a
    /// crashed or restarted node would. A test hook for reconnection.
    pub fn disconnect_websocket_clients(&self) {
        self.shared.kick.send_modify(|generation| *generation += 1);
    }

    /// How often the WebSocket server pings each client (new connections).
    pub fn set_ws_ping_interval(&self, interval: Duration) {
        let millis = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(10);
        self.shared.ws_ping_millis.store(millis, Ordering::Relaxed);
    }

    pub(crate) fn ws_ping_interval(&self) -> Duration {
        Duration::from_millis(self.shared.ws_ping_millis.load(Ordering::Relaxed))
    }

    pub(crate) fn ledger_events(&self) -> broadcast::Receiver<Arc<str>> {
        self.shared.events.subscribe()
    }

    pub(crate) fn kicks(&self) -> watch::Receiver<u64> {
        self.shared.kick.subscribe()
    }
}

/// The running servers; dropping this stops them and closes every connection.
pub struct XrplDevnetServers {
    pub ws_url: String,
    pub rpc_url: String,
    ws_task: tokio::task::JoinHandle<()>,
    rpc: actix_web::dev::ServerHandle,
    /// Dropped with the servers: WebSocket connections watch it and end.
    _shutdown: watch::Sender<()>,
}

impl XrplDevnetServers {
    /// Stops both servers and waits for the JSON-RPC server to finish.
    pub async fn stop(self) {
        self.ws_task.abort();
        self.rpc.stop(false).await;
    }
}

impl Drop for XrplDevnetServers {
    fn drop(&mut self) {
        self.ws_task.abort();
        // Sends the stop command now; nobody needs to wait for it here.
        drop(self.rpc.stop(false));
    }
}

#[cfg(test)]
mod tests;
