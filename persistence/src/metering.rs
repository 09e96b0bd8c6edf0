//! Metered sessions: listings' peak windows, sessions (stored as JSON of the
//! domain's `Session` with an optimistic-concurrency `version`), usage records,
//! accepted claims and per-user alert thresholds.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::entities::{listing_peak_windows, metered_claims, metered_sessions, usage_alert_settings, usage_records};
use crate::StoreError;

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} does not fit")))
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v}")))
}

/// The JSON of a listing's peak windows, if it has any.
pub async fn peak_windows<C: ConnectionTrait>(db: &C, listing_id: Uuid) -> Result<Option<String>, StoreError> {
    Ok(listing_peak_windows::Entity::find_by_id(listing_id).one(db).await?.map(|m| m.windows))
}

pub async fn set_peak_windows<C: ConnectionTrait>(
    db: &C,
    listing_id: Uuid,
    windows_json: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    listing_peak_windows::Entity::insert(listing_peak_windows::ActiveModel {
        listing_id: Set(listing_id),
        windows: Set(windows_json.to_owned()),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(listing_peak_windows::Column::ListingId)
            .update_columns([listing_peak_windows::Column::Windows, listing_peak_windows::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub order_id: Uuid,
    pub session_json: String,
    pub windows_json: String,
    pub latest_claim_psbt: Option<String>,
    pub latest_claim_txid: Option<String>,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
}

impl From<metered_sessions::Model> for SessionRecord {
    fn from(m: metered_sessions::Model) -> Self {
        Self {
            order_id: m.order_id,
            session_json: m.session,
            windows_json: m.windows,
            latest_claim_psbt: m.latest_claim_psbt,
            latest_claim_txid: m.latest_claim_txid,
            version: m.version,
            updated_at: m.updated_at,
        }
    }
}

pub async fn insert_session<C: ConnectionTrait>(db: &C, s: &SessionRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
    metered_sessions::Entity::insert(metered_sessions::ActiveModel {
        order_id: Set(s.order_id),
        session: Set(s.session_json.clone()),
        windows: Set(s.windows_json.clone()),
        latest_claim_psbt: Set(s.latest_claim_psbt.clone()),
        latest_claim_txid: Set(s.latest_claim_txid.clone()),
        version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_session<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
    Ok(metered_sessions::Entity::find_by_id(order_id).one(db).await?.map(Into::into))
}

/// Stores the session if it is still at `s.version`; `VersionConflict` otherwise.
pub async fn update_session<C: ConnectionTrait>(db: &C, s: &SessionRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
    let result = metered_sessions::Entity::update_many()
        .col_expr(metered_sessions::Column::Session, Expr::value(s.session_json.clone()))
        .col_expr(metered_sessions::Column::LatestClaimPsbt, Expr::value(s.latest_claim_psbt.clone()))
        .col_expr(metered_sessions::Column::LatestClaimTxid, Expr::value(s.latest_claim_txid.clone()))
        .col_expr(metered_sessions::Column::Version, Expr::value(s.version + 1))
        .col_expr(metered_sessions::Column::UpdatedAt, Expr::value(now))
        .filter(metered_sessions::Column::OrderId.eq(s.order_id))
        .filter(metered_sessions::Column::Version.eq(s.version))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Err(StoreError::VersionConflict);
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub id: Uuid,
    pub order_id: Uuid,
    pub quantity: u64,
    pub price_per_unit: u64,
    pub multiplier_bps: u32,
    pub amount: u64,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

pub async fn insert_usage<C: ConnectionTrait>(db: &C, u: &UsageRecord) -> Result<(), StoreError> {
    usage_records::Entity::insert(usage_records::ActiveModel {
        id: Set(u.id),
        order_id: Set(u.order_id),
        quantity: Set(to_i64(u.quantity, "quantity")?),
        price_per_unit: Set(to_i64(u.price_per_unit, "price")?),
        multiplier_bps: Set(i32::try_from(u.multiplier_bps).map_err(|_| StoreError::Corrupt("multiplier".into()))?),
        amount: Set(to_i64(u.amount, "amount")?),
        at: Set(u.at),
        recorded_at: Set(u.recorded_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Every usage record of a session, oldest first.
pub async fn usage_of<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Vec<UsageRecord>, StoreError> {
    usage_records::Entity::find()
        .filter(usage_records::Column::OrderId.eq(order_id))
        .order_by_asc(usage_records::Column::RecordedAt)
        .order_by_asc(usage_records::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            Ok(UsageRecord {
                id: m.id,
                order_id: m.order_id,
                quantity: to_u64(m.quantity, "quantity")?,
                price_per_unit: to_u64(m.price_per_unit, "price")?,
                multiplier_bps: u32::try_from(m.multiplier_bps)
                    .map_err(|_| StoreError::Corrupt(format!("multiplier {}", m.multiplier_bps)))?,
                amount: to_u64(m.amount, "amount")?,
                at: m.at,
                recorded_at: m.recorded_at,
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct ClaimRecord {
    pub id: Uuid,
    pub order_id: Uuid,
    pub cumulative: u64,
    pub txid: String,
    pub psbt: String,
    pub submitted_at: DateTime<Utc>,
}

pub async fn insert_claim<C: ConnectionTrait>(db: &C, c: &ClaimRecord) -> Result<(), StoreError> {
    metered_claims::Entity::insert(metered_claims::ActiveModel {
        id: Set(c.id),
        order_id: Set(c.order_id),
        cumulative: Set(to_i64(c.cumulative, "claim")?),
        txid: Set(c.txid.clone()),
        psbt: Set(c.psbt.clone()),
        submitted_at: Set(c.submitted_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Every accepted claim of a session, oldest first.
pub async fn claims_of<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Vec<ClaimRecord>, StoreError> {
    metered_claims::Entity::find()
        .filter(metered_claims::Column::OrderId.eq(order_id))
        .order_by_asc(metered_claims::Column::Cumulative)
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            Ok(ClaimRecord {
                id: m.id,
                order_id: m.order_id,
                cumulative: to_u64(m.cumulative, "claim")?,
                txid: m.txid,
                psbt: m.psbt,
                submitted_at: m.submitted_at,
            })
        })
        .collect()
}

/// A user's alert thresholds (JSON array of basis points), if configured.
pub async fn alert_thresholds<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Option<String>, StoreError> {
    Ok(usage_alert_settings::Entity::find_by_id(user_id).one(db).await?.map(|m| m.thresholds))
}

pub async fn set_alert_thresholds<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    thresholds_json: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    usage_alert_settings::Entity::insert(usage_alert_settings::ActiveModel {
        user_id: Set(user_id),
        thresholds: Set(thresholds_json.to_owned()),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(usage_alert_settings::Column::UserId)
            .update_columns([usage_alert_settings::Column::Thresholds, usage_alert_settings::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
