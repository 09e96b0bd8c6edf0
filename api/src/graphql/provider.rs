//! Providers: becoming one, the public profile, and a provider's listings.

use agora_domain::account::{ProviderProfile, Role};
use agora_persistence::accounts::{self, ProviderRecord};
use agora_persistence::listings::ListingFilter;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::context::{now, state, viewer};
use super::errors::{ApiError, ApiResult};
use super::listing::{listing_connection, ListingConnection, ListingOrderBy};
use super::loaders::ProviderLoader;
use super::reputation::{provider_reputation, reviews_of_provider, ProviderReputation, ReviewConnection};
use super::node::{expect, global_id, NodeType};

pub struct ProviderObject(pub ProviderRecord);

impl ProviderObject {
    /// Loads a provider through the request's DataLoader.
    pub async fn load(ctx: &Context<'_>, user_id: Uuid) -> ApiResult<Option<ProviderObject>> {
        let loader = ctx.data_unchecked::<DataLoader<ProviderLoader>>();
        let record = loader.load_one(user_id).await?;
        Ok(record.map(ProviderObject))
    }
}

/// A provider's stored score (see `Provider.reputation` for how it is made),
/// updated on every review and settlement. 0 with a count of 0 until the
/// provider has any input.
#[derive(SimpleObject)]
pub struct ProviderRating {
    /// Stars, 0.0–5.0, to the thousandth.
    pub score: f64,
    /// Reviews counted.
    pub count: i32,
}

#[Object(name = "Provider")]
impl ProviderObject {
    pub async fn id(&self) -> ID {
        global_id(NodeType::Provider, self.0.user_id)
    }

    async fn display_name(&self) -> &str {
        &self.0.display_name
    }

    async fn bio(&self) -> &str {
        &self.0.bio
    }

    async fn region(&self) -> &str {
        &self.0.region
    }

    async fn languages(&self) -> &[String] {
        &self.0.languages
    }

    async fn rating(&self) -> ProviderRating {
        ProviderRating {
            score: f64::from(self.0.rating_milli) / 1000.0,
            count: self.0.rating_count,
        }
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// The score behind `rating`, computed now, with the formula's constants
    /// and every input (reviews and dispute faults) so it can be explained.
    #[graphql(complexity = 20)]
    async fn reputation(&self, ctx: &Context<'_>) -> ApiResult<ProviderReputation> {
        provider_reputation(ctx, self.0.user_id).await
    }

    /// Reviews by the provider's buyers, newest first.
    #[graphql(complexity = "super::listing::page_complexity(first, None, child_complexity)")]
    async fn reviews(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> ApiResult<ReviewConnection> {
        reviews_of_provider(ctx, self.0.user_id, first, after).await
    }

    /// The provider's active listings.
    #[graphql(complexity = "super::listing::page_complexity(first, last, child_complexity)")]
    async fn listings(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] order_by: ListingOrderBy,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<ListingConnection> {
        let filter = ListingFilter {
            provider_id: Some(self.0.user_id),
            ..ListingFilter::default()
        };
        listing_connection(ctx, filter, order_by, first, after, last, before).await
    }
}

#[derive(InputObject)]
pub struct ProviderProfileInput {
    pub display_name: String,
    #[graphql(default)]
    pub bio: String,
    /// A region code such as `eu`, `us-west` or `global`.
    pub region: String,
    /// Language tags such as `en`, `pt-BR`.
    pub languages: Vec<String>,
}

#[derive(SimpleObject)]
pub struct ProviderPayload {
    pub provider: ProviderObject,
}

#[derive(Default)]
pub struct ProviderQuery;

#[Object]
impl ProviderQuery {
    async fn provider(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<ProviderObject>> {
        let id = expect(NodeType::Provider, &id, "id")?;
        ProviderObject::load(ctx, id).await
    }
}

#[derive(Default)]
pub struct ProviderMutation;

#[Object]
impl ProviderMutation {
    /// Creates the caller's provider profile and grants the provider role.
    async fn become_provider(&self, ctx: &Context<'_>, input: ProviderProfileInput) -> ApiResult<ProviderPayload> {
        let v = viewer(ctx).await?;
        if v.has(Role::Provider) {
            return Err(ApiError::Conflict(
                "you are already a provider; use updateProviderProfile".into(),
            ));
        }
        save_profile(ctx, v.user_id, &input, true).await
    }

    async fn update_provider_profile(
        &self,
        ctx: &Context<'_>,
        input: ProviderProfileInput,
    ) -> ApiResult<ProviderPayload> {
        let v = viewer(ctx).await?;
        v.require(Role::Provider)?;
        save_profile(ctx, v.user_id, &input, false).await
    }
}

async fn save_profile(
    ctx: &Context<'_>,
    user_id: Uuid,
    input: &ProviderProfileInput,
    grant: bool,
) -> ApiResult<ProviderPayload> {
    let profile = ProviderProfile::parse(&input.display_name, &input.bio, &input.region, &input.languages)
        .map_err(|e| ApiError::invalid("input", e))?;
    let db = &state(ctx).db;
    let now = now();
    let txn = db.begin().await?;
    accounts::upsert_provider(&txn, user_id, &profile, now).await?;
    if grant {
        accounts::grant_role(&txn, user_id, Role::Provider, None, now).await?;
    }
    txn.commit().await?;
    let record = accounts::find_providers(db, &[user_id])
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("saved provider profile vanished"))?;
    Ok(ProviderPayload {
        provider: ProviderObject(record),
    })
}
