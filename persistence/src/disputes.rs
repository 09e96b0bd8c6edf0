//! Disputes, their statements, and arbitrator assignment. Every write that can
//! race (two arbitrators deciding at once) is guarded by the `version` column.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entities::{dispute_statements, disputes, user_roles};
use crate::StoreError;

pub type DisputeRecord = disputes::Model;

#[derive(Debug, Clone)]
pub struct StatementRecord {
    pub id: Uuid,
    pub dispute_id: Uuid,
    pub author_id: Uuid,
    pub author_role: String,
    pub text: String,
    pub attachments_json: String,
    pub at: DateTime<Utc>,
}

pub async fn insert_dispute<C: ConnectionTrait>(db: &C, d: DisputeRecord) -> Result<(), StoreError> {
    disputes::Entity::insert(disputes::ActiveModel::from(d).reset_all()).exec_without_returning(db).await?;
    Ok(())
}

pub async fn find_dispute<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<DisputeRecord>, StoreError> {
    Ok(disputes::Entity::find_by_id(id).one(db).await?)
}

pub async fn dispute_of_order<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Option<DisputeRecord>, StoreError> {
    Ok(disputes::Entity::find()
        .filter(disputes::Column::OrderId.eq(order_id))
        .one(db)
        .await?)
}

/// Writes `d` if the stored row is still at `d.version - 1`; `VersionConflict`
/// when someone else changed it first.
pub async fn update_dispute<C: ConnectionTrait>(db: &C, d: &DisputeRecord) -> Result<(), StoreError> {
    // Every column is written (reset_all marks them Set), except the key.
    let mut am = disputes::ActiveModel::from(d.clone()).reset_all();
    am.id = sea_orm::ActiveValue::NotSet;
    let result = disputes::Entity::update_many()
        .set(am)
        .filter(disputes::Column::Id.eq(d.id))
        .filter(disputes::Column::Version.eq(d.version - 1))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Err(StoreError::VersionConflict);
    }
    Ok(())
}

/// Disputes assigned to `arbitrator_id` that are not final, most urgent first.
pub async fn queue_of<C: ConnectionTrait>(db: &C, arbitrator_id: Uuid) -> Result<Vec<DisputeRecord>, StoreError> {
    Ok(disputes::Entity::find()
        .filter(disputes::Column::ArbitratorId.eq(arbitrator_id))
        .filter(disputes::Column::Status.ne("final"))
        .order_by_asc(disputes::Column::RespondBy)
        .order_by_asc(disputes::Column::Id)
        .all(db)
        .await?)
}

/// Disputes in `statuses`, for the scheduler.
pub async fn disputes_in<C: ConnectionTrait>(db: &C, statuses: &[&str]) -> Result<Vec<DisputeRecord>, StoreError> {
    Ok(disputes::Entity::find()
        .filter(disputes::Column::Status.is_in(statuses.iter().copied()))
        .order_by_asc(disputes::Column::Id)
        .all(db)
        .await?)
}

/// The arbitrator with the fewest open cases among those not in `exclude`
/// (ties: the oldest account), or `None` when there is none.
pub async fn least_busy_arbitrator<C: ConnectionTrait>(db: &C, exclude: &[Uuid]) -> Result<Option<Uuid>, StoreError> {
    let arbitrators: Vec<Uuid> = user_roles::Entity::find()
        .select_only()
        .column(user_roles::Column::UserId)
        .filter(user_roles::Column::Role.eq("arbitrator"))
        .order_by_asc(user_roles::Column::UserId)
        .into_tuple()
        .all(db)
        .await?;
    let mut best: Option<(u64, Uuid)> = None;
    for id in arbitrators.into_iter().filter(|id| !exclude.contains(id)) {
        let open: u64 = sea_orm::PaginatorTrait::count(
            disputes::Entity::find()
                .filter(disputes::Column::ArbitratorId.eq(id))
                .filter(disputes::Column::Status.ne("final")),
            db,
        )
        .await?;
        if best.is_none_or(|(n, _)| open < n) {
            best = Some((open, id));
        }
    }
    Ok(best.map(|(_, id)| id))
}

pub async fn insert_statement<C: ConnectionTrait>(db: &C, s: &StatementRecord) -> Result<(), StoreError> {
    dispute_statements::Entity::insert(dispute_statements::ActiveModel {
        id: Set(s.id),
        dispute_id: Set(s.dispute_id),
        author_id: Set(s.author_id),
        author_role: Set(s.author_role.clone()),
        text: Set(s.text.clone()),
        attachments: Set(s.attachments_json.clone()),
        at: Set(s.at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn statements_of<C: ConnectionTrait>(db: &C, dispute_id: Uuid) -> Result<Vec<StatementRecord>, StoreError> {
    Ok(dispute_statements::Entity::find()
        .filter(dispute_statements::Column::DisputeId.eq(dispute_id))
        .order_by_asc(dispute_statements::Column::At)
        .order_by_asc(dispute_statements::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| StatementRecord {
            id: m.id,
            dispute_id: m.dispute_id,
            author_id: m.author_id,
            author_role: m.author_role,
            text: m.text,
            attachments_json: m.attachments,
            at: m.at,
        })
        .collect())
}

/// Sets the order's assigned arbitrator (who may then see it and decide).
pub async fn assign_order_arbitrator<C: ConnectionTrait>(db: &C, order_id: Uuid, arbitrator: Option<Uuid>) -> Result<(), StoreError> {
    crate::entities::orders::Entity::update_many()
        .col_expr(crate::entities::orders::Column::ArbitratorId, Expr::value(arbitrator))
        .filter(crate::entities::orders::Column::Id.eq(order_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Every dispute `arbitrator_id` decides or decided (including appealed ones).
pub async fn cases_of_arbitrator<C: ConnectionTrait>(db: &C, arbitrator_id: Uuid) -> Result<Vec<DisputeRecord>, StoreError> {
    Ok(disputes::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(disputes::Column::ArbitratorId.eq(arbitrator_id))
                .add(disputes::Column::FirstArbitratorId.eq(arbitrator_id))
                .add(disputes::Column::DecidedBy.eq(arbitrator_id)),
        )
        .order_by_asc(disputes::Column::Id)
        .all(db)
        .await?)
}
