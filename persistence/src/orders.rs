//! Orders and their escrows, the order history, and the arbitrator signature log.
//!
//! The escrow state and terms are stored as JSON of the domain types (the API
//! crate maps them); the columns beside them exist for filtering and for the
//! optimistic-concurrency check on `version`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::entities::{arbitrator_signatures, order_events, orders};
use crate::StoreError;

#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub id: Uuid,
    pub buyer_id: Uuid,
    pub provider_id: Uuid,
    pub listing_id: Uuid,
    pub arbitrator_id: Option<Uuid>,
    pub chain: String,
    pub asset: String,
    pub amount_due: u64,
    pub status: String,
    pub terms_json: String,
    pub state_json: String,
    pub escrow_json: String,
    pub key_index: u32,
    pub escrow_address: Option<String>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<orders::Model> for OrderRecord {
    type Error = StoreError;

    fn try_from(m: orders::Model) -> Result<Self, StoreError> {
        Ok(Self {
            id: m.id,
            buyer_id: m.buyer_id,
            provider_id: m.provider_id,
            listing_id: m.listing_id,
            arbitrator_id: m.arbitrator_id,
            chain: m.chain,
            asset: m.asset,
            amount_due: u64::try_from(m.amount_due)
                .map_err(|_| StoreError::Corrupt(format!("order amount {}", m.amount_due)))?,
            status: m.status,
            terms_json: m.terms,
            state_json: m.state,
            escrow_json: m.escrow,
            key_index: u32::try_from(m.arbitrator_key_index)
                .map_err(|_| StoreError::Corrupt(format!("key index {}", m.arbitrator_key_index)))?,
            escrow_address: m.escrow_address,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// The next unused marketplace key index for escrows on `chain`. Two concurrent
/// placements may read the same value; the unique index then rejects one of
/// them (`Duplicate`) and the caller retries.
pub async fn next_key_index<C: ConnectionTrait>(db: &C, chain: &str) -> Result<u32, StoreError> {
    let max: Option<Option<i32>> = orders::Entity::find()
        .select_only()
        .column_as(orders::Column::ArbitratorKeyIndex.max(), "max")
        .filter(orders::Column::Chain.eq(chain))
        .into_tuple()
        .one(db)
        .await?;
    let next = max.flatten().map_or(0, |m| i64::from(m) + 1);
    u32::try_from(next).map_err(|_| StoreError::Corrupt("key index space exhausted".into()))
}

pub async fn insert_order<C: ConnectionTrait>(db: &C, o: &OrderRecord) -> Result<(), StoreError> {
    orders::Entity::insert(orders::ActiveModel {
        id: Set(o.id),
        buyer_id: Set(o.buyer_id),
        provider_id: Set(o.provider_id),
        listing_id: Set(o.listing_id),
        arbitrator_id: Set(o.arbitrator_id),
        chain: Set(o.chain.clone()),
        asset: Set(o.asset.clone()),
        amount_due: Set(i64::try_from(o.amount_due).map_err(|_| StoreError::Corrupt("amount".into()))?),
        status: Set(o.status.clone()),
        terms: Set(o.terms_json.clone()),
        state: Set(o.state_json.clone()),
        escrow: Set(o.escrow_json.clone()),
        arbitrator_key_index: Set(i32::try_from(o.key_index).map_err(|_| StoreError::Corrupt("key index".into()))?),
        escrow_address: Set(o.escrow_address.clone()),
        version: Set(0),
        created_at: Set(o.created_at),
        updated_at: Set(o.updated_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_order<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<OrderRecord>, StoreError> {
    orders::Entity::find_by_id(id).one(db).await?.map(TryInto::try_into).transpose()
}

/// Orders where `user_id` is buyer, provider or assigned arbitrator, newest
/// first, after the order id `after` (exclusive), at most `limit`.
pub async fn orders_of<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<OrderRecord>, StoreError> {
    let mut cond = Condition::all().add(
        Condition::any()
            .add(orders::Column::BuyerId.eq(user_id))
            .add(orders::Column::ProviderId.eq(user_id))
            .add(orders::Column::ArbitratorId.eq(user_id)),
    );
    if let Some(after) = after {
        cond = cond.add(orders::Column::Id.lt(after));
    }
    orders::Entity::find()
        .filter(cond)
        .order_by_desc(orders::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// One page of the orders in one of `statuses`, by id, after `after`: the
/// sweeps walk every page, so orders that stay due (a failing hand-over, a
/// silent party) never hide the ones behind them.
pub async fn orders_in_status_after<C: ConnectionTrait>(
    db: &C,
    statuses: &[&str],
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<OrderRecord>, StoreError> {
    let mut query = orders::Entity::find().filter(orders::Column::Status.is_in(statuses.iter().copied()));
    if let Some(after) = after {
        query = query.filter(orders::Column::Id.gt(after));
    }
    query
        .order_by_asc(orders::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Every order on `chain`, settled ones included: a settled escrow's address
/// is still watched, so funds sent to it later are found and returned.
pub async fn orders_on_chain<C: ConnectionTrait>(db: &C, chain: &str) -> Result<Vec<OrderRecord>, StoreError> {
    orders::Entity::find()
        .filter(orders::Column::Chain.eq(chain))
        .order_by_asc(orders::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Up to `limit` orders on `chain` whose marketplace key index is above
/// `after` (all when `None`), by key index: the watcher builds its index with
/// these pages and then asks only for orders placed since. Key indexes are
/// handed out one above the highest committed one, so no order can later
/// commit below an index already seen.
pub async fn orders_on_chain_after_key_index<C: ConnectionTrait>(
    db: &C,
    chain: &str,
    after: Option<u32>,
    limit: u64,
) -> Result<Vec<OrderRecord>, StoreError> {
    let mut query = orders::Entity::find().filter(orders::Column::Chain.eq(chain));
    if let Some(after) = after {
        query = query.filter(orders::Column::ArbitratorKeyIndex.gt(i64::from(after)));
    }
    query
        .order_by_asc(orders::Column::ArbitratorKeyIndex)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

/// Stores a new state if the order is still at `expected_version`.
pub async fn update_order<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    expected_version: i32,
    status: &str,
    state_json: &str,
    escrow_json: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let result = orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::value(status))
        .col_expr(orders::Column::State, Expr::value(state_json))
        .col_expr(orders::Column::Escrow, Expr::value(escrow_json))
        .col_expr(orders::Column::Version, Expr::value(expected_version + 1))
        .col_expr(orders::Column::UpdatedAt, Expr::value(now))
        .filter(orders::Column::Id.eq(id))
        .filter(orders::Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Err(StoreError::VersionConflict);
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct OrderEventRecord {
    pub order_id: Uuid,
    pub event: String,
    pub actor: String,
    pub from_status: String,
    pub to_status: String,
    pub detail: String,
    pub at: DateTime<Utc>,
}

pub async fn insert_order_event<C: ConnectionTrait>(db: &C, e: &OrderEventRecord) -> Result<(), StoreError> {
    order_events::Entity::insert(order_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        order_id: Set(e.order_id),
        event: Set(e.event.clone()),
        actor: Set(e.actor.clone()),
        from_status: Set(e.from_status.clone()),
        to_status: Set(e.to_status.clone()),
        detail: Set(e.detail.clone()),
        at: Set(e.at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn order_events_of<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Vec<OrderEventRecord>, StoreError> {
    order_events_of_many(db, &[order_id]).await
}

/// The history of several orders in one query, each oldest first.
pub async fn order_events_of_many<C: ConnectionTrait>(
    db: &C,
    order_ids: &[Uuid],
) -> Result<Vec<OrderEventRecord>, StoreError> {
    Ok(order_events::Entity::find()
        .filter(order_events::Column::OrderId.is_in(order_ids.iter().copied()))
        .order_by_asc(order_events::Column::At)
        .order_by_asc(order_events::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| OrderEventRecord {
            order_id: m.order_id,
            event: m.event,
            actor: m.actor,
            from_status: m.from_status,
            to_status: m.to_status,
            detail: m.detail,
            at: m.at,
        })
        .collect())
}

#[derive(Debug, Clone)]
pub struct ArbitratorSignatureRecord {
    pub order_id: Uuid,
    pub chain: String,
    pub key_index: u32,
    pub public_key: String,
    pub rule: String,
    pub outcome: String,
    pub tx_id: String,
    pub detail: String,
    pub signed_at: DateTime<Utc>,
}

/// Appends to the audit log (the table refuses updates and deletes).
pub async fn insert_arbitrator_signature<C: ConnectionTrait>(
    db: &C,
    s: &ArbitratorSignatureRecord,
) -> Result<(), StoreError> {
    arbitrator_signatures::Entity::insert(arbitrator_signatures::ActiveModel {
        id: Set(Uuid::now_v7()),
        order_id: Set(s.order_id),
        chain: Set(s.chain.clone()),
        key_index: Set(i32::try_from(s.key_index).map_err(|_| StoreError::Corrupt("key index".into()))?),
        public_key: Set(s.public_key.clone()),
        rule: Set(s.rule.clone()),
        outcome: Set(s.outcome.clone()),
        tx_id: Set(s.tx_id.clone()),
        detail: Set(s.detail.clone()),
        signed_at: Set(s.signed_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn arbitrator_signatures_of<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
) -> Result<Vec<ArbitratorSignatureRecord>, StoreError> {
    arbitrator_signatures_of_many(db, &[order_id]).await
}

/// The audit records of several orders in one query.
pub async fn arbitrator_signatures_of_many<C: ConnectionTrait>(
    db: &C,
    order_ids: &[Uuid],
) -> Result<Vec<ArbitratorSignatureRecord>, StoreError> {
    arbitrator_signatures::Entity::find()
        .filter(arbitrator_signatures::Column::OrderId.is_in(order_ids.iter().copied()))
        .order_by_asc(arbitrator_signatures::Column::SignedAt)
        .order_by_asc(arbitrator_signatures::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            Ok(ArbitratorSignatureRecord {
                order_id: m.order_id,
                chain: m.chain,
                key_index: u32::try_from(m.key_index).map_err(|_| StoreError::Corrupt("key index".into()))?,
                public_key: m.public_key,
                rule: m.rule,
                outcome: m.outcome,
                tx_id: m.tx_id,
                detail: m.detail,
                signed_at: m.signed_at,
            })
        })
        .collect()
}

/// Orders on `chain` that are not settled: the watcher's watch list.
pub async fn open_orders<C: ConnectionTrait>(db: &C, chain: &str) -> Result<Vec<OrderRecord>, StoreError> {
    orders::Entity::find()
        .filter(orders::Column::Chain.eq(chain))
        .filter(orders::Column::Status.ne("Settled"))
        .order_by_asc(orders::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}
