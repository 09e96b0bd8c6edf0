//! The XRP Ledger side of an order: a fresh escrow account per order whose
//! master key the marketplace derives, a 2-of-3 signer list (buyer, provider,
//! arbitrator) installed and the master key disabled before the buyer funds
//! it, and payouts as multisigned Payments.

use agora_domain::escrow::payout::PayoutBreakdown;
use agora_domain::escrow::PayoutPlan as DomainPlan;
use agora_escrow::xrpl::{
    plan_payout_with, sign_escrow_configuration, sign_funding_payment, BuyerCheck, ConfigurationParams,
    EscrowSigners, FinalPayout, FundingParams, MultisigError, PayoutDestination, PayoutParams, PayoutParties,
    PayoutPlan as XrplPlan, PayoutTx, PayoutTxSpec, Recipient, Reserves, SignatureCollector, SignedTx, XrplAccount,
    XrplAddress, XrplKeyring, sign_master_disable,
};
use agora_escrow::source::AccountInfo;
use serde::{Deserialize, Serialize};

use super::channel::{ChannelStatus, XrplChannel};
use crate::graphql::errors::ApiError;

/// The marketplace's XRPL configuration, loaded at start-up.
pub struct XrplContext {
    pub keyring: XrplKeyring,
    pub operating: XrplAccount,
    pub marketplace: PayoutDestination,
    pub base_fee_drops: u64,
    pub reserves: Reserves,
    pub network: crate::startup::XrplNetwork,
    /// How many ledgers an automatic set-up transaction stays valid.
    pub setup_ledger_window: u32,
    /// How many ledgers a payout stays signable (`xrpl.signing_window_minutes`).
    pub signing_window_ledgers: u32,
    /// The `SettleDelay` of a metered order's payment channel
    /// (`xrpl.channel_settle_delay_secs`).
    pub channel_settle_delay_secs: u32,
}

impl XrplContext {
    /// The `LastLedgerSequence` of a payout built when `validated` is the
    /// latest validated ledger: the signing window counts from now, never from
    /// an older ledger the escrow was last seen in.
    pub fn last_ledger_sequence(&self, validated: u32) -> u32 {
        validated.saturating_add(self.signing_window_ledgers)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupStatus {
    /// The escrow account does not exist yet; the funding Payment is signed.
    AwaitingAccount,
    /// The account exists; SignerListSet and AccountSet are signed.
    Configuring,
    /// The signer list is installed and the master key disabled, on a validated ledger.
    Ready,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XrplSetup {
    pub status: SetupStatus,
    pub funding: Option<SignedTx>,
    pub signer_list_set: Option<SignedTx>,
    pub disable_master: Option<SignedTx>,
    pub buyer_check: Option<BuyerCheck>,
    /// The order expired before the lock held: the master-key Payment that
    /// returns the deposits to the buyer, and whether the ledger validated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<SignedTx>,
    #[serde(default)]
    pub refunded: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XrplEscrow {
    pub address: XrplAddress,
    pub public_key: String,
    pub key_index: u32,
    pub buyer: XrplAccount,
    pub provider: XrplAccount,
    pub arbitrator: XrplAccount,
    pub payout_to: PayoutParties,
    pub setup: XrplSetup,
    /// The escrow account's next Sequence (known once it exists).
    pub next_sequence: Option<u32>,
    /// The last validated ledger the chain reported for this escrow.
    pub ledger_index: u32,
    /// The deposit: the account's balance above its reserve.
    pub funded_drops: u64,
    pub payout: Option<XrplPayout>,
    /// A metered order's payment channel to the provider (see [`super::channel`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<XrplChannel>,
}

/// A prepared payout and the signatures collected for each of its Payments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XrplPayout {
    pub transactions: Vec<PayoutTxSpec>,
    /// Accepted signer blobs per transaction.
    pub signer_blobs: Vec<Vec<String>>,
    /// The verified, fully signed blobs, once each reaches the quorum.
    pub finals: Vec<Option<FinalPayout>>,
    pub breakdown: PayoutBreakdown,
    pub fees_drops: u64,
    pub unallocated_drops: u64,
    /// Positions of the Payments seen in a validated ledger.
    #[serde(default)]
    pub validated: Vec<usize>,
    /// Payments the ledger applied with a `tec` result: their Sequence and fee
    /// are consumed and the share stayed in the escrow account until its
    /// recipient names a destination that can receive it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedShare>,
}

/// A payout Payment the ledger applied with a `tec` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedShare {
    pub position: usize,
    pub hash: String,
    /// The engine result (`tecDST_TAG_NEEDED`, `tecNO_DST_INSUF_XRP`, …).
    pub result: String,
    pub ledger_index: u32,
}

impl XrplPayout {
    pub fn complete(&self) -> bool {
        !self.finals.is_empty() && self.finals.iter().all(Option::is_some)
    }

    /// Whether every Payment is in a validated ledger with `tesSUCCESS`.
    pub fn all_validated(&self) -> bool {
        self.validated.len() == self.finals.len()
    }

    pub fn failed_at(&self, position: usize) -> Option<&FailedShare> {
        self.failed.iter().find(|f| f.position == position)
    }

    /// Positions still to be validated whose Payment can still apply: neither
    /// validated nor refused with a `tec`.
    pub fn open_positions(&self) -> Vec<usize> {
        (0..self.transactions.len())
            .filter(|i| !self.validated.contains(i) && self.failed_at(*i).is_none())
            .collect()
    }

    /// Open positions whose Payment can never apply: the scanner passed its
    /// `LastLedgerSequence` (`scanned` is the last ledger the watcher read), or
    /// the ledger consumed its Sequence with another transaction (`next_sequence`
    /// is the escrow account's next Sequence as read from scanned ledgers).
    pub fn dead_positions(&self, scanned: u32, next_sequence: u32) -> Vec<usize> {
        self.open_positions()
            .into_iter()
            .filter(|i| {
                let t = &self.transactions[*i];
                scanned > t.last_ledger_sequence || t.sequence < next_sequence
            })
            .collect()
    }

    /// The payout's identifier: the hash of its first Payment.
    pub fn id(&self) -> Option<String> {
        self.finals.first().and_then(|f| f.as_ref().map(|f| f.hash.clone()))
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

impl XrplEscrow {
    pub fn signers(&self) -> Result<EscrowSigners, ApiError> {
        EscrowSigners::new(
            self.buyer.address.clone(),
            self.provider.address.clone(),
            self.arbitrator.address.clone(),
        )
        .map_err(internal)
    }

    /// Signs the operating account's Payment that creates this escrow account.
    pub fn sign_funding(&mut self, ctx: &XrplContext, operating_sequence: u32, ledger_index: u32) -> Result<(), ApiError> {
        let operating = ctx.keyring.operating_key().map_err(internal)?;
        let amount = ctx
            .reserves
            .funding_amount_drops(ctx.base_fee_drops)
            .map_err(internal)?;
        let signed = sign_funding_payment(
            &operating,
            &self.address,
            &FundingParams {
                amount_drops: amount,
                reserves: ctx.reserves,
                configuration_fee_drops: ctx.base_fee_drops,
                fee_drops: ctx.base_fee_drops,
                sequence: operating_sequence,
                last_ledger_sequence: ledger_index + ctx.setup_ledger_window,
            },
        )
        .map_err(internal)?;
        self.setup.funding = Some(signed);
        self.ledger_index = self.ledger_index.max(ledger_index);
        Ok(())
    }

    /// The account exists and its next Sequence on the ledger is `sequence`:
    /// signs the SignerListSet and the AccountSet that disables the master key
    /// from there, or only the AccountSet when the signer list is already on
    /// the ledger (`signer_list_in_place`). `validated` is the latest validated
    /// ledger; the set-up stays valid for `setup_ledger_window` ledgers from it.
    ///
    /// Whoever created the account (the operating account's Payment or an
    /// early deposit), its Sequence is read from the ledger, never assumed.
    pub fn sign_configuration(
        &mut self,
        ctx: &XrplContext,
        sequence: u32,
        validated: u32,
        signer_list_in_place: bool,
    ) -> Result<(), ApiError> {
        let last_ledger_sequence = validated.saturating_add(ctx.setup_ledger_window);
        let config = sign_escrow_configuration(
            &ctx.keyring,
            self.key_index,
            &self.signers()?,
            &ConfigurationParams {
                first_sequence: sequence,
                fee_drops: ctx.base_fee_drops,
                last_ledger_sequence,
                reserves: ctx.reserves,
            },
        )
        .map_err(internal)?;
        if signer_list_in_place {
            let alone = sign_master_disable(&ctx.keyring, self.key_index, sequence, ctx.base_fee_drops, last_ledger_sequence)
                .map_err(internal)?;
            self.setup.signer_list_set = None;
            self.setup.disable_master = Some(alone);
            self.next_sequence = Some(sequence.saturating_add(1));
        } else {
            self.setup.signer_list_set = Some(config.signer_list_set);
            self.setup.disable_master = Some(config.disable_master);
            self.next_sequence = Some(sequence.saturating_add(2));
        }
        self.setup.buyer_check = Some(config.buyer_check);
        self.setup.status = SetupStatus::Configuring;
        self.ledger_index = self.ledger_index.max(validated);
        Ok(())
    }

    /// The Sequence the signed configuration starts at, if it is signed.
    pub fn configuration_sequence(&self) -> Option<u32> {
        [&self.setup.signer_list_set, &self.setup.disable_master]
            .into_iter()
            .flatten()
            .filter_map(|t| agora_escrow::xrpl::sequence_of(&t.blob))
            .min()
    }

    /// Whether the ledger shows the lock the buyer is told to verify: exactly
    /// the 2-of-3 signer list over buyer, provider and arbitrator, the master
    /// key disabled and no regular key. Only then does a deposit count.
    pub fn lock_holds(&self, info: &AccountInfo) -> bool {
        self.signer_list_in_place(info) && info.master_disabled && info.regular_key.is_none()
    }

    /// Whether the ledger shows the escrow's signer list (the first half of the lock).
    pub fn signer_list_in_place(&self, info: &AccountInfo) -> bool {
        let Some(check) = &self.setup.buyer_check else { return false };
        let mut expected: Vec<(String, u16)> =
            check.signer_entries.iter().map(|e| (e.account.to_string(), e.weight)).collect();
        let mut on_ledger = info.signer_entries.clone();
        expected.sort();
        on_ledger.sort();
        info.signer_quorum == Some(check.quorum) && on_ledger == expected
    }

    /// Builds one multisigned Payment per recipient for `plan`. With a
    /// payment channel that may still hold the deposit, the channel is
    /// closed first (see [`super::channel`]): the Payments are built once the
    /// ledger shows it closed ([`Self::prepare_remainder`]).
    ///
    /// `validated` is the latest validated ledger: the signing window of the
    /// Payments counts from it.
    pub fn prepare_payout(&mut self, plan: &DomainPlan, ctx: &XrplContext, validated: u32) -> Result<(), ApiError> {
        if let Some(ch) = &mut self.channel {
            match ch.status {
                // Never complete: the payout takes its Sequence, so it can never apply.
                ChannelStatus::Proposed if ch.create.fin.is_none() => ch.status = ChannelStatus::Abandoned,
                // Sent, or about to be: the payout waits until it applies or fails.
                ChannelStatus::Proposed => {
                    self.payout = None;
                    return Ok(());
                }
                ChannelStatus::Open => {
                    self.payout = None;
                    if ch.provider_close.is_none() && ch.close.is_empty() {
                        let deliver = plan.breakdown(0).map_err(internal)?.provider;
                        let sequences = self.allocate_sequences(0, 0, 2);
                        self.prepare_channel_close(ctx, deliver, [sequences[0], sequences[1]])?;
                    }
                    return Ok(());
                }
                ChannelStatus::Closed => return self.prepare_remainder(plan, ctx, validated),
                ChannelStatus::Abandoned => {}
            }
        }
        let validated = validated.max(self.ledger_index);
        let first_sequence = self.next_sequence.ok_or_else(|| {
            ApiError::conflict("ESCROW_NOT_READY", "the escrow account is not set up on the ledger yet")
        })?;
        let funded = plan.funded().minor();
        // Deposits that arrived after the funding was accepted are not part of
        // the order's split; they are the buyer's and go back with its share,
        // so nothing is left behind in the escrow account.
        let late = self.funded_drops.saturating_sub(funded);
        let built = plan_payout_with(
            &self.address,
            &self.payout_to,
            &PayoutParams {
                funded_drops: funded.saturating_add(late),
                terms: *plan.terms(),
                base_fee_drops: ctx.base_fee_drops,
                first_sequence,
                last_ledger_sequence: ctx.last_ledger_sequence(validated),
            },
            |total, fee| {
                if total != funded.saturating_add(late) {
                    return Err(agora_domain::escrow::payout::PayoutError::FeeExceedsFunds { funded: total, fee });
                }
                let mut b = plan.breakdown(fee)?;
                b.buyer = b.buyer.saturating_add(late);
                Ok(b)
            },
        )
        .map_err(|e| ApiError::conflict("PAYOUT_NOT_BUILDABLE", format!("the payout cannot be built: {e}")))?;
        self.store_payout(built);
        Ok(())
    }

    /// The Payments that follow a closed channel: the plan's shares of the
    /// order less what the channel delivered to the provider, paid out of what
    /// the account holds now (what it held above its reserve when the channel
    /// closed, plus any deposit since). The buyer receives the rest, so no
    /// drop stays behind; had the channel delivered more than the provider's
    /// share (a claim the buyer gave it directly), that comes out of the
    /// buyer's part.
    pub fn prepare_remainder(&mut self, plan: &DomainPlan, ctx: &XrplContext, validated: u32) -> Result<(), ApiError> {
        let validated = validated.max(self.ledger_index);
        let ch = self.channel.as_ref().ok_or_else(|| internal("no channel"))?;
        let closed = ch.closed_with.ok_or_else(|| internal("the channel's closing balance is not read yet"))?;
        let delivered = ch.balance_drops;
        let total = closed
            .spendable_drops
            .saturating_add(self.funded_drops.saturating_sub(closed.funded_drops));
        let first_sequence = self.allocate_sequences(0, 0, 1)[0];
        let built = plan_payout_with(
            &self.address,
            &self.payout_to,
            &PayoutParams {
                funded_drops: total,
                terms: *plan.terms(),
                base_fee_drops: ctx.base_fee_drops,
                first_sequence,
                last_ledger_sequence: ctx.last_ledger_sequence(validated),
            },
            |available, fee| {
                let shares = plan.breakdown(fee)?;
                let rest = available
                    .checked_sub(fee)
                    .ok_or(agora_domain::escrow::payout::PayoutError::FeeExceedsFunds { funded: available, fee })?;
                let provider = shares.provider.saturating_sub(delivered).min(rest);
                let commission = shares.commission.min(rest - provider);
                let arbitration_fee = shares.arbitration_fee.min(rest - provider - commission);
                Ok(PayoutBreakdown {
                    provider,
                    buyer: rest - provider - commission - arbitration_fee,
                    commission,
                    arbitration_fee,
                    network_fee: fee,
                })
            },
        )
        .map_err(|e| ApiError::conflict("PAYOUT_NOT_BUILDABLE", format!("the payout cannot be built: {e}")))?;
        self.store_payout(built);
        Ok(())
    }

    fn store_payout(&mut self, built: XrplPlan) {
        let n = built.transactions.len();
        self.payout = Some(XrplPayout {
            transactions: built.transactions.into_iter().map(PayoutTxSpec::from).collect(),
            signer_blobs: vec![Vec::new(); n],
            finals: vec![None; n],
            breakdown: built.breakdown,
            fees_drops: built.fees_drops,
            unallocated_drops: built.unallocated_drops,
            validated: Vec::new(),
            failed: Vec::new(),
        });
    }

    /// Builds again the payout Payments at `positions` — ones that can never
    /// apply as signed (see [`XrplPayout::dead_positions`]) — on the lowest
    /// free Sequences ([`Self::allocate_sequences`]), signable for the signing
    /// window from `validated`. Validated Payments and Payments that can still
    /// apply are kept as they are, so no share is ever paid twice; only the
    /// rebuilt Payments lose their signatures.
    pub fn rebuild_payments(
        &mut self,
        ctx: &XrplContext,
        positions: &[usize],
        validated: u32,
        ledger_next: u32,
        scanned: u32,
    ) -> Result<(), ApiError> {
        let sequences = self.allocate_sequences(ledger_next, scanned, positions.len());
        let payout = self.payout.as_mut().ok_or_else(|| internal("no payout to rebuild"))?;
        for (i, sequence) in positions.iter().zip(sequences) {
            let spec = &mut payout.transactions[*i];
            spec.sequence = sequence;
            spec.last_ledger_sequence = ctx.last_ledger_sequence(validated);
            // Checks the rebuilt spec encodes before anything is kept.
            PayoutTx::from_spec(spec.clone()).map_err(internal)?;
            payout.signer_blobs[*i].clear();
            payout.finals[*i] = None;
        }
        self.ledger_index = self.ledger_index.max(validated);
        Ok(())
    }

    /// `n` Sequences for new transactions of this escrow, lowest first: above
    /// what the ledger consumed (`ledger_next` from `account_info`, and the
    /// Sequences seen in scanned ledgers) and different from every open payout
    /// Payment that can still apply. A consumed Sequence is never handed out
    /// again, and gaps left by dead Payments are filled first, so a later
    /// Payment is never blocked behind a Sequence nobody will use.
    pub fn allocate_sequences(&self, ledger_next: u32, scanned: u32, n: usize) -> Vec<u32> {
        let consumed = self.next_sequence.unwrap_or(0).max(ledger_next);
        let held: Vec<u32> = self
            .payout
            .as_ref()
            .map(|p| {
                let dead = p.dead_positions(scanned, consumed);
                p.open_positions()
                    .into_iter()
                    .filter(|i| !dead.contains(i))
                    .map(|i| p.transactions[i].sequence)
                    .collect()
            })
            .unwrap_or_default();
        let held: Vec<u32> = held
            .into_iter()
            .chain(self.channel.iter().flat_map(XrplChannel::held_sequences))
            .collect();
        let mut out = Vec::with_capacity(n);
        let mut candidate = consumed;
        while out.len() < n {
            if !held.contains(&candidate) {
                out.push(candidate);
            }
            candidate = candidate.saturating_add(1);
        }
        out
    }

    /// A share the ledger refused (`tec`) goes to `destination` instead, in a
    /// new Payment at `sequence`: its amount is the share less the fee the
    /// refused Payment burned, so the other shares stay exactly as planned.
    pub fn redirect_failed_share(
        &mut self,
        ctx: &XrplContext,
        position: usize,
        destination: PayoutDestination,
        validated: u32,
        ledger_next: u32,
        scanned: u32,
    ) -> Result<(), ApiError> {
        let sequence = self.allocate_sequences(ledger_next, scanned, 1)[0];
        if destination.address == self.address {
            return Err(ApiError::bad_input(
                "input.account",
                "ESCROW_ACCOUNT",
                "input.account: the escrow account cannot receive its own payout",
            ));
        }
        let payout = self.payout.as_mut().ok_or_else(|| internal("no payout"))?;
        if payout.failed_at(position).is_none() {
            return Err(ApiError::conflict("SHARE_NOT_FAILED", "this share was not refused by the ledger"));
        }
        let spec = &mut payout.transactions[position];
        let burned = spec.fee_drops;
        let amount = spec.amount_drops.checked_sub(burned).filter(|a| *a > 0).ok_or_else(|| {
            ApiError::conflict("SHARE_TOO_SMALL", "the share does not cover the fee of another Payment")
        })?;
        let mut next = spec.clone();
        next.destination = destination;
        next.amount_drops = amount;
        next.sequence = sequence;
        next.last_ledger_sequence = ctx.last_ledger_sequence(validated);
        PayoutTx::from_spec(next.clone()).map_err(|e| {
            ApiError::bad_input("input.account", "UNUSABLE_DESTINATION", format!("input.account: {e}"))
        })?;
        *spec = next;
        payout.failed.retain(|f| f.position != position);
        payout.signer_blobs[position].clear();
        payout.finals[position] = None;
        payout.fees_drops = payout.fees_drops.saturating_add(burned);
        Ok(())
    }

    pub fn payout_txs(&self) -> Result<Vec<PayoutTx>, ApiError> {
        let payout = self
            .payout
            .as_ref()
            .ok_or_else(|| ApiError::conflict("NO_PAYOUT", "no payout has been prepared for this order"))?;
        payout
            .transactions
            .iter()
            .cloned()
            .map(|spec| PayoutTx::from_spec(spec).map_err(internal))
            .collect()
    }

    /// Signs every Payment with the arbitrator key (the caller checked the policy).
    /// Returns the hashes of the unsigned transactions signed, for the audit log.
    /// Payments already fully signed (a validated one after a partial
    /// rebuild, say) are not signed again.
    pub fn sign_as_arbitrator(&mut self, ctx: &XrplContext) -> Result<Vec<String>, ApiError> {
        if self.payout.is_none() {
            if let Some(ch) = self.channel.as_mut().filter(|c| c.live()) {
                // The channel closes first: the marketplace signs its closing
                // transactions now, and the remainder once it is built.
                ch.marketplace_cosigns = true;
                return self.sign_channel_as_arbitrator(ctx);
            }
        }
        let txs = self.payout_txs()?;
        let blobs = txs
            .iter()
            .map(|tx| ctx.keyring.sign_payout_as_arbitrator(tx).map_err(internal))
            .collect::<Result<Vec<_>, _>>()?;
        let added = self.add_blobs(&txs, &blobs, true)?;
        Ok(added.into_iter().map(|i| short_hash(&txs[i].unsigned_blob())).collect())
    }

    /// Imports the signer blobs of `party` (buyer or provider), one per
    /// Payment, in order; a blob signed by anyone else is refused, so a
    /// signature is always recorded for the account that sent it.
    pub fn import_signatures_of(&mut self, party: agora_domain::escrow::Party, blobs: &[String]) -> Result<(), ApiError> {
        let expected = match party {
            agora_domain::escrow::Party::Buyer => self.buyer.address.clone(),
            agora_domain::escrow::Party::Provider => self.provider.address.clone(),
        };
        let signers = self.signers()?;
        let txs = self.payout_txs()?;
        for (i, (tx, blob)) in txs.iter().zip(blobs).enumerate() {
            let mut collector = SignatureCollector::new(tx.clone(), signers.clone());
            let added = collector.add_signer_blob(blob).map_err(|e| multisig_error(i, e))?;
            if added.iter().any(|a| *a != expected) {
                return Err(ApiError::bad_input(
                    "input.signedTransactions",
                    "UNEXPECTED_SIGNER",
                    format!("input.signedTransactions: transaction {i} is not signed by your own escrow key"),
                ));
            }
        }
        self.import_signatures(blobs)
    }

    /// Imports a party's signer blobs, one per Payment, in order.
    pub fn import_signatures(&mut self, blobs: &[String]) -> Result<(), ApiError> {
        let txs = self.payout_txs()?;
        if self.payout.as_ref().is_some_and(XrplPayout::complete) {
            return Err(ApiError::conflict("ALREADY_COMPLETE", "the payout is already fully signed"));
        }
        if blobs.len() != txs.len() {
            return Err(ApiError::bad_input(
                "input.signedTransactions",
                "WRONG_COUNT",
                format!(
                    "input.signedTransactions: the payout has {} transactions; sign each and send them in order",
                    txs.len()
                ),
            ));
        }
        self.add_blobs(&txs, blobs, false).map(|_| ())
    }

    /// Returns the positions whose signatures grew.
    fn add_blobs(&mut self, txs: &[PayoutTx], blobs: &[String], arbitrator: bool) -> Result<Vec<usize>, ApiError> {
        let signers = self.signers()?;
        let arbitrator_address = self.arbitrator.address.clone();
        let payout = self.payout.as_mut().ok_or_else(|| internal("payout vanished"))?;
        // All or nothing: every blob is checked before anything is stored.
        let mut staged = Vec::with_capacity(txs.len());
        let mut skipped = Vec::new();
        for (i, (tx, blob)) in txs.iter().zip(blobs).enumerate() {
            if payout.finals[i].is_some() {
                // Fully signed already (validated, or complete before a
                // partial rebuild): a further signature adds nothing.
                staged.push(None);
                continue;
            }
            let mut collector = SignatureCollector::new(tx.clone(), signers.clone());
            for old in &payout.signer_blobs[i] {
                collector.add_signer_blob(old).map_err(internal)?;
            }
            if arbitrator && collector.signed_by().contains(&arbitrator_address) {
                // Re-signing after a partial rebuild: this Payment kept its signatures.
                staged.push(None);
                skipped.push(i);
                continue;
            }
            let added = collector.add_signer_blob(blob).map_err(|e| multisig_error(i, e))?;
            if !arbitrator && added.contains(&arbitrator_address) {
                return Err(ApiError::bad_input(
                    "input.signedTransactions",
                    "UNEXPECTED_SIGNER",
                    "input.signedTransactions: the marketplace's signature is added only by the marketplace",
                ));
            }
            let fin = if collector.has_quorum() {
                Some(collector.finalize().map_err(|e| multisig_error(i, e))?)
            } else {
                None
            };
            staged.push(fin);
        }
        let mut added = Vec::new();
        for (i, (blob, fin)) in blobs.iter().zip(staged).enumerate() {
            if payout.finals[i].is_some() || skipped.contains(&i) {
                continue;
            }
            payout.signer_blobs[i].push(blob.clone());
            added.push(i);
            if fin.is_some() {
                payout.finals[i] = fin;
            }
        }
        Ok(added)
    }

    /// Whether the signed set-up transactions can no longer be validated.
    pub fn setup_lls_passed(&self, validated: u32) -> bool {
        let lls = |t: &Option<SignedTx>| {
            t.as_ref()
                .and_then(|t| agora_escrow::xrpl::last_ledger_sequence_of(&t.blob))
                .is_some_and(|l| validated > l)
        };
        match self.setup.status {
            SetupStatus::AwaitingAccount => lls(&self.setup.funding),
            SetupStatus::Configuring => lls(&self.setup.signer_list_set) || lls(&self.setup.disable_master),
            SetupStatus::Ready => false,
        }
    }

    /// Which of buyer, provider, arbitrator signed every Payment.
    pub fn signed_by(&self) -> Vec<&'static str> {
        let Some(payout) = &self.payout else { return Vec::new() };
        let Ok(txs) = self.payout_txs() else { return Vec::new() };
        let Ok(signers) = self.signers() else { return Vec::new() };
        let mut everyone: Option<Vec<XrplAddress>> = None;
        for (tx, blobs) in txs.iter().zip(&payout.signer_blobs) {
            let mut collector = SignatureCollector::new(tx.clone(), signers.clone());
            for b in blobs {
                let _ = collector.add_signer_blob(b);
            }
            let now = collector.signed_by();
            everyone = Some(match everyone {
                None => now,
                Some(prev) => prev.into_iter().filter(|a| now.contains(a)).collect(),
            });
        }
        let everyone = everyone.unwrap_or_default();
        let mut out = Vec::new();
        if everyone.contains(&self.buyer.address) {
            out.push("buyer");
        }
        if everyone.contains(&self.provider.address) {
            out.push("provider");
        }
        if everyone.contains(&self.arbitrator.address) {
            out.push("arbitrator");
        }
        out
    }
}

/// How the history names a payout's recipient.
pub fn recipient_name(r: Recipient) -> &'static str {
    match r {
        Recipient::Buyer => "buyer",
        Recipient::Provider => "provider",
        Recipient::Marketplace => "marketplace",
    }
}

/// A short, stable identifier of an unsigned blob for the audit log.
pub(crate) fn short_hash(blob: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode_upper(&Sha256::digest(blob.as_bytes())[..16])
}

pub(crate) fn multisig_error(index: usize, e: MultisigError) -> ApiError {
    let field = "input.signedTransactions";
    let reason = match &e {
        MultisigError::MalformedBlob(_) | MultisigError::NotMultisigned => "MALFORMED_BLOB",
        MultisigError::TransactionMismatch { .. } => "TRANSACTION_MISMATCH",
        MultisigError::SignerNotInList { .. } => "UNEXPECTED_SIGNER",
        MultisigError::KeyDoesNotMatchAccount { .. } => "KEY_DOES_NOT_MATCH_ACCOUNT",
        MultisigError::InvalidSignature { .. } => "INVALID_SIGNATURE",
        MultisigError::DuplicateSigner { .. } => "DUPLICATE_SIGNER",
        MultisigError::UnsortedSigners => "UNSORTED_SIGNERS",
        MultisigError::QuorumNotMet { .. } => "QUORUM_NOT_MET",
        MultisigError::TooManySigners { .. } => "TOO_MANY_SIGNERS",
        MultisigError::Signing(_) => return ApiError::internal(e),
    };
    ApiError::bad_input(field, reason, format!("{field}[{index}]: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::channel::ClosedWith;
    use agora_domain::escrow::payout::PayoutBreakdown;
    use agora_escrow::xrpl::ChannelTxKind;

    fn keyring() -> XrplKeyring {
        XrplKeyring::from_secret(&[7u8; 32]).unwrap()
    }

    fn ctx() -> XrplContext {
        let keyring = keyring();
        let operating = keyring.escrow_account(900).unwrap();
        let marketplace = keyring.escrow_account(901).unwrap();
        XrplContext {
            operating,
            marketplace: PayoutDestination { address: marketplace.address, tag: None },
            keyring,
            base_fee_drops: 10,
            reserves: Reserves { base_drops: 1_000_000, owner_drops: 200_000 },
            network: crate::startup::XrplNetwork::Devnet,
            setup_ledger_window: 20,
            signing_window_ledgers: 20,
            channel_settle_delay_secs: 3_600,
        }
    }

    /// An escrow whose payout has three Payments at `sequences`, each valid
    /// until ledger `lls`, each fully signed ("complete").
    fn escrow(sequences: [u32; 3], lls: [u32; 3]) -> XrplEscrow {
        let k = keyring();
        let acct = |i| k.escrow_account(i).unwrap();
        let escrow = acct(1);
        let dest = |a: &XrplAccount| PayoutDestination { address: a.address.clone(), tag: None };
        let (buyer, provider, arbitrator) = (acct(2), acct(3), acct(4));
        let recipients = [Recipient::Provider, Recipient::Buyer, Recipient::Marketplace];
        let transactions: Vec<PayoutTxSpec> = (0..3)
            .map(|i| PayoutTxSpec {
                recipient: recipients[i],
                escrow: escrow.address.clone(),
                destination: dest(&acct(10 + i as u32)),
                amount_drops: 1_000_000 * (i as u64 + 1),
                fee_drops: 30,
                sequence: sequences[i],
                last_ledger_sequence: lls[i],
            })
            .collect();
        XrplEscrow {
            address: escrow.address.clone(),
            public_key: escrow.public_key.to_hex(),
            key_index: 1,
            payout_to: PayoutParties { provider: dest(&provider), buyer: dest(&buyer), marketplace: dest(&arbitrator) },
            buyer,
            provider,
            arbitrator,
            setup: XrplSetup {
                status: SetupStatus::Ready,
                funding: None,
                signer_list_set: None,
                disable_master: None,
                buyer_check: None,
                refund: None,
                refunded: false,
            },
            next_sequence: Some(10),
            ledger_index: 0,
            funded_drops: 6_000_090,
            payout: Some(XrplPayout {
                transactions,
                signer_blobs: vec![vec!["B".into(), "P".into()]; 3],
                finals: (0..3).map(|i| Some(FinalPayout { blob: format!("F{i}"), hash: format!("H{i}"), signers: Vec::new() })).collect(),
                breakdown: PayoutBreakdown { provider: 1_000_000, buyer: 2_000_000, commission: 3_000_000, arbitration_fee: 0, network_fee: 90 },
                fees_drops: 90,
                unallocated_drops: 0,
                validated: Vec::new(),
                failed: Vec::new(),
            }),
            channel: None,
        }
    }

    #[test]
    fn a_payment_is_dead_once_its_expiry_was_scanned_or_its_sequence_consumed() {
        let mut x = escrow([10, 11, 12], [50, 50, 50]);
        let p = x.payout.as_mut().unwrap();
        assert!(p.dead_positions(50, 10).is_empty(), "ledger 50 is still within the window");
        assert_eq!(p.dead_positions(51, 10), vec![0, 1, 2]);
        assert_eq!(p.dead_positions(40, 11), vec![0], "Sequence 10 went to another transaction");
        p.validated.push(0);
        p.failed.push(FailedShare { position: 1, hash: "H1".into(), result: "tecDST_TAG_NEEDED".into(), ledger_index: 41 });
        assert_eq!(p.dead_positions(51, 12), vec![2], "validated and refused Payments are never rebuilt");
        assert_eq!(p.open_positions(), vec![2]);
    }

    #[test]
    fn new_sequences_fill_gaps_and_never_reuse_a_consumed_or_held_one() {
        // 10 was consumed; the Payment at 11 is alive until 100, the one at 12 expired at 50.
        let mut x = escrow([9, 11, 12], [50, 100, 50]);
        x.payout.as_mut().unwrap().validated.push(0);
        x.next_sequence = Some(10);
        assert_eq!(x.allocate_sequences(0, 60, 3), vec![10, 12, 13], "11 is held by a Payment that can still apply");
        assert_eq!(x.allocate_sequences(15, 60, 2), vec![15, 16], "the ledger's own next Sequence is a floor");
    }

    #[test]
    fn a_rebuild_keeps_validated_and_live_payments_with_their_signatures() {
        let mut x = escrow([10, 11, 12], [50, 50, 50]);
        x.payout.as_mut().unwrap().validated.push(0);
        x.next_sequence = Some(11);
        x.rebuild_payments(&ctx(), &[1, 2], 60, 11, 60).unwrap();
        let p = x.payout.as_ref().unwrap();
        assert_eq!(p.finals[0].as_ref().map(|f| f.hash.as_str()), Some("H0"), "the paid share is untouched");
        assert_eq!(p.signer_blobs[0].len(), 2);
        assert_eq!((p.transactions[1].sequence, p.transactions[2].sequence), (11, 12));
        assert_eq!(p.transactions[1].last_ledger_sequence, 80, "a whole signing window from ledger 60");
        assert!(p.finals[1].is_none() && p.signer_blobs[1].is_empty(), "rebuilt Payments are signed again");
        assert_eq!(p.transactions[0].last_ledger_sequence, 50);
    }

    #[test]
    fn a_refused_share_goes_to_its_new_destination_less_the_burned_fee() {
        let mut x = escrow([10, 11, 12], [50, 50, 50]);
        let tagged = PayoutDestination { address: keyring().escrow_account(20).unwrap().address, tag: Some(7) };
        let refused = x.redirect_failed_share(&ctx(), 0, tagged.clone(), 45, 0, 45).unwrap_err();
        assert_eq!(refused.code(), "CONFLICT", "a share the ledger did not refuse keeps its Payment");
        let p = x.payout.as_mut().unwrap();
        p.validated.push(1);
        p.failed.push(FailedShare { position: 0, hash: "H0".into(), result: "tecDST_TAG_NEEDED".into(), ledger_index: 44 });
        x.next_sequence = Some(13);
        let own = PayoutDestination { address: x.address.clone(), tag: None };
        assert_eq!(x.redirect_failed_share(&ctx(), 0, own, 45, 0, 45).unwrap_err().code(), "BAD_USER_INPUT");
        x.redirect_failed_share(&ctx(), 0, tagged.clone(), 45, 0, 45).unwrap();
        let p = x.payout.as_ref().unwrap();
        let spec = &p.transactions[0];
        assert_eq!(spec.destination, tagged);
        assert_eq!(spec.amount_drops, 1_000_000 - 30);
        assert_eq!(spec.sequence, 13, "a fresh Sequence above every consumed or held one");
        assert!(p.failed.is_empty() && p.finals[0].is_none());
        assert_eq!(p.fees_drops, 120, "the burned fee is accounted for");
    }

    /// A settlement of a claim of `claimed` (gross) out of `funded` drops, at 2.5 % commission.
    fn claim_plan(funded: u64, claimed: u64) -> DomainPlan {
        serde_json::from_value(serde_json::json!({
            "outcome": "Release",
            "funded": {"asset": "Xrp", "minor": funded},
            "excess_to_buyer": 0,
            "terms": {"provider_bps": 10_000, "commission_bps": 250, "arbitration_fee": 0},
            "claim": claimed,
        }))
        .unwrap()
    }

    /// A funded metered escrow (next Sequence 10) with its channel open.
    fn with_open_channel() -> XrplEscrow {
        let mut x = escrow([10, 11, 12], [50, 50, 50]);
        x.payout = None;
        x.funded_drops = 10_000_000;
        x.propose_channel(&ctx(), 10_000_000, 10).unwrap();
        x.next_sequence = Some(11);
        let ch = x.channel.as_mut().unwrap();
        ch.create.fin = Some(FinalPayout { blob: "C".into(), hash: "HC".into(), signers: Vec::new() });
        ch.create.result = Some("tesSUCCESS".into());
        ch.status = ChannelStatus::Open;
        x
    }

    #[test]
    fn a_payout_on_an_open_channel_first_closes_it_delivering_the_providers_share() {
        let mut x = with_open_channel();
        let capacity = x.channel.as_ref().unwrap().amount_drops;
        assert_eq!(capacity, 10_000_000 - 200_000 - 6 * 30, "the deposit less the channel's reserve and the later fees");
        x.prepare_payout(&claim_plan(10_000_000, 1_000_000), &ctx(), 100).unwrap();
        assert!(x.payout.is_none(), "nothing is paid from the account while the channel holds the deposit");
        let close = &x.channel.as_ref().unwrap().close;
        assert_eq!(close.len(), 2);
        let kinds: Vec<_> = close.iter().map(|s| (s.spec.kind.clone(), s.spec.sequence, s.spec.last_ledger_sequence)).collect();
        let id = x.channel.as_ref().unwrap().id;
        assert_eq!(
            kinds,
            [
                (ChannelTxKind::Claim { channel: id, balance_drops: Some(975_000), close: true }, 11, None),
                (ChannelTxKind::Claim { channel: id, balance_drops: None, close: false }, 12, None),
            ],
            "the provider's share (after commission), then the close; both wait to be signed"
        );
        // The provider already redeemed more than the plan's share: the close delivers nothing more.
        let mut y = with_open_channel();
        y.channel.as_mut().unwrap().balance_drops = 980_000;
        y.prepare_payout(&claim_plan(10_000_000, 1_000_000), &ctx(), 100).unwrap();
        assert_eq!(
            y.channel.as_ref().unwrap().close[0].spec.kind,
            ChannelTxKind::Claim { channel: id, balance_drops: None, close: true }
        );
    }

    #[test]
    fn after_the_channel_closes_the_remainder_pays_the_plan_less_what_it_delivered() {
        let mut x = with_open_channel();
        let ch = x.channel.as_mut().unwrap();
        ch.status = ChannelStatus::Closed;
        ch.balance_drops = 900_000;
        ch.closed_with = Some(ClosedWith { spendable_drops: 9_099_910, funded_drops: 10_000_000 });
        x.next_sequence = Some(13);
        x.funded_drops = 10_000_500; // 500 drops arrived after the channel closed
        x.prepare_payout(&claim_plan(10_000_000, 1_000_000), &ctx(), 100).unwrap();
        let p = x.payout.as_ref().unwrap();
        let paid: Vec<(Recipient, u64, u32)> = p.transactions.iter().map(|t| (t.recipient, t.amount_drops, t.sequence)).collect();
        let total = 9_099_910 + 500;
        assert_eq!(
            paid,
            [
                (Recipient::Provider, 75_000, 13),
                (Recipient::Buyer, total - 75_000 - 25_000 - 90, 14),
                (Recipient::Marketplace, 25_000, 15),
            ],
            "the share the channel did not deliver, the buyer's rest, the commission"
        );
        assert_eq!(paid.iter().map(|(_, a, _)| a).sum::<u64>() + p.fees_drops, total, "nothing stays behind");

        // The buyer gave the provider a larger claim directly: that comes out of the buyer's part.
        let mut y = with_open_channel();
        let ch = y.channel.as_mut().unwrap();
        ch.status = ChannelStatus::Closed;
        ch.balance_drops = 1_200_000;
        ch.closed_with = Some(ClosedWith { spendable_drops: 8_799_910, funded_drops: 10_000_000 });
        y.prepare_payout(&claim_plan(10_000_000, 1_000_000), &ctx(), 100).unwrap();
        let p = y.payout.as_ref().unwrap();
        let paid: Vec<(Recipient, u64)> = p.transactions.iter().map(|t| (t.recipient, t.amount_drops)).collect();
        assert_eq!(paid, [(Recipient::Buyer, 8_799_910 - 25_000 - 60), (Recipient::Marketplace, 25_000)]);
    }

    #[test]
    fn a_channel_that_can_never_open_gives_way_to_an_ordinary_payout() {
        let mut x = with_open_channel();
        let ch = x.channel.as_mut().unwrap();
        ch.status = ChannelStatus::Proposed;
        ch.create.fin = None;
        ch.create.result = None;
        x.next_sequence = Some(10);
        assert_eq!(x.allocate_sequences(0, 0, 1), vec![10], "an incomplete create holds no Sequence");
        x.prepare_payout(&claim_plan(10_000_000, 0), &ctx(), 100).unwrap();
        assert_eq!(x.channel.as_ref().unwrap().status, ChannelStatus::Abandoned);
        let p = x.payout.as_ref().unwrap();
        assert_eq!(p.transactions[0].sequence, 10, "the payout takes the create's Sequence: at most one of them applies");

        // A complete create on its way: the payout waits for it, and its Sequence is held.
        let mut y = with_open_channel();
        let ch = y.channel.as_mut().unwrap();
        ch.status = ChannelStatus::Proposed;
        ch.create.result = None;
        y.next_sequence = Some(10);
        assert_eq!(y.allocate_sequences(0, 0, 1), vec![11]);
        y.prepare_payout(&claim_plan(10_000_000, 0), &ctx(), 100).unwrap();
        assert!(y.payout.is_none());
        assert_eq!(y.channel.as_ref().unwrap().status, ChannelStatus::Proposed);
    }
}
