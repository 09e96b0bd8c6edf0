//! The GraphQL schema: one Query/Mutation object per aggregate, merged here.

pub mod account;
pub mod channel;
pub mod context;
pub mod dispute;
pub mod documents;
pub mod errors;
pub mod follow;
pub mod guard;
pub mod listing;
pub mod loaders;
pub mod metered;
pub mod node;
pub mod notification;
pub mod order;
pub mod provider;
pub mod reputation;
pub mod scalars;
pub mod subscription;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Interface, MergedObject, Object, Schema, ID};

use self::subscription::Subscription;

use self::account::{AccountMutation, AccountQuery, UserObject};
use self::context::AppState;
use self::errors::ApiResult;
use self::listing::{ListingMutation, ListingObject, ListingQuery};
use self::dispute::{DisputeMutation, DisputeObject, DisputeQuery};
use self::order::{OrderMutation, OrderObject, OrderQuery};
use self::loaders::{ArbitratorSignaturesLoader, ListingLoader, OrderEventsLoader, ProviderLoader};
use self::node::NodeType;
use self::channel::ChannelMutation;
use self::metered::{MeteredMutation, MeteredQuery};
use self::notification::{NotificationMutation, NotificationQuery};
use self::provider::{ProviderMutation, ProviderObject, ProviderQuery};
use self::reputation::{ReputationMutation, ReputationQuery};
use crate::config::GraphqlSettings;

/// Anything with a global id.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    User(UserObject),
    Provider(ProviderObject),
    Listing(ListingObject),
    Order(OrderObject),
    Dispute(DisputeObject),
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Fetches any object by its global id; null when it does not exist or is
    /// not visible to the caller.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Node>> {
        load_node(ctx, &id).await
    }

    /// Fetches several objects by global id, in order (at most 100).
    #[graphql(complexity = "ids.len() * child_complexity")]
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> ApiResult<Vec<Option<Node>>> {
        if ids.len() > 100 {
            return Err(errors::ApiError::bad_input("ids", "TOO_MANY", "ids: at most 100"));
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            out.push(load_node(ctx, id).await?);
        }
        Ok(out)
    }
}

async fn load_node(ctx: &Context<'_>, id: &ID) -> ApiResult<Option<Node>> {
    let Some((kind, uuid)) = node::decode(id) else {
        return Ok(None);
    };
    Ok(match kind {
        NodeType::User => account::load_user_node(ctx, uuid).await?.map(Node::User),
        NodeType::Provider => ProviderObject::load(ctx, uuid).await?.map(Node::Provider),
        NodeType::Listing => listing::load_listing_node(ctx, uuid).await?.map(Node::Listing),
        NodeType::Order => order::load_order_node(ctx, uuid).await?.map(Node::Order),
        NodeType::Dispute => dispute::load_dispute_node(ctx, uuid).await?.map(Node::Dispute),
        NodeType::EscrowKey => None,
    })
}

#[derive(MergedObject, Default)]
pub struct Query(NodeQuery, AccountQuery, ProviderQuery, ListingQuery, OrderQuery, DisputeQuery, NotificationQuery, ReputationQuery, MeteredQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(
    AccountMutation,
    ProviderMutation,
    ListingMutation,
    OrderMutation,
    DisputeMutation,
    NotificationMutation,
    ReputationMutation,
    MeteredMutation,
    ChannelMutation,
);

pub type AgoraSchema = Schema<Query, Mutation, Subscription>;

/// The schema with its limits, without runtime state (for `agora schema`).
pub fn builder(settings: &GraphqlSettings, introspection: bool) -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    let mut builder = Schema::build(Query::default(), Mutation::default(), Subscription)
        .limit_depth(settings.depth_limit)
        .limit_complexity(settings.complexity_limit)
        .limit_recursive_depth(32)
        .limit_directives(50);
    if !introspection {
        builder = builder.disable_introspection();
    }
    builder
}

/// The schema wired to the application's state. Without `suggestions`,
/// validation errors do not offer "did you mean" names (they reveal the schema).
pub fn build(state: Arc<AppState>, settings: &GraphqlSettings, introspection: bool, suggestions: bool) -> AgoraSchema {
    let db = state.db.clone();
    let mut builder = builder(settings, introspection).extension(crate::metrics::GraphqlMetrics(state.metrics.clone()));
    if !suggestions {
        builder = builder.disable_suggestions();
    }
    builder
        .data(state)
        .data(DataLoader::new(ProviderLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(ListingLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(OrderEventsLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(ArbitratorSignaturesLoader(db), tokio::spawn))
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder(&crate::config::Settings::default().graphql, true).finish().sdl()
}
