//! Metered XRPL sessions on a native payment channel.
//!
//! Once a metered XRPL order is funded, its escrow account (still 2-of-3,
//! master key disabled) opens a PayChannel to the provider's payout
//! destination with a `PaymentChannelCreate`: the channel's claim key is the
//! buyer's escrow key, its `SettleDelay` the configured
//! `xrpl.channel_settle_delay_secs`, with no `CancelAfter` and no
//! `Expiration`, so a claim never expires. The marketplace signs the create
//! (rule `channel_open`) as soon as the order is funded; the buyer or the
//! provider adds the second signature (`signXrplChannel`).
//!
//! A claim is then one signature by the buyer over (channel, drops), where
//! drops is the provider's share of the cumulative usage (the commission
//! stays in the escrow account and is paid with the remainder). The ledger
//! lets a channel's balance only grow, and the provider can redeem the
//! latest claim alone at any time with its own `PaymentChannelClaim`.
//!
//! Every payout of an order whose channel is open starts by closing the
//! channel, so what is left comes back to the escrow account:
//! - the provider closes it itself (its claim with `tfClose` closes at once), or
//! - the escrow does, with two multisigned transactions on consecutive
//!   Sequences and no `LastLedgerSequence` (they wait to be signed): a source
//!   claim delivering the provider's share of the plan (`Balance`) with
//!   `tfClose`, which sets the channel's `Expiration` to `SettleDelay` from
//!   now, and a bare source claim that closes the expired channel, sent once
//!   the ledger's close time passed that `Expiration`. Until then the
//!   provider can still redeem any claim it holds.
//!
//! Once the ledger shows the channel gone, the remainder — the plan's shares
//! less what the channel delivered to the provider — is paid by ordinary
//! multisigned Payments ([`XrplEscrow::prepare_remainder`]).

use agora_escrow::xrpl::{
    channel_id, ChannelId, ChannelTx, ChannelTxKind, ChannelTxSpec, EscrowSigners, FinalPayout, SignatureCollector,
    XrplAddress,
};
use serde::{Deserialize, Serialize};

use super::xrpl::{multisig_error, XrplContext, XrplEscrow};
use crate::graphql::errors::ApiError;

/// The multisigned transactions a channel needs besides its create: at most
/// two closes and three remainder Payments, each paying the multisig fee.
const LATER_MULTISIG_TXS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelStatus {
    /// The create is built and collecting signatures (or sent).
    Proposed,
    /// A validated ledger holds the create with `tesSUCCESS`.
    Open,
    /// The ledger no longer holds the channel: what it did not deliver is
    /// back in the escrow account.
    Closed,
    /// The create never applied (refused with a `tec`, or a payout took its
    /// Sequence before it was complete): the deposit stayed in the account.
    Abandoned,
}

/// One multisigned transaction of the channel and its signatures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelStep {
    pub spec: ChannelTxSpec,
    pub signer_blobs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin: Option<FinalPayout>,
    /// The engine result, once a validated ledger holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl ChannelStep {
    fn new(spec: ChannelTxSpec) -> Result<Self, ApiError> {
        ChannelTx::from_spec(spec.clone()).map_err(ApiError::internal)?;
        Ok(Self {
            spec,
            signer_blobs: Vec::new(),
            fin: None,
            result: None,
        })
    }

    pub fn tx(&self) -> Result<ChannelTx, ApiError> {
        ChannelTx::from_spec(self.spec.clone()).map_err(ApiError::internal)
    }

    fn collector(&self, signers: &EscrowSigners) -> Result<SignatureCollector<ChannelTx>, ApiError> {
        let mut c = SignatureCollector::new(self.tx()?, signers.clone());
        for b in &self.signer_blobs {
            c.add_signer_blob(b).map_err(ApiError::internal)?;
        }
        Ok(c)
    }

    /// Who signed it so far.
    pub fn signed_by(&self, signers: &EscrowSigners) -> Vec<XrplAddress> {
        self.collector(signers).map(|c| c.signed_by()).unwrap_or_default()
    }

    pub fn applied(&self) -> bool {
        self.result.is_some()
    }
}

/// The provider's own claim that closes the channel, as it sent it through
/// `closeSession` (the watcher submits it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderClose {
    pub blob: String,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XrplChannel {
    pub id: ChannelId,
    pub amount_drops: u64,
    pub settle_delay: u32,
    pub status: ChannelStatus,
    pub create: ChannelStep,
    /// What the channel delivered to the provider, as the ledger last showed.
    pub balance_drops: u64,
    /// Set once the escrow asked to close (seconds since the XRPL epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u32>,
    /// The escrow's two closing transactions, once a payout is due.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub close: Vec<ChannelStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_close: Option<ProviderClose>,
    /// A transaction touched the channel: the watcher reads it back.
    #[serde(default)]
    pub recheck: bool,
    /// Whether the marketplace co-signs this payout: it signs the remainder
    /// too once the channel is closed.
    #[serde(default)]
    pub marketplace_cosigns: bool,
    /// Read when the channel closed: what the account held above its reserve,
    /// and the deposit count then (later deposits are added to the remainder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_with: Option<ClosedWith>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedWith {
    pub spendable_drops: u64,
    pub funded_drops: u64,
}

impl XrplChannel {
    /// The steps waiting for signatures: the create while proposed, else the
    /// escrow's closing transactions.
    pub fn awaiting(&self) -> Vec<&ChannelStep> {
        match self.status {
            ChannelStatus::Proposed if self.create.fin.is_none() => vec![&self.create],
            ChannelStatus::Open => self.close.iter().filter(|s| s.fin.is_none()).collect(),
            _ => Vec::new(),
        }
    }

    fn awaiting_mut(&mut self) -> Vec<&mut ChannelStep> {
        match self.status {
            ChannelStatus::Proposed if self.create.fin.is_none() => vec![&mut self.create],
            ChannelStatus::Open => self.close.iter_mut().filter(|s| s.fin.is_none()).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the channel may still hold funds, or may still open.
    pub fn live(&self) -> bool {
        matches!(self.status, ChannelStatus::Proposed | ChannelStatus::Open)
    }

    /// Every step, create first.
    pub fn steps(&self) -> impl Iterator<Item = &ChannelStep> {
        std::iter::once(&self.create).chain(self.close.iter())
    }

    /// The Sequences the channel's signed, not yet applied steps hold while
    /// the channel is live (once it is closed or abandoned they are void:
    /// applied now, they could only fail, and a payout may take their place).
    pub fn held_sequences(&self) -> Vec<u32> {
        if !self.live() {
            return Vec::new();
        }
        self.steps().filter(|s| s.fin.is_some() && !s.applied()).map(|s| s.spec.sequence).collect()
    }

    /// The hex message a claim of `drops` signs (`CLM\0 || channel || drops`).
    pub fn claim_message(&self, drops: u64) -> String {
        hex::encode_upper(agora_escrow::xrpl::claim_message(&self.id, drops))
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

/// What a metered XRPL deposit can stream through its channel: the deposit
/// less the channel's owner reserve and the fees of every later multisigned
/// transaction of the escrow (the create included).
pub fn channel_capacity(ctx: &XrplContext, deposit: u64) -> Result<u64, ApiError> {
    let fee = agora_escrow::xrpl::multisig_fee_drops(ctx.base_fee_drops).map_err(internal)?;
    let kept = fee
        .checked_mul(LATER_MULTISIG_TXS + 1)
        .and_then(|f| f.checked_add(ctx.reserves.owner_drops))
        .ok_or_else(|| internal("fee overflow"))?;
    Ok(deposit.saturating_sub(kept))
}

impl XrplEscrow {
    /// Builds the channel's create at `sequence` for `deposit` (the order's
    /// amount due). The caller has the marketplace sign it.
    pub fn propose_channel(&mut self, ctx: &XrplContext, deposit: u64, sequence: u32) -> Result<(), ApiError> {
        let amount = channel_capacity(ctx, deposit)?;
        if amount == 0 {
            return Err(ApiError::conflict("DEPOSIT_TOO_SMALL", "the deposit does not cover the channel's reserve and fees"));
        }
        let destination = self.payout_to.provider.clone();
        let spec = ChannelTxSpec {
            escrow: self.address.clone(),
            kind: ChannelTxKind::Create {
                destination: destination.clone(),
                amount_drops: amount,
                settle_delay: ctx.channel_settle_delay_secs,
                public_key: self.buyer.public_key.clone(),
            },
            fee_drops: agora_escrow::xrpl::multisig_fee_drops(ctx.base_fee_drops).map_err(internal)?,
            sequence,
            last_ledger_sequence: None,
        };
        self.channel = Some(XrplChannel {
            id: channel_id(&self.address, &destination.address, sequence),
            amount_drops: amount,
            settle_delay: ctx.channel_settle_delay_secs,
            status: ChannelStatus::Proposed,
            create: ChannelStep::new(spec)?,
            balance_drops: 0,
            expiration: None,
            close: Vec::new(),
            provider_close: None,
            recheck: false,
            marketplace_cosigns: false,
            closed_with: None,
        });
        Ok(())
    }

    /// Builds the escrow's two closing transactions, the first delivering
    /// `deliver_drops` in all to the provider (nothing more than the channel
    /// already did when that is not above its balance), on the two lowest
    /// free Sequences.
    pub fn prepare_channel_close(&mut self, ctx: &XrplContext, deliver_drops: u64, sequences: [u32; 2]) -> Result<(), ApiError> {
        let fee = agora_escrow::xrpl::multisig_fee_drops(ctx.base_fee_drops).map_err(internal)?;
        let escrow = self.address.clone();
        let ch = self.channel.as_mut().ok_or_else(|| internal("no channel to close"))?;
        let target = deliver_drops.min(ch.amount_drops);
        let balance = (target > ch.balance_drops).then_some(target);
        let step = |kind, sequence| {
            ChannelStep::new(ChannelTxSpec {
                escrow: escrow.clone(),
                kind,
                fee_drops: fee,
                sequence,
                last_ledger_sequence: None,
            })
        };
        ch.close = vec![
            step(ChannelTxKind::Claim { channel: ch.id, balance_drops: balance, close: true }, sequences[0])?,
            step(ChannelTxKind::Claim { channel: ch.id, balance_drops: None, close: false }, sequences[1])?,
        ];
        Ok(())
    }

    /// Signs the steps waiting for signatures with the arbitrator key (the
    /// caller checked the policy). Returns short ids of what was signed.
    pub fn sign_channel_as_arbitrator(&mut self, ctx: &XrplContext) -> Result<Vec<String>, ApiError> {
        let signers = self.signers()?;
        let arbitrator = self.arbitrator.address.clone();
        let Some(ch) = self.channel.as_mut() else { return Ok(Vec::new()) };
        let mut ids = Vec::new();
        for step in ch.awaiting_mut() {
            let mut c = step.collector(&signers)?;
            if c.signed_by().contains(&arbitrator) {
                continue;
            }
            let tx = step.tx()?;
            let blob = ctx.keyring.sign_payout_as_arbitrator(&tx).map_err(internal)?;
            c.add_signer_blob(&blob).map_err(internal)?;
            step.signer_blobs.push(blob);
            if c.has_quorum() {
                step.fin = Some(c.finalize().map_err(internal)?);
            }
            ids.push(super::xrpl::short_hash(&tx.unsigned_blob()));
        }
        Ok(ids)
    }

    /// Adds the signer blobs of `expected` (the buyer's or the provider's
    /// account), one per step waiting for signatures, in order. All or
    /// nothing: every blob is checked before anything is kept.
    pub fn import_channel_signatures(&mut self, expected: &XrplAddress, blobs: &[String]) -> Result<(), ApiError> {
        let field = "input.signedTransactions";
        let signers = self.signers()?;
        let arbitrator = self.arbitrator.address.clone();
        let ch = self
            .channel
            .as_mut()
            .ok_or_else(|| ApiError::conflict("NO_CHANNEL", "this order has no payment channel"))?;
        let awaiting = ch.awaiting_mut();
        if awaiting.is_empty() {
            return Err(ApiError::conflict("NOTHING_TO_SIGN", "no channel transaction is waiting for signatures"));
        }
        if blobs.len() != awaiting.len() {
            return Err(ApiError::bad_input(
                field,
                "WRONG_COUNT",
                format!("{field}: {} channel transactions wait for signatures; sign each and send them in order", awaiting.len()),
            ));
        }
        let mut staged = Vec::with_capacity(blobs.len());
        for (i, (step, blob)) in awaiting.iter().zip(blobs).enumerate() {
            let mut c = step.collector(&signers)?;
            let added = c.add_signer_blob(blob.trim()).map_err(|e| multisig_error(i, e))?;
            if added.iter().any(|a| a != expected) || added.contains(&arbitrator) {
                return Err(ApiError::bad_input(
                    field,
                    "UNEXPECTED_SIGNER",
                    format!("{field}[{i}]: not signed by your own escrow key"),
                ));
            }
            let fin = if c.has_quorum() { Some(c.finalize().map_err(|e| multisig_error(i, e))?) } else { None };
            staged.push((blob.trim().to_owned(), fin));
        }
        for (step, (blob, fin)) in awaiting.into_iter().zip(staged) {
            step.signer_blobs.push(blob);
            step.fin = fin;
        }
        Ok(())
    }
}
