//! Listings: writes, look-ups and the discovery query with keyset pagination.

use agora_domain::listing::{Category, ListingContent, ListingStatus, Pricing};
use agora_domain::money::Asset;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType, Order,
    PaginatorTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Select,
};
use uuid::Uuid;

use crate::accounts::ProviderRecord;
use crate::entities::{listing_tags, listings, providers};
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
    /// The provider's profile, when the query that read the listing joined it
    /// (`search_listings` and `find_listing` with `with_provider`); `None` otherwise.
    pub provider: Option<ProviderRecord>,
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
            provider: None,
        })
    }
}

/// The listing columns reads select: every column but `search_text`, which only
/// the database's filter reads (it repeats title, description and tags).
const LISTING_COLUMNS: [listings::Column; 18] = [
    listings::Column::Id,
    listings::Column::ProviderId,
    listings::Column::Title,
    listings::Column::Description,
    listings::Column::Category,
    listings::Column::Tags,
    listings::Column::Region,
    listings::Column::Asset,
    listings::Column::PricingKind,
    listings::Column::Price,
    listings::Column::MeteredUnit,
    listings::Column::MinDeposit,
    listings::Column::DeliveryWindowHours,
    listings::Column::Status,
    listings::Column::ProviderRating,
    listings::Column::Version,
    listings::Column::CreatedAt,
    listings::Column::UpdatedAt,
];

/// The provider columns a joined read selects, with the alias each gets.
const PROVIDER_COLUMNS: [(providers::Column, &str); 9] = [
    (providers::Column::UserId, "p_user_id"),
    (providers::Column::DisplayName, "p_display_name"),
    (providers::Column::Bio, "p_bio"),
    (providers::Column::Region, "p_region"),
    (providers::Column::Languages, "p_languages"),
    (providers::Column::RatingMilli, "p_rating_milli"),
    (providers::Column::RatingCount, "p_rating_count"),
    (providers::Column::CreatedAt, "p_created_at"),
    (providers::Column::UpdatedAt, "p_updated_at"),
];

/// A select of listings with `LISTING_COLUMNS`, and with the provider joined in
/// the same statement when `with_provider` (so a page costs one round trip).
fn select_listings(with_provider: bool) -> Select<listings::Entity> {
    let mut query = listings::Entity::find().select_only().columns(LISTING_COLUMNS);
    if with_provider {
        // listings.provider_id references providers.user_id; the entities declare no
        // relations, so the join is spelled out here. LEFT, like the separate load it
        // replaces: a listing is returned even if its provider row were missing.
        let relation = listings::Entity::belongs_to(providers::Entity)
            .from(listings::Column::ProviderId)
            .to(providers::Column::UserId)
            .into();
        query = query.join(JoinType::LeftJoin, relation);
        for (column, alias) in PROVIDER_COLUMNS {
            query = query.column_as(column, alias);
        }
    }
    query
}

fn listing_from_row(row: &QueryResult, with_provider: bool) -> Result<ListingRecord, StoreError> {
    let model = listings::Model {
        id: row.try_get("", "id")?,
        provider_id: row.try_get("", "provider_id")?,
        title: row.try_get("", "title")?,
        description: row.try_get("", "description")?,
        category: row.try_get("", "category")?,
        tags: row.try_get("", "tags")?,
        region: row.try_get("", "region")?,
        asset: row.try_get("", "asset")?,
        pricing_kind: row.try_get("", "pricing_kind")?,
        price: row.try_get("", "price")?,
        metered_unit: row.try_get("", "metered_unit")?,
        min_deposit: row.try_get("", "min_deposit")?,
        delivery_window_hours: row.try_get("", "delivery_window_hours")?,
        status: row.try_get("", "status")?,
        search_text: String::new(),
        provider_rating: row.try_get("", "provider_rating")?,
        version: row.try_get("", "version")?,
        created_at: row.try_get("", "created_at")?,
        updated_at: row.try_get("", "updated_at")?,
    };
    let mut record = ListingRecord::try_from(model)?;
    if with_provider {
        let user_id: Option<Uuid> = row.try_get("", "p_user_id")?;
        if let Some(user_id) = user_id {
            let provider = providers::Model {
                user_id,
                display_name: row.try_get("", "p_display_name")?,
                bio: row.try_get("", "p_bio")?,
                region: row.try_get("", "p_region")?,
                languages: row.try_get("", "p_languages")?,
                rating_milli: row.try_get("", "p_rating_milli")?,
                rating_count: row.try_get("", "p_rating_count")?,
                created_at: row.try_get("", "p_created_at")?,
                updated_at: row.try_get("", "p_updated_at")?,
            };
            record.provider = Some(ProviderRecord::try_from(provider)?);
        }
    }
    Ok(record)
}

async fn fetch_listings<C: ConnectionTrait>(
    db: &C,
    query: Select<listings::Entity>,
    with_provider: bool,
) -> Result<Vec<ListingRecord>, StoreError> {
    let statement = query.build(db.get_database_backend());
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| listing_from_row(row, with_provider))
        .collect()
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
    find_listing_with(db, id, false).await
}

/// One listing, with its provider's profile in the same statement when `with_provider`.
pub async fn find_listing_with<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    with_provider: bool,
) -> Result<Option<ListingRecord>, StoreError> {
    let query = select_listings(with_provider).filter(listings::Column::Id.eq(id)).limit(1);
    Ok(fetch_listings(db, query, with_provider).await?.pop())
}

pub async fn find_listings<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<Vec<ListingRecord>, StoreError> {
    let query = select_listings(false).filter(listings::Column::Id.is_in(ids.iter().copied()));
    fetch_listings(db, query, false).await
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
/// more row than they show to learn whether another page exists. With
/// `with_provider`, each record carries its provider's profile, read in the same
/// statement.
pub async fn search_listings<C: ConnectionTrait>(
    db: &C,
    filter: &ListingFilter,
    order: ListingOrder,
    window: PageWindow,
    limit: u64,
    with_provider: bool,
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
    let mut query = select_listings(with_provider).filter(cond);
    if let Some(key) = order.key_column() {
        query = query.order_by(key, direction.clone());
    }
    let query = query.order_by(listings::Column::Id, direction).limit(limit);
    let mut records = fetch_listings(db, query, with_provider).await?;
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
