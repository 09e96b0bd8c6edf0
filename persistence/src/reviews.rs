//! Reputation storage: reviews, the outcomes of settled orders, and the
//! denormalised provider score (`providers.rating_*`, copied to
//! `listings.provider_rating` so listings sort by it through an index).

use agora_domain::escrow::{Party, Settled};
use agora_domain::money::{Amount, Asset, BasisPoints};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::entities::{listings, order_outcomes, orders, providers, reviews};
use crate::StoreError;

fn side_code(side: Party) -> &'static str {
    match side {
        Party::Buyer => "buyer",
        Party::Provider => "provider",
    }
}

fn parse_side(code: &str) -> Result<Party, StoreError> {
    match code {
        "buyer" => Ok(Party::Buyer),
        "provider" => Ok(Party::Provider),
        other => Err(StoreError::Corrupt(format!("review side {other}"))),
    }
}

fn parse_amount(asset: &str, minor: i64) -> Result<Amount, StoreError> {
    let asset = Asset::from_code(asset).ok_or_else(|| StoreError::Corrupt(format!("asset {asset}")))?;
    let minor = u64::try_from(minor).map_err(|_| StoreError::Corrupt(format!("amount {minor}")))?;
    Amount::new(asset, minor).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_i64(amount: Amount) -> Result<i64, StoreError> {
    i64::try_from(amount.minor()).map_err(|_| StoreError::Corrupt("amount".into()))
}

/// A review of one side of a settled order by the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRecord {
    pub id: Uuid,
    pub order_id: Uuid,
    pub reviewer_id: Uuid,
    /// Whom the review is about: the order's provider when `side` is the buyer.
    pub subject_id: Uuid,
    /// The reviewer's side.
    pub side: Party,
    /// 1–5, validated by the domain before it is stored.
    pub rating: u8,
    pub text: Option<String>,
    /// The order's amount due.
    pub order_value: Amount,
    pub settled_at: DateTime<Utc>,
    pub editable_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<reviews::Model> for ReviewRecord {
    type Error = StoreError;

    fn try_from(m: reviews::Model) -> Result<Self, StoreError> {
        Ok(Self {
            id: m.id,
            order_id: m.order_id,
            reviewer_id: m.reviewer_id,
            subject_id: m.subject_id,
            side: parse_side(&m.side)?,
            rating: u8::try_from(m.rating).map_err(|_| StoreError::Corrupt(format!("rating {}", m.rating)))?,
            text: m.text,
            order_value: parse_amount(&m.asset, m.order_value)?,
            settled_at: m.settled_at,
            editable_until: m.editable_until,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// Stores a new review; `Duplicate` when that side already reviewed the order.
pub async fn insert_review<C: ConnectionTrait>(db: &C, r: &ReviewRecord) -> Result<(), StoreError> {
    reviews::Entity::insert(reviews::ActiveModel {
        id: Set(r.id),
        order_id: Set(r.order_id),
        reviewer_id: Set(r.reviewer_id),
        subject_id: Set(r.subject_id),
        side: Set(side_code(r.side).to_owned()),
        rating: Set(i16::from(r.rating)),
        text: Set(r.text.clone()),
        asset: Set(r.order_value.asset().code().to_owned()),
        order_value: Set(to_i64(r.order_value)?),
        settled_at: Set(r.settled_at),
        editable_until: Set(r.editable_until),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_review<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<ReviewRecord>, StoreError> {
    reviews::Entity::find_by_id(id).one(db).await?.map(TryInto::try_into).transpose()
}

/// Replaces a review's rating and text. The edit window is checked by the
/// caller; it is repeated here so an edit racing the deadline cannot land
/// after it (`NotFound` then).
pub async fn update_review<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    rating: u8,
    text: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let result = reviews::Entity::update_many()
        .col_expr(reviews::Column::Rating, Expr::value(i16::from(rating)))
        .col_expr(reviews::Column::Text, Expr::value(text))
        .col_expr(reviews::Column::UpdatedAt, Expr::value(now))
        .filter(reviews::Column::Id.eq(id))
        .filter(reviews::Column::EditableUntil.gte(now))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The reviews of one order (at most one per side).
pub async fn reviews_of_order<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Vec<ReviewRecord>, StoreError> {
    reviews::Entity::find()
        .filter(reviews::Column::OrderId.eq(order_id))
        .order_by_asc(reviews::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Reviews about `subject_id` written from `side`, newest first (ids are
/// UUIDv7), after the review id `after` (exclusive); all of them when `limit`
/// is `None`.
pub async fn reviews_about<C: ConnectionTrait>(
    db: &C,
    subject_id: Uuid,
    side: Party,
    after: Option<Uuid>,
    limit: Option<u64>,
) -> Result<Vec<ReviewRecord>, StoreError> {
    let mut query = reviews::Entity::find()
        .filter(reviews::Column::SubjectId.eq(subject_id))
        .filter(reviews::Column::Side.eq(side_code(side)));
    if let Some(after) = after {
        query = query.filter(reviews::Column::Id.lt(after));
    }
    query
        .order_by_desc(reviews::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// How a settled order ended, as reputation reads it. Written once when the
/// order settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRecord {
    pub order_id: Uuid,
    pub buyer_id: Uuid,
    pub provider_id: Uuid,
    pub order_value: Amount,
    pub outcome: Settled,
    pub refunded_for_late_delivery: bool,
    pub dispute_opened_by: Option<Party>,
    pub provider_fault: bool,
    pub buyer_lost_dispute: bool,
    pub settled_at: DateTime<Utc>,
}

fn outcome_columns(outcome: Settled) -> (&'static str, i32) {
    match outcome {
        Settled::Released => ("released", 10_000),
        Settled::Refunded => ("refunded", 0),
        Settled::Split { provider_bps } => ("split", i32::from(provider_bps.get())),
    }
}

impl TryFrom<order_outcomes::Model> for OutcomeRecord {
    type Error = StoreError;

    fn try_from(m: order_outcomes::Model) -> Result<Self, StoreError> {
        let outcome = match m.outcome.as_str() {
            "released" => Settled::Released,
            "refunded" => Settled::Refunded,
            "split" => Settled::Split {
                provider_bps: BasisPoints::new(i64::from(m.provider_bps))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            },
            other => return Err(StoreError::Corrupt(format!("outcome {other}"))),
        };
        Ok(Self {
            order_id: m.order_id,
            buyer_id: m.buyer_id,
            provider_id: m.provider_id,
            order_value: parse_amount(&m.asset, m.order_value)?,
            outcome,
            refunded_for_late_delivery: m.refunded_for_late_delivery,
            dispute_opened_by: m.dispute_opened_by.as_deref().map(parse_side).transpose()?,
            provider_fault: m.provider_fault,
            buyer_lost_dispute: m.buyer_lost_dispute,
            settled_at: m.settled_at,
        })
    }
}

/// Records (or, should an order settle again after a reorg, replaces) the
/// outcome of a settled order.
pub async fn upsert_outcome<C: ConnectionTrait>(db: &C, o: &OutcomeRecord) -> Result<(), StoreError> {
    let (outcome, provider_bps) = outcome_columns(o.outcome);
    order_outcomes::Entity::insert(order_outcomes::ActiveModel {
        order_id: Set(o.order_id),
        buyer_id: Set(o.buyer_id),
        provider_id: Set(o.provider_id),
        asset: Set(o.order_value.asset().code().to_owned()),
        order_value: Set(to_i64(o.order_value)?),
        outcome: Set(outcome.to_owned()),
        provider_bps: Set(provider_bps),
        refunded_for_late_delivery: Set(o.refunded_for_late_delivery),
        dispute_opened_by: Set(o.dispute_opened_by.map(|p| side_code(p).to_owned())),
        provider_fault: Set(o.provider_fault),
        buyer_lost_dispute: Set(o.buyer_lost_dispute),
        settled_at: Set(o.settled_at),
    })
    .on_conflict(
        OnConflict::column(order_outcomes::Column::OrderId)
            .update_columns([
                order_outcomes::Column::Outcome,
                order_outcomes::Column::ProviderBps,
                order_outcomes::Column::RefundedForLateDelivery,
                order_outcomes::Column::DisputeOpenedBy,
                order_outcomes::Column::ProviderFault,
                order_outcomes::Column::BuyerLostDispute,
                order_outcomes::Column::SettledAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The settled orders held against `provider_id`.
pub async fn provider_faults<C: ConnectionTrait>(db: &C, provider_id: Uuid) -> Result<Vec<OutcomeRecord>, StoreError> {
    order_outcomes::Entity::find()
        .filter(order_outcomes::Column::ProviderId.eq(provider_id))
        .filter(order_outcomes::Column::ProviderFault.eq(true))
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Every settled order of `buyer_id`.
pub async fn outcomes_of_buyer<C: ConnectionTrait>(db: &C, buyer_id: Uuid) -> Result<Vec<OutcomeRecord>, StoreError> {
    order_outcomes::Entity::find()
        .filter(order_outcomes::Column::BuyerId.eq(buyer_id))
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Locks the provider's row until the transaction ends (PostgreSQL; SQLite
/// serialises writers anyway), so two concurrent recomputations of one score
/// run one after the other and the later one sees the earlier one's input.
pub async fn lock_provider<C: ConnectionTrait>(db: &C, provider_id: Uuid) -> Result<(), StoreError> {
    providers::Entity::find_by_id(provider_id)
        .select_only()
        .column(providers::Column::UserId)
        .lock_exclusive()
        .into_tuple::<Uuid>()
        .one(db)
        .await?;
    Ok(())
}

/// Stores a provider's score and copies it to all of its listings.
pub async fn set_provider_rating<C: ConnectionTrait>(
    db: &C,
    provider_id: Uuid,
    rating_milli: u16,
    rating_count: u32,
) -> Result<(), StoreError> {
    let count = i32::try_from(rating_count).unwrap_or(i32::MAX);
    providers::Entity::update_many()
        .col_expr(providers::Column::RatingMilli, Expr::value(i32::from(rating_milli)))
        .col_expr(providers::Column::RatingCount, Expr::value(count))
        .filter(providers::Column::UserId.eq(provider_id))
        .exec(db)
        .await?;
    listings::Entity::update_many()
        .col_expr(listings::Column::ProviderRating, Expr::value(i32::from(rating_milli)))
        .filter(listings::Column::ProviderId.eq(provider_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Whether `provider_id` is the provider of at least one order of `buyer_id`.
pub async fn has_order_between<C: ConnectionTrait>(db: &C, buyer_id: Uuid, provider_id: Uuid) -> Result<bool, StoreError> {
    let n = orders::Entity::find()
        .filter(orders::Column::BuyerId.eq(buyer_id))
        .filter(orders::Column::ProviderId.eq(provider_id))
        .count(db)
        .await?;
    Ok(n > 0)
}
