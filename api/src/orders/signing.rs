//! The one gate to the marketplace key. Every signature the marketplace's
//! Bitcoin key makes — a payout, a re-signed rebuild, a stray-funds refund —
//! goes through [`SigningGate`]: it holds the key store privately, re-checks
//! the signing policy on the state being stored, signs, and writes the audit
//! row in the caller's database transaction, so a signature without its audit
//! row (or an audit row without its state) can never be committed.
//! XRPL payouts signed by the arbitrator key pass through the same checks and
//! audit here as well, and so does the one signature an escrow account's own
//! master key makes after its set-up: returning the deposits of an order that
//! expired before the account was locked.

use agora_domain::escrow::policy::{may_sign_channel_open, may_sign_stray_refund, ChannelOpen};
use agora_domain::escrow::{may_arbitrator_sign, Context, Outcome, PolicyError, SigningRule};
use agora_escrow::btc::{KeyStoreError, MarketplaceKeyStore};
use agora_persistence::orders::{self, ArbitratorSignatureRecord};
use bitcoin::PublicKey;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::{outcome_name, rule_name, EscrowRecord, Order};
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};

/// The holder of the marketplace's Bitcoin key store. It has no accessor for
/// the store: signing happens only through its methods.
pub struct SigningGate {
    keystore: MarketplaceKeyStore,
}

impl SigningGate {
    pub fn new(keystore: MarketplaceKeyStore) -> Self {
        Self { keystore }
    }

    /// The public arbitrator key of escrow `index` (no signature involved).
    pub fn arbitrator_pubkey(&self, index: u32) -> Result<PublicKey, KeyStoreError> {
        self.keystore.arbitrator_pubkey(index)
    }

    /// Co-signs the order's prepared payout of `outcome`, if the policy allows
    /// it on `order.state` (the state the caller is about to store) at
    /// `ctx.now`; writes the audit row in `txn`. Returns the rule applied.
    pub async fn sign_payout(
        app: &AppState,
        txn: &DatabaseTransaction,
        order: &mut Order,
        outcome: Outcome,
        ctx: &Context,
    ) -> ApiResult<SigningRule> {
        let rule = may_arbitrator_sign(&order.state, outcome, ctx).map_err(policy_error)?;
        let (chain, key_index, public_key, tx_id) = match &mut order.escrow {
            EscrowRecord::Bitcoin(btc) => {
                let txid = btc.sign_as_arbitrator(&app.bitcoin.gate.keystore)?;
                ("bitcoin", btc.key_index, btc.arbitrator_key.clone(), txid.to_string())
            }
            EscrowRecord::Xrpl(x) => {
                let ids = x.sign_as_arbitrator(&app.xrpl)?;
                if ids.is_empty() {
                    // Nothing to sign yet (a channel still closing, or its
                    // transactions signed already): the remainder is signed,
                    // and audited, once it is built.
                    return Ok(rule);
                }
                ("xrpl", x.key_index, x.arbitrator.public_key.to_hex(), ids.join(","))
            }
        };
        audit(txn, order, chain, key_index, public_key, rule, outcome_name(outcome), tx_id, ctx.now).await?;
        Ok(rule)
    }

    /// Co-signs the refund of stray output `index` to the buyer, if it is one
    /// (only stray outputs, only to the buyer, at most the fee bound lost).
    pub async fn sign_stray_refund(
        app: &AppState,
        txn: &DatabaseTransaction,
        order: &mut Order,
        index: usize,
        now: DateTime<Utc>,
    ) -> ApiResult<SigningRule> {
        let EscrowRecord::Bitcoin(btc) = &mut order.escrow else {
            return Err(ApiError::internal("stray refunds are Bitcoin transactions"));
        };
        let facts = btc.stray_refund_facts(index)?;
        let vsize_bound = 400;
        let max_fee = app.bitcoin.fees.max().saturating_mul(vsize_bound);
        let rule = may_sign_stray_refund(&facts, max_fee).map_err(policy_error)?;
        let txid = btc.sign_stray_refund(index, &app.bitcoin.gate.keystore)?;
        let (key_index, public_key) = (btc.key_index, btc.arbitrator_key.clone());
        audit(txn, order, "bitcoin", key_index, public_key, rule, "refund".into(), txid.to_string(), now).await?;
        Ok(rule)
    }
}

impl SigningGate {
    /// Signs, with the escrow account's own master key, the Payment that
    /// returns the deposits of an XRPL order that expired before its lock
    /// held, at the account's next Sequence `sequence` (so it competes with
    /// any set-up transaction still in flight: at most one of them applies).
    /// Policy: only an expired order, only while the set-up is not read back
    /// as locked, only the deposits (at most `available_drops`, what the
    /// account holds above its reserve), only to the buyer's refund
    /// destination. Audited as a stray refund of the amount paid.
    pub async fn sign_unlocked_refund(
        app: &AppState,
        txn: &DatabaseTransaction,
        order: &mut Order,
        sequence: u32,
        available_drops: u64,
        validated: u32,
        now: DateTime<Utc>,
    ) -> ApiResult<SigningRule> {
        let expired = matches!(order.state, agora_domain::escrow::EscrowState::Expired { .. });
        let EscrowRecord::Xrpl(x) = &mut order.escrow else {
            return Err(ApiError::internal("an unlocked-account refund is an XRPL transaction"));
        };
        let fee = app.xrpl.base_fee_drops;
        let refused = |why: &str| ApiError::conflict("POLICY_REFUSED", format!("the escrow's master key may not sign: {why}"));
        if !expired {
            return Err(refused("only an order that expired unfunded is refunded this way"));
        }
        if x.setup.status == super::xrpl::SetupStatus::Ready {
            return Err(refused("the account is locked; refunds go through its signer list"));
        }
        let amount = x.funded_drops.min(available_drops).checked_sub(fee).filter(|a| *a > 0).ok_or_else(|| refused("nothing to refund above the fee"))?;
        let payment = agora_escrow::xrpl::XrpPayment {
            destination: x.payout_to.buyer.address.clone(),
            destination_tag: x.payout_to.buyer.tag,
            amount_drops: amount,
            fee_drops: fee,
            sequence,
            last_ledger_sequence: Some(validated.saturating_add(app.xrpl.setup_ledger_window)),
        };
        let signed = agora_escrow::xrpl::sign_unlocked_refund(&app.xrpl.keyring, x.key_index, &payment).map_err(ApiError::internal)?;
        let hash = signed.hash.clone();
        x.setup.refund = Some(signed);
        let (key_index, public_key) = (x.key_index, x.public_key.clone());
        let rule = SigningRule::StrayRefund { amount };
        audit(txn, order, "xrpl", key_index, public_key, rule, "refund".into(), hash, now).await?;
        Ok(rule)
    }
}

impl SigningGate {
    /// Co-signs a funded metered XRPL order's proposed payment channel, if
    /// it is one the policy allows ([`may_sign_channel_open`]).
    pub async fn sign_channel_open(app: &AppState, txn: &DatabaseTransaction, order: &mut Order, now: DateTime<Utc>) -> ApiResult<SigningRule> {
        let funded = matches!(order.state, agora_domain::escrow::EscrowState::Funded { .. });
        let metered = order.is_metered();
        let deposit = order.terms.amount_due().minor();
        let EscrowRecord::Xrpl(x) = &mut order.escrow else {
            return Err(ApiError::internal("payment channels are XRPL objects"));
        };
        let ch = x.channel.as_ref().ok_or_else(|| ApiError::internal("no channel proposed"))?;
        let spec = &ch.create.spec;
        let agora_escrow::xrpl::ChannelTxKind::Create { destination, amount_drops, settle_delay, public_key } = &spec.kind else {
            return Err(ApiError::internal("the channel's first transaction is not a create"));
        };
        let facts = ChannelOpen {
            funded: funded && ch.status == super::channel::ChannelStatus::Proposed && spec.escrow == x.address,
            metered,
            to_provider: *destination == x.payout_to.provider,
            buyer_claim_key: *public_key == x.buyer.public_key,
            never_expires: true,
            amount: *amount_drops,
            deposit: x.funded_drops.min(deposit),
            settle_delay_secs: *settle_delay,
            min_settle_delay_secs: crate::startup::MIN_CHANNEL_SETTLE_DELAY_SECS,
        };
        let rule = may_sign_channel_open(&facts).map_err(policy_error)?;
        let ids = x.sign_channel_as_arbitrator(&app.xrpl)?;
        let (key_index, public_key) = (x.key_index, x.arbitrator.public_key.to_hex());
        audit(txn, order, "xrpl", key_index, public_key, rule, "channel_open".into(), ids.join(","), now).await?;
        Ok(rule)
    }
}

#[allow(clippy::too_many_arguments)]
async fn audit(
    txn: &DatabaseTransaction,
    order: &Order,
    chain: &str,
    key_index: u32,
    public_key: String,
    rule: SigningRule,
    outcome: String,
    tx_id: String,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    orders::insert_arbitrator_signature(
        txn,
        &ArbitratorSignatureRecord {
            order_id: order.id(),
            chain: chain.to_owned(),
            key_index,
            public_key,
            rule: rule_name(rule),
            outcome,
            tx_id: tx_id.clone(),
            detail: String::new(),
            signed_at: now,
        },
    )
    .await?;
    tracing::info!(order.id = %order.id(), escrow.txid = %tx_id, rule = %rule_name(rule), "marketplace key signed");
    Ok(())
}

pub fn policy_error(e: PolicyError) -> ApiError {
    ApiError::conflict("POLICY_REFUSED", format!("the marketplace key may not sign: {e}"))
}
