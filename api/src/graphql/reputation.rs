//! Reputation over GraphQL: reviews, a provider's explainable score, and a
//! buyer's record.

use agora_domain::account::Role;
use agora_domain::escrow::Party;
use agora_domain::reputation::{InputKind, ProviderScore, REVIEW_EDIT_WINDOW_DAYS};
use agora_domain::money::Asset;
use agora_persistence::reviews::{self as review_store, ReviewRecord};
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, SimpleObject, ID};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::context::{optional_viewer, state, viewer};
use super::errors::{ApiError, ApiResult};
use super::listing::{AssetGql, PageInfo};
use super::node::{expect, global_id, NodeType};
use super::scalars::MinorUnits;
use crate::reputation::review::{submit_review, update_review, SubmitReview, UpdateReview};
use crate::reputation::{compute_buyer_record, compute_provider_score};

/// Review ids look like the other global ids (`base64("Review:<uuid>")`).
pub fn review_id(id: Uuid) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("Review:{id}")))
}

fn parse_review_id(id: &str, field: &str) -> ApiResult<Uuid> {
    URL_SAFE_NO_PAD
        .decode(id.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|raw| raw.strip_prefix("Review:").and_then(|u| Uuid::parse_str(u).ok()))
        .ok_or_else(|| ApiError::bad_input(field, "INVALID_FORMAT", format!("{field}: not a review id")))
}

/// Which side of the order wrote a review.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ReviewAuthor {
    /// The buyer, reviewing the provider.
    Buyer,
    /// The provider, reviewing the buyer.
    Provider,
}

impl From<Party> for ReviewAuthor {
    fn from(p: Party) -> Self {
        match p {
            Party::Buyer => ReviewAuthor::Buyer,
            Party::Provider => ReviewAuthor::Provider,
        }
    }
}

/// A review of one side of a settled order by the other.
pub struct ReviewObject(pub ReviewRecord);

#[Object(name = "Review")]
impl ReviewObject {
    async fn id(&self) -> ID {
        review_id(self.0.id)
    }

    async fn order_id(&self) -> ID {
        global_id(NodeType::Order, self.0.order_id)
    }

    async fn author(&self) -> ReviewAuthor {
        self.0.side.into()
    }

    /// 1–5 stars.
    async fn rating(&self) -> i32 {
        i32::from(self.0.rating)
    }

    async fn text(&self) -> Option<&str> {
        self.0.text.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// The author can edit the review until then.
    async fn editable_until(&self) -> DateTime<Utc> {
        self.0.editable_until
    }
}

#[derive(SimpleObject)]
pub struct ReviewEdge {
    pub cursor: String,
    pub node: ReviewObject,
}

#[derive(SimpleObject)]
pub struct ReviewConnection {
    pub edges: Vec<ReviewEdge>,
    pub page_info: PageInfo,
}

/// A provider's reviews by its buyers, newest first.
pub async fn reviews_of_provider(
    ctx: &Context<'_>,
    provider_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<ReviewConnection> {
    let first = first.unwrap_or(10);
    if !(0..=100).contains(&first) {
        return Err(ApiError::bad_input("first", "OUT_OF_RANGE", "first: must be between 0 and 100"));
    }
    let after = after.map(|c| parse_review_id(&c, "after")).transpose()?;
    let mut rows =
        review_store::reviews_about(&state(ctx).db, provider_id, Party::Buyer, after, Some(first as u64 + 1)).await?;
    let has_next_page = rows.len() > first as usize;
    rows.truncate(first as usize);
    let edges: Vec<ReviewEdge> = rows
        .into_iter()
        .map(|r| ReviewEdge {
            cursor: review_id(r.id).0,
            node: ReviewObject(r),
        })
        .collect();
    Ok(ReviewConnection {
        page_info: PageInfo {
            has_next_page,
            has_previous_page: after.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        edges,
    })
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ReputationInputKind {
    /// A buyer's review of a settled order.
    Review,
    /// A settled order that went against the provider (an arbitrated split
    /// giving it less than half, or a refund for a missed delivery
    /// deadline), counted as an extra 1-star observation.
    DisputeFault,
}

/// One input of a provider's score, with its weights and its share.
#[derive(SimpleObject)]
pub struct ReputationInput {
    pub kind: ReputationInputKind,
    pub order_id: ID,
    /// The stars observed: the review's rating, or 1 for a dispute fault.
    pub rating: i32,
    pub asset: AssetGql,
    /// The order's amount due, in minor units.
    pub value: MinorUnits,
    /// `clamp(sqrt(value / reference(asset)), min, max)`.
    pub weight_value: f64,
    /// `0.5 ^ (ageDays / halfLifeDays)`, age counted from `at`.
    pub weight_recency: f64,
    /// `weightValue × weightRecency`.
    pub weight: f64,
    /// Stars this input adds to (or takes from) the prior mean:
    /// `weight × (rating − prior.mean) / (prior.weight + Σ weight)`.
    pub contribution: f64,
    /// When the order settled.
    pub at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct ReputationPrior {
    /// `m`: the score of a provider without history, in stars.
    pub mean: f64,
    /// `C`: how many fresh orders of one reference value the prior is worth.
    pub weight: f64,
}

/// The amount of an asset that weighs 1.
#[derive(SimpleObject)]
#[graphql(name = "ValueReference")]
pub struct ValueReferenceGql {
    pub asset: AssetGql,
    pub amount: MinorUnits,
}

/// A provider's score and everything it is computed from, at `computedAt`.
#[derive(SimpleObject)]
pub struct ProviderReputation {
    /// Stars (0–5); null while the provider has no inputs.
    pub score: Option<f64>,
    /// The score in thousandths of a star, as listings are ordered by (0 without inputs).
    pub score_milli: i32,
    /// Reviews by buyers of settled orders.
    pub review_count: i32,
    /// Settled orders held against the provider (`DISPUTE_FAULT` inputs).
    pub fault_count: i32,
    pub prior: ReputationPrior,
    /// An input's recency weight halves every `halfLifeDays` after its order settled.
    pub half_life_days: f64,
    /// The amount of each asset whose order weighs 1, so amounts in different
    /// assets are comparable.
    pub value_references: Vec<ValueReferenceGql>,
    /// Bounds of `weightValue`.
    pub min_value_weight: f64,
    pub max_value_weight: f64,
    /// The formula, in words.
    pub formula: String,
    /// The score decays with time; this is the moment it was computed for.
    pub computed_at: DateTime<Utc>,
    /// Every input, newest first.
    pub inputs: Vec<ReputationInput>,
}

const FORMULA: &str = "score = (prior.weight × prior.mean + Σ weightᵢ × ratingᵢ) / (prior.weight + Σ weightᵢ) \
    = prior.mean + Σ contributionᵢ; weight = weightValue × weightRecency";

impl From<ProviderScore> for ProviderReputation {
    fn from(s: ProviderScore) -> Self {
        let p = s.params;
        ProviderReputation {
            score: s.score,
            score_milli: i32::from(s.milli()),
            review_count: s.review_count as i32,
            fault_count: s.fault_count as i32,
            prior: ReputationPrior {
                mean: p.prior_mean,
                weight: p.prior_weight,
            },
            half_life_days: p.half_life_days,
            value_references: [Asset::Btc, Asset::Xrp]
                .into_iter()
                .map(|a| ValueReferenceGql {
                    asset: a.into(),
                    amount: p.reference.minor(a).into(),
                })
                .collect(),
            min_value_weight: p.min_value_weight,
            max_value_weight: p.max_value_weight,
            formula: FORMULA.to_owned(),
            computed_at: s.computed_at,
            inputs: s
                .inputs
                .iter()
                .map(|i| ReputationInput {
                    kind: match i.observation.kind {
                        InputKind::Review => ReputationInputKind::Review,
                        InputKind::DisputeFault => ReputationInputKind::DisputeFault,
                    },
                    order_id: global_id(NodeType::Order, i.observation.order_id),
                    rating: i32::from(i.observation.stars),
                    asset: i.observation.value.asset().into(),
                    value: i.observation.value.minor().into(),
                    weight_value: i.weight_value,
                    weight_recency: i.weight_recency,
                    weight: i.weight,
                    contribution: i.contribution,
                    at: i.observation.at,
                })
                .collect(),
        }
    }
}

/// A provider's reputation computed now (`Provider.reputation`).
pub async fn provider_reputation(ctx: &Context<'_>, provider_id: Uuid) -> ApiResult<ProviderReputation> {
    let app = state(ctx);
    let score = compute_provider_score(&app.db, provider_id, app.clock.now()).await?;
    Ok(score.into())
}

/// A buyer's record: its settled orders, disputes, and how providers rated it.
#[derive(SimpleObject)]
#[graphql(name = "BuyerRecord")]
pub struct BuyerRecordGql {
    pub user_id: ID,
    pub orders_settled: i32,
    /// Disputes the buyer opened, on orders that have settled.
    pub disputes_opened: i32,
    /// Arbitrated orders where the provider got more than half.
    pub disputes_lost: i32,
    pub ratings_received: i32,
    /// The mean of the providers' ratings (1–5); null without any.
    pub average_rating_received: Option<f64>,
}

#[derive(InputObject)]
pub struct SubmitReviewInput {
    pub order_id: ID,
    /// 1–5 stars.
    pub rating: i32,
    /// At most 2000 characters; line breaks allowed.
    pub text: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateReviewInput {
    pub review_id: ID,
    /// Omit to keep the current rating.
    pub rating: Option<i32>,
    /// Omit to keep the current text; null (or blank) removes it.
    #[graphql(default)]
    pub text: MaybeUndefined<String>,
}

#[derive(SimpleObject)]
pub struct SubmitReviewPayload {
    pub review: ReviewObject,
}

#[derive(SimpleObject)]
pub struct UpdateReviewPayload {
    pub review: ReviewObject,
}

#[derive(Default)]
pub struct ReputationQuery;

#[Object]
impl ReputationQuery {
    /// The reviews of one of your orders (as buyer, provider or arbitrator).
    async fn order_reviews(&self, ctx: &Context<'_>, order_id: ID) -> ApiResult<Vec<ReviewObject>> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Order, &order_id, "orderId")?;
        let db = &state(ctx).db;
        crate::orders::load_for(db, id, v.user_id).await?;
        let rows = review_store::reviews_of_order(db, id).await?;
        Ok(rows.into_iter().map(ReviewObject).collect())
    }

    /// A buyer's record; yours when `userId` is omitted. Visible to the buyer,
    /// to admins, and to providers the buyer has ordered from; null otherwise.
    async fn buyer_record(&self, ctx: &Context<'_>, user_id: Option<ID>) -> ApiResult<Option<BuyerRecordGql>> {
        let v = viewer(ctx).await?;
        let buyer_id = match user_id {
            Some(id) => expect(NodeType::User, &id, "userId")?,
            None => v.user_id,
        };
        if !may_see_buyer_record(ctx, buyer_id).await? {
            return Ok(None);
        }
        let r = compute_buyer_record(&state(ctx).db, buyer_id).await?;
        Ok(Some(BuyerRecordGql {
            user_id: global_id(NodeType::User, buyer_id),
            orders_settled: r.orders_settled as i32,
            disputes_opened: r.disputes_opened as i32,
            disputes_lost: r.disputes_lost as i32,
            ratings_received: r.ratings_received as i32,
            average_rating_received: r.average_rating_received,
        }))
    }

    /// How long a review stays editable after it is written.
    async fn review_edit_window_days(&self) -> i32 {
        REVIEW_EDIT_WINDOW_DAYS as i32
    }
}

#[derive(Default)]
pub struct ReputationMutation;

#[Object]
impl ReputationMutation {
    /// Reviews the other side of one of your settled orders (once per side).
    /// NOT_FOUND when the order is not yours; CONFLICT (`NOT_SETTLED`,
    /// `ALREADY_REVIEWED`); BAD_USER_INPUT for a rating outside 1–5.
    async fn submit_review(&self, ctx: &Context<'_>, input: SubmitReviewInput) -> ApiResult<SubmitReviewPayload> {
        let v = viewer(ctx).await?;
        let order_id = expect(NodeType::Order, &input.order_id, "input.orderId")?;
        let review = submit_review(
            state(ctx),
            v.user_id,
            SubmitReview {
                order_id,
                rating: i64::from(input.rating),
                text: input.text,
            },
        )
        .await?;
        Ok(SubmitReviewPayload {
            review: ReviewObject(review),
        })
    }

    /// Edits your review while its edit window is open (CONFLICT
    /// `EDIT_WINDOW_CLOSED` after); NOT_FOUND for anyone else's review.
    async fn update_review(&self, ctx: &Context<'_>, input: UpdateReviewInput) -> ApiResult<UpdateReviewPayload> {
        let v = viewer(ctx).await?;
        let review_id = parse_review_id(&input.review_id, "input.reviewId")?;
        let text = match input.text {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(t) => Some(Some(t)),
        };
        let review = update_review(
            state(ctx),
            v.user_id,
            UpdateReview {
                review_id,
                rating: input.rating.map(i64::from),
                text,
            },
        )
        .await?;
        Ok(UpdateReviewPayload {
            review: ReviewObject(review),
        })
    }
}

/// Whether the caller may see a buyer's record: the buyer itself, admins, and
/// providers the buyer has ordered from (who have a reason to judge it).
async fn may_see_buyer_record(ctx: &Context<'_>, buyer_id: Uuid) -> ApiResult<bool> {
    let Some(v) = optional_viewer(ctx).await? else {
        return Ok(false);
    };
    Ok(buyer_id == v.user_id
        || v.has(Role::Admin)
        || review_store::has_order_between(&state(ctx).db, buyer_id, v.user_id).await?)
}
