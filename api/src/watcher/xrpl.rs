//! The XRPL watcher: walks validated ledgers in order from its cursor, follows
//! every transaction touching an escrow account (its creation, its signer list
//! and master-key switch, deposits, payouts), and turns them into order
//! events in one database transaction per ledger together with the cursor.
//! The submitter sends what is due: the set-up transactions, then the signed
//! payouts; a payout whose `LastLedgerSequence` passed unvalidated is rebuilt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agora_domain::escrow::EscrowState;
use agora_escrow::source::{Ledger, LedgerId, SourceError, XrplSource};
use agora_escrow::xrpl::{last_ledger_sequence_of, sequence_of, SignedTx};
use agora_persistence::chain::{self, ScannedBlock};
use agora_persistence::orders as order_store;
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::lock::WatcherLock;
use super::{note, WatchError};
use crate::graphql::context::AppState;
use crate::orders::chain::{apply_xrpl_event, deliver_xrpl_event, XrplChainEvent};
use crate::orders::xrpl::{SetupStatus, XrplEscrow};
use crate::orders::signing::SigningGate;
use crate::orders::{self, EscrowRecord, Order};

const CHAIN: &str = "xrpl";
const KEEP_LEDGERS: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Idle,
    Scanned { index: u32 },
}

pub struct XrplWatcher<S> {
    app: Arc<AppState>,
    source: S,
    start_index: Option<u32>,
}

fn xrpl_of(order: &Order) -> Option<&XrplEscrow> {
    match &order.escrow {
        EscrowRecord::Xrpl(x) => Some(x),
        EscrowRecord::Bitcoin(_) => None,
    }
}

fn str_field<'a>(tx: &'a serde_json::Value, field: &str) -> &'a str {
    tx.get(field).and_then(|v| v.as_str()).unwrap_or_default()
}

impl<S: XrplSource> XrplWatcher<S> {
    pub fn new(app: Arc<AppState>, source: S) -> Self {
        Self {
            app,
            source,
            start_index: None,
        }
    }

    pub fn starting_at(mut self, index: u32) -> Self {
        self.start_index = Some(index);
        self
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// Processes the next validated ledger, if there is one.
    pub async fn step(&self) -> Result<Step, WatchError> {
        let validated = self.source.validated_ledger().await?;
        self.app.tips.set_xrpl(u64::from(validated.index));
        let cursor = chain::cursor(&self.app.db, CHAIN).await?;
        let next = match &cursor {
            Some(c) => u32::try_from(c.height + 1).map_err(|_| WatchError::Store("ledger index overflow".into()))?,
            None => self.start_index.unwrap_or(validated.index),
        };
        if next > validated.index {
            return Ok(Step::Idle);
        }
        let ledger = match self.source.ledger(next).await {
            Ok(l) => l,
            Err(SourceError::NotFound) => return Ok(Step::Idle),
            Err(e) => return Err(e.into()),
        };
        if let Some(c) = &cursor {
            // Validated ledgers are final; a broken link means the source is
            // not the network the cursor came from.
            if !ledger.parent_hash.eq_ignore_ascii_case(&c.hash) {
                return Err(WatchError::Store(format!(
                    "ledger {} does not follow the cursor's ledger {} (parent hash mismatch)",
                    ledger.index, c.height
                )));
            }
        }
        self.scan(&ledger).await?;
        Ok(Step::Scanned { index: ledger.index })
    }

    async fn scan(&self, ledger: &Ledger) -> Result<(), WatchError> {
        let txn = self.app.db.begin().await?;
        let mut by_account: HashMap<String, Order> = HashMap::new();
        // A provider's own claims on an escrow's channel name the channel, not the escrow.
        let mut by_channel: HashMap<String, String> = HashMap::new();
        for record in order_store::open_orders(&txn, CHAIN).await? {
            let order = Order::from_record(record)?;
            if let Some(x) = xrpl_of(&order) {
                if let Some(ch) = &x.channel {
                    by_channel.insert(ch.id.to_hex(), x.address.to_string());
                }
                by_account.insert(x.address.to_string(), order);
            }
        }
        let operating = self.app.xrpl.operating.address.to_string();
        for tx in &ledger.transactions {
            let account = str_field(&tx.tx, "Account");
            let destination = str_field(&tx.tx, "Destination");
            let kind = str_field(&tx.tx, "TransactionType");
            let success = tx.result == "tesSUCCESS";
            let channel = str_field(&tx.tx, "Channel").to_uppercase();
            let (order, outgoing) = if let Some(o) = by_account.get(account) {
                (o, true)
            } else if let Some(o) = by_account.get(destination) {
                (o, false)
            } else if let Some(o) = by_channel.get(&channel).and_then(|a| by_account.get(a)) {
                (o, false)
            } else {
                continue;
            };
            let id = order.id();
            let Some(x) = xrpl_of(order) else { continue };
            let address = x.address.to_string();
            let mut events = Vec::new();
            // Channel events go after the Sequence the transaction consumed.
            let mut channel_events = Vec::new();
            let ours = x.channel.as_ref().is_some_and(|c| c.id.to_hex() == channel);
            if kind == "PaymentChannelClaim" && ours {
                // The escrow's own close, or the provider redeeming a claim.
                let balance = tx.tx.get("Balance").and_then(serde_json::Value::as_str).and_then(|b| b.parse::<u64>().ok());
                let flags = tx.tx.get("Flags").and_then(serde_json::Value::as_u64).unwrap_or(0);
                channel_events.push(XrplChainEvent::ChannelClaimApplied {
                    hash: tx.hash.to_uppercase(),
                    result: tx.result.clone(),
                    balance_drops: balance.filter(|_| success),
                    destination_closed: success && !outgoing && flags & u64::from(agora_escrow::xrpl::TF_CLOSE) != 0,
                    ledger_index: ledger.index,
                });
            }
            if outgoing && kind == "PaymentChannelCreate" {
                let create = x.channel.as_ref().and_then(|c| c.create.fin.as_ref());
                if create.is_some_and(|f| f.hash.eq_ignore_ascii_case(&tx.hash)) {
                    channel_events.push(XrplChainEvent::ChannelCreateApplied {
                        hash: tx.hash.to_uppercase(),
                        result: tx.result.clone(),
                        ledger_index: ledger.index,
                    });
                } else {
                    note(&txn, id, "UnexpectedSpend", &format!("{} ({})", tx.hash, tx.result), self.app.clock.now()).await?;
                }
            }
            if !outgoing && kind == "PaymentChannelClaim" {
                // Nothing else to read from a provider's claim.
            } else if !outgoing && kind == "Payment" && account == operating {
                // The reserve and set-up fees. The account may exist already
                // (an early deposit creates it): its Sequence is read back
                // from the ledger before anything is signed for it.
                if success && x.setup.status == SetupStatus::AwaitingAccount {
                    events.push(XrplChainEvent::AccountCreated { ledger_index: ledger.index });
                }
            } else if !outgoing && kind == "Payment" {
                // A deposit (the buyer's, or anyone's: the balance is what
                // counts). It counts towards funding only once the lock holds.
                if success {
                    events.push(XrplChainEvent::Funding {
                        deposit_drops: x.funded_drops + tx.delivered_drops.unwrap_or(0),
                        ledger_index: ledger.index,
                    });
                }
            } else if outgoing {
                // Every transaction in a validated ledger consumes its Sequence,
                // `tec` included (Ticketed ones have Sequence 0).
                if let Some(sequence) = tx.tx.get("Sequence").and_then(serde_json::Value::as_u64) {
                    if let Ok(sequence @ 1..) = u32::try_from(sequence) {
                        events.push(XrplChainEvent::SequenceConsumed { sequence, ledger_index: ledger.index });
                    }
                }
                let refund = x.setup.refund.as_ref().is_some_and(|r| r.hash.eq_ignore_ascii_case(&tx.hash));
                if kind == "Payment" && refund {
                    if success {
                        events.push(XrplChainEvent::DepositRefunded { ledger_index: ledger.index });
                    }
                } else if kind == "Payment" {
                    let ours = x
                        .payout
                        .as_ref()
                        .is_some_and(|p| p.finals.iter().flatten().any(|f| f.hash.eq_ignore_ascii_case(&tx.hash)));
                    if ours && success {
                        events.push(XrplChainEvent::PayoutValidated {
                            hash: tx.hash.to_uppercase(),
                            ledger_index: ledger.index,
                        });
                    } else if ours && tx.result.starts_with("tec") {
                        events.push(XrplChainEvent::PayoutFailed {
                            hash: tx.hash.to_uppercase(),
                            result: tx.result.clone(),
                            ledger_index: ledger.index,
                        });
                    } else {
                        tracing::warn!(order.id = %id, xrpl.hash = %tx.hash, result = %tx.result, "unexpected payment from an escrow account");
                        note(&txn, id, "UnexpectedSpend", &format!("{} ({})", tx.hash, tx.result), self.app.clock.now()).await?;
                    }
                }
            }
            events.extend(channel_events);
            for event in events {
                match Box::pin(apply_xrpl_event(&self.app, &txn, id, event.clone())).await {
                    Ok(updated) => {
                        by_account.insert(address.clone(), updated);
                    }
                    Err(e) => tracing::warn!(order.id = %id, event = ?event, error = ?e, "ledger event refused"),
                }
            }
        }
        chain::advance(
            &txn,
            CHAIN,
            &ScannedBlock {
                height: u64::from(ledger.index),
                hash: ledger.hash.clone(),
            },
            KEEP_LEDGERS,
            self.app.clock.now(),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Sends what is due: set-up transactions and complete payouts; rebuilds
    /// payouts and set-ups that can no longer apply. Returns how many blobs the
    /// ledger accepted.
    ///
    /// Every decision that a signed transaction is dead is taken from ledgers
    /// the scanner has read (`scanned`): its `LastLedgerSequence` passed, or its
    /// Sequence was consumed by another transaction. A transaction that might
    /// still apply is never replaced by one on another Sequence, so nothing is
    /// ever paid twice.
    pub async fn submit_pending(&self) -> Result<usize, WatchError> {
        let orders: Vec<Order> = order_store::open_orders(&self.app.db, CHAIN)
            .await?
            .into_iter()
            .map(Order::from_record)
            .collect::<Result<_, _>>()?;
        // The operating account first, then the validated ledger: the ledger
        // read is never older than what account_info reflects.
        let awaiting = orders.iter().any(|o| xrpl_of(o).is_some_and(|x| x.setup.status == SetupStatus::AwaitingAccount));
        let operating = if awaiting {
            Some(
                self.source
                    .account_info(self.app.xrpl.operating.address.as_str())
                    .await?
                    .ok_or_else(|| WatchError::Store("the operating account does not exist on the ledger".into()))?,
            )
        } else {
            None
        };
        let validated_ledger = self.source.validated_ledger().await?;
        let validated = validated_ledger.index;
        let scanned = match chain::cursor(&self.app.db, CHAIN).await? {
            Some(c) => u32::try_from(c.height).unwrap_or(u32::MAX),
            None => return Ok(0),
        };
        let mut sent = 0;
        let mut operating_seqs = OperatingSequences::new(operating.as_ref().map_or(0, |i| i.sequence), scanned >= validated);
        for order in &orders {
            if let Some(x) = xrpl_of(order) {
                if x.setup.status == SetupStatus::AwaitingAccount {
                    operating_seqs.hold(x, scanned);
                }
            }
        }
        for order in orders {
            let Some(x) = xrpl_of(&order) else { continue };
            let id = order.id();
            if matches!(order.state, EscrowState::Expired { .. }) && x.setup.status != SetupStatus::Ready {
                // Never locked in time: no more set-up, the deposits go back.
                sent += self.refund_unlocked(&order, x, validated).await?;
                continue;
            }
            match x.setup.status {
                SetupStatus::AwaitingAccount => {
                    let blob = match &x.setup.funding {
                        Some(f) if !operating_seqs.dead(x, scanned) => f.blob.clone(),
                        _ => {
                            let sequence = operating_seqs.take();
                            let order = crate::orders::chain::prepare_xrpl_account(&self.app, id, sequence, validated).await?;
                            match xrpl_of(&order).and_then(|x| x.setup.funding.as_ref()) {
                                Some(f) => f.blob.clone(),
                                None => continue,
                            }
                        }
                    };
                    sent += self.submit(id, &blob).await?;
                }
                SetupStatus::Configuring => sent += self.configure(&order, x, validated).await?,
                SetupStatus::Ready => {}
            }
            if x.channel.is_some() {
                sent += Box::pin(self.drive_channel(id, x, &validated_ledger, scanned)).await?;
            }
            let Some(payout) = &x.payout else { continue };
            if !matches!(order.state, EscrowState::PayingOut { .. }) || payout.all_validated() {
                continue;
            }
            let dead = payout.dead_positions(scanned, x.next_sequence.unwrap_or(0));
            if !dead.is_empty() {
                self.rebuild_payout(id, &dead, validated, scanned).await?;
                continue;
            }
            for i in payout.open_positions() {
                if let Some(fin) = &payout.finals[i] {
                    sent += self.submit(id, &fin.blob).await?;
                }
            }
        }
        Ok(sent)
    }

    /// Moves a metered order's payment channel along: sends its create once
    /// signed (until a validated ledger holds it, or its Sequence went to
    /// another transaction), reads the channel back after a transaction
    /// touched it, sends the provider's own closing claim, and the escrow's
    /// closing transactions — the second only once the ledger's close time
    /// (`close_time`) passed the `Expiration` the first one set.
    async fn drive_channel(&self, id: Uuid, x: &XrplEscrow, validated: &LedgerId, scanned: u32) -> Result<usize, WatchError> {
        use crate::orders::channel::ChannelStatus;
        let close_time = validated.close_time;
        let Some(ch) = &x.channel else { return Ok(0) };
        let mut sent = 0;
        match ch.status {
            ChannelStatus::Proposed => {
                let Some(fin) = &ch.create.fin else { return Ok(0) };
                if ch.create.spec.sequence < x.next_sequence.unwrap_or(0) {
                    let event = XrplChainEvent::ChannelCreateDead { ledger_index: x.ledger_index };
                    Box::pin(crate::orders::chain::deliver_xrpl_event(&self.app, id, event)).await?;
                    return Ok(0);
                }
                sent += self.submit(id, &fin.blob).await?;
            }
            ChannelStatus::Open => {
                if ch.recheck {
                    let info = self.source.channel(&ch.id.to_hex()).await?;
                    let account = self.source.account_info(x.address.as_str()).await?;
                    let validated = self.source.validated_ledger().await?.index;
                    let spendable = account.map_or(0, |a| {
                        let reserve = self.app.xrpl.reserves.base_drops.saturating_add(
                            self.app.xrpl.reserves.owner_drops.saturating_mul(u64::from(a.owner_count)),
                        );
                        a.balance_drops.saturating_sub(reserve)
                    });
                    let event = XrplChainEvent::ChannelRead { channel: info, spendable_drops: spendable, ledger_index: validated };
                    Box::pin(crate::orders::chain::deliver_xrpl_event(&self.app, id, event)).await?;
                    return Ok(0);
                }
                if let Some(close) = &ch.provider_close {
                    match self.source.submit(&close.blob).await {
                        Ok(outcome) if outcome.accepted() => sent += 1,
                        // Refused for good while the channel is open and every
                        // validated ledger was scanned (had it applied, the scan
                        // would have seen it and the channel be read closed).
                        Ok(outcome)
                            if scanned >= validated.index && (outcome.engine_result.starts_with("tef") || outcome.engine_result.starts_with("tem")) =>
                        {
                            let event = XrplChainEvent::ProviderCloseDead { result: outcome.engine_result, ledger_index: validated.index };
                            Box::pin(crate::orders::chain::deliver_xrpl_event(&self.app, id, event)).await?;
                            return Ok(sent);
                        }
                        Ok(_) => {}
                        Err(SourceError::Rejected(reason)) if scanned >= validated.index => {
                            let event = XrplChainEvent::ProviderCloseDead { result: reason, ledger_index: validated.index };
                            Box::pin(crate::orders::chain::deliver_xrpl_event(&self.app, id, event)).await?;
                            return Ok(sent);
                        }
                        Err(SourceError::Rejected(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let (first, second) = (ch.close.first(), ch.close.get(1));
                if let Some(fin) = first.filter(|s| !s.applied()).and_then(|s| s.fin.as_ref()) {
                    sent += self.submit(id, &fin.blob).await?;
                } else if let Some(fin) = second.filter(|s| !s.applied()).and_then(|s| s.fin.as_ref()) {
                    if ch.expiration.is_some_and(|e| close_time >= e) {
                        sent += self.submit(id, &fin.blob).await?;
                    }
                }
            }
            ChannelStatus::Closed | ChannelStatus::Abandoned => {}
        }
        Ok(sent)
    }

    /// The escrow account exists with its reserve: reads it back, and either
    /// records the lock (it holds) or signs and sends what is missing from the
    /// account's real next Sequence.
    async fn configure(&self, order: &Order, x: &XrplEscrow, validated: u32) -> Result<usize, WatchError> {
        let id = order.id();
        let Some(info) = self.source.account_info(x.address.as_str()).await? else {
            return Ok(0);
        };
        if x.lock_holds(&info) {
            let event = XrplChainEvent::SetupValidated {
                ledger_index: validated,
                next_sequence: info.sequence,
            };
            if let Err(e) = deliver_xrpl_event(&self.app, id, event).await {
                tracing::warn!(order.id = %id, error = ?e, "the escrow account's lock could not be recorded");
            }
            return Ok(0);
        }
        let in_place = x.signer_list_in_place(&info);
        let needed: Vec<&SignedTx> = if in_place {
            x.setup.disable_master.iter().collect()
        } else {
            [&x.setup.signer_list_set, &x.setup.disable_master].into_iter().flatten().collect()
        };
        // Usable: signed for the Sequence the account has now, in the right
        // number, and still within its LastLedgerSequence.
        let fresh = needed.len() == if in_place { 1 } else { 2 }
            && needed.first().and_then(|t| sequence_of(&t.blob)) == Some(info.sequence)
            && !needed.iter().any(|t| last_ledger_sequence_of(&t.blob).is_none_or(|l| validated > l));
        let blobs: Vec<String> = if fresh {
            needed.iter().map(|t| t.blob.clone()).collect()
        } else {
            let event = XrplChainEvent::ConfigurationDue {
                sequence: info.sequence,
                validated,
                signer_list_in_place: in_place,
            };
            let order = match deliver_xrpl_event(&self.app, id, event).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(order.id = %id, error = ?e, "the escrow account's configuration could not be signed");
                    return Ok(0);
                }
            };
            let Some(x) = xrpl_of(&order) else { return Ok(0) };
            [&x.setup.signer_list_set, &x.setup.disable_master].into_iter().flatten().map(|t| t.blob.clone()).collect()
        };
        let mut sent = 0;
        for blob in &blobs {
            sent += self.submit(id, blob).await?;
        }
        Ok(sent)
    }

    /// The order expired before its escrow account was locked: the account's
    /// master key can still sign, so the deposits are returned to the buyer
    /// in a Payment at the account's next Sequence (it competes with any
    /// set-up transaction still in flight; if the lock comes through after
    /// all, the deposits count as late funds and are refunded through the
    /// signer list instead).
    async fn refund_unlocked(&self, order: &Order, x: &XrplEscrow, validated: u32) -> Result<usize, WatchError> {
        let id = order.id();
        if x.setup.refunded || x.funded_drops == 0 {
            return Ok(0);
        }
        let Some(info) = self.source.account_info(x.address.as_str()).await? else {
            return Ok(0);
        };
        if info.master_disabled {
            return if x.setup.status == SetupStatus::Configuring { self.configure(order, x, validated).await } else { Ok(0) };
        }
        let fresh = x.setup.refund.as_ref().filter(|t| {
            sequence_of(&t.blob) == Some(info.sequence) && last_ledger_sequence_of(&t.blob).is_some_and(|l| validated <= l)
        });
        let blob = match fresh {
            Some(t) => t.blob.clone(),
            None => {
                let now = self.app.clock.now();
                let reserves = self.app.xrpl.reserves;
                let reserve = reserves.base_drops + if info.signer_quorum.is_some() { reserves.owner_drops } else { 0 };
                let available = info.balance_drops.saturating_sub(reserve);
                let txn = self.app.db.begin().await?;
                let mut fresh = orders::load(&txn, id).await?;
                match SigningGate::sign_unlocked_refund(&self.app, &txn, &mut fresh, info.sequence, available, validated, now).await {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(order.id = %id, error = ?e, "the deposits of an unlocked escrow account are not refunded");
                        return Ok(0);
                    }
                }
                orders::save(&txn, &mut fresh, now).await?;
                note(&txn, id, "DepositRefundSigned", "the order expired before the escrow account was locked; its deposits go back to the buyer", now).await?;
                txn.commit().await?;
                match xrpl_of(&fresh).and_then(|x| x.setup.refund.as_ref()) {
                    Some(t) => t.blob.clone(),
                    None => return Ok(0),
                }
            }
        };
        self.submit(id, &blob).await
    }

    /// Submits one blob and classifies the engine result: `tes` and `ter`
    /// (queued, waiting for an earlier Sequence) may still apply; `tef` (its
    /// Sequence is consumed, or its LastLedgerSequence passed) and `tem` (it
    /// is malformed) never apply as submitted and are noted in the history; a
    /// `tec` result is only final in a validated ledger, where the scanner
    /// reads it. Returns 1 when the ledger accepted it for consideration.
    async fn submit(&self, id: Uuid, blob: &str) -> Result<usize, WatchError> {
        match self.source.submit(blob).await {
            Ok(outcome) if outcome.accepted() => Ok(1),
            Ok(outcome) if outcome.engine_result == "tefPAST_SEQ" || outcome.engine_result == "tefALREADY" => {
                // Already applied (the scanner will read it) or its Sequence
                // went to another transaction (the scanner sees that too, and
                // the Payment is rebuilt then): not sent, nothing to note.
                Ok(0)
            }
            Ok(outcome) => {
                tracing::warn!(order.id = %id, result = %outcome.engine_result, "the ledger refused a transaction");
                note(&self.app.db, id, "SubmitRefused", &outcome.engine_result, self.app.clock.now()).await?;
                Ok(0)
            }
            Err(SourceError::Rejected(reason)) => {
                note(&self.app.db, id, "SubmitRefused", &reason, self.app.clock.now()).await?;
                Ok(0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Payments of the payout at `dead` can never apply as signed: build them
    /// again on free Sequences with a fresh `LastLedgerSequence`; the
    /// marketplace re-signs only if its policy still allows, and the parties
    /// sign again. Validated Payments and those that can still apply are kept.
    async fn rebuild_payout(&self, id: Uuid, dead: &[usize], validated: u32, scanned: u32) -> Result<(), WatchError> {
        let now = self.app.clock.now();
        let ledger_next = match xrpl_of(&orders::load(&self.app.db, id).await?) {
            Some(x) => self.source.account_info(x.address.as_str()).await?.map_or(0, |i| i.sequence),
            None => return Ok(()),
        };
        let txn = self.app.db.begin().await?;
        let mut order = orders::load(&txn, id).await?;
        let EscrowState::PayingOut { payout, .. } = &order.state else {
            return Ok(());
        };
        let outcome = payout.outcome();
        let Some(x) = xrpl_of(&order) else { return Ok(()) };
        let signed_before = x.signed_by();
        let had_marketplace = signed_before.contains(&"arbitrator");
        let Some(p) = &x.payout else { return Ok(()) };
        let consumed = x.next_sequence.unwrap_or(0);
        // Re-read under the transaction: only what is still dead is rebuilt.
        let dead: Vec<usize> = p.dead_positions(scanned, consumed).into_iter().filter(|i| dead.contains(i)).collect();
        let Some(first) = dead.first().map(|i| p.transactions[*i].clone()) else { return Ok(()) };
        let why = if first.sequence < consumed {
            format!("its Sequence {} was used by another transaction of the escrow account", first.sequence)
        } else {
            format!("the payout expired at ledger {} before it was validated", first.last_ledger_sequence)
        };
        let ctx = crate::orders::system_context(&order, u64::from(validated), now);
        if let EscrowRecord::Xrpl(x) = &mut order.escrow {
            x.rebuild_payments(&self.app.xrpl, &dead, validated, ledger_next, scanned)?;
        }
        // The re-signature goes through the one signing gate: the policy is
        // checked again and the signature is audited like the first one.
        if had_marketplace {
            if let Err(e) = SigningGate::sign_payout(&self.app, &txn, &mut order, outcome, &ctx).await {
                tracing::warn!(order.id = %id, error = ?e, "the marketplace does not re-sign the rebuilt payout");
            }
        }
        orders::save(&txn, &mut order, now).await?;
        let parties: Vec<&str> = signed_before.into_iter().filter(|p| *p != "arbitrator").collect();
        let signed = if parties.is_empty() { "nobody".to_owned() } else { parties.join(" and ") };
        let kept = if dead.len() == 1 { "its Payment is" } else { "its Payments are" };
        let detail = format!(
            "{why} (signed by {signed}); {kept} rebuilt, signable until ledger {}: the signatures cover the Sequence and the expiry, so sign them again",
            self.app.xrpl.last_ledger_sequence(validated)
        );
        note(&txn, id, "PayoutRebuilt", &detail, now).await?;
        txn.commit().await?;
        tracing::warn!(order.id = %id, "payout rebuilt: {why}");
        Ok(())
    }

    /// Runs while it holds the lock: step, submit, wait for the next ledger when idle.
    pub async fn run(self, mut lock: WatcherLock, poll: Duration) {
        let mut backoff = poll;
        loop {
            if !lock.still_held().await {
                tracing::error!(chain = CHAIN, "lost the watcher lock; stopping");
                return;
            }
            let stepped = self.step().await;
            let submitted = self.submit_pending().await;
            match (&stepped, &submitted) {
                (Ok(Step::Idle), Ok(_)) => {
                    backoff = poll;
                    let after = u32::try_from(self.app.tips.xrpl()).unwrap_or(u32::MAX);
                    let _ = self.source.wait_for_ledger(after, poll).await;
                }
                (Ok(_), Ok(_)) => backoff = poll,
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(chain = CHAIN, error = %e, "watcher step failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}


/// Sequences of the operating account for the escrow accounts' funding
/// Payments: one submitter, many orders at once. Held are the Sequences of
/// funding Payments that can still apply; a new one gets the lowest free
/// Sequence from the account's own, so orders placed together never share a
/// Sequence and a dead Payment's gap is filled first.
struct OperatingSequences {
    next: u32,
    /// The scanner has read every ledger `account_info` reflects, so a
    /// Sequence below the account's is known to be taken by another Payment.
    caught_up: bool,
    held: Vec<u32>,
}

impl OperatingSequences {
    fn new(next: u32, caught_up: bool) -> Self {
        Self {
            next,
            caught_up,
            held: Vec::new(),
        }
    }

    /// Whether the order's signed funding Payment can never apply: its
    /// LastLedgerSequence passed in a scanned ledger, or (caught up) its
    /// Sequence is below the account's while the order still awaits it.
    fn dead(&self, x: &XrplEscrow, scanned: u32) -> bool {
        let Some(f) = &x.setup.funding else { return true };
        let expired = last_ledger_sequence_of(&f.blob).is_none_or(|l| scanned > l);
        let consumed = self.caught_up && sequence_of(&f.blob).is_none_or(|s| s < self.next);
        expired || consumed
    }

    fn hold(&mut self, x: &XrplEscrow, scanned: u32) {
        if !self.dead(x, scanned) {
            if let Some(s) = x.setup.funding.as_ref().and_then(|f| sequence_of(&f.blob)) {
                self.held.push(s);
            }
        }
    }

    fn take(&mut self) -> u32 {
        let mut candidate = self.next;
        while self.held.contains(&candidate) {
            candidate = candidate.saturating_add(1);
        }
        self.held.push(candidate);
        candidate
    }
}
