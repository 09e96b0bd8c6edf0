//! GraphQL for metered sessions: peak windows, usage, claims, settlement,
//! usage alerts and the `sessionUpdated` stream.


use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc, Weekday};
use futures_util::stream::Stream;
use uuid::Uuid;

use agora_domain::escrow::payout::PayoutBreakdown;
use agora_domain::metering::{format_minute, PeakSchedule, PeakWindowInput};

use super::context::{state, viewer};
use super::errors::{ApiError, ApiResult};
use super::follow::follow_versions;
use super::node::{expect, NodeType};
use super::order::OrderObject;
use super::scalars::MinorUnits;
use crate::metered::{self, ClaimToSign, MeteredSession};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum DayOfWeek {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl From<DayOfWeek> for Weekday {
    fn from(d: DayOfWeek) -> Self {
        match d {
            DayOfWeek::Monday => Weekday::Mon,
            DayOfWeek::Tuesday => Weekday::Tue,
            DayOfWeek::Wednesday => Weekday::Wed,
            DayOfWeek::Thursday => Weekday::Thu,
            DayOfWeek::Friday => Weekday::Fri,
            DayOfWeek::Saturday => Weekday::Sat,
            DayOfWeek::Sunday => Weekday::Sun,
        }
    }
}

fn day(w: Weekday) -> DayOfWeek {
    match w {
        Weekday::Mon => DayOfWeek::Monday,
        Weekday::Tue => DayOfWeek::Tuesday,
        Weekday::Wed => DayOfWeek::Wednesday,
        Weekday::Thu => DayOfWeek::Thursday,
        Weekday::Fri => DayOfWeek::Friday,
        Weekday::Sat => DayOfWeek::Saturday,
        Weekday::Sun => DayOfWeek::Sunday,
    }
}

/// A peak-load window: on `days`, from `start` (included) to `end` (excluded),
/// UTC, the price per unit is multiplied by `multiplierBps / 10000`.
#[derive(InputObject)]
pub struct PeakWindowInputGql {
    pub days: Vec<DayOfWeek>,
    /// `HH:MM`, UTC.
    pub start: String,
    /// `HH:MM`, UTC; `24:00` for the end of the day.
    pub end: String,
    /// At least 10000 (no change); at most 100000.
    pub multiplier_bps: i32,
}

#[derive(SimpleObject)]
pub struct PeakWindow {
    pub days: Vec<DayOfWeek>,
    pub start: String,
    pub end: String,
    pub multiplier_bps: i32,
}

fn windows(s: &PeakSchedule) -> Vec<PeakWindow> {
    s.windows()
        .iter()
        .map(|w| PeakWindow {
            days: w.days().iter().copied().map(day).collect(),
            start: format_minute(w.start_minute()),
            end: format_minute(w.end_minute()),
            multiplier_bps: i32::try_from(w.multiplier_bps()).unwrap_or(i32::MAX),
        })
        .collect()
}

#[derive(InputObject)]
pub struct SetPeakWindowsInput {
    pub listing_id: ID,
    /// Replaces the listing's windows; they must not overlap. Orders placed
    /// afterwards use them; placed orders keep the windows they were placed with.
    pub windows: Vec<PeakWindowInputGql>,
}

#[derive(SimpleObject)]
pub struct SetPeakWindowsPayload {
    pub windows: Vec<PeakWindow>,
}

#[derive(InputObject)]
pub struct RecordUsageInput {
    pub order_id: ID,
    /// Whole units of the listing's unit (minutes, megabytes, jobs).
    pub quantity: MinorUnits,
    /// When the usage happened (default: now); picks the peak window.
    pub at: Option<DateTime<Utc>>,
}

/// One usage record, with the price frozen when it was recorded.
#[derive(SimpleObject)]
pub struct UsageRecordGql {
    pub quantity: MinorUnits,
    pub price_per_unit: MinorUnits,
    pub multiplier_bps: i32,
    /// `floor(quantity × pricePerUnit × multiplierBps / 10000)`.
    pub amount: MinorUnits,
    pub at: DateTime<Utc>,
}

/// A metered session's running totals.
pub struct SessionObject {
    pub session: MeteredSession,
    pub deposit: u64,
    pub limit: u64,
    /// XRPL: the buyer's escrow key, the channel's claim key (hex).
    pub claim_key: Option<String>,
}

#[Object(name = "MeteredSession")]
impl SessionObject {
    async fn order_id(&self) -> ID {
        super::node::global_id(NodeType::Order, self.session.record.order_id)
    }
    /// The escrowed deposit (the order's amount due).
    async fn deposit(&self) -> MinorUnits {
        self.deposit.into()
    }
    /// The most the provider can be paid: deposit minus the payout's network fee.
    async fn claimable_limit(&self) -> MinorUnits {
        self.limit.into()
    }
    async fn total_quantity(&self) -> MinorUnits {
        self.session.session.total_quantity.into()
    }
    /// Cumulative cost of all usage, in minor units.
    async fn total_amount(&self) -> MinorUnits {
        self.session.session.total_amount.into()
    }
    /// Cumulative amount of the buyer's latest valid claim.
    async fn latest_claim(&self) -> MinorUnits {
        self.session.session.latest_claim.into()
    }
    /// Usage not yet covered by a claim: what is at risk for the provider.
    async fn unclaimed(&self) -> MinorUnits {
        self.session.session.total_amount.saturating_sub(self.session.session.latest_claim).into()
    }
    async fn latest_claim_txid(&self) -> Option<String> {
        self.session.record.latest_claim_txid.clone()
    }
    /// Bitcoin: the latest claim (base64 PSBT carrying the buyer's
    /// signature): the provider completes it with its own key.
    async fn latest_claim_psbt(&self) -> Option<String> {
        if self.claim_key.is_some() {
            return None;
        }
        self.session.record.latest_claim_psbt.clone()
    }
    /// XRPL: the buyer's latest channel claim, which the provider can redeem
    /// alone at any time.
    async fn latest_channel_claim(&self) -> Option<ChannelClaimGql> {
        let key = self.claim_key.clone()?;
        let c = metered::latest_channel_claim(&self.session)?;
        Some(ChannelClaimGql {
            channel_id: c.channel.to_hex(),
            amount: c.drops.into(),
            signature: c.signature,
            public_key: key,
        })
    }
    /// Used share of the deposit, in basis points (rounded down).
    async fn used_bps(&self) -> i32 {
        let used = u128::from(self.session.session.total_amount) * 10_000 / u128::from(self.deposit.max(1));
        i32::try_from(used).unwrap_or(i32::MAX)
    }
    /// Alert thresholds (bps of the deposit) that fired, in order.
    async fn fired_alerts_bps(&self) -> Vec<i32> {
        self.session.session.fired_alerts.iter().map(|t| i32::from(*t)).collect()
    }
    async fn capped(&self) -> bool {
        self.session.session.capped
    }
    async fn closed(&self) -> bool {
        self.session.session.closed
    }
    /// A top-up: the order whose session this one continues.
    async fn continues_order_id(&self) -> Option<ID> {
        self.session.session.continues.map(|id| super::node::global_id(NodeType::Order, id))
    }
    /// The order that continues this session with a new deposit, once placed.
    async fn continued_by_order_id(&self) -> Option<ID> {
        self.session.session.continued_by.map(|id| super::node::global_id(NodeType::Order, id))
    }
    async fn peak_windows(&self) -> Vec<PeakWindow> {
        windows(&self.session.windows)
    }
    async fn usage(&self, ctx: &Context<'_>) -> ApiResult<Vec<UsageRecordGql>> {
        let rows = agora_persistence::metering::usage_of(&state(ctx).db, self.session.record.order_id).await?;
        Ok(rows
            .into_iter()
            .map(|u| UsageRecordGql {
                quantity: u.quantity.into(),
                price_per_unit: u.price_per_unit.into(),
                multiplier_bps: i32::try_from(u.multiplier_bps).unwrap_or(i32::MAX),
                amount: u.amount.into(),
                at: u.at,
            })
            .collect())
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.session.record.updated_at
    }
}

/// The claim to sign: the provider is paid `cumulative` minus the
/// commission, the marketplace the commission, the buyer the rest minus the
/// network fee. On Bitcoin a PSBT; on XRPL one signature over the order's
/// payment channel and the provider's share (`channel`).
#[derive(SimpleObject)]
pub struct ClaimGql {
    pub cumulative: MinorUnits,
    pub provider_amount: MinorUnits,
    pub commission: MinorUnits,
    pub buyer_amount: MinorUnits,
    /// Bitcoin: the claim's fee. XRPL: the usual fees of the escrow's
    /// transactions after the claim (the amounts paid follow the ledger).
    pub network_fee: MinorUnits,
    /// Bitcoin: the claim PSBT (base64) to sign.
    pub psbt: Option<String>,
    /// Bitcoin: the txid. XRPL: the claim's id, the SHA-256 of its `message`.
    pub txid: String,
    /// XRPL: the channel claim to sign.
    pub channel: Option<ChannelClaimToSignGql>,
}

/// An XRPL payment-channel claim: sign `message` with your escrow key (as
/// rippled's `channel_authorize` or xrpl.js `signPaymentChannelClaim` do)
/// and send the signature with `submitClaim(input: {channelClaim})`. It never
/// expires; a later claim must be for more.
#[derive(SimpleObject)]
pub struct ChannelClaimToSignGql {
    /// The payment channel's id (64 hex digits).
    pub channel_id: String,
    /// Drops the claim lets the provider redeem in all: its share of `cumulative`.
    pub amount: MinorUnits,
    /// What to sign (hex): `CLM\0`, the channel id, the amount as 8 bytes.
    pub message: String,
}

/// The buyer's latest channel claim, as the provider redeems it (a
/// `PaymentChannelClaim` from its payout account with this `Balance`,
/// `Amount`, `Signature` and `PublicKey`).
#[derive(SimpleObject)]
pub struct ChannelClaimGql {
    pub channel_id: String,
    pub amount: MinorUnits,
    pub signature: String,
    pub public_key: String,
}

fn claim_gql(c: ClaimToSign) -> ClaimGql {
    let b: PayoutBreakdown = c.breakdown;
    ClaimGql {
        cumulative: c.cumulative.into(),
        provider_amount: b.provider.into(),
        commission: b.commission.into(),
        buyer_amount: b.buyer.into(),
        network_fee: b.network_fee.into(),
        psbt: c.psbt,
        txid: c.txid,
        channel: c.channel.map(|ch| ChannelClaimToSignGql {
            channel_id: ch.channel.to_hex(),
            amount: ch.drops.into(),
            message: ch.message,
        }),
    }
}

/// A signed XRPL channel claim.
#[derive(InputObject)]
pub struct ChannelClaimInput {
    /// The channel id (`nextClaim.channel.channelId`).
    pub channel: String,
    /// Drops (`nextClaim.channel.amount`).
    pub amount: MinorUnits,
    /// Your escrow key's signature of the claim (hex).
    pub signature: String,
}

#[derive(InputObject)]
pub struct SubmitClaimInput {
    pub order_id: ID,
    /// Bitcoin: the claim PSBT (base64) signed with your escrow key, not finalized.
    pub psbt: Option<String>,
    /// XRPL: the signed channel claim.
    pub channel_claim: Option<ChannelClaimInput>,
}

#[derive(InputObject)]
pub struct SessionActionInput {
    pub order_id: ID,
}

#[derive(InputObject)]
pub struct CloseSessionInput {
    pub order_id: ID,
    /// The buyer's latest claim with your signature added. Without it, the
    /// marketplace key co-signs the latest claim under its signing policy.
    pub psbt: Option<String>,
    /// XRPL: your own `PaymentChannelClaim` (single-signed by your payout
    /// account) redeeming the buyer's latest claim with `tfClose`; Agora
    /// submits it and the channel closes at once. Without it the escrow
    /// closes the channel, delivering the latest claim: the marketplace
    /// co-signs and you or the buyer add the second signature
    /// (`signXrplChannel`). The commission and the buyer's rest follow once
    /// the channel is closed.
    pub signed_transactions: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct TopUpSessionInput {
    /// The session's current order.
    pub order_id: ID,
    /// The new deposit, at least the listing's minimum.
    pub deposit: MinorUnits,
    /// Your keys for the new escrow, as in `placeOrder`.
    pub buyer_key_id: ID,
    pub buyer_refund_key_id: Option<ID>,
}

#[derive(InputObject)]
pub struct SetUsageAlertThresholdsInput {
    /// Basis points of the deposit, 1 to 10000, at most 10.
    pub thresholds_bps: Vec<i32>,
}

#[derive(SimpleObject)]
pub struct SessionPayload {
    pub session: SessionObject,
}

#[derive(SimpleObject)]
pub struct RecordUsagePayload {
    pub session: SessionObject,
    pub record: UsageRecordGql,
    /// Thresholds this usage crossed (each fires once per session).
    pub alerts_fired_bps: Vec<i32>,
}

#[derive(SimpleObject)]
pub struct CloseSessionPayload {
    pub session: SessionObject,
    pub order: OrderObject,
}

#[derive(SimpleObject)]
pub struct TopUpSessionPayload {
    /// The follow-up order: fund its escrow to continue the session.
    pub order: OrderObject,
    /// The session continued on the follow-up order.
    pub session: SessionObject,
}

#[derive(SimpleObject)]
pub struct UsageAlertThresholdsPayload {
    pub thresholds_bps: Vec<i32>,
}

async fn session_object(ctx: &Context<'_>, session: MeteredSession) -> ApiResult<SessionObject> {
    let app = state(ctx);
    let order = crate::orders::load(&app.db, session.record.order_id).await?;
    let claim_key = match &order.escrow {
        crate::orders::EscrowRecord::Xrpl(x) => Some(x.buyer.public_key.to_hex()),
        crate::orders::EscrowRecord::Bitcoin(_) => None,
    };
    Ok(SessionObject {
        deposit: order.terms.amount_due().minor(),
        limit: metered::claim_limit(app, &order)?,
        session,
        claim_key,
    })
}

fn order_id(id: &ID) -> ApiResult<Uuid> {
    expect(NodeType::Order, id, "input.orderId")
}

#[derive(Default)]
pub struct MeteredQuery;

#[Object]
impl MeteredQuery {
    /// The metered session of one of your orders, with its running totals.
    async fn session(&self, ctx: &Context<'_>, order_id: ID) -> ApiResult<SessionObject> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Order, &order_id, "orderId")?;
        let (_, _, s) = metered::load_for(&state(ctx).db, id, v.user_id).await?;
        session_object(ctx, s).await
    }

    /// Buyer: the claim to sign next, covering all usage recorded so far.
    async fn next_claim(&self, ctx: &Context<'_>, order_id: ID) -> ApiResult<ClaimGql> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Order, &order_id, "orderId")?;
        Ok(claim_gql(metered::next_claim(state(ctx), v.user_id, id).await?))
    }

    /// A listing's peak-load windows.
    async fn peak_windows(&self, ctx: &Context<'_>, listing_id: ID) -> ApiResult<Vec<PeakWindow>> {
        let id = expect(NodeType::Listing, &listing_id, "listingId")?;
        Ok(windows(&metered::peak_windows(state(ctx), id).await?))
    }

    /// Your usage-alert thresholds (basis points of a deposit).
    async fn usage_alert_thresholds(&self, ctx: &Context<'_>) -> ApiResult<Vec<i32>> {
        let v = viewer(ctx).await?;
        Ok(metered::alert_thresholds(&state(ctx).db, v.user_id).await?.into_iter().map(i32::from).collect())
    }
}

#[derive(Default)]
pub struct MeteredMutation;

#[Object]
impl MeteredMutation {
    /// Provider: sets the peak-load windows of one of your metered listings.
    async fn set_peak_windows(&self, ctx: &Context<'_>, input: SetPeakWindowsInput) -> ApiResult<SetPeakWindowsPayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Listing, &input.listing_id, "input.listingId")?;
        let inputs: Vec<PeakWindowInput> = input
            .windows
            .into_iter()
            .map(|w| PeakWindowInput {
                days: w.days.into_iter().map(Weekday::from).collect(),
                start: w.start,
                end: w.end,
                multiplier_bps: i64::from(w.multiplier_bps),
            })
            .collect();
        let schedule = metered::set_peak_windows(state(ctx), v.user_id, id, &inputs).await?;
        Ok(SetPeakWindowsPayload { windows: windows(&schedule) })
    }

    /// Provider: records usage on a funded metered order; its price (with the
    /// peak multiplier at `at`) is frozen.
    async fn record_usage(&self, ctx: &Context<'_>, input: RecordUsageInput) -> ApiResult<RecordUsagePayload> {
        let v = viewer(ctx).await?;
        let id = order_id(&input.order_id)?;
        let quantity = input.quantity.0.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_input("input.quantity", "INVALID_FORMAT", "input.quantity: a positive integer")
        })?;
        let at = input.at;
        let (s, charge, fired) = metered::record_usage(state(ctx), v.user_id, id, quantity, at).await?;
        let record = UsageRecordGql {
            quantity: charge.quantity.into(),
            price_per_unit: charge.price_per_unit.into(),
            multiplier_bps: i32::try_from(charge.multiplier_bps).unwrap_or(i32::MAX),
            amount: charge.amount.into(),
            at: at.unwrap_or_else(|| state(ctx).clock.now()),
        };
        Ok(RecordUsagePayload {
            session: session_object(ctx, s).await?,
            record,
            alerts_fired_bps: fired.into_iter().map(i32::from).collect(),
        })
    }

    /// Buyer: submits a signed claim (see `nextClaim`); it replaces the latest
    /// one if it pays more.
    async fn submit_claim(&self, ctx: &Context<'_>, input: SubmitClaimInput) -> ApiResult<SessionPayload> {
        let v = viewer(ctx).await?;
        let id = order_id(&input.order_id)?;
        let claim = match (&input.psbt, &input.channel_claim) {
            (Some(psbt), None) => metered::SignedClaim::Psbt(psbt),
            (None, Some(c)) => metered::SignedClaim::Channel {
                channel: &c.channel,
                drops: &c.amount.0,
                signature: &c.signature,
            },
            _ => {
                return Err(ApiError::bad_input(
                    "input",
                    "ONE_OF",
                    "input: give psbt (Bitcoin) or channelClaim (XRPL), exactly one",
                ))
            }
        };
        let (s, _) = metered::submit_claim(state(ctx), v.user_id, id, claim).await?;
        Ok(SessionPayload { session: session_object(ctx, s).await? })
    }

    /// Buyer: stops the session; no further usage is accepted.
    async fn cap_session(&self, ctx: &Context<'_>, input: SessionActionInput) -> ApiResult<SessionPayload> {
        let v = viewer(ctx).await?;
        let id = order_id(&input.order_id)?;
        let s = metered::cap_session(state(ctx), v.user_id, id).await?;
        Ok(SessionPayload { session: session_object(ctx, s).await? })
    }

    /// Provider: settles with the buyer's latest claim.
    async fn close_session(&self, ctx: &Context<'_>, input: CloseSessionInput) -> ApiResult<CloseSessionPayload> {
        let v = viewer(ctx).await?;
        let id = order_id(&input.order_id)?;
        let (order, s) = metered::close_session(
            state(ctx),
            v.user_id,
            id,
            input.psbt.as_deref(),
            input.signed_transactions.as_deref(),
        )
        .await?;
        Ok(CloseSessionPayload {
            session: session_object(ctx, s).await?,
            order: OrderObject(order),
        })
    }

    /// Buyer: tops up a session by placing a follow-up order with its own
    /// escrow and deposit. Usage continues against it once it is funded; the
    /// provider settles the current escrow with its latest claim.
    async fn top_up_session(&self, ctx: &Context<'_>, input: TopUpSessionInput) -> ApiResult<TopUpSessionPayload> {
        let v = viewer(ctx).await?;
        let id = order_id(&input.order_id)?;
        let deposit = input.deposit.0.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_input("input.deposit", "INVALID_FORMAT", "input.deposit: a positive integer of minor units")
        })?;
        let buyer_key_id = super::order::key_id(&input.buyer_key_id, "input.buyerKeyId")?;
        let buyer_refund_key_id = input
            .buyer_refund_key_id
            .as_ref()
            .map(|k| super::order::key_id(k, "input.buyerRefundKeyId"))
            .transpose()?;
        let app = state(ctx);
        let order = metered::top_up_session(app, v.user_id, id, deposit, buyer_key_id, buyer_refund_key_id).await?;
        let session = metered::load_session(&app.db, order.id()).await?;
        Ok(TopUpSessionPayload {
            session: session_object(ctx, session).await?,
            order: OrderObject(order),
        })
    }

    /// Your usage-alert thresholds for the sessions you buy.
    async fn set_usage_alert_thresholds(
        &self,
        ctx: &Context<'_>,
        input: SetUsageAlertThresholdsInput,
    ) -> ApiResult<UsageAlertThresholdsPayload> {
        let v = viewer(ctx).await?;
        let inputs: Vec<i64> = input.thresholds_bps.into_iter().map(i64::from).collect();
        let t = metered::set_alert_thresholds(state(ctx), v.user_id, &inputs).await?;
        Ok(UsageAlertThresholdsPayload { thresholds_bps: t.into_iter().map(i32::from).collect() })
    }
}


/// `sessionUpdated(id)`: the session now, then after every change (hint + poll,
/// as `orderUpdated`).
pub async fn follow_session(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<impl Stream<Item = SessionObject>> {
    let v = viewer(ctx).await?;
    let order_id = expect(NodeType::Order, id, "id")?;
    let app = state(ctx).clone();
    let (order, _, first) = metered::load_for(&app.db, order_id, v.user_id).await?;
    let deposit = order.terms.amount_due().minor();
    let limit = metered::claim_limit(&app, &order)?;
    let claim_key = match &order.escrow {
        crate::orders::EscrowRecord::Xrpl(x) => Some(x.buyer.public_key.to_hex()),
        crate::orders::EscrowRecord::Bitcoin(_) => None,
    };
    let version = first.record.version;
    let hints = app.order_updates.subscribe();
    let user = v.user_id;
    let first = SessionObject { session: first, deposit, limit, claim_key: claim_key.clone() };
    Ok(follow_versions(first, version, hints, order_id, move || {
        let app = app.clone();
        let claim_key = claim_key.clone();
        async move {
            let (_, _, s) = metered::load_for(&app.db, order_id, user).await.ok()?;
            let version = s.record.version;
            Some((SessionObject { session: s, deposit, limit, claim_key }, version))
        }
    }))
}
