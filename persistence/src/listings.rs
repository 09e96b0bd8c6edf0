//! Listings: writes, look-ups and the discovery query with keyset pagination.

use agora_domain::listing::{Category, ListingContent, ListingStatus, Pricing};
use agora_domain::money::Asset;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entities::{listing_tags, listings};
use crate::StoreError;

/// A stored listing, with its enums parsed and the rest as stored.
#[derive(Debug, Clone)]
pub struct ListingRecord {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub title: String,
    pub description: String,
    pub category: Category,
    pub tags: Vec<String>,
    pub region: String,
    pub asset: Asset,
    pub pricing: StoredPricing,
    pub delivery_window_hours: u32,
    pub status: ListingStatus,
    pub provider_rating: i32,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPricing {
    Fixed { amount: u64 },
    Metered { unit: String, price_per_unit: u64, min_deposit: u64 },
}

impl ListingRecord {
    /// The price that filters and sorting use (fixed amount or price per unit).
    pub fn headline_price(&self) -> u64 {
        match self.pricing {
            StoredPricing::Fixed { amount } => amount,
            StoredPricing::Metered { price_per_unit, .. } => price_per_unit,
        }
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("listing {what}: {value}"))
}

fn to_u64(what: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(what, &value.to_string()))
}

impl TryFrom<listings::Model> for ListingRecord {
    type Error = StoreError;

    fn try_from(m: listings::Model) -> Result<Self, StoreError> {
        let pricing = match (m.pricing_kind.as_str(), m.metered_unit, m.min_deposit) {
            ("fixed", _, _) => StoredPricing::Fixed {
                amount: to_u64("price", m.price)?,
            },
            ("metered", Some(unit), Some(min_deposit)) => StoredPricing::Metered {
                unit,
                price_per_unit: to_u64("price", m.price)?,
                min_deposit: to_u64("min_deposit", min_deposit)?,
            },
            (kind, _, _) => return Err(corrupt("pricing", kind)),
        };
        Ok(Self {
            id: m.id,
            provider_id: m.provider_id,
            category: Category::parse(&m.category).map_err(|_| corrupt("category", &m.category))?,
            tags: serde_json::from_str(&m.tags).map_err(|_| corrupt("tags", &m.tags))?,
            asset: Asset::from_code(&m.asset).ok_or_else(|| corrupt("asset", &m.asset))?,
            status: ListingStatus::from_code(&m.status).ok_or_else(|| corrupt("status", &m.status))?,
            delivery_window_hours: u32::try_from(m.delivery_window_hours)
                .map_err(|_| corrupt("delivery window", &m.delivery_window_hours.to_string()))?,
            title: m.title,
            description: m.description,
            region: m.region,
            pricing,
            provider_rating: m.provider_rating,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// The content columns of a listing, shared by insert and update.
fn content_columns(content: &ListingContent, am: &mut listings::ActiveModel) -> Result<(), StoreError> {
    let tags: Vec<&str> = content.tags.iter().map(|t| t.as_str()).collect();
    am.title = Set(content.title.clone());
    am.description = Set(content.description.clone());
    am.category = Set(content.category.code().to_owned());
    am.tags = Set(serde_json::to_string(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?);
    am.region = Set(content.region.as_str().to_owned());
    am.asset = Set(content.asset.code().to_owned());
    am.search_text = Set(content.search_text());
    am.delivery_window_hours = Set(content.delivery_window_hours as i32);
    // Amounts never exceed an asset's supply (≤ 10^17), so they always fit in i64.
    let price = content.pricing.headline_price().minor() as i64;
    am.price = Set(price);
    match content.pricing {
        Pricing::Fixed { .. } => {
            am.pricing_kind = Set("fixed".to_owned());
            am.metered_unit = Set(None);
            am.min_deposit = Set(None);
        }
        Pricing::Metered { unit, min_deposit, .. } => {
            am.pricing_kind = Set("metered".to_owned());
            am.metered_unit = Set(Some(unit.code().to_owned()));
            am.min_deposit = Set(Some(min_deposit.minor() as i64));
        }
    }
    Ok(())
}

async fn replace_tags<C: ConnectionTrait>(
    db: &C,
    listing_id: Uuid,
    content: &ListingContent,
) -> Result<(), StoreError> {
    listing_tags::Entity::delete_many()
        .filter(listing_tags::Column::ListingId.eq(listing_id))
        .exec(db)
        .await?;
    let rows: Vec<listing_tags::ActiveModel> = content
        .tags
        .iter()
        .map(|t| listing_tags::ActiveModel {
            listing_id: Set(listing_id),
            tag: Set(t.as_str().to_owned()),
        })
        .collect();
    if !rows.is_empty() {
        listing_tags::Entity::insert_many(rows).exec_without_returning(db).await?;
    }
    Ok(())
}

/// Inserts a new draft listing; call inside a transaction (it also writes tags).
pub async fn insert_listing<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    provider_id: Uuid,
    provider_rating: i32,
    content: &ListingContent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut am = listings::ActiveModel {
        id: Set(id),
        provider_id: Set(provider_id),
        status: Set(ListingStatus::Draft.code().to_owned()),
        provider_rating: Set(provider_rating),
        version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    content_columns(content, &mut am)?;
    listings::Entity::insert(am).exec_without_returning(db).await?;
    replace_tags(db, id, content).await
}

/// Replaces a listing's content if it is still at `expected_version`.
pub async fn update_listing<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    expected_version: i32,
    content: &ListingContent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut am = listings::ActiveModel::default();
    content_columns(content, &mut am)?;
    am.version = Set(expected_version + 1);
    am.updated_at = Set(now);
    let result = listings::Entity::update_many()
        .set(am)
        .filter(listings::Column::Id.eq(id))
        .filter(listings::Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Err(StoreError::VersionConflict);
    }
    replace_tags(db, id, content).await
}

/// Moves a listing to `status` if it is still at `expected_version`.
pub async fn set_listing_status<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    expected_version: i32,
    status: ListingStatus,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let result = listings::Entity::update_many()
        .col_expr(listings::Column::Status, status.code().into())
        .col_expr(listings::Column::Version, (expected_version + 1).into())
        .col_expr(listings::Column::UpdatedAt, now.into())
        .filter(listings::Column::Id.eq(id))
        .filter(listings::Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Err(StoreError::VersionConflict);
    }
    Ok(())
}

pub async fn find_listing<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<ListingRecord>, StoreError> {
    listings::Entity::find_by_id(id).one(db).await?.map(TryInto::try_into).transpose()
}

pub async fn find_listings<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<Vec<ListingRecord>, StoreError> {
    listings::Entity::find()
        .filter(listings::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

// ---------------------------------------------------------------------------
// Discovery

/// Which listings a search returns. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct ListingFilter {
    /// Lower-cased words; a listing matches when its text contains every word.
    pub words: Vec<String>,
    pub category: Option<Category>,
    /// A listing matches when it carries every one of these tags.
    pub tags: Vec<String>,
    pub region: Option<String>,
    pub asset: Option<Asset>,
    pub price_min: Option<u64>,
    pub price_max: Option<u64>,
    pub provider_id: Option<Uuid>,
    /// Statuses to include; empty means active only.
    pub statuses: Vec<ListingStatus>,
}

/// How search results are ordered. Ties are broken by id, so every order is total
/// and cursors are stable even when rows are inserted between page fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingOrder {
    /// Newest first. Ids are UUIDv7, whose leading bits are the creation time,
    /// so ordering by id is ordering by creation.
    CreatedDesc,
    CreatedAsc,
    PriceAsc,
    PriceDesc,
    RatingDesc,
}

impl ListingOrder {
    /// The sort column besides the id, if any.
    fn key_column(self) -> Option<listings::Column> {
        match self {
            ListingOrder::CreatedDesc | ListingOrder::CreatedAsc => None,
            ListingOrder::PriceAsc | ListingOrder::PriceDesc => Some(listings::Column::Price),
            ListingOrder::RatingDesc => Some(listings::Column::ProviderRating),
        }
    }

    fn ascending(self) -> bool {
        matches!(self, ListingOrder::CreatedAsc | ListingOrder::PriceAsc)
    }

    /// The key value of `record` for this order (0 when the order is by id only).
    pub fn key_of(self, record: &ListingRecord) -> i64 {
        match self {
            ListingOrder::CreatedDesc | ListingOrder::CreatedAsc => 0,
            ListingOrder::PriceAsc | ListingOrder::PriceDesc => record.headline_price() as i64,
            ListingOrder::RatingDesc => i64::from(record.provider_rating),
        }
    }
}

/// A position in an ordering: the key value and the id of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    pub key: i64,
    pub id: Uuid,
}

/// One page of a search: rows after (forward) or before (backward) a position.
#[derive(Debug, Clone, Copy)]
pub enum PageWindow {
    Forward { after: Option<Keyset> },
    Backward { before: Option<Keyset> },
}

fn filter_condition(filter: &ListingFilter) -> Condition {
    let mut cond = Condition::all();
    if filter.statuses.is_empty() {
        cond = cond.add(listings::Column::Status.eq(ListingStatus::Active.code()));
    } else {
        cond = cond.add(listings::Column::Status.is_in(filter.statuses.iter().map(|s| s.code())));
    }
    for word in &filter.words {
        let escaped = word.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        cond = cond.add(
            Expr::col(listings::Column::SearchText)
                .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
        );
    }
    if let Some(category) = filter.category {
        cond = cond.add(listings::Column::Category.eq(category.code()));
    }
    if !filter.tags.is_empty() {
        let with_all_tags = Query::select()
            .column(listing_tags::Column::ListingId)
            .from(listing_tags::Entity)
            .and_where(listing_tags::Column::Tag.is_in(filter.tags.iter().cloned()))
            .group_by_col(listing_tags::Column::ListingId)
            .and_having(Expr::col(listing_tags::Column::Tag).count().eq(filter.tags.len() as i64))
            .to_owned();
        cond = cond.add(listings::Column::Id.in_subquery(with_all_tags));
    }
    if let Some(region) = &filter.region {
        cond = cond.add(listings::Column::Region.eq(region.as_str()));
    }
    if let Some(asset) = filter.asset {
        cond = cond.add(listings::Column::Asset.eq(asset.code()));
    }
    if let Some(min) = filter.price_min {
        cond = cond.add(listings::Column::Price.gte(i64::try_from(min).unwrap_or(i64::MAX)));
    }
    if let Some(max) = filter.price_max {
        cond = cond.add(listings::Column::Price.lte(i64::try_from(max).unwrap_or(i64::MAX)));
    }
    if let Some(provider) = filter.provider_id {
        cond = cond.add(listings::Column::ProviderId.eq(provider));
    }
    cond
}

/// Rows strictly beyond `pos` when scanning in direction `ascending`.
fn beyond(order: ListingOrder, pos: Keyset, ascending: bool) -> Condition {
    let id = listings::Column::Id;
    match order.key_column() {
        None => Condition::all().add(if ascending { id.gt(pos.id) } else { id.lt(pos.id) }),
        Some(key) => {
            let (strict, tie) = if ascending {
                (key.gt(pos.key), id.gt(pos.id))
            } else {
                (key.lt(pos.key), id.lt(pos.id))
            };
            Condition::any()
                .add(strict)
                .add(Condition::all().add(key.eq(pos.key)).add(tie))
        }
    }
}

/// Fetches up to `limit` rows of a page, in display order. Callers ask for one
/// more row than they show to learn whether another page exists.
pub async fn search_listings<C: ConnectionTrait>(
    db: &C,
    filter: &ListingFilter,
    order: ListingOrder,
    window: PageWindow,
    limit: u64,
) -> Result<Vec<ListingRecord>, StoreError> {
    let (position, scan_ascending) = match window {
        PageWindow::Forward { after } => (after, order.ascending()),
        PageWindow::Backward { before } => (before, !order.ascending()),
    };
    let mut cond = filter_condition(filter);
    if let Some(pos) = position {
        cond = cond.add(beyond(order, pos, scan_ascending));
    }
    let direction = if scan_ascending { Order::Asc } else { Order::Desc };
    let mut query = listings::Entity::find().filter(cond);
    if let Some(key) = order.key_column() {
        query = query.order_by(key, direction.clone());
    }
    let rows = query
        .order_by(listings::Column::Id, direction)
        .limit(limit)
        .all(db)
        .await?;
    let mut records = rows
        .into_iter()
        .map(TryInto::try_into)
        .collect::<Result<Vec<ListingRecord>, StoreError>>()?;
    if matches!(window, PageWindow::Backward { .. }) {
        records.reverse();
    }
    Ok(records)
}

pub async fn count_listings<C: ConnectionTrait>(
    db: &C,
    filter: &ListingFilter,
) -> Result<u64, StoreError> {
    Ok(listings::Entity::find().filter(filter_condition(filter)).count(db).await?)
}
