//! GraphQL for metered XRPL orders' payment channels: what the ledger shows,
//! the channel's multisigned transactions, and `signXrplChannel`.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};

use super::context::{state, viewer};
use super::errors::ApiResult;
use super::node::{expect, NodeType};
use super::order::{OrderObject, OrderPayload};
use super::scalars::MinorUnits;
use crate::orders::channel::{ChannelStatus, ChannelStep, XrplChannel};
use crate::orders::xrpl::XrplEscrow;
use agora_escrow::xrpl::ChannelTxKind;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum XrplChannelStatus {
    /// The create is signed by the marketplace and waits for the buyer's or
    /// the provider's signature (or is on its way to the ledger).
    Proposed,
    Open,
    /// The ledger no longer holds it; what it did not deliver is back in the escrow account.
    Closed,
    /// It never opened; the deposit stayed in the escrow account.
    Abandoned,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum XrplChannelTxKind {
    /// `PaymentChannelCreate`.
    Create,
    /// The escrow's `PaymentChannelClaim` with `tfClose` (delivering `balance`).
    RequestClose,
    /// The escrow's `PaymentChannelClaim` that closes the expired channel;
    /// sent once the ledger's time passes the channel's `expiration`.
    Close,
}

/// One multisigned transaction of the channel.
#[derive(SimpleObject)]
pub struct XrplChannelTxGql {
    pub kind: XrplChannelTxKind,
    pub sequence: u32,
    /// The channel balance (drops delivered to the provider in all) it sets, if any.
    pub balance: Option<MinorUnits>,
    /// The transaction as XRPL JSON, for the wallet.
    pub tx_json: String,
    /// The unsigned transaction, serialized (hex): multisign it.
    pub unsigned_blob: String,
    /// buyer, provider, arbitrator.
    pub signed_by: Vec<String>,
    /// Whether it waits for a signature now (sign these, in order).
    pub awaiting_signature: bool,
    pub final_blob: Option<String>,
    pub hash: Option<String>,
    /// The engine result, once a validated ledger holds it.
    pub result: Option<String>,
}

/// A metered XRPL order's payment channel from the escrow account to the
/// provider: the buyer's claims (one signature each, see `nextClaim`) let the
/// provider redeem up to `amount` alone, at any time.
#[derive(SimpleObject)]
pub struct XrplChannelGql {
    /// The channel's ledger id (64 hex digits), what claims sign.
    pub id: String,
    pub status: XrplChannelStatus,
    pub amount: MinorUnits,
    /// What the channel delivered to the provider so far.
    pub balance: MinorUnits,
    /// Seconds the provider keeps to redeem once the escrow asks to close.
    pub settle_delay_secs: u32,
    /// Set once the escrow asked to close: XRPL-epoch seconds.
    pub expiration: Option<u32>,
    pub destination: String,
    /// The claim key: the buyer's escrow key.
    pub public_key: String,
    /// The create, then the escrow's closing transactions once a payout is due.
    pub transactions: Vec<XrplChannelTxGql>,
    /// The provider's own closing claim, if it sent one through `closeSession`.
    pub provider_close_hash: Option<String>,
}

fn step_gql(x: &XrplEscrow, step: &ChannelStep, awaiting: bool) -> Option<XrplChannelTxGql> {
    let tx = step.tx().ok()?;
    let signers = x.signers().ok()?;
    let (kind, balance) = match &step.spec.kind {
        ChannelTxKind::Create { .. } => (XrplChannelTxKind::Create, None),
        ChannelTxKind::Claim { balance_drops, close: true, .. } => (XrplChannelTxKind::RequestClose, *balance_drops),
        ChannelTxKind::Claim { .. } | ChannelTxKind::Fund { .. } => (XrplChannelTxKind::Close, None),
    };
    let names = step
        .signed_by(&signers)
        .iter()
        .map(|a| {
            if *a == x.buyer.address {
                "buyer"
            } else if *a == x.provider.address {
                "provider"
            } else {
                "arbitrator"
            }
            .to_owned()
        })
        .collect();
    Some(XrplChannelTxGql {
        kind,
        sequence: step.spec.sequence,
        balance: balance.map(Into::into),
        tx_json: tx.to_json().to_string(),
        unsigned_blob: tx.unsigned_blob(),
        signed_by: names,
        awaiting_signature: awaiting,
        final_blob: step.fin.as_ref().map(|f| f.blob.clone()),
        hash: step.fin.as_ref().map(|f| f.hash.clone()),
        result: step.result.clone(),
    })
}

pub fn channel_gql(x: &XrplEscrow, c: &XrplChannel) -> XrplChannelGql {
    let awaiting: Vec<u32> = c.awaiting().iter().map(|s| s.spec.sequence).collect();
    XrplChannelGql {
        id: c.id.to_hex(),
        status: match c.status {
            ChannelStatus::Proposed => XrplChannelStatus::Proposed,
            ChannelStatus::Open => XrplChannelStatus::Open,
            ChannelStatus::Closed => XrplChannelStatus::Closed,
            ChannelStatus::Abandoned => XrplChannelStatus::Abandoned,
        },
        amount: c.amount_drops.into(),
        balance: c.balance_drops.into(),
        settle_delay_secs: c.settle_delay,
        expiration: c.expiration,
        destination: x.payout_to.provider.address.to_string(),
        public_key: x.buyer.public_key.to_hex(),
        transactions: c.steps().filter_map(|s| step_gql(x, s, awaiting.contains(&s.spec.sequence) && s.fin.is_none())).collect(),
        provider_close_hash: c.provider_close.as_ref().map(|p| p.hash.clone()),
    }
}

#[derive(InputObject)]
pub struct SignXrplChannelInput {
    pub order_id: ID,
    /// Your signer blob for each channel transaction waiting for a signature
    /// (`order.xrplEscrow.channel.transactions` with `awaitingSignature`), in order.
    pub signed_transactions: Vec<String>,
}

#[derive(Default)]
pub struct ChannelMutation;

#[Object]
impl ChannelMutation {
    /// Buyer or provider: adds your signature to the payment channel's
    /// transactions that wait for one — its create once the order is funded,
    /// the escrow's closing transactions once a payout is due. The
    /// marketplace signed them already under its policy; with yours they are
    /// complete and the watcher sends them.
    async fn sign_xrpl_channel(&self, ctx: &Context<'_>, input: SignXrplChannelInput) -> ApiResult<OrderPayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Order, &input.order_id, "input.orderId")?;
        let order = crate::orders::sign_channel(state(ctx), id, v.user_id, &input.signed_transactions).await?;
        Ok(OrderPayload { order: OrderObject(order) })
    }
}
