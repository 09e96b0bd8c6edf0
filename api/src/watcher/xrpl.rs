//! The XRPL watcher: walks validated ledgers in order from its cursor, follows
//! every transaction touching an escrow account (its creation, its signer list
//! and master-key switch, deposits, payouts), and turns them into order
//! events in one database transaction per ledger together with the cursor.
//! The submitter sends what is due: the set-up transactions, then the signed
//! payouts; a payout whose `LastLedgerSequence` passed unvalidated is rebuilt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agora_domain::escrow::{Actor, Context, EscrowState};
use agora_escrow::source::{Ledger, SourceError, XrplSource};
use agora_persistence::chain::{self, ScannedBlock};
use agora_persistence::orders as order_store;
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::lock::WatcherLock;
use super::{note, WatchError};
use crate::graphql::context::AppState;
use crate::orders::chain::{apply_xrpl_event, XrplChainEvent};
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
        for record in order_store::open_orders(&txn, CHAIN).await? {
            let order = Order::from_record(record)?;
            if let Some(x) = xrpl_of(&order) {
                by_account.insert(x.address.to_string(), order);
            }
        }
        let operating = self.app.xrpl.operating.address.to_string();
        for tx in &ledger.transactions {
            let account = str_field(&tx.tx, "Account");
            let destination = str_field(&tx.tx, "Destination");
            let kind = str_field(&tx.tx, "TransactionType");
            let success = tx.result == "tesSUCCESS";
            let (order, outgoing) = if let Some(o) = by_account.get(account) {
                (o, true)
            } else if let Some(o) = by_account.get(destination) {
                (o, false)
            } else {
                continue;
            };
            let id = order.id();
            let Some(x) = xrpl_of(order) else { continue };
            let event = if !outgoing && kind == "Payment" && account == operating {
                if success && x.setup.status == SetupStatus::AwaitingAccount {
                    Some(XrplChainEvent::AccountCreated { ledger_index: ledger.index })
                } else {
                    None
                }
            } else if !outgoing && kind == "Payment" {
                // A deposit (the buyer's, or anyone's: the balance is what counts).
                success.then(|| XrplChainEvent::Funding {
                    deposit_drops: x.funded_drops + tx.delivered_drops.unwrap_or(0),
                    ledger_index: ledger.index,
                })
            } else if outgoing && kind == "AccountSet" && success && x.setup.status == SetupStatus::Configuring {
                x.setup
                    .disable_master
                    .as_ref()
                    .filter(|d| d.hash.eq_ignore_ascii_case(&tx.hash))
                    .map(|_| XrplChainEvent::SetupValidated { ledger_index: ledger.index })
            } else if outgoing && kind == "Payment" {
                let ours = x
                    .payout
                    .as_ref()
                    .is_some_and(|p| p.finals.iter().flatten().any(|f| f.hash.eq_ignore_ascii_case(&tx.hash)));
                if ours && success {
                    Some(XrplChainEvent::PayoutValidated {
                        hash: tx.hash.to_uppercase(),
                        ledger_index: ledger.index,
                    })
                } else {
                    tracing::warn!(order.id = %id, xrpl.hash = %tx.hash, result = %tx.result, "unexpected payment from an escrow account");
                    note(&txn, id, "UnexpectedSpend", &format!("{} ({})", tx.hash, tx.result), self.app.clock.now()).await?;
                    None
                }
            } else {
                None
            };
            if let Some(event) = event {
                match apply_xrpl_event(&self.app, &txn, id, event.clone()).await {
                    Ok(updated) => {
                        by_account.insert(x.address.to_string(), updated);
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
    /// payouts and set-ups whose `LastLedgerSequence` passed. Returns how many
    /// blobs were submitted.
    pub async fn submit_pending(&self) -> Result<usize, WatchError> {
        let validated = self.source.validated_ledger().await?.index;
        let mut sent = 0;
        for record in order_store::open_orders(&self.app.db, CHAIN).await? {
            let order = Order::from_record(record)?;
            let Some(x) = xrpl_of(&order) else { continue };
            let id = order.id();
            match x.setup.status {
                SetupStatus::AwaitingAccount => {
                    let stale = x.setup.funding.as_ref().is_some_and(|_| x.setup_lls_passed(validated));
                    if x.setup.funding.is_none() || stale {
                        let operating = self
                            .source
                            .account_info(self.app.xrpl.operating.address.as_str())
                            .await?
                            .ok_or_else(|| WatchError::Store("the operating account does not exist on the ledger".into()))?;
                        let order = crate::orders::chain::prepare_xrpl_account(&self.app, id, operating.sequence, validated).await?;
                        if let Some(x) = xrpl_of(&order) {
                            if let Some(f) = &x.setup.funding {
                                sent += self.submit(id, &f.blob).await?;
                            }
                        }
                    } else if let Some(f) = &x.setup.funding {
                        sent += self.submit(id, &f.blob).await?;
                    }
                }
                SetupStatus::Configuring => {
                    for blob in [&x.setup.signer_list_set, &x.setup.disable_master].into_iter().flatten() {
                        sent += self.submit(id, &blob.blob).await?;
                    }
                }
                SetupStatus::Ready => {}
            }
            let Some(payout) = &x.payout else { continue };
            if !matches!(order.state, EscrowState::PayingOut { .. }) {
                continue;
            }
            let lls = payout.transactions.first().map(|t| t.last_ledger_sequence).unwrap_or(u32::MAX);
            let all_validated = payout.validated.len() == payout.finals.len();
            if validated > lls && !all_validated {
                self.rebuild_payout(id).await?;
                continue;
            }
            if payout.complete() {
                for (i, fin) in payout.finals.iter().enumerate() {
                    if let Some(fin) = fin {
                        if !payout.validated.contains(&i) {
                            sent += self.submit(id, &fin.blob).await?;
                        }
                    }
                }
            }
        }
        Ok(sent)
    }

    async fn submit(&self, id: Uuid, blob: &str) -> Result<usize, WatchError> {
        match self.source.submit(blob).await {
            Ok(outcome) if outcome.accepted() || outcome.engine_result == "tefPAST_SEQ" => Ok(1),
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

    /// The payout can no longer be validated: build it again with a fresh
    /// `LastLedgerSequence`; the marketplace re-signs only if its policy still
    /// allows, and the parties sign again.
    async fn rebuild_payout(&self, id: Uuid) -> Result<(), WatchError> {
        let now = self.app.clock.now();
        let txn = self.app.db.begin().await?;
        let mut order = orders::load(&txn, id).await?;
        let EscrowState::PayingOut { payout, .. } = &order.state else {
            return Ok(());
        };
        let plan = payout.plan;
        let outcome = payout.outcome();
        let signed_before = xrpl_of(&order).map(|x| x.signed_by()).unwrap_or_default();
        let had_marketplace = signed_before.contains(&"arbitrator");
        let expired_at = xrpl_of(&order)
            .and_then(|x| x.payout.as_ref())
            .and_then(|p| p.transactions.first())
            .map_or(0, |t| t.last_ledger_sequence);
        let ctx = Context {
            now,
            actor: Actor::System,
            chain_height: self.app.tips.xrpl(),
            terms: order.terms.escrow_terms(),
            latest_claim: None,
        };
        let validated = u32::try_from(self.app.tips.xrpl()).unwrap_or(u32::MAX);
        if let EscrowRecord::Xrpl(x) = &mut order.escrow {
            x.prepare_payout(&plan, &self.app.xrpl, validated)?;
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
        let detail = format!(
            "the payout expired at ledger {expired_at} before it was validated (signed by {signed}); its Payments are rebuilt, signable until ledger {}: the signatures cover the expiry, so sign them again",
            self.app.xrpl.last_ledger_sequence(validated)
        );
        note(&txn, id, "PayoutRebuilt", &detail, now).await?;
        txn.commit().await?;
        tracing::warn!(order.id = %id, "payout rebuilt after its LastLedgerSequence passed");
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

