//! Aggregates for operators (the `/metrics` endpoint): counts read from the
//! tables at scrape time, so every replica reports the same numbers.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::entities::{arbitrator_signatures, notifications, orders};
use crate::notifications::EmailState;
use crate::StoreError;

/// How many orders each `(chain, status)` pair has.
pub async fn orders_by_status<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, String, i64)>, StoreError> {
    Ok(orders::Entity::find()
        .select_only()
        .column(orders::Column::Chain)
        .column(orders::Column::Status)
        .column_as(Expr::col(orders::Column::Id).count(), "n")
        .group_by(orders::Column::Chain)
        .group_by(orders::Column::Status)
        .into_tuple::<(String, String, i64)>()
        .all(db)
        .await?)
}

/// How many signatures the marketplace key made, per `(chain, policy rule)`,
/// from the append-only audit log.
pub async fn signatures_by_rule<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, String, i64)>, StoreError> {
    Ok(arbitrator_signatures::Entity::find()
        .select_only()
        .column(arbitrator_signatures::Column::Chain)
        .column(arbitrator_signatures::Column::Rule)
        .column_as(Expr::col(arbitrator_signatures::Column::Id).count(), "n")
        .group_by(arbitrator_signatures::Column::Chain)
        .group_by(arbitrator_signatures::Column::Rule)
        .into_tuple::<(String, String, i64)>()
        .all(db)
        .await?)
}

/// The notification outbox: messages not delivered yet and when the oldest
/// of them was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxDepth {
    pub pending: i64,
    pub oldest: Option<DateTime<Utc>>,
}

pub async fn outbox_depth<C: ConnectionTrait>(db: &C) -> Result<OutboxDepth, StoreError> {
    let pending_rows = || notifications::Entity::find().filter(notifications::Column::EmailState.eq(EmailState::Pending.as_str()));
    let pending = pending_rows()
        .select_only()
        .column_as(Expr::col(notifications::Column::Id).count(), "n")
        .into_tuple::<i64>()
        .one(db)
        .await?
        .unwrap_or(0);
    // The oldest row by its own ordering rather than MIN(), so both backends
    // hand back a typed timestamp.
    let oldest = if pending == 0 {
        None
    } else {
        sea_orm::QueryOrder::order_by_asc(pending_rows(), notifications::Column::CreatedAt)
            .one(db)
            .await?
            .map(|m| m.created_at)
    };
    Ok(OutboxDepth { pending, oldest })
}
