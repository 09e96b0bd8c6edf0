//! Orders over GraphQL: placing them, the parties' actions, the payout to sign.

use agora_domain::escrow::{Actor, EscrowEvent, EscrowState, Outcome, Party, Settled};
use agora_domain::order::PricingSnapshot;
use agora_escrow::btc::EscrowParty;
use agora_persistence::orders as order_store;
use async_graphql::dataloader::DataLoader;

use super::loaders::{ArbitratorSignaturesLoader, OrderEventsLoader};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::context::{state, viewer};
use super::errors::{ApiError, ApiResult};
use super::listing::AssetGql;
use super::node::{expect, global_id, NodeType};
use super::provider::ProviderObject;
use super::scalars::MinorUnits;
use crate::orders::bitcoin::{BtcEscrow, BtcPayout};
use crate::orders::place::{place, PlaceOrderRequest};
use crate::orders::xrpl::{SetupStatus, XrplEscrow};
use crate::orders::{self, Caller, EscrowRecord, Order, PayoutSignatures};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderStatus {
    /// Waiting for the buyer to fund the escrow address.
    AwaitingFunding,
    /// Not funded in time.
    Expired,
    Funded,
    Delivered,
    /// One party proposed a mutual cancel.
    Cancelling,
    Disputed,
    /// A release to the provider is being signed or confirmed.
    Releasing,
    /// A refund to the buyer is being signed or confirmed.
    Refunding,
    /// An arbitrated split is being signed or confirmed.
    Settling,
    Settled,
}

fn status_of(state: &EscrowState) -> OrderStatus {
    match state {
        EscrowState::AwaitingFunding { .. } => OrderStatus::AwaitingFunding,
        EscrowState::Expired { .. } => OrderStatus::Expired,
        EscrowState::Funded { .. } => OrderStatus::Funded,
        EscrowState::Delivered { .. } => OrderStatus::Delivered,
        EscrowState::Cancelling { .. } => OrderStatus::Cancelling,
        EscrowState::Disputed { .. } => OrderStatus::Disputed,
        EscrowState::PayingOut { payout, .. } => match payout.outcome() {
            Outcome::Release => OrderStatus::Releasing,
            Outcome::Refund => OrderStatus::Refunding,
            Outcome::Split { .. } => OrderStatus::Settling,
        },
        EscrowState::Settled { .. } => OrderStatus::Settled,
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PayoutOutcome {
    Release,
    Refund,
    Split,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderRole {
    Buyer,
    Provider,
    Arbitrator,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EscrowSigner {
    Buyer,
    Provider,
    /// The marketplace key, co-signing only where the signing policy allows.
    Marketplace,
}

impl From<EscrowParty> for EscrowSigner {
    fn from(p: EscrowParty) -> Self {
        match p {
            EscrowParty::Buyer => EscrowSigner::Buyer,
            EscrowParty::Provider => EscrowSigner::Provider,
            EscrowParty::Arbitrator => EscrowSigner::Marketplace,
        }
    }
}

fn outcome_gql(o: Outcome) -> (PayoutOutcome, i32) {
    match o {
        Outcome::Release => (PayoutOutcome::Release, 10_000),
        Outcome::Refund => (PayoutOutcome::Refund, 0),
        Outcome::Split { provider_bps } => (PayoutOutcome::Split, i32::from(provider_bps.get())),
    }
}

/// An order and its escrow. Visible to its buyer, its provider and its
/// assigned arbitrator.
pub struct OrderObject(pub Order);

#[derive(SimpleObject)]
pub struct OrderDeadlines {
    /// The escrow must be funded (with the required confirmations) by then.
    pub funding_by: DateTime<Utc>,
    /// The provider must mark the order delivered by then.
    pub delivery_by: DateTime<Utc>,
    pub review_period_hours: i64,
    /// When funds are released automatically unless the buyer disputes (once delivered).
    pub review_ends_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct OrderFees {
    /// Marketplace commission on the provider's share, in basis points.
    pub commission_bps: i32,
    /// Charged only when a dispute is decided: fixed part, in minor units.
    pub arbitration_fee_fixed: MinorUnits,
    pub arbitration_fee_bps: i32,
}

#[derive(SimpleObject)]
pub struct ListingSnapshotGql {
    pub listing_id: ID,
    pub title: String,
    pub category: String,
    /// The fixed price, or the price per unit of a metered listing.
    pub price: MinorUnits,
    pub metered_unit: Option<String>,
}

#[derive(SimpleObject)]
pub struct FundingUtxoGql {
    pub txid: String,
    pub vout: u32,
    pub amount: MinorUnits,
}

#[derive(SimpleObject)]
pub struct BitcoinPayoutAddresses {
    pub provider: String,
    pub buyer: String,
    pub marketplace: String,
}

/// The Bitcoin 2-of-3 escrow behind an order:
/// `or(9@thresh(2,pk(B),pk(P),pk(A)),1@and(pk(B_refund),older(T)))` as P2WSH.
#[derive(SimpleObject)]
pub struct BitcoinEscrowGql {
    pub network: String,
    /// Send exactly the amount due here.
    pub address: String,
    /// The output descriptor (with checksum), for wallets that import it.
    pub descriptor: String,
    /// The witness script, hex.
    pub witness_script: String,
    /// Blocks after funding at which the buyer alone can take the refund path.
    pub timelock_blocks: i32,
    pub buyer_public_key: String,
    pub buyer_refund_public_key: String,
    pub provider_public_key: String,
    /// The marketplace's key for this escrow (derived at `arbitratorKeyIndex`).
    pub arbitrator_public_key: String,
    pub arbitrator_key_index: u32,
    pub payout_addresses: BitcoinPayoutAddresses,
    pub funding_utxos: Vec<FundingUtxoGql>,
    pub confirmations: u32,
}

#[derive(SimpleObject)]
pub struct PayoutBreakdownGql {
    pub provider: MinorUnits,
    pub buyer: MinorUnits,
    pub commission: MinorUnits,
    pub arbitration_fee: MinorUnits,
    pub network_fee: MinorUnits,
}

#[derive(SimpleObject)]
pub struct PayoutOutputGql {
    /// provider, buyer or marketplace.
    pub role: String,
    pub amount: MinorUnits,
}

/// One multisigned Payment of an XRPL payout.
#[derive(SimpleObject)]
pub struct XrplPayoutTransactionGql {
    /// provider, buyer or marketplace.
    pub recipient: String,
    pub destination: String,
    pub destination_tag: Option<u32>,
    pub amount: MinorUnits,
    pub fee: MinorUnits,
    pub sequence: u32,
    /// The payout cannot be validated after this ledger; it is then rebuilt.
    pub last_ledger_sequence: u32,
    /// The transaction to multisign (rippled JSON, `SigningPubKey` empty).
    pub tx_json: String,
    /// The same transaction, binary-encoded (hex).
    pub unsigned_blob: String,
    /// Set once the quorum signed and every signature was verified.
    pub final_blob: Option<String>,
    pub hash: Option<String>,
    /// In a validated ledger with `tesSUCCESS`: paid.
    pub validated: bool,
    /// The ledger applied this Payment with this `tec` result and moved
    /// nothing (its fee is burned): the recipient names a destination that can
    /// receive the share with `setPayoutDestination`.
    pub refused_with: Option<String>,
}

/// The payout currently allowed, and the signatures collected for it.
#[derive(SimpleObject)]
pub struct PayoutGql {
    pub outcome: PayoutOutcome,
    /// Share of the pool to the provider (10000 = all).
    pub provider_bps: i32,
    /// Bitcoin: the PSBT to sign (base64), with every signature collected so far.
    pub psbt: Option<String>,
    /// Bitcoin: the payout's txid. XRPL: the hash of its first Payment once signed.
    pub txid: Option<String>,
    pub fee_rate_sat_vb: Option<u64>,
    pub breakdown: PayoutBreakdownGql,
    pub outputs: Vec<PayoutOutputGql>,
    /// Shares below the dust limit, left to the network fee.
    pub dropped_dust: Vec<PayoutOutputGql>,
    pub signed_by: Vec<EscrowSigner>,
    /// True once two keys signed every input and every input passed Bitcoin
    /// Core's script interpreter.
    pub complete: bool,
    /// Bitcoin: the final transaction (hex), once complete.
    pub transaction_hex: Option<String>,
    /// XRPL: one Payment per recipient, consecutive Sequences; sign each.
    pub xrpl_transactions: Vec<XrplPayoutTransactionGql>,
}

#[derive(SimpleObject)]
pub struct OrderEventGql {
    pub event: String,
    pub actor: String,
    pub from_status: String,
    pub to_status: String,
    pub detail: String,
    pub at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct ArbitratorSignatureGql {
    /// The rule of the signing policy that allowed the signature.
    pub rule: String,
    pub outcome: String,
    pub txid: String,
    pub public_key: String,
    pub signed_at: DateTime<Utc>,
}

/// Where the order's escrow stands on its chain, for status pages and explorers.
#[derive(SimpleObject)]
pub struct ChainStatusGql {
    /// bitcoin or xrpl.
    pub chain: String,
    /// The block height (ledger index) the watcher last processed.
    pub tip: u64,
    /// Confirmations of the escrow's funding (XRPL: 1 once in a validated ledger).
    pub funding_confirmations: u32,
    pub required_confirmations: u32,
    /// Funding transactions (txids / ledger hashes), for block explorers.
    pub funding_transactions: Vec<String>,
    /// The payout's transactions (txid, or one hash per XRPL Payment).
    pub payout_transactions: Vec<String>,
    /// Whether the payout was sent to the network.
    pub payout_broadcast: bool,
    /// Confirmations of the payout once mined (XRPL: validated Payments).
    pub payout_confirmations: u32,
    /// Bitcoin: the fee rate of this escrow's payouts, fixed when the funding
    /// was accepted (the chain's estimate then, within the configured bounds).
    pub payout_fee_rate_sat_vb: Option<u64>,
    /// Bitcoin: outputs that reached the escrow outside its accepted funding.
    /// They never change the order's payout; each is refunded to the buyer.
    pub stray_deposits: Vec<StrayDepositGql>,
    /// Bitcoin: the height at which the buyer's time-locked refund path
    /// opens, while the escrow is open and Agora must settle it first.
    pub timelock_opens_at_height: Option<u64>,
    /// Bitcoin: the height by which the service acts (its margin before the
    /// timelock); every deadline of the order ends before it.
    pub service_acts_by_height: Option<u64>,
    /// A spend of the escrow Agora did not prepare, as the chain showed it.
    pub other_spend: Option<OtherSpendGql>,
    /// Bitcoin: payouts replaced at a higher fee rate while they were stuck.
    pub fee_bumps: Vec<FeeBumpGql>,
}

#[derive(SimpleObject)]
#[graphql(name = "FeeBump")]
pub struct FeeBumpGql {
    pub replaced_txid: String,
    pub from_sat_vb: u64,
    pub to_sat_vb: u64,
    pub at: DateTime<Utc>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum StrayDepositStatus {
    /// Waiting for the confirmations the order requires; its refund is
    /// prepared with the next block after that.
    Pending,
    /// The refund is co-signed by the marketplace; the buyer signs it
    /// (`submitStrayRefundSignature`).
    RefundToSign,
    /// Fully signed; the watcher broadcasts it.
    RefundSigned,
    /// Spent (by its refund, or by the buyer's own timelock path).
    Refunded,
    /// Too small to pay its own refund fee; left in place.
    Dust,
}

#[derive(SimpleObject)]
#[graphql(name = "StrayDeposit")]
pub struct StrayDepositGql {
    /// Its position, for `submitStrayRefundSignature`.
    pub index: i32,
    pub txid: String,
    pub vout: u32,
    pub amount: MinorUnits,
    pub height: Option<u64>,
    pub status: StrayDepositStatus,
    /// The refund PSBT (base64) to sign, once prepared.
    pub refund_psbt: Option<String>,
    pub refund_txid: Option<String>,
    /// What the refund pays the buyer (after the network fee).
    pub refund_amount: Option<MinorUnits>,
    /// The transaction that spent it.
    pub spent_by: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(name = "OtherSpend")]
pub struct OtherSpendGql {
    pub txid: String,
    pub mined_at_height: u64,
    /// What it paid, by role (provider, buyer, marketplace, other).
    pub paid: Vec<PayoutOutputGql>,
}

fn stray_gql(index: usize, s: &crate::orders::bitcoin::StrayDeposit) -> StrayDepositGql {
    let status = if s.spent_by.is_some() {
        StrayDepositStatus::Refunded
    } else if s.dust {
        StrayDepositStatus::Dust
    } else {
        match &s.refund {
            None => StrayDepositStatus::Pending,
            Some(r) if r.final_tx.is_some() => StrayDepositStatus::RefundSigned,
            Some(_) => StrayDepositStatus::RefundToSign,
        }
    };
    StrayDepositGql {
        index: i32::try_from(index).unwrap_or(i32::MAX),
        txid: s.utxo.txid.to_string(),
        vout: s.utxo.vout,
        amount: s.utxo.value.into(),
        height: s.utxo.height,
        status,
        refund_psbt: s.refund.as_ref().map(|r| r.psbt.clone()),
        refund_txid: s.refund.as_ref().map(|r| r.txid.to_string()),
        refund_amount: s.refund.as_ref().map(|r| r.breakdown.buyer.into()),
        spent_by: s.spent_by.map(|t| t.to_string()),
    }
}

#[derive(SimpleObject)]
pub struct SettlementGql {
    pub outcome: PayoutOutcome,
    pub provider_bps: i32,
    /// The transaction that settled the escrow.
    pub txid: String,
    /// True when the buyer used the time-locked refund path.
    pub by_timelock: bool,
    /// True when the escrow was spent by a transaction Agora did not prepare
    /// (two of the three keys agreed on it); it settled as the chain showed.
    pub by_other_transaction: bool,
    /// What the settling transaction paid to whom (empty for the buyer's
    /// timelock path, which pays the buyer everything less its fee).
    pub paid: Vec<PayoutOutputGql>,
    pub at: DateTime<Utc>,
}

fn payout_gql(outcome: Outcome, p: &BtcPayout) -> PayoutGql {
    let (outcome, provider_bps) = outcome_gql(outcome);
    let b = &p.breakdown;
    PayoutGql {
        outcome,
        provider_bps,
        psbt: Some(p.psbt.clone()),
        txid: Some(p.txid.to_string()),
        fee_rate_sat_vb: Some(p.fee_rate_sat_vb),
        breakdown: PayoutBreakdownGql {
            provider: b.provider.into(),
            buyer: b.buyer.into(),
            commission: b.commission.into(),
            arbitration_fee: b.arbitration_fee.into(),
            network_fee: p.fee.into(),
        },
        outputs: p
            .outputs
            .iter()
            .map(|(role, amount)| PayoutOutputGql {
                role: role.clone(),
                amount: (*amount).into(),
            })
            .collect(),
        dropped_dust: p
            .dropped_dust
            .iter()
            .map(|(role, amount)| PayoutOutputGql {
                role: role.clone(),
                amount: (*amount).into(),
            })
            .collect(),
        signed_by: p.signed_by.iter().map(|s| (*s).into()).collect(),
        complete: p.final_tx.is_some(),
        transaction_hex: p.final_tx.clone(),
        xrpl_transactions: Vec::new(),
    }
}

fn xrpl_payout_gql(outcome: Outcome, x: &XrplEscrow) -> Option<PayoutGql> {
    let p = x.payout.as_ref()?;
    let (outcome, provider_bps) = outcome_gql(outcome);
    let b = &p.breakdown;
    let txs = x.payout_txs().ok()?;
    let signed_by = x
        .signed_by()
        .into_iter()
        .map(|s| match s {
            "buyer" => EscrowSigner::Buyer,
            "provider" => EscrowSigner::Provider,
            _ => EscrowSigner::Marketplace,
        })
        .collect();
    let recipient = |r: agora_escrow::xrpl::Recipient| format!("{r:?}").to_lowercase();
    Some(PayoutGql {
        outcome,
        provider_bps,
        psbt: None,
        txid: p.id(),
        fee_rate_sat_vb: None,
        breakdown: PayoutBreakdownGql {
            provider: b.provider.into(),
            buyer: b.buyer.into(),
            commission: b.commission.into(),
            arbitration_fee: b.arbitration_fee.into(),
            network_fee: b.network_fee.into(),
        },
        outputs: txs
            .iter()
            .map(|tx| PayoutOutputGql {
                role: recipient(tx.recipient()),
                amount: tx.amount_drops().into(),
            })
            .collect(),
        dropped_dust: Vec::new(),
        signed_by,
        complete: p.complete(),
        transaction_hex: None,
        xrpl_transactions: txs
            .iter()
            .zip(&p.finals)
            .enumerate()
            .map(|(i, (tx, fin))| XrplPayoutTransactionGql {
                recipient: recipient(tx.recipient()),
                destination: tx.destination().address.to_string(),
                destination_tag: tx.destination().tag,
                amount: tx.amount_drops().into(),
                fee: tx.fee_drops().into(),
                sequence: tx.sequence(),
                last_ledger_sequence: tx.last_ledger_sequence(),
                tx_json: tx.to_json().to_string(),
                unsigned_blob: tx.unsigned_blob(),
                final_blob: fin.as_ref().map(|f| f.blob.clone()),
                hash: fin.as_ref().map(|f| f.hash.clone()),
                validated: p.validated.contains(&i),
                refused_with: p.failed_at(i).map(|f| f.result.clone()),
            })
            .collect(),
    })
}

impl OrderObject {
    fn btc(&self) -> Option<&BtcEscrow> {
        match &self.0.escrow {
            EscrowRecord::Bitcoin(b) => Some(b),
            EscrowRecord::Xrpl(_) => None,
        }
    }

    fn current_payout(&self) -> Option<PayoutGql> {
        let EscrowState::PayingOut { payout, .. } = &self.0.state else {
            return None;
        };
        match &self.0.escrow {
            EscrowRecord::Bitcoin(b) => b.payout.as_ref().map(|p| payout_gql(payout.outcome(), p)),
            EscrowRecord::Xrpl(x) => xrpl_payout_gql(payout.outcome(), x),
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum XrplSetupStatus {
    /// The escrow account is not on the ledger yet: do not pay.
    AwaitingAccount,
    /// The signer list and master-key switch are signed but not validated yet: do not pay.
    Configuring,
    /// The signer list is installed and the master key disabled: verify, then pay.
    Ready,
}

#[derive(SimpleObject)]
pub struct XrplSignerEntryGql {
    pub account: String,
    pub weight: u32,
    /// buyer, provider or arbitrator.
    pub role: String,
}

/// What the buyer should check on the ledger (`account_info` with
/// `signer_lists: true`, `account_objects`) before paying into the escrow account.
#[derive(SimpleObject)]
pub struct XrplVerification {
    pub escrow_account: String,
    /// Exactly these three entries, each of weight 1.
    pub signer_entries: Vec<XrplSignerEntryGql>,
    /// 2: any two of buyer, provider and arbitrator can move the funds, no one alone.
    pub quorum: u32,
    /// The account's master key must be disabled (`lsfDisableMaster`).
    pub master_disabled: bool,
    /// No regular key may be set.
    pub regular_key: Option<String>,
    /// The reserve the marketplace keeps in the account (not part of your deposit).
    pub expected_reserve_drops: MinorUnits,
}

#[derive(SimpleObject)]
pub struct XrplSignedTransactionGql {
    pub hash: String,
    pub blob: String,
}

#[derive(SimpleObject)]
pub struct XrplSetupTransactions {
    /// The operating account's Payment that creates the escrow account.
    pub funding: Option<XrplSignedTransactionGql>,
    pub signer_list_set: Option<XrplSignedTransactionGql>,
    /// The AccountSet that disables the master key.
    pub disable_master: Option<XrplSignedTransactionGql>,
}

#[derive(SimpleObject)]
pub struct XrplDestinationGql {
    pub address: String,
    pub tag: Option<u32>,
}

#[derive(SimpleObject)]
pub struct XrplPayoutDestinations {
    pub provider: XrplDestinationGql,
    pub buyer: XrplDestinationGql,
    pub marketplace: XrplDestinationGql,
}

/// The XRPL escrow behind an order: a fresh account with a 2-of-3 signer list.
#[derive(SimpleObject)]
pub struct XrplEscrowGql {
    /// Pay the amount due here, once `setupStatus` is READY and you verified it.
    pub account: String,
    pub account_public_key: String,
    pub key_index: u32,
    pub setup_status: XrplSetupStatus,
    /// What to verify on the ledger before paying (available once configured).
    pub verify_before_funding: Option<XrplVerification>,
    pub setup_transactions: XrplSetupTransactions,
    pub buyer_account: String,
    pub provider_account: String,
    pub arbitrator_account: String,
    pub payout_destinations: XrplPayoutDestinations,
    /// The deposit seen on the ledger (balance above the reserve).
    pub deposit_drops: MinorUnits,
    pub ledger_index: u32,
    pub next_sequence: Option<u32>,
    /// Metered orders: the payment channel to the provider.
    pub channel: Option<super::channel::XrplChannelGql>,
}

fn signed_tx(t: &Option<agora_escrow::xrpl::SignedTx>) -> Option<XrplSignedTransactionGql> {
    t.as_ref().map(|t| XrplSignedTransactionGql {
        hash: t.hash.clone(),
        blob: t.blob.clone(),
    })
}

fn xrpl_escrow_gql(x: &XrplEscrow) -> XrplEscrowGql {
    let role = |a: &agora_escrow::xrpl::XrplAddress| {
        if *a == x.buyer.address {
            "buyer"
        } else if *a == x.provider.address {
            "provider"
        } else if *a == x.arbitrator.address {
            "arbitrator"
        } else {
            "unknown"
        }
    };
    let dest = |d: &agora_escrow::xrpl::PayoutDestination| XrplDestinationGql {
        address: d.address.to_string(),
        tag: d.tag,
    };
    XrplEscrowGql {
        account: x.address.to_string(),
        account_public_key: x.public_key.clone(),
        key_index: x.key_index,
        setup_status: match x.setup.status {
            SetupStatus::AwaitingAccount => XrplSetupStatus::AwaitingAccount,
            SetupStatus::Configuring => XrplSetupStatus::Configuring,
            SetupStatus::Ready => XrplSetupStatus::Ready,
        },
        verify_before_funding: x.setup.buyer_check.as_ref().map(|c| XrplVerification {
            escrow_account: c.escrow_address.to_string(),
            signer_entries: c
                .signer_entries
                .iter()
                .map(|e| XrplSignerEntryGql {
                    account: e.account.to_string(),
                    weight: u32::from(e.weight),
                    role: role(&e.account).to_owned(),
                })
                .collect(),
            quorum: c.quorum,
            master_disabled: c.master_disabled,
            regular_key: c.regular_key.as_ref().map(|k| k.to_string()),
            expected_reserve_drops: c.expected_reserve_drops.into(),
        }),
        setup_transactions: XrplSetupTransactions {
            funding: signed_tx(&x.setup.funding),
            signer_list_set: signed_tx(&x.setup.signer_list_set),
            disable_master: signed_tx(&x.setup.disable_master),
        },
        buyer_account: x.buyer.address.to_string(),
        provider_account: x.provider.address.to_string(),
        arbitrator_account: x.arbitrator.address.to_string(),
        payout_destinations: XrplPayoutDestinations {
            provider: dest(&x.payout_to.provider),
            buyer: dest(&x.payout_to.buyer),
            marketplace: dest(&x.payout_to.marketplace),
        },
        deposit_drops: x.funded_drops.into(),
        channel: x.channel.as_ref().map(|c| super::channel::channel_gql(x, c)),
        ledger_index: x.ledger_index,
        next_sequence: x.next_sequence,
    }
}

#[Object(name = "Order")]
impl OrderObject {
    pub async fn id(&self) -> ID {
        global_id(NodeType::Order, self.0.id())
    }

    async fn status(&self) -> OrderStatus {
        status_of(&self.0.state)
    }

    /// Increments on every change.
    async fn version(&self) -> i32 {
        self.0.record.version
    }

    /// The caller's part in this order.
    async fn my_role(&self, ctx: &Context<'_>) -> ApiResult<Option<OrderRole>> {
        let v = viewer(ctx).await?;
        Ok(self.0.actor_of(v.user_id).and_then(|a| match a {
            Actor::Buyer => Some(OrderRole::Buyer),
            Actor::Provider => Some(OrderRole::Provider),
            Actor::Arbitrator => Some(OrderRole::Arbitrator),
            _ => None,
        }))
    }

    async fn asset(&self) -> AssetGql {
        self.0.terms.asset().into()
    }

    /// The price (or metered deposit) to fund, in minor units.
    async fn amount_due(&self) -> MinorUnits {
        self.0.terms.amount_due().minor().into()
    }

    /// The listing as it was when the order was placed.
    async fn listing(&self) -> ListingSnapshotGql {
        let l = self.0.terms.listing();
        let (price, metered_unit) = match &l.pricing {
            PricingSnapshot::Fixed { price } => (*price, None),
            PricingSnapshot::Metered { unit, price_per_unit, .. } => (*price_per_unit, Some(unit.clone())),
        };
        ListingSnapshotGql {
            listing_id: global_id(NodeType::Listing, l.listing_id),
            title: l.title.clone(),
            category: l.category.clone(),
            price: price.into(),
            metered_unit,
        }
    }

    async fn provider(&self, ctx: &Context<'_>) -> ApiResult<Option<ProviderObject>> {
        ProviderObject::load(ctx, self.0.record.provider_id).await
    }

    async fn buyer_id(&self) -> ID {
        global_id(NodeType::User, self.0.record.buyer_id)
    }

    async fn deadlines(&self) -> OrderDeadlines {
        let d = self.0.terms.deadlines();
        let delivered_at = match &self.0.state {
            EscrowState::Delivered { delivered_at, .. } => Some(*delivered_at),
            EscrowState::Cancelling { delivered_at, .. } | EscrowState::Disputed { delivered_at, .. } => *delivered_at,
            _ => None,
        };
        OrderDeadlines {
            funding_by: d.funding_by,
            delivery_by: d.delivery_by,
            review_period_hours: d.review_period.num_hours(),
            review_ends_at: delivered_at.map(|t| d.review_ends(t)),
        }
    }

    async fn fees(&self) -> OrderFees {
        let f = self.0.terms.fees();
        OrderFees {
            commission_bps: i32::from(f.commission_bps.get()),
            arbitration_fee_fixed: f.arbitration_fee_fixed.minor().into(),
            arbitration_fee_bps: i32::from(f.arbitration_fee_bps.get()),
        }
    }

    async fn required_confirmations(&self) -> u32 {
        self.0.terms.required_confirmations()
    }

    /// What the escrow holds once funding is accepted.
    async fn funded_amount(&self) -> Option<MinorUnits> {
        self.0.state.funding().map(|f| f.amount.minor().into())
    }

    /// The XRPL escrow account, for XRP orders.
    async fn xrpl_escrow(&self) -> Option<XrplEscrowGql> {
        match &self.0.escrow {
            EscrowRecord::Xrpl(x) => Some(xrpl_escrow_gql(x)),
            EscrowRecord::Bitcoin(_) => None,
        }
    }

    /// The Bitcoin escrow, for BTC orders.
    async fn bitcoin_escrow(&self) -> Option<BitcoinEscrowGql> {
        let b = self.btc()?;
        let witness_script = b.descriptor().ok().map(|d| d.witness_script().to_hex_string()).unwrap_or_default();
        Some(BitcoinEscrowGql {
            network: b.network.to_string(),
            address: b.address.clone(),
            descriptor: b.descriptor.clone(),
            witness_script,
            timelock_blocks: i32::from(b.timelock_blocks),
            buyer_public_key: b.buyer_key.clone(),
            buyer_refund_public_key: b.buyer_refund_key.clone(),
            provider_public_key: b.provider_key.clone(),
            arbitrator_public_key: b.arbitrator_key.clone(),
            arbitrator_key_index: b.key_index,
            payout_addresses: BitcoinPayoutAddresses {
                provider: b.payout_to.provider.clone(),
                buyer: b.payout_to.buyer.clone(),
                marketplace: b.payout_to.marketplace.clone(),
            },
            funding_utxos: b
                .funding
                .iter()
                .map(|u| FundingUtxoGql {
                    txid: u.txid.to_string(),
                    vout: u.vout,
                    amount: u.value.into(),
                })
                .collect(),
            confirmations: b.confirmations,
        })
    }

    /// The escrow's standing on its chain.
    async fn chain_status(&self, ctx: &Context<'_>) -> ChainStatusGql {
        let tips = &state(ctx).tips;
        let required = self.0.terms.required_confirmations();
        match &self.0.escrow {
            EscrowRecord::Bitcoin(b) => {
                let tip = tips.bitcoin();
                let payout = b.payout.as_ref();
                let watch = agora_domain::escrow::deadlines::timelock_watch(&self.0.state, self.0.terms.deadlines().timelock);
                ChainStatusGql {
                    chain: "bitcoin".into(),
                    tip,
                    funding_confirmations: b.confirmations,
                    required_confirmations: required,
                    funding_transactions: {
                        let mut ids: Vec<String> = b.funding.iter().map(|u| u.txid.to_string()).collect();
                        ids.dedup();
                        ids
                    },
                    payout_transactions: payout.filter(|p| p.final_tx.is_some()).map(|p| vec![p.txid.to_string()]).unwrap_or_default(),
                    payout_broadcast: payout.is_some_and(|p| p.broadcast_at.is_some() || p.mined_at.is_some()),
                    payout_confirmations: payout
                        .and_then(|p| p.mined_at)
                        .map_or(0, |m| u32::try_from(tip.saturating_sub(m) + 1).unwrap_or(u32::MAX)),
                    payout_fee_rate_sat_vb: b.fee_rate_sat_vb,
                    stray_deposits: b.strays.iter().enumerate().map(|(i, s)| stray_gql(i, s)).collect(),
                    timelock_opens_at_height: watch.map(|w| w.unlock_height),
                    service_acts_by_height: watch.map(|w| w.alert_height),
                    other_spend: b.other_spend.as_ref().map(|o| OtherSpendGql {
                        txid: o.txid.to_string(),
                        mined_at_height: o.mined_at,
                        paid: o.paid.iter().map(|(role, v)| PayoutOutputGql { role: role.clone(), amount: (*v).into() }).collect(),
                    }),
                    fee_bumps: b
                        .fee_bumps
                        .iter()
                        .map(|f| FeeBumpGql { replaced_txid: f.replaced_txid.to_string(), from_sat_vb: f.from_sat_vb, to_sat_vb: f.to_sat_vb, at: f.at })
                        .collect(),
                }
            }
            EscrowRecord::Xrpl(x) => {
                let payout = x.payout.as_ref();
                ChainStatusGql {
                    chain: "xrpl".into(),
                    tip: tips.xrpl().max(u64::from(x.ledger_index)),
                    funding_confirmations: u32::from(x.funded_drops > 0),
                    required_confirmations: required,
                    funding_transactions: Vec::new(),
                    payout_transactions: payout
                        .map(|p| p.finals.iter().flatten().map(|f| f.hash.clone()).collect())
                        .unwrap_or_default(),
                    payout_broadcast: payout.is_some_and(|p| p.complete()),
                    payout_confirmations: payout.map_or(0, |p| p.validated.len() as u32),
                    payout_fee_rate_sat_vb: None,
                    stray_deposits: Vec::new(),
                    timelock_opens_at_height: None,
                    service_acts_by_height: None,
                    other_spend: None,
                    fee_bumps: Vec::new(),
                }
            }
        }
    }

    /// Who proposed the pending mutual cancel.
    async fn cancel_proposed_by(&self) -> Option<OrderRole> {
        match &self.0.state {
            EscrowState::Cancelling { proposed_by, .. } => Some(match proposed_by {
                Party::Buyer => OrderRole::Buyer,
                Party::Provider => OrderRole::Provider,
            }),
            _ => None,
        }
    }

    /// The payout waiting for signatures (or broadcast), if any.
    async fn payout(&self) -> Option<PayoutGql> {
        self.current_payout()
    }

    async fn settlement(&self) -> Option<SettlementGql> {
        let EscrowState::Settled { outcome, by, at } = &self.0.state else {
            return None;
        };
        let (o, bps) = match outcome {
            Settled::Released => (PayoutOutcome::Release, 10_000),
            Settled::Refunded => (PayoutOutcome::Refund, 0),
            Settled::Split { provider_bps } => (PayoutOutcome::Split, i32::from(provider_bps.get())),
        };
        use agora_domain::escrow::state::SettledBy;
        let outputs = |paid: &[(String, u64)]| {
            paid.iter().map(|(role, v)| PayoutOutputGql { role: role.clone(), amount: (*v).into() }).collect::<Vec<_>>()
        };
        let paid = match (by, &self.0.escrow) {
            (SettledBy::Payout { .. }, EscrowRecord::Bitcoin(b)) => b.payout.as_ref().map(|p| outputs(&p.outputs)).unwrap_or_default(),
            (SettledBy::Other { .. }, EscrowRecord::Bitcoin(b)) => b.other_spend.as_ref().map(|o| outputs(&o.paid)).unwrap_or_default(),
            (SettledBy::Payout { .. }, EscrowRecord::Xrpl(x)) => x
                .payout
                .as_ref()
                .map(|p| {
                    let b = &p.breakdown;
                    [("provider", b.provider), ("buyer", b.buyer), ("marketplace", b.marketplace())]
                        .into_iter()
                        .filter(|(_, v)| *v > 0)
                        .map(|(role, v)| PayoutOutputGql { role: role.into(), amount: v.into() })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Some(SettlementGql {
            outcome: o,
            provider_bps: bps,
            txid: by.txid().to_owned(),
            by_timelock: matches!(by, SettledBy::Timelock { .. }),
            by_other_transaction: matches!(by, SettledBy::Other { .. }),
            paid,
            at: *at,
        })
    }

    /// Every change of the order, oldest first.
    async fn history(&self, ctx: &Context<'_>) -> ApiResult<Vec<OrderEventGql>> {
        let loader = ctx.data_unchecked::<DataLoader<OrderEventsLoader>>();
        let rows = loader.load_one(self.0.id()).await?.unwrap_or_default();
        Ok(rows
            .into_iter()
            .map(|e| OrderEventGql {
                event: e.event,
                actor: e.actor,
                from_status: e.from_status,
                to_status: e.to_status,
                detail: e.detail,
                at: e.at,
            })
            .collect())
    }

    /// Every signature the marketplace key made for this order (append-only audit).
    async fn arbitrator_signatures(&self, ctx: &Context<'_>) -> ApiResult<Vec<ArbitratorSignatureGql>> {
        let loader = ctx.data_unchecked::<DataLoader<ArbitratorSignaturesLoader>>();
        let rows = loader.load_one(self.0.id()).await?.unwrap_or_default();
        Ok(rows
            .into_iter()
            .map(|s| ArbitratorSignatureGql {
                rule: s.rule,
                outcome: s.outcome,
                txid: s.tx_id,
                public_key: s.public_key,
                signed_at: s.signed_at,
            })
            .collect())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.record.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.record.updated_at
    }
}

#[derive(SimpleObject)]
pub struct OrderEdge {
    pub cursor: String,
    pub node: OrderObject,
}

/// A Relay connection of orders, newest first.
#[derive(SimpleObject)]
pub struct OrderConnection {
    pub edges: Vec<OrderEdge>,
    pub page_info: super::listing::PageInfo,
    #[graphql(deprecation = "use pageInfo.hasNextPage")]
    pub has_next_page: bool,
    #[graphql(deprecation = "use pageInfo.endCursor")]
    pub end_cursor: Option<String>,
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    pub listing_id: ID,
    /// The id of your registered escrow key on the listing's chain: on Bitcoin
    /// a compressed key or xpub for the 2-of-3 path, on the XRP Ledger your
    /// key and account for the signer list.
    pub buyer_key_id: ID,
    /// Bitcoin only: your key for the time-locked refund path; must differ
    /// from the first. Optional when `buyerKeyId` is an xpub (then `1/index`
    /// is used).
    pub buyer_refund_key_id: Option<ID>,
    /// Where refunds go; by default the P2WPKH address of your escrow key.
    pub refund_address: Option<String>,
    /// XRPL: the refund address's destination tag, if it needs one.
    pub refund_destination_tag: Option<u32>,
    /// Metered listings: the deposit to lock, at least the listing's minimum.
    pub deposit: Option<MinorUnits>,
}

#[derive(InputObject)]
pub struct OrderActionInput {
    pub order_id: ID,
}

/// Bitcoin orders send `psbt`; XRPL orders send `signedTransactions`.
#[derive(InputObject)]
pub struct SubmitPayoutSignatureInput {
    pub order_id: ID,
    /// Bitcoin: the payout PSBT (base64) with your partial signatures, not finalized.
    pub psbt: Option<String>,
    /// XRPL: your multisigned blob (hex) of each payout transaction, in order.
    pub signed_transactions: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct SubmitStrayRefundSignatureInput {
    pub order_id: ID,
    /// `chainStatus.strayDeposits[].index`.
    pub index: i32,
    /// The refund PSBT (base64) with your partial signature, not finalized.
    pub psbt: String,
}

#[derive(InputObject)]
pub struct SetPayoutDestinationInput {
    pub order_id: ID,
    /// A classic XRPL address (`r…`) that can receive the share.
    pub account: String,
    /// The destination tag it needs, if any.
    pub destination_tag: Option<u32>,
}

#[derive(SimpleObject)]
pub struct OrderPayload {
    pub order: OrderObject,
}

#[derive(SimpleObject)]
pub struct SubmitPayoutSignaturePayload {
    pub order: OrderObject,
    pub payout: Option<PayoutGql>,
}

/// An escrow key's global id (`EscrowKey:<uuid>`).
pub(crate) fn key_id(id: &ID, field: &str) -> ApiResult<Uuid> {
    expect(NodeType::EscrowKey, id, field)
}

pub async fn load_order_node(ctx: &Context<'_>, id: Uuid) -> ApiResult<Option<OrderObject>> {
    let v = viewer(ctx).await?;
    match orders::load_for(&state(ctx).db, id, v.user_id).await {
        Ok((order, _)) => Ok(Some(OrderObject(order))),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// One of your orders (as buyer, provider or assigned arbitrator).
    async fn order(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<OrderObject>> {
        let id = expect(NodeType::Order, &id, "id")?;
        load_order_node(ctx, id).await
    }

    /// Your orders, newest first.
    #[graphql(complexity = "super::listing::page_complexity(first, None, child_complexity)")]
    async fn orders(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> ApiResult<OrderConnection> {
        let v = viewer(ctx).await?;
        let first = first.unwrap_or(20);
        if !(0..=100).contains(&first) {
            return Err(ApiError::bad_input("first", "OUT_OF_RANGE", "first: must be between 0 and 100"));
        }
        let after = after
            .map(|c| expect(NodeType::Order, &c, "after"))
            .transpose()?;
        let after_given = after.is_some();
        let mut rows = order_store::orders_of(&state(ctx).db, v.user_id, after, first as u64 + 1).await?;
        let has_next_page = rows.len() > first as usize;
        rows.truncate(first as usize);
        let edges = rows
            .into_iter()
            .map(|r| {
                let cursor = global_id(NodeType::Order, r.id).0;
                Order::from_record(r).map(|o| OrderEdge { cursor, node: OrderObject(o) })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(OrderConnection {
            page_info: super::listing::PageInfo {
                has_next_page,
                has_previous_page: after_given,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: end_cursor.clone(),
            },
            end_cursor,
            edges,
            has_next_page,
        })
    }

    /// The payout currently allowed for an order, to sign with your wallet.
    async fn payout(&self, ctx: &Context<'_>, order_id: ID) -> ApiResult<PayoutGql> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Order, &order_id, "orderId")?;
        let (order, _) = orders::load_for(&state(ctx).db, id, v.user_id).await?;
        let obj = OrderObject(order);
        obj.current_payout().ok_or_else(|| {
            ApiError::conflict(
                "NO_PAYOUT",
                format!("no payout is allowed yet (the order is {})", obj.0.state.name()),
            )
        })
    }
}

#[derive(Default)]
pub struct OrderMutation;

async fn user_action(ctx: &Context<'_>, input: &OrderActionInput, event: EscrowEvent) -> ApiResult<OrderPayload> {
    let v = viewer(ctx).await?;
    let id = expect(NodeType::Order, &input.order_id, "input.orderId")?;
    let order = orders::act(state(ctx), id, Caller::User(v.user_id), event).await?;
    Ok(OrderPayload { order: OrderObject(order) })
}

#[Object]
impl OrderMutation {
    /// Buys a listing: returns the order with its escrow address, the amount
    /// due and the deadlines.
    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput) -> ApiResult<OrderPayload> {
        let v = viewer(ctx).await?;
        let deposit = input
            .deposit
            .map(|d| {
                d.0.trim().parse::<u64>().map_err(|_| {
                    ApiError::bad_input("input.deposit", "INVALID_FORMAT", "input.deposit: a positive integer of minor units")
                })
            })
            .transpose()?;
        let order = place(
            state(ctx),
            PlaceOrderRequest {
                buyer_id: v.user_id,
                listing_id: expect(NodeType::Listing, &input.listing_id, "input.listingId")?,
                buyer_key_id: key_id(&input.buyer_key_id, "input.buyerKeyId")?,
                buyer_refund_key_id: input
                    .buyer_refund_key_id
                    .as_ref()
                    .map(|k| key_id(k, "input.buyerRefundKeyId"))
                    .transpose()?,
                refund_address: input.refund_address,
                refund_destination_tag: input.refund_destination_tag,
                deposit,
                top_up_of: None,
            },
        )
        .await?;
        Ok(OrderPayload { order: OrderObject(order) })
    }

    /// Provider: the service was delivered; starts the buyer's review window.
    async fn mark_delivered(&self, ctx: &Context<'_>, input: OrderActionInput) -> ApiResult<OrderPayload> {
        user_action(ctx, &input, EscrowEvent::MarkDelivered).await
    }

    /// Buyer: release the funds to the provider (buyer and provider sign the payout).
    async fn release_funds(&self, ctx: &Context<'_>, input: OrderActionInput) -> ApiResult<OrderPayload> {
        user_action(ctx, &input, EscrowEvent::ReleaseFunds).await
    }

    /// Buyer: refund after the delivery deadline passed without delivery (the
    /// marketplace co-signs).
    async fn request_refund(&self, ctx: &Context<'_>, input: OrderActionInput) -> ApiResult<OrderPayload> {
        user_action(ctx, &input, EscrowEvent::RequestRefund).await
    }

    /// Either party proposes to cancel and refund the buyer.
    async fn propose_cancel(&self, ctx: &Context<'_>, input: OrderActionInput) -> ApiResult<OrderPayload> {
        user_action(ctx, &input, EscrowEvent::ProposeCancel).await
    }

    /// The other party accepts the cancel; the marketplace co-signs the refund.
    async fn accept_cancel(&self, ctx: &Context<'_>, input: OrderActionInput) -> ApiResult<OrderPayload> {
        user_action(ctx, &input, EscrowEvent::AcceptCancel).await
    }

    /// Withdraw (proposer) or decline (other party) a pending cancel.
    async fn decline_cancel(&self, ctx: &Context<'_>, input: OrderActionInput) -> ApiResult<OrderPayload> {
        user_action(ctx, &input, EscrowEvent::DeclineCancel).await
    }

    /// Adds your signatures to the payout. Only valid signatures from the
    /// escrow's keys over exactly the expected transaction are accepted; once
    /// two keys signed every input the transaction is finalized and checked
    /// with Bitcoin Core's script interpreter.
    async fn submit_payout_signature(
        &self,
        ctx: &Context<'_>,
        input: SubmitPayoutSignatureInput,
    ) -> ApiResult<SubmitPayoutSignaturePayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Order, &input.order_id, "input.orderId")?;
        let signed = match (input.psbt, input.signed_transactions) {
            (Some(psbt), None) => PayoutSignatures::Psbt(psbt),
            (None, Some(blobs)) => PayoutSignatures::XrplBlobs(blobs),
            _ => {
                return Err(ApiError::bad_input(
                    "input",
                    "INCONSISTENT",
                    "input: send either psbt (Bitcoin) or signedTransactions (XRPL)",
                ))
            }
        };
        let order = orders::submit_payout_signature(state(ctx), id, v.user_id, signed).await?;
        let obj = OrderObject(order);
        Ok(SubmitPayoutSignaturePayload {
            payout: obj.current_payout(),
            order: obj,
        })
    }

    /// Adds your signature to the refund of a stray deposit (an output that
    /// reached the escrow outside its accepted funding; see
    /// `order.chainStatus.strayDeposits`). The marketplace co-signed it; with
    /// the buyer's (or provider's) signature it is complete and broadcast.
    async fn submit_stray_refund_signature(
        &self,
        ctx: &Context<'_>,
        input: SubmitStrayRefundSignatureInput,
    ) -> ApiResult<OrderPayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Order, &input.order_id, "input.orderId")?;
        let index = usize::try_from(input.index)
            .map_err(|_| ApiError::bad_input("input.index", "OUT_OF_RANGE", "input.index: a stray deposit's index"))?;
        let order = crate::orders::strays::submit_signature(state(ctx), id, v.user_id, index, &input.psbt).await?;
        Ok(OrderPayload { order: OrderObject(order) })
    }

    /// XRPL: the ledger refused the Payment of your share of the payout (its
    /// `xrplTransactions[].refusedWith` says why, e.g. `tecDST_TAG_NEEDED`).
    /// Names where the share goes instead; it is paid, less the fee the
    /// refused Payment burned, in a new Payment that needs signatures again.
    async fn set_payout_destination(&self, ctx: &Context<'_>, input: SetPayoutDestinationInput) -> ApiResult<OrderPayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Order, &input.order_id, "input.orderId")?;
        let order = crate::orders::refused::set_payout_destination(
            state(ctx),
            id,
            v.user_id,
            &input.account,
            input.destination_tag,
        )
        .await?;
        Ok(OrderPayload { order: OrderObject(order) })
    }
}
