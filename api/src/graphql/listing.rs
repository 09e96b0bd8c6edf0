//! Listings: the offering type, discovery with cursor pagination, and the
//! provider's mutations (create, update, publish, pause, archive).

use agora_domain::account::Role;
use agora_domain::listing::{
    Category, ListingAction, ListingContent, ListingContentInput, ListingStatus, MeteredUnit,
    PricingInput as DomainPricingInput, Tag,
};
use agora_domain::money::Asset;
use agora_persistence::listings::{
    self, Keyset, ListingFilter, ListingOrder, ListingRecord, PageWindow, StoredPricing,
};
use agora_persistence::{accounts, StoreError};
use async_graphql::dataloader::DataLoader;
use async_graphql::{
    ComplexObject, Context, Enum, InputObject, Object, OneofObject, SimpleObject, Union, ID,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::context::{now, optional_viewer, state, viewer, Viewer};
use super::errors::{ApiError, ApiResult};
use super::loaders::ListingLoader;
use super::node::{expect, global_id, NodeType};
use super::provider::ProviderObject;
use super::scalars::MinorUnits;

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;
const MAX_SEARCH_WORDS: usize = 8;
const MAX_SEARCH_CHARS: usize = 200;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Asset")]
pub enum AssetGql {
    /// Bitcoin; amounts in satoshis.
    Btc,
    /// XRP; amounts in drops.
    Xrp,
}

impl From<AssetGql> for Asset {
    fn from(a: AssetGql) -> Self {
        match a {
            AssetGql::Btc => Asset::Btc,
            AssetGql::Xrp => Asset::Xrp,
        }
    }
}

impl From<Asset> for AssetGql {
    fn from(a: Asset) -> Self {
        match a {
            Asset::Btc => AssetGql::Btc,
            Asset::Xrp => AssetGql::Xrp,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ListingStatus")]
pub enum ListingStatusGql {
    Draft,
    Active,
    Paused,
    Archived,
}

impl From<ListingStatus> for ListingStatusGql {
    fn from(s: ListingStatus) -> Self {
        match s {
            ListingStatus::Draft => ListingStatusGql::Draft,
            ListingStatus::Active => ListingStatusGql::Active,
            ListingStatus::Paused => ListingStatusGql::Paused,
            ListingStatus::Archived => ListingStatusGql::Archived,
        }
    }
}

impl From<ListingStatusGql> for ListingStatus {
    fn from(s: ListingStatusGql) -> Self {
        match s {
            ListingStatusGql::Draft => ListingStatus::Draft,
            ListingStatusGql::Active => ListingStatus::Active,
            ListingStatusGql::Paused => ListingStatus::Paused,
            ListingStatusGql::Archived => ListingStatus::Archived,
        }
    }
}

/// Orderings of listings. Every ordering breaks ties by id, so pages never
/// overlap or skip rows, even while listings are being added.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
pub enum ListingOrderBy {
    /// Newest first.
    #[default]
    CreatedDesc,
    CreatedAsc,
    /// By the fixed price or the price per unit.
    PriceAsc,
    PriceDesc,
    /// Best-rated providers first.
    RatingDesc,
}

impl From<ListingOrderBy> for ListingOrder {
    fn from(o: ListingOrderBy) -> Self {
        match o {
            ListingOrderBy::CreatedDesc => ListingOrder::CreatedDesc,
            ListingOrderBy::CreatedAsc => ListingOrder::CreatedAsc,
            ListingOrderBy::PriceAsc => ListingOrder::PriceAsc,
            ListingOrderBy::PriceDesc => ListingOrder::PriceDesc,
            ListingOrderBy::RatingDesc => ListingOrder::RatingDesc,
        }
    }
}

fn order_code(o: ListingOrder) -> &'static str {
    match o {
        ListingOrder::CreatedDesc => "cd",
        ListingOrder::CreatedAsc => "ca",
        ListingOrder::PriceAsc => "pa",
        ListingOrder::PriceDesc => "pd",
        ListingOrder::RatingDesc => "rd",
    }
}

#[derive(SimpleObject)]
pub struct FixedPricing {
    pub asset: AssetGql,
    pub amount: MinorUnits,
}

#[derive(SimpleObject)]
pub struct MeteredPricing {
    pub asset: AssetGql,
    /// minute, hour, megabyte, gigabyte or job.
    pub unit: String,
    pub price_per_unit: MinorUnits,
    /// The smallest deposit a buyer can fund a session with.
    pub min_deposit: MinorUnits,
}

#[derive(Union)]
pub enum Pricing {
    Fixed(FixedPricing),
    Metered(MeteredPricing),
}

/// An offering by a provider.
pub struct ListingObject(pub ListingRecord);

#[Object(name = "Listing")]
impl ListingObject {
    pub async fn id(&self) -> ID {
        global_id(NodeType::Listing, self.0.id)
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    /// One of the codes listed by `categories`.
    async fn category(&self) -> &'static str {
        self.0.category.code()
    }

    async fn tags(&self) -> &[String] {
        &self.0.tags
    }

    async fn region(&self) -> &str {
        &self.0.region
    }

    async fn asset(&self) -> AssetGql {
        self.0.asset.into()
    }

    async fn pricing(&self) -> Pricing {
        let asset = self.0.asset.into();
        match &self.0.pricing {
            StoredPricing::Fixed { amount } => Pricing::Fixed(FixedPricing {
                asset,
                amount: (*amount).into(),
            }),
            StoredPricing::Metered {
                unit,
                price_per_unit,
                min_deposit,
            } => Pricing::Metered(MeteredPricing {
                asset,
                unit: unit.clone(),
                price_per_unit: (*price_per_unit).into(),
                min_deposit: (*min_deposit).into(),
            }),
        }
    }

    /// Hours the provider has to deliver after the order is funded.
    async fn delivery_window_hours(&self) -> u32 {
        self.0.delivery_window_hours
    }

    async fn status(&self) -> ListingStatusGql {
        self.0.status.into()
    }

    async fn provider(&self, ctx: &Context<'_>) -> ApiResult<ProviderObject> {
        // Pages and `listing(id)` read the provider in the same statement as the listing.
        if let Some(provider) = &self.0.provider {
            return Ok(ProviderObject(provider.clone()));
        }
        ProviderObject::load(ctx, self.0.provider_id)
            .await?
            .ok_or_else(|| ApiError::internal("listing without provider"))
    }

    /// Increments on every change; pass it back as `expectedVersion` to make
    /// sure you are not overwriting someone else's edit.
    async fn version(&self) -> i32 {
        self.0.version
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct ListingEdge {
    pub cursor: String,
    pub node: ListingObject,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ListingConnection {
    pub edges: Vec<ListingEdge>,
    pub page_info: PageInfo,
    #[graphql(skip)]
    filter: ListingFilter,
}

#[ComplexObject]
impl ListingConnection {
    /// All matching listings; counted only when this field is selected.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        Ok(listings::count_listings(&state(ctx).db, &self.filter).await?)
    }
}

/// Complexity of a page of `first`/`last` items.
pub fn page_complexity(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let size = first.or(last).unwrap_or(DEFAULT_PAGE_SIZE).clamp(0, MAX_PAGE_SIZE);
    1 + size as usize * child_complexity
}

fn encode_cursor(order: ListingOrder, record: &ListingRecord) -> String {
    let raw = format!("{}|{}|{}", order_code(order), order.key_of(record), record.id);
    URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(order: ListingOrder, cursor: &str, field: &str) -> ApiResult<Keyset> {
    let invalid = || ApiError::bad_input(field, "INVALID_CURSOR", format!("{field}: not a cursor of this connection"));
    let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let mut parts = raw.splitn(3, '|');
    let (Some(code), Some(key), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if code != order_code(order) {
        return Err(ApiError::bad_input(
            field,
            "CURSOR_ORDER_MISMATCH",
            format!("{field}: the cursor belongs to another ordering; start again from the first page"),
        ));
    }
    Ok(Keyset {
        key: key.parse().map_err(|_| invalid())?,
        id: Uuid::parse_str(id).map_err(|_| invalid())?,
    })
}

fn page_size(value: Option<i32>, field: &str) -> ApiResult<Option<u64>> {
    match value {
        None => Ok(None),
        Some(n) if (0..=MAX_PAGE_SIZE).contains(&n) => Ok(Some(n as u64)),
        Some(_) => Err(ApiError::bad_input(
            field,
            "OUT_OF_RANGE",
            format!("{field}: must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// Runs a paginated listing search. Shared by `listings`, `myListings` and
/// `Provider.listings`.
pub async fn listing_connection(
    ctx: &Context<'_>,
    filter: ListingFilter,
    order_by: ListingOrderBy,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> ApiResult<ListingConnection> {
    let order = ListingOrder::from(order_by);
    let first = page_size(first, "first")?;
    let last = page_size(last, "last")?;
    let backward = last.is_some() || before.is_some();
    if backward && (first.is_some() || after.is_some()) {
        return Err(ApiError::bad_input(
            "last",
            "INCONSISTENT",
            "paginate either forwards (first/after) or backwards (last/before), not both",
        ));
    }
    let db = &state(ctx).db;
    let (window, size) = if backward {
        let before = before.map(|c| decode_cursor(order, &c, "before")).transpose()?;
        (PageWindow::Backward { before }, last.unwrap_or(DEFAULT_PAGE_SIZE as u64))
    } else {
        let after = after.map(|c| decode_cursor(order, &c, "after")).transpose()?;
        (PageWindow::Forward { after }, first.unwrap_or(DEFAULT_PAGE_SIZE as u64))
    };
    // Join the provider into the page's statement only when the selection asks for it.
    let with_provider = ctx.look_ahead().field("edges").field("node").field("provider").exists();
    let mut rows = listings::search_listings(db, &filter, order, window, size + 1, with_provider).await?;
    let more = rows.len() as u64 > size;
    if more {
        // The extra row is the one furthest from the cursor.
        if backward {
            rows.remove(0);
        } else {
            rows.pop();
        }
    }
    let edges: Vec<ListingEdge> = rows
        .into_iter()
        .map(|r| ListingEdge {
            cursor: encode_cursor(order, &r),
            node: ListingObject(r),
        })
        .collect();
    let page_info = match window {
        PageWindow::Forward { after } => PageInfo {
            has_next_page: more,
            has_previous_page: after.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        PageWindow::Backward { before } => PageInfo {
            has_next_page: before.is_some(),
            has_previous_page: more,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
    };
    Ok(ListingConnection {
        edges,
        page_info,
        filter,
    })
}

#[derive(InputObject, Default)]
#[graphql(name = "ListingFilter")]
pub struct ListingFilterInput {
    /// Words that must all appear in the title, description or tags (case-insensitive).
    pub text: Option<String>,
    pub category: Option<String>,
    /// Listings carrying all of these tags.
    pub tags: Option<Vec<String>>,
    pub region: Option<String>,
    pub asset: Option<AssetGql>,
    /// Lower bound of the fixed price or price per unit, in minor units.
    pub price_min: Option<MinorUnits>,
    pub price_max: Option<MinorUnits>,
    pub provider_id: Option<ID>,
}

fn parse_bound(field: &str, value: &MinorUnits) -> ApiResult<u64> {
    value.0.trim().parse::<u64>().map_err(|_| {
        ApiError::bad_input(
            field,
            "INVALID_FORMAT",
            format!("{field}: must be a non-negative integer number of minor units"),
        )
    })
}

impl ListingFilterInput {
    fn parse(self) -> ApiResult<ListingFilter> {
        let mut filter = ListingFilter::default();
        if let Some(text) = self.text {
            if text.chars().count() > MAX_SEARCH_CHARS {
                return Err(ApiError::bad_input(
                    "filter.text",
                    "TOO_LONG",
                    format!("filter.text: at most {MAX_SEARCH_CHARS} characters"),
                ));
            }
            filter.words = text.to_lowercase().split_whitespace().map(str::to_owned).collect();
            if filter.words.len() > MAX_SEARCH_WORDS {
                return Err(ApiError::bad_input(
                    "filter.text",
                    "TOO_MANY",
                    format!("filter.text: at most {MAX_SEARCH_WORDS} words"),
                ));
            }
        }
        if let Some(category) = self.category {
            filter.category = Some(Category::parse(&category).map_err(|e| ApiError::invalid("filter", e))?);
        }
        if let Some(tags) = self.tags {
            filter.tags = Tag::parse_list(&tags)
                .map_err(|e| ApiError::invalid("filter", e))?
                .into_iter()
                .map(|t| t.as_str().to_owned())
                .collect();
        }
        if let Some(region) = self.region {
            filter.region = Some(
                agora_domain::account::Region::parse(&region)
                    .map_err(|e| ApiError::invalid("filter", e))?
                    .as_str()
                    .to_owned(),
            );
        }
        filter.asset = self.asset.map(Asset::from);
        filter.price_min = self.price_min.as_ref().map(|v| parse_bound("filter.priceMin", v)).transpose()?;
        filter.price_max = self.price_max.as_ref().map(|v| parse_bound("filter.priceMax", v)).transpose()?;
        if let (Some(min), Some(max)) = (filter.price_min, filter.price_max) {
            if min > max {
                return Err(ApiError::bad_input(
                    "filter.priceMin",
                    "INCONSISTENT",
                    "filter.priceMin: is above filter.priceMax",
                ));
            }
        }
        filter.provider_id = self
            .provider_id
            .map(|id| expect(NodeType::Provider, &id, "filter.providerId"))
            .transpose()?;
        Ok(filter)
    }
}

#[derive(InputObject)]
pub struct FixedPricingInput {
    /// The asset the amount is in; must be the listing's asset.
    pub asset: AssetGql,
    pub amount: MinorUnits,
}

#[derive(InputObject)]
pub struct MeteredPricingInput {
    pub asset: AssetGql,
    /// minute, hour, megabyte, gigabyte or job.
    pub unit: String,
    pub price_per_unit: MinorUnits,
    pub min_deposit: MinorUnits,
}

/// Exactly one of `fixed` or `metered`.
#[derive(OneofObject)]
pub enum PricingInput {
    Fixed(FixedPricingInput),
    Metered(MeteredPricingInput),
}

impl From<&PricingInput> for DomainPricingInput {
    fn from(p: &PricingInput) -> Self {
        match p {
            PricingInput::Fixed(f) => DomainPricingInput::Fixed {
                asset: f.asset.into(),
                amount: f.amount.0.clone(),
            },
            PricingInput::Metered(m) => DomainPricingInput::Metered {
                asset: m.asset.into(),
                unit: m.unit.clone(),
                price_per_unit: m.price_per_unit.0.clone(),
                min_deposit: m.min_deposit.0.clone(),
            },
        }
    }
}

#[derive(InputObject)]
pub struct CreateListingInput {
    pub title: String,
    pub description: String,
    /// One of the codes listed by `categories`.
    pub category: String,
    #[graphql(default)]
    pub tags: Vec<String>,
    pub region: String,
    pub asset: AssetGql,
    pub pricing: PricingInput,
    pub delivery_window_hours: i64,
    /// Publish at once instead of saving a draft.
    #[graphql(default)]
    pub publish: bool,
}

/// Only the fields given change; the result is validated as a whole.
#[derive(InputObject)]
pub struct UpdateListingInput {
    pub id: ID,
    /// Fails with CONFLICT when the listing changed since this version.
    pub expected_version: Option<i32>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub tags: Option<Vec<String>>,
    pub region: Option<String>,
    pub asset: Option<AssetGql>,
    pub pricing: Option<PricingInput>,
    pub delivery_window_hours: Option<i64>,
}

#[derive(InputObject)]
pub struct ChangeListingStatusInput {
    pub id: ID,
    pub expected_version: Option<i32>,
}

#[derive(SimpleObject)]
pub struct ListingPayload {
    pub listing: ListingObject,
}

/// Whether `viewer` may see `listing`: active listings are public, the rest
/// only to their provider and admins.
pub fn may_see_listing(viewer: Option<&Viewer>, listing: &ListingRecord) -> bool {
    listing.status == ListingStatus::Active
        || viewer.is_some_and(|v| v.user_id == listing.provider_id || v.has(Role::Admin))
}

pub async fn load_listing_node(ctx: &Context<'_>, id: Uuid) -> ApiResult<Option<ListingObject>> {
    let loader = ctx.data_unchecked::<DataLoader<ListingLoader>>();
    let Some(record) = loader.load_one(id).await? else {
        return Ok(None);
    };
    visible_listing(ctx, record).await
}

/// The listing if the caller may see it (see `may_see_listing`), else `None`.
async fn visible_listing(ctx: &Context<'_>, record: ListingRecord) -> ApiResult<Option<ListingObject>> {
    if record.status != ListingStatus::Active {
        let v = optional_viewer(ctx).await?;
        if !may_see_listing(v.as_ref(), &record) {
            return Ok(None);
        }
    }
    Ok(Some(ListingObject(record)))
}

#[derive(Default)]
pub struct ListingQuery;

#[Object]
impl ListingQuery {
    async fn listing(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<ListingObject>> {
        let id = expect(NodeType::Listing, &id, "id")?;
        // One statement for the listing and, when selected, its provider, instead of
        // two batched loads (each waiting for its batch to fill).
        let with_provider = ctx.look_ahead().field("provider").exists();
        let Some(record) = listings::find_listing_with(&state(ctx).db, id, with_provider).await? else {
            return Ok(None);
        };
        visible_listing(ctx, record).await
    }

    /// Search active listings.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn listings(
        &self,
        ctx: &Context<'_>,
        filter: Option<ListingFilterInput>,
        #[graphql(default)] order_by: ListingOrderBy,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<ListingConnection> {
        let filter = filter.unwrap_or_default().parse()?;
        listing_connection(ctx, filter, order_by, first, after, last, before).await
    }

    /// The caller's own listings in any status (all statuses when `status` is empty).
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn my_listings(
        &self,
        ctx: &Context<'_>,
        status: Option<Vec<ListingStatusGql>>,
        #[graphql(default)] order_by: ListingOrderBy,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<ListingConnection> {
        let v = viewer(ctx).await?;
        let statuses = match status {
            Some(s) if !s.is_empty() => s.into_iter().map(ListingStatus::from).collect(),
            _ => vec![
                ListingStatus::Draft,
                ListingStatus::Active,
                ListingStatus::Paused,
                ListingStatus::Archived,
            ],
        };
        let filter = ListingFilter {
            provider_id: Some(v.user_id),
            statuses,
            ..ListingFilter::default()
        };
        listing_connection(ctx, filter, order_by, first, after, last, before).await
    }

    /// The category codes a listing can have.
    async fn categories(&self) -> Vec<&'static str> {
        Category::ALL.iter().map(|c| c.code()).collect()
    }

    /// The units a metered listing can be billed in.
    async fn metered_units(&self) -> Vec<&'static str> {
        MeteredUnit::ALL.iter().map(|u| u.code()).collect()
    }
}

#[derive(Default)]
pub struct ListingMutation;

#[Object]
impl ListingMutation {
    /// Providers only: creates a listing (a draft unless `publish` is true).
    async fn create_listing(&self, ctx: &Context<'_>, input: CreateListingInput) -> ApiResult<ListingPayload> {
        let v = viewer(ctx).await?;
        v.require(Role::Provider)?;
        let content = ListingContent::parse(&ListingContentInput {
            title: input.title,
            description: input.description,
            category: input.category,
            tags: input.tags,
            region: input.region,
            asset: input.asset.into(),
            pricing: (&input.pricing).into(),
            delivery_window_hours: input.delivery_window_hours,
        })
        .map_err(|e| ApiError::invalid("input", e))?;
        let db = &state(ctx).db;
        let provider = accounts::find_providers(db, &[v.user_id])
            .await?
            .pop()
            .ok_or_else(|| ApiError::Forbidden("create your provider profile first (becomeProvider)".into()))?;
        let id = Uuid::now_v7();
        let now = now();
        let txn = db.begin().await?;
        listings::insert_listing(&txn, id, v.user_id, provider.rating_milli, &content, now).await?;
        if input.publish {
            listings::set_listing_status(&txn, id, 0, ListingStatus::Active, now).await?;
        }
        txn.commit().await?;
        tracing::info!(listing.id = %id, provider.id = %v.user_id, "listing created");
        reload(db, id).await
    }

    /// The listing's provider only.
    async fn update_listing(&self, ctx: &Context<'_>, input: UpdateListingInput) -> ApiResult<ListingPayload> {
        let v = viewer(ctx).await?;
        let current = owned_listing(ctx, &v, &input.id, input.expected_version).await?;
        current
            .status
            .apply(ListingAction::Update)
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        let asset = input.asset.map(Asset::from).unwrap_or(current.asset);
        let pricing = match &input.pricing {
            Some(p) => p.into(),
            None => stored_pricing_input(current.asset, &current.pricing),
        };
        let content = ListingContent::parse(&ListingContentInput {
            title: input.title.unwrap_or(current.title),
            description: input.description.unwrap_or(current.description),
            category: input.category.unwrap_or_else(|| current.category.code().to_owned()),
            tags: input.tags.unwrap_or(current.tags),
            region: input.region.unwrap_or(current.region),
            asset,
            pricing,
            delivery_window_hours: input
                .delivery_window_hours
                .unwrap_or(i64::from(current.delivery_window_hours)),
        })
        .map_err(|e| ApiError::invalid("input", e))?;
        let db = &state(ctx).db;
        let txn = db.begin().await?;
        listings::update_listing(&txn, current.id, current.version, &content, now()).await?;
        txn.commit().await?;
        reload(db, current.id).await
    }

    /// Makes a draft or paused listing visible and orderable.
    async fn publish_listing(&self, ctx: &Context<'_>, input: ChangeListingStatusInput) -> ApiResult<ListingPayload> {
        change_status(ctx, input, ListingAction::Publish).await
    }

    /// Hides an active listing from search until it is published again.
    async fn pause_listing(&self, ctx: &Context<'_>, input: ChangeListingStatusInput) -> ApiResult<ListingPayload> {
        change_status(ctx, input, ListingAction::Pause).await
    }

    /// Retires a listing for good.
    async fn archive_listing(&self, ctx: &Context<'_>, input: ChangeListingStatusInput) -> ApiResult<ListingPayload> {
        change_status(ctx, input, ListingAction::Archive).await
    }
}

fn stored_pricing_input(asset: Asset, pricing: &StoredPricing) -> DomainPricingInput {
    match pricing {
        StoredPricing::Fixed { amount } => DomainPricingInput::Fixed {
            asset,
            amount: amount.to_string(),
        },
        StoredPricing::Metered {
            unit,
            price_per_unit,
            min_deposit,
        } => DomainPricingInput::Metered {
            asset,
            unit: unit.clone(),
            price_per_unit: price_per_unit.to_string(),
            min_deposit: min_deposit.to_string(),
        },
    }
}

/// Loads a listing the caller owns, checking the expected version if given.
async fn owned_listing(
    ctx: &Context<'_>,
    v: &Viewer,
    id: &ID,
    expected_version: Option<i32>,
) -> ApiResult<ListingRecord> {
    let id = expect(NodeType::Listing, id, "input.id")?;
    let record = listings::find_listing(&state(ctx).db, id)
        .await?
        .filter(|r| may_see_listing(Some(v), r))
        .ok_or_else(|| ApiError::NotFound("no such listing".into()))?;
    if record.provider_id != v.user_id {
        return Err(ApiError::Forbidden("only the listing's provider can change it".into()));
    }
    if let Some(expected) = expected_version {
        if expected != record.version {
            return Err(ApiError::Conflict(format!(
                "the listing is at version {}, not {expected}; reload it",
                record.version
            )));
        }
    }
    Ok(record)
}

async fn change_status(
    ctx: &Context<'_>,
    input: ChangeListingStatusInput,
    action: ListingAction,
) -> ApiResult<ListingPayload> {
    let v = viewer(ctx).await?;
    let current = owned_listing(ctx, &v, &input.id, input.expected_version).await?;
    let next = current.status.apply(action).map_err(|e| ApiError::Conflict(e.to_string()))?;
    let db = &state(ctx).db;
    listings::set_listing_status(db, current.id, current.version, next, now()).await?;
    tracing::info!(listing.id = %current.id, status = next.code(), "listing status changed");
    reload(db, current.id).await
}

async fn reload(db: &sea_orm::DatabaseConnection, id: Uuid) -> ApiResult<ListingPayload> {
    let record = listings::find_listing(db, id)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(ListingPayload {
        listing: ListingObject(record),
    })
}
