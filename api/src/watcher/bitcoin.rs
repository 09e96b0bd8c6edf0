//! The Bitcoin watcher: scans blocks in order from its cursor, matches outputs
//! to escrow scripts and spends of escrow outpoints, and turns them into order
//! events — in one database transaction per block together with the cursor. A
//! block whose parent is not the cursor is a reorg: it walks back to the fork
//! point, reverts the escrows' chain-derived state, and scans the new branch.
//! The broadcaster sends finished payouts until they confirm.
//!
//! What to match comes from an in-memory [`WatchIndex`], built when the
//! watcher starts (becomes leader) and kept current without reloading: orders
//! placed since are added before each block, the entries of the orders a block
//! or a reorg changed are replaced once its transaction committed. Only the
//! orders a block touches, or that wait on the height, are loaded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agora_domain::escrow::{timelock_margin_reached, Settled};
use agora_domain::money::BasisPoints;
use agora_escrow::source::{BitcoinSource, SourceError};
use agora_persistence::chain::{self, ScannedBlock};
use agora_persistence::orders as order_store;
use bitcoin::{Block, OutPoint, Transaction, Txid};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use super::bitcoin_index::{WatchEntry, WatchIndex};
use super::lock::WatcherLock;
use super::{note, WatchError};
use crate::graphql::context::AppState;
use crate::orders::bitcoin::{BtcEscrow, FeeBump, OtherSpend, StoredUtxo};
use crate::orders::signing::SigningGate;
use crate::orders::chain::{apply_bitcoin_event, funding_frozen, BitcoinChainEvent};
use crate::orders::{self, EscrowRecord, Order};

const CHAIN: &str = "bitcoin";
/// Blocks remembered for finding a reorg's fork point.
const KEEP_BLOCKS: u64 = 1_000;
/// How often an unconfirmed payout is sent again.
const REBROADCAST_AFTER: chrono::Duration = chrono::Duration::seconds(60);
/// Orders read per query while the watch index is built.
const INDEX_PAGE: u64 = 5_000;
/// How long a broadcast payout may stay unconfirmed before a fee bump is considered.
pub const BUMP_AFTER: chrono::Duration = chrono::Duration::minutes(30);

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The cursor is at the tip.
    Idle,
    Scanned { height: u64 },
    Reorged { fork_height: u64 },
}

pub struct BitcoinWatcher<S> {
    app: Arc<AppState>,
    source: S,
    /// Where to start when there is no cursor yet (default: 6 below the tip).
    start_height: Option<u64>,
    /// Crash-safety tests: fail after applying this many order events of a block.
    fail_after_events: Option<usize>,
    /// Built on the first step; `None` again whenever it may disagree with the
    /// database (a commit whose outcome is unknown). Held for a whole step.
    index: tokio::sync::Mutex<Option<WatchIndex>>,
}

fn btc_of(order: &Order) -> Option<&BtcEscrow> {
    match &order.escrow {
        EscrowRecord::Bitcoin(b) => Some(b),
        EscrowRecord::Xrpl(_) => None,
    }
}

impl<S: BitcoinSource> BitcoinWatcher<S> {
    pub fn new(app: Arc<AppState>, source: S) -> Self {
        Self {
            app,
            source,
            start_height: None,
            fail_after_events: None,
            index: tokio::sync::Mutex::new(None),
        }
    }

    pub fn starting_at(mut self, height: u64) -> Self {
        self.start_height = Some(height);
        self
    }

    /// Makes the next block's transaction fail after `n` order events, as a
    /// crash mid-block would (tests use it to prove nothing is half-applied).
    pub fn fail_after_events(mut self, n: Option<usize>) -> Self {
        self.fail_after_events = n;
        self
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// The watch index, built from every order on the chain if there is none
    /// yet (or the chain cursor moved without it: another watcher led in
    /// between), then brought up to date with the orders placed since.
    async fn current_index<'g, C: sea_orm::ConnectionTrait>(
        &self,
        guard: &'g mut Option<WatchIndex>,
        db: &C,
    ) -> Result<&'g mut WatchIndex, WatchError> {
        let cursor = cursor_key(chain::cursor(db, CHAIN).await?);
        if guard.as_ref().is_some_and(|i| i.cursor() != cursor.as_ref()) {
            tracing::info!(chain = CHAIN, "the chain cursor moved without this watcher; rebuilding the watch index");
            *guard = None;
        }
        match guard.as_mut() {
            Some(index) => add_orders_since(index, db).await?,
            None => {
                // Built aside: a failure half-way leaves no partial index behind.
                let started = std::time::Instant::now();
                let mut index = WatchIndex::new();
                index.set_cursor(cursor);
                add_orders_since(&mut index, db).await?;
                tracing::info!(chain = CHAIN, orders = index.len(), elapsed.ms = started.elapsed().as_millis() as u64, "watch index built");
                *guard = Some(index);
            }
        }
        guard.as_mut().ok_or_else(|| WatchError::Store("the watch index vanished".into()))
    }

    /// Processes the next block (or a reorg) if there is one.
    pub async fn step(&self) -> Result<Step, WatchError> {
        let mut guard = self.index.lock().await;
        let tip = self.source.tip().await?;
        self.app.tips.set_bitcoin(tip.height);
        let cursor = chain::cursor(&self.app.db, CHAIN).await?;
        let next_height = match &cursor {
            Some(c) => c.height + 1,
            None => self.start_height.unwrap_or(tip.height.saturating_sub(6)),
        };
        if next_height > tip.height {
            return Ok(Step::Idle);
        }
        let hash = match self.source.block_hash(next_height).await {
            Ok(h) => h,
            // The tip moved back between the two calls (a reorg in progress).
            Err(SourceError::NotFound) => return Ok(Step::Idle),
            Err(e) => return Err(e.into()),
        };
        let block = self.source.block(hash).await?;
        if let Some(c) = &cursor {
            if block.header.prev_blockhash.to_string() != c.hash {
                return self.reorg(&mut guard, c.height).await;
            }
        }
        self.scan(&mut guard, next_height, &block).await?;
        Ok(Step::Scanned { height: next_height })
    }

    /// Walks back from `height` to the last block both the node and the cursor
    /// history agree on, reverts what the abandoned blocks did, rewinds.
    async fn reorg(&self, guard: &mut Option<WatchIndex>, height: u64) -> Result<Step, WatchError> {
        let mut h = height;
        let fork = loop {
            let Some(stored) = chain::block_at(&self.app.db, CHAIN, h).await? else {
                return Err(WatchError::ReorgTooDeep(KEEP_BLOCKS));
            };
            match self.source.block_hash(h).await {
                Ok(node) if node.to_string() == stored => break h,
                Ok(_) | Err(SourceError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            if h == 0 {
                return Err(WatchError::ReorgTooDeep(KEEP_BLOCKS));
            }
            h -= 1;
        };
        tracing::warn!(chain = CHAIN, fork.height = fork, from.height = height, "reorg: reverting to the fork point");
        let txn = self.app.db.begin().await?;
        // Only an order with a chain fact above the fork can lose anything.
        let touched = self.current_index(guard, &txn).await?.touched_above(fork);
        for &id in &touched {
            let order = orders::load(&txn, id).await?;
            let Some(btc) = btc_of(&order) else { continue };
            let lost_funding = btc.funding.iter().any(|u| u.height.is_some_and(|uh| uh > fork));
            let lost_payout = btc.payout.as_ref().and_then(|p| p.mined_at).is_some_and(|m| m > fork);
            if lost_payout {
                let id = order.id();
                mark_payout_unmined(&self.app, &txn, id).await?;
                if let Err(e) = apply_bitcoin_event(&self.app, &txn, id, BitcoinChainEvent::PayoutReorged).await {
                    tracing::warn!(order.id = %id, error = ?e, "payout reorg not applied");
                }
            }
            let lost_stray = btc.strays.iter().any(|s| s.utxo.height.is_some_and(|h| h > fork));
            let lost_other = btc.other_spend.as_ref().is_some_and(|o| o.mined_at > fork);
            if lost_stray || lost_other {
                update_btc(&self.app, &txn, order.id(), |b| {
                    // A stray output that left the chain is forgotten (it is
                    // found again if it confirms again); so is a foreign spend.
                    b.strays.retain(|s| s.utxo.height.is_none_or(|h| h <= fork));
                    if b.other_spend.as_ref().is_some_and(|o| o.mined_at > fork) {
                        b.other_spend = None;
                    }
                })
                .await?;
            }
            if lost_funding && !funding_frozen(&order) {
                let id = order.id();
                let remaining: Vec<StoredUtxo> =
                    btc.funding.iter().copied().filter(|u| u.height.is_some_and(|uh| uh <= fork)).collect();
                let event = if remaining.is_empty() {
                    BitcoinChainEvent::FundingReorged
                } else {
                    BitcoinChainEvent::Outputs { utxos: remaining, tip: fork }
                };
                if let Err(e) = apply_bitcoin_event(&self.app, &txn, id, event).await {
                    tracing::warn!(order.id = %id, error = ?e, "funding reorg not applied");
                }
            } else if lost_funding {
                // Accepted funding left the chain: the domain decides (back to
                // awaiting funding before delivery, an alert after).
                let id = order.id();
                let remaining: Vec<StoredUtxo> =
                    btc.funding.iter().copied().filter(|u| u.height.is_some_and(|uh| uh <= fork)).collect();
                if let Err(e) = apply_bitcoin_event(&self.app, &txn, id, BitcoinChainEvent::FundingLost { remaining }).await {
                    tracing::warn!(order.id = %id, error = ?e, "funding reorg not applied");
                }
            }
        }
        chain::rewind(&txn, CHAIN, fork).await?;
        let entries = entries_of(&txn, &touched).await?;
        commit_and_index(txn, guard, entries).await?;
        Ok(Step::Reorged { fork_height: fork })
    }

    /// Applies one block: every change it causes and the cursor, atomically.
    async fn scan(&self, guard: &mut Option<WatchIndex>, height: u64, block: &Block) -> Result<(), WatchError> {
        let txn = self.app.db.begin().await?;
        let index = self.current_index(guard, &txn).await?;
        let matches = index.match_block(block);
        // The orders this block touches, and those that wait on the height
        // (confirmations, the timelock margin, stray refunds), by id.
        let mut candidates = matches.orders();
        candidates.extend(index.awake_at(height));
        let mut txids: HashMap<usize, Txid> = HashMap::new();
        let mut txid_of = |t: usize| *txids.entry(t).or_insert_with(|| block.txdata[t].compute_txid());
        let mut outputs: HashMap<Uuid, Vec<StoredUtxo>> = HashMap::new();
        let mut spends: HashMap<Uuid, Vec<(Txid, &Transaction)>> = HashMap::new();
        for &(id, t, vout) in &matches.outputs {
            outputs.entry(id).or_default().push(StoredUtxo {
                txid: txid_of(t),
                vout,
                value: block.txdata[t].output[vout as usize].value.to_sat(),
                height: Some(height),
            });
        }
        for &(id, t) in &matches.spends {
            spends.entry(id).or_default().push((txid_of(t), &block.txdata[t]));
        }
        let mut applied = 0usize;
        let now = self.app.clock.now();
        // Orders that received outputs in this block: any may have new strays.
        let received: std::collections::HashSet<Uuid> = outputs.keys().copied().collect();
        for &id in &candidates {
            let order = &orders::load(&txn, id).await?;
            let Some(btc) = btc_of(order) else { continue };
            let new = outputs.remove(&id).unwrap_or_default();
            let spent = spends.get(&id).map(Vec::as_slice).unwrap_or_default();
            if order.state.is_settled() {
                // Only strays matter now: new ones, and their refunds confirming.
                if !new.is_empty() {
                    events_applied(&self.app, &txn, id, vec![BitcoinChainEvent::Outputs { utxos: new, tip: height }]).await;
                }
                self.track_strays(&txn, id, spent, height).await?;
                continue;
            }
            let mut events = Vec::new();
            let is_funding = |tx: &Transaction| {
                tx.input.iter().any(|i| btc.funding.iter().any(|u| OutPoint::new(u.txid, u.vout) == i.previous_output))
            };
            // Spends of the accepted funding: our payout, the buyer's refund
            // path, or a transaction two keys signed that Agora did not prepare.
            let mut payout_mined = false;
            for (txid, tx) in spent.iter().filter(|(_, tx)| is_funding(tx)) {
                if btc.payout.as_ref().is_some_and(|p| p.txid == *txid) {
                    payout_mined = true;
                } else if is_refund_path(btc, tx) {
                    events.push(BitcoinChainEvent::TimeoutSpend { txid: *txid });
                } else if btc.other_spend.is_none() {
                    tracing::warn!(order.id = %id, escrow.txid = %txid, "the escrow was spent by a transaction Agora did not prepare");
                    let paid = paid_by(btc, tx);
                    update_btc(&self.app, &txn, id, |b| {
                        b.other_spend = Some(OtherSpend { txid: *txid, paid: paid.clone(), mined_at: height });
                    })
                    .await?;
                    note(&txn, id, "OtherSpendSeen", &format!("{txid} spent the escrow: {paid:?}"), now).await?;
                }
            }
            self.track_strays(&txn, id, spent, height).await?;
            if payout_mined {
                mark_payout_mined(&self.app, &txn, id, height).await?;
                if btc.payout.as_ref().is_some_and(|p| p.broadcast_at.is_none()) {
                    if let Some(p) = &btc.payout {
                        events.push(BitcoinChainEvent::PayoutBroadcast { txid: p.txid });
                    }
                }
            }
            let required = u64::from(order.terms.required_confirmations());
            // The payout confirms once it is as deep as the funding had to be.
            let mined_at = if payout_mined { Some(height) } else { btc.payout.as_ref().and_then(|p| p.mined_at) };
            if let (Some(m), Some(p)) = (mined_at, &btc.payout) {
                if height + 1 - m >= required {
                    events.push(BitcoinChainEvent::PayoutConfirmed { txid: p.txid });
                }
            }
            // A foreign spend settles the order once it is as deep.
            let fresh_other = orders::load(&txn, id).await?;
            if let Some(other) = btc_of(&fresh_other).and_then(|b| b.other_spend.clone()) {
                if !payout_mined && height + 1 - other.mined_at >= required {
                    events.push(BitcoinChainEvent::OtherSpend { txid: other.txid, outcome: outcome_of(&other.paid) });
                }
            }
            // Funding: while it is not accepted yet, every output counts, each
            // with its own block; once accepted, new outputs are strays.
            if funding_frozen(order) {
                if !new.is_empty() {
                    events.push(BitcoinChainEvent::Outputs { utxos: new, tip: height });
                }
            } else {
                let mut utxos = btc.funding.clone();
                utxos.extend(new.iter().copied());
                if !utxos.is_empty() {
                    events.push(BitcoinChainEvent::Outputs { utxos, tip: height });
                }
            }
            for event in events {
                if self.fail_after_events.is_some_and(|n| applied >= n) {
                    return Err(WatchError::Store("injected failure mid-block".into()));
                }
                match apply_bitcoin_event(&self.app, &txn, id, event.clone()).await {
                    Ok(_) => applied += 1,
                    // A refused event (the domain's rules) is recorded, not retried forever.
                    Err(e) => {
                        tracing::warn!(order.id = %id, event = ?event, error = ?e, "chain event refused");
                    }
                }
            }
            let fresh = orders::load(&txn, id).await?;
            if let Some(watch) = timelock_margin_reached(&fresh.state, fresh.terms.deadlines().timelock, height) {
                if !btc.timelock_alerted {
                    tracing::warn!(order.id = %id, unlock.height = watch.unlock_height, "timelock margin reached");
                    set_timelock_alerted(&self.app, &txn, id).await?;
                    note(
                        &txn,
                        id,
                        "TimelockMarginReached",
                        &format!("the buyer's refund path opens at height {}", watch.unlock_height),
                        now,
                    )
                    .await?;
                }
            }
        }
        // Strays deep enough get their refund prepared and co-signed.
        for &id in &candidates {
            let order = orders::load(&txn, id).await?;
            let pending = btc_of(&order).is_some_and(|b| b.strays.iter().any(|s| s.refund.is_none() && !s.dust && s.spent_by.is_none()));
            if pending || received.contains(&id) {
                if let Err(e) = crate::orders::strays::prepare_refunds(&self.app, &txn, id, height).await {
                    tracing::warn!(order.id = %id, error = ?e, "stray refund not prepared");
                }
            }
        }
        chain::advance(
            &txn,
            CHAIN,
            &ScannedBlock {
                height,
                hash: block.block_hash().to_string(),
            },
            KEEP_BLOCKS,
            self.app.clock.now(),
        )
        .await?;
        let entries = entries_of(&txn, &candidates).await?;
        commit_and_index(txn, guard, entries).await
    }

    /// Records which transactions spent the escrow's stray outputs.
    async fn track_strays(&self, txn: &DatabaseTransaction, id: Uuid, spent: &[(Txid, &Transaction)], _height: u64) -> Result<(), WatchError> {
        let spent: Vec<(OutPoint, Txid)> = spent
            .iter()
            .flat_map(|(txid, tx)| tx.input.iter().map(move |i| (i.previous_output, *txid)))
            .collect();
        if spent.is_empty() {
            return Ok(());
        }
        let order = orders::load(txn, id).await?;
        let Some(btc) = btc_of(&order) else { return Ok(()) };
        let hits: Vec<(usize, Txid)> = btc
            .strays
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                spent
                    .iter()
                    .find(|(o, _)| *o == OutPoint::new(s.utxo.txid, s.utxo.vout))
                    .map(|(_, t)| (i, *t))
            })
            .filter(|(i, _)| btc.strays[*i].spent_by.is_none())
            .collect();
        if hits.is_empty() {
            return Ok(());
        }
        update_btc(&self.app, txn, id, |b| {
            for (i, txid) in &hits {
                if let Some(s) = b.strays.get_mut(*i) {
                    s.spent_by = Some(*txid);
                }
            }
        })
        .await?;
        for (_, txid) in hits {
            note(txn, id, "StrayRefunded", &format!("{txid} spent a stray deposit"), self.app.clock.now()).await?;
        }
        Ok(())
    }

    /// Sends every fully signed stray refund that is not mined yet.
    async fn broadcast_stray_refunds(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, WatchError> {
        let mut sent = 0;
        // Only orders with a refund prepared and unspent; what the buyer
        // signed since is read from the database.
        let outstanding = {
            let mut guard = self.index.lock().await;
            self.current_index(&mut guard, &self.app.db).await?.refunds_outstanding()
        };
        for id in outstanding {
            let order = orders::load(&self.app.db, id).await?;
            let Some(btc) = btc_of(&order) else { continue };
            for (i, stray) in btc.strays.iter().enumerate() {
                let Some(refund) = &stray.refund else { continue };
                let Some(hex_tx) = &refund.final_tx else { continue };
                if stray.spent_by.is_some() || refund.broadcast_at.is_some_and(|at| now - at < REBROADCAST_AFTER) {
                    continue;
                }
                let tx: Transaction = bitcoin::consensus::encode::deserialize_hex(hex_tx)
                    .map_err(|e| WatchError::Store(e.to_string()))?;
                let result = self.source.broadcast(&tx).await;
                let txn = self.app.db.begin().await?;
                update_btc(&self.app, &txn, order.id(), |b| {
                    if let Some(r) = b.strays.get_mut(i).and_then(|s| s.refund.as_mut()) {
                        r.broadcast_at = Some(now);
                    }
                })
                .await?;
                match result {
                    Ok(txid) => {
                        sent += 1;
                        tracing::info!(order.id = %order.id(), escrow.txid = %txid, "stray refund broadcast");
                    }
                    Err(SourceError::Rejected(reason)) => {
                        tracing::warn!(order.id = %order.id(), reason = %reason, "the node rejected a stray refund");
                    }
                    Err(e) => return Err(e.into()),
                }
                txn.commit().await?;
            }
        }
        Ok(sent)
    }

    /// Sends every finished, unconfirmed payout that was not sent recently.
    pub async fn broadcast_pending(&self) -> Result<usize, WatchError> {
        let now = self.app.clock.now();
        let mut sent = 0;
        for record in order_store::open_orders(&self.app.db, CHAIN).await? {
            let order = Order::from_record(record)?;
            let Some(btc) = btc_of(&order) else { continue };
            let Some(p) = &btc.payout else { continue };
            let Some(hex_tx) = &p.final_tx else { continue };
            if p.mined_at.is_some() || p.broadcast_at.is_some_and(|at| now - at < REBROADCAST_AFTER) {
                continue;
            }
            let tx: Transaction = bitcoin::consensus::encode::deserialize_hex(hex_tx)
                .map_err(|e| WatchError::Store(e.to_string()))?;
            let first = p.broadcast_at.is_none();
            match self.source.broadcast(&tx).await {
                Ok(txid) => {
                    let txn = self.app.db.begin().await?;
                    let mut fresh = orders::load(&txn, order.id()).await?;
                    if let EscrowRecord::Bitcoin(b) = &mut fresh.escrow {
                        if let Some(p) = &mut b.payout {
                            p.broadcast_at = Some(now);
                        }
                    }
                    orders::save(&txn, &mut fresh, now).await?;
                    if first {
                        apply_bitcoin_event(&self.app, &txn, order.id(), BitcoinChainEvent::PayoutBroadcast { txid }).await?;
                    }
                    txn.commit().await?;
                    tracing::info!(order.id = %order.id(), escrow.txid = %txid, "payout broadcast");
                    sent += 1;
                }
                Err(SourceError::Rejected(reason)) => {
                    // Back off like after a send, and say it once per reason:
                    // a payout whose inputs someone else spent is rejected
                    // until the watcher sees that spend and settles the order.
                    let txn = self.app.db.begin().await?;
                    let mut fresh = orders::load(&txn, order.id()).await?;
                    let mut repeated = false;
                    if let EscrowRecord::Bitcoin(b) = &mut fresh.escrow {
                        if let Some(p) = &mut b.payout {
                            p.broadcast_at = Some(now);
                            repeated = p.last_rejection.as_deref() == Some(reason.as_str());
                            p.last_rejection = Some(reason.clone());
                        }
                    }
                    orders::save(&txn, &mut fresh, now).await?;
                    if !repeated {
                        tracing::warn!(order.id = %order.id(), reason = %reason, "the node rejected the payout");
                        note(&txn, order.id(), "PayoutRejected", &reason, now).await?;
                    }
                    txn.commit().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        sent += self.broadcast_stray_refunds(now).await?;
        Ok(sent)
    }

    /// Replaces every payout that stayed unconfirmed for [`BUMP_AFTER`] while
    /// the fee estimate rose by a quarter or more: the same outcome, rebuilt at
    /// the current rate (inputs signal replaceability), the marketplace
    /// re-signing only through the signing gate and only where its policy
    /// allows; the parties sign again. If the old transaction confirms after
    /// all, the order settles from what the chain shows. Metered claim
    /// settlements are left alone: the buyer's claim signature covers one
    /// exact transaction.
    pub async fn bump_stuck_payouts(&self) -> Result<usize, WatchError> {
        let now = self.app.clock.now();
        let rate = self.app.bitcoin.fees.current();
        let mut bumped = 0;
        for record in order_store::open_orders(&self.app.db, CHAIN).await? {
            let order = Order::from_record(record)?;
            let Some(btc) = btc_of(&order) else { continue };
            let Some(p) = &btc.payout else { continue };
            let stuck = p.final_tx.is_some()
                && p.mined_at.is_none()
                && btc.other_spend.is_none()
                && p.broadcast_at.is_some_and(|at| now - at >= BUMP_AFTER)
                && rate * 4 >= p.fee_rate_sat_vb * 5
                && rate > p.fee_rate_sat_vb;
            let agora_domain::escrow::EscrowState::PayingOut { payout, .. } = &order.state else { continue };
            if !stuck || matches!(payout.basis, agora_domain::escrow::PayoutBasis::ClaimSettled { .. }) {
                continue;
            }
            let txn = self.app.db.begin().await?;
            if let Err(e) = self.bump(&txn, order.id(), rate, now).await {
                tracing::warn!(order.id = %order.id(), error = ?e, "fee bump failed");
                continue;
            }
            txn.commit().await?;
            bumped += 1;
        }
        Ok(bumped)
    }

    async fn bump(&self, txn: &DatabaseTransaction, id: Uuid, rate: u64, now: chrono::DateTime<chrono::Utc>) -> Result<(), crate::graphql::errors::ApiError> {
        let mut order = orders::load(txn, id).await?;
        let agora_domain::escrow::EscrowState::PayingOut { payout, .. } = &order.state else { return Ok(()) };
        let (plan, outcome) = (payout.plan, payout.outcome());
        let had_marketplace = btc_of(&order)
            .and_then(|b| b.payout.as_ref())
            .is_some_and(|p| p.signed_by.contains(&agora_escrow::btc::EscrowParty::Arbitrator));
        let EscrowRecord::Bitcoin(b) = &mut order.escrow else { return Ok(()) };
        let Some(old) = b.payout.clone() else { return Ok(()) };
        b.prepare_payout(&plan, rate)?;
        b.fee_rate_sat_vb = Some(rate);
        b.fee_bumps.push(FeeBump { replaced_txid: old.txid, from_sat_vb: old.fee_rate_sat_vb, to_sat_vb: rate, at: now });
        let mut detail = format!("payout {} replaced at {rate} sat/vB (was {}); sign the new payout", old.txid, old.fee_rate_sat_vb);
        if had_marketplace {
            let ctx = agora_domain::escrow::Context {
                now,
                actor: agora_domain::escrow::Actor::System,
                chain_height: self.app.tips.bitcoin(),
                terms: order.terms.escrow_terms(),
                latest_claim: None,
            };
            match SigningGate::sign_payout(&self.app, txn, &mut order, outcome, &ctx).await {
                Ok(_) => detail.push_str("; the marketplace re-signed"),
                Err(e) => tracing::warn!(order.id = %id, error = ?e, "the marketplace does not re-sign the bumped payout"),
            }
        }
        orders::save_and_hint(&self.app, txn, &mut order, now).await?;
        note(txn, id, "PayoutFeeBumped", &detail, now).await.map_err(|e| crate::graphql::errors::ApiError::internal(e.to_string()))?;
        Ok(())
    }

    /// Asks the chain source for a fee estimate; new payouts use it (clamped
    /// to the configured bounds). A source without an estimate keeps the rate.
    pub async fn refresh_fee_rate(&self) {
        match self.source.fee_rate(self.app.bitcoin.fee_target_blocks).await {
            Ok(estimate) => {
                self.app.bitcoin.fees.update(estimate);
            }
            Err(e) => tracing::debug!(chain = CHAIN, error = %e, "no fee estimate"),
        }
    }

    /// Runs while it holds the lock: step, broadcast, pause when idle.
    pub async fn run(self, mut lock: WatcherLock, poll: Duration) {
        let mut backoff = poll;
        loop {
            if !lock.still_held().await {
                tracing::error!(chain = CHAIN, "lost the watcher lock; stopping");
                return;
            }
            self.refresh_fee_rate().await;
            let stepped = self.step().await;
            if let Err(e) = self.bump_stuck_payouts().await {
                tracing::warn!(chain = CHAIN, error = %e, "fee bumps failed");
            }
            let broadcast = self.broadcast_pending().await;
            match (&stepped, &broadcast) {
                (Ok(Step::Idle), Ok(_)) => {
                    backoff = poll;
                    tokio::time::sleep(poll).await;
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

/// Applies `events` to order `id`, logging (not failing on) refused ones.
async fn events_applied(app: &AppState, txn: &DatabaseTransaction, id: Uuid, events: Vec<BitcoinChainEvent>) {
    for event in events {
        if let Err(e) = apply_bitcoin_event(app, txn, id, event.clone()).await {
            tracing::warn!(order.id = %id, event = ?event, error = ?e, "chain event refused");
        }
    }
}

/// What `tx` paid to the escrow's payout addresses, by role; `other` for
/// every other output.
fn paid_by(btc: &BtcEscrow, tx: &Transaction) -> Vec<(String, u64)> {
    let script = |a: &str| {
        a.parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
            .ok()
            .map(|a| a.assume_checked().script_pubkey())
    };
    let roles = [
        ("provider", script(&btc.payout_to.provider)),
        ("buyer", script(&btc.payout_to.buyer)),
        ("marketplace", script(&btc.payout_to.marketplace)),
    ];
    tx.output
        .iter()
        .map(|o| {
            let role = roles
                .iter()
                .find(|(_, s)| s.as_ref() == Some(&o.script_pubkey))
                .map_or("other", |(r, _)| *r);
            (role.to_owned(), o.value.to_sat())
        })
        .collect()
}

/// The outcome a foreign spend amounts to: what went to the provider against
/// what went back to the buyer.
fn outcome_of(paid: &[(String, u64)]) -> Settled {
    let sum = |role: &str| paid.iter().filter(|(r, _)| r == role).map(|(_, v)| *v).sum::<u64>();
    let (provider, buyer) = (sum("provider"), sum("buyer"));
    match (provider, buyer) {
        (0, _) => Settled::Refunded,
        (_, 0) => Settled::Released,
        (p, b) => {
            let bps = u128::from(p) * 10_000 / (u128::from(p) + u128::from(b));
            match BasisPoints::new(i64::try_from(bps).unwrap_or(10_000)) {
                Ok(provider_bps) => Settled::Split { provider_bps },
                Err(_) => Settled::Released,
            }
        }
    }
}

/// Whether `tx` spends the escrow through the buyer's time-locked branch: its
/// witness carries the refund key, which the 2-of-3 branch never does.
fn is_refund_path(btc: &BtcEscrow, tx: &Transaction) -> bool {
    let Ok(key) = btc.buyer_refund_key.parse::<bitcoin::PublicKey>() else { return false };
    let bytes = key.to_bytes();
    tx.input.iter().any(|i| i.witness.iter().any(|item| item == bytes.as_slice()))
}


async fn update_btc(
    app: &AppState,
    txn: &DatabaseTransaction,
    id: Uuid,
    change: impl FnOnce(&mut BtcEscrow),
) -> Result<(), WatchError> {
    let mut order = orders::load(txn, id).await?;
    if let EscrowRecord::Bitcoin(b) = &mut order.escrow {
        change(b);
    }
    orders::save(txn, &mut order, app.clock.now()).await?;
    Ok(())
}

async fn mark_payout_mined(app: &AppState, txn: &DatabaseTransaction, id: Uuid, height: u64) -> Result<(), WatchError> {
    update_btc(app, txn, id, |b| {
        if let Some(p) = &mut b.payout {
            p.mined_at = Some(height);
        }
    })
    .await
}

async fn mark_payout_unmined(app: &AppState, txn: &DatabaseTransaction, id: Uuid) -> Result<(), WatchError> {
    update_btc(app, txn, id, |b| {
        if let Some(p) = &mut b.payout {
            p.mined_at = None;
            // Send it again at once.
            p.broadcast_at = None;
        }
    })
    .await
}

async fn set_timelock_alerted(app: &AppState, txn: &DatabaseTransaction, id: Uuid) -> Result<(), WatchError> {
    update_btc(app, txn, id, |b| b.timelock_alerted = true).await
}

/// Adds to `index` every order on the chain placed since it was last filled.
async fn add_orders_since<C: sea_orm::ConnectionTrait>(index: &mut WatchIndex, db: &C) -> Result<(), WatchError> {
    loop {
        let page = order_store::orders_on_chain_after_key_index(db, CHAIN, index.key_index_seen(), INDEX_PAGE).await?;
        let full = page.len() as u64 == INDEX_PAGE;
        for record in page {
            let order = Order::from_record(record)?;
            if let Some(entry) = WatchEntry::of(&order).map_err(WatchError::Store)? {
                index.upsert(order.id(), entry);
            }
        }
        if !full {
            return Ok(());
        }
    }
}

/// The index entries of `ids` as `txn` stored them.
async fn entries_of(txn: &DatabaseTransaction, ids: &std::collections::BTreeSet<Uuid>) -> Result<Vec<(Uuid, WatchEntry)>, WatchError> {
    let mut entries = Vec::with_capacity(ids.len());
    for &id in ids {
        let order = orders::load(txn, id).await?;
        if let Some(entry) = WatchEntry::of(&order).map_err(WatchError::Store)? {
            entries.push((id, entry));
        }
    }
    Ok(entries)
}

/// Commits, then puts `entries` into the index. A failed commit may still
/// have been applied (the connection died after sending it): the index is
/// dropped then, and rebuilt from the database on the next step.
async fn commit_and_index(txn: DatabaseTransaction, guard: &mut Option<WatchIndex>, entries: Vec<(Uuid, WatchEntry)>) -> Result<(), WatchError> {
    let cursor = cursor_key(chain::cursor(&txn, CHAIN).await?);
    if let Err(e) = txn.commit().await {
        *guard = None;
        return Err(e.into());
    }
    if let Some(index) = guard.as_mut() {
        for (id, entry) in entries {
            index.upsert(id, entry);
        }
        index.set_cursor(cursor);
    }
    Ok(())
}

fn cursor_key(cursor: Option<ScannedBlock>) -> Option<(u64, String)> {
    cursor.map(|c| (c.height, c.hash))
}
