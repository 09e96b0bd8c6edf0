//! Writing and editing reviews: only the buyer and the provider of a settled
//! order, once per side, editable for `REVIEW_EDIT_WINDOW_DAYS`.

use agora_domain::escrow::{Actor, EscrowState, Party};
use agora_domain::reputation::{may_edit_review, parse_review_text, review_editable_until, Rating, REVIEW_EDIT_WINDOW_DAYS};
use agora_persistence::reviews::{self, ReviewRecord};
use agora_persistence::StoreError;
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::refresh_provider_score;
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};

/// What a client asks to write.
#[derive(Debug, Clone)]
pub struct SubmitReview {
    pub order_id: Uuid,
    pub rating: i64,
    pub text: Option<String>,
}

/// What a client asks to change; `None` keeps the current value.
#[derive(Debug, Clone)]
pub struct UpdateReview {
    pub review_id: Uuid,
    pub rating: Option<i64>,
    /// `Some(None)` removes the text.
    pub text: Option<Option<String>>,
}

fn already_reviewed() -> ApiError {
    ApiError::conflict("ALREADY_REVIEWED", "you have already reviewed this order; edit your review instead")
}

fn edit_window_closed() -> ApiError {
    ApiError::conflict(
        "EDIT_WINDOW_CLOSED",
        format!("a review can be edited for {REVIEW_EDIT_WINDOW_DAYS} days after it was written"),
    )
}

/// `user_id` reviews the other side of a settled order. Outsiders get
/// NOT_FOUND (order ids reveal nothing), the order's arbitrator FORBIDDEN.
pub async fn submit_review(app: &AppState, user_id: Uuid, req: SubmitReview) -> ApiResult<ReviewRecord> {
    let rating = Rating::parse(req.rating).map_err(|e| ApiError::invalid("input", e))?;
    let text = parse_review_text(req.text.as_deref()).map_err(|e| ApiError::invalid("input", e))?;
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let order = crate::orders::load(&txn, req.order_id).await?;
    let side = match order.actor_of(user_id) {
        Some(Actor::Buyer) => Party::Buyer,
        Some(Actor::Provider) => Party::Provider,
        Some(_) => {
            return Err(ApiError::forbidden(
                "NOT_A_PARTY",
                "only the buyer and the provider of an order can review it",
            ))
        }
        None => return Err(ApiError::NotFound("no such order".into())),
    };
    let EscrowState::Settled { at: settled_at, .. } = order.state else {
        return Err(ApiError::conflict(
            "NOT_SETTLED",
            format!("an order can be reviewed once it is settled (it is {})", order.state.name()),
        ));
    };
    if reviews::reviews_of_order(&txn, order.id()).await?.iter().any(|r| r.side == side) {
        return Err(already_reviewed());
    }
    let subject_id = match side {
        Party::Buyer => order.record.provider_id,
        Party::Provider => order.record.buyer_id,
    };
    let review = ReviewRecord {
        id: Uuid::now_v7(),
        order_id: order.id(),
        reviewer_id: user_id,
        subject_id,
        side,
        rating: rating.get(),
        text,
        order_value: order.terms.amount_due(),
        settled_at,
        editable_until: review_editable_until(now),
        created_at: now,
        updated_at: now,
    };
    // The unique index settles a race between two submissions of one side.
    reviews::insert_review(&txn, &review).await.map_err(|e| match e {
        StoreError::Duplicate => already_reviewed(),
        other => other.into(),
    })?;
    if side == Party::Buyer {
        refresh_provider_score(&txn, subject_id, now).await?;
    }
    txn.commit().await?;
    tracing::info!(order.id = %review.order_id, review.id = %review.id, review.rating = review.rating, "review submitted");
    Ok(review)
}

/// The author edits its review while the edit window is open. Anyone else
/// gets NOT_FOUND.
pub async fn update_review(app: &AppState, user_id: Uuid, req: UpdateReview) -> ApiResult<ReviewRecord> {
    let rating = req
        .rating
        .map(Rating::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("input", e))?;
    let text = req
        .text
        .map(|t| parse_review_text(t.as_deref()))
        .transpose()
        .map_err(|e| ApiError::invalid("input", e))?;
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let review = reviews::find_review(&txn, req.review_id)
        .await?
        .filter(|r| r.reviewer_id == user_id)
        .ok_or_else(|| ApiError::NotFound("no such review".into()))?;
    if !may_edit_review(review.editable_until, now) {
        return Err(edit_window_closed());
    }
    let rating = rating.map_or(review.rating, Rating::get);
    let text = text.unwrap_or_else(|| review.text.clone());
    reviews::update_review(&txn, review.id, rating, text.clone(), now)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => edit_window_closed(),
            other => other.into(),
        })?;
    if review.side == Party::Buyer {
        refresh_provider_score(&txn, review.subject_id, now).await?;
    }
    txn.commit().await?;
    tracing::info!(order.id = %review.order_id, review.id = %review.id, review.rating = rating, "review edited");
    Ok(ReviewRecord {
        rating,
        text,
        updated_at: now,
        ..review
    })
}
