//! Reputation: reviews of settled orders and the scores computed from them.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use crate::graphql::context::AppState;
use crate::graphql::errors::ApiResult;
use crate::orders::Order;

/// Called by every order transition, inside its transaction, after the new
/// state is stored (settlements change scores).
pub async fn on_order_changed(_app: &AppState, _txn: &DatabaseTransaction, _order: &Order, _now: DateTime<Utc>) -> ApiResult<()> {
    Ok(())
}
