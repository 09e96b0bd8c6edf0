//! Notifications: a transactional outbox written in the same transaction as the
//! state change, and the dispatcher that e-mails it.

use agora_domain::escrow::Effect;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use crate::graphql::context::AppState;
use crate::graphql::errors::ApiResult;
use crate::orders::Order;

/// Called by every order transition, inside its transaction, with the effects
/// the escrow state machine returned.
pub async fn on_effects(
    _app: &AppState,
    _txn: &DatabaseTransaction,
    _order: &Order,
    _effects: &[Effect],
    _now: DateTime<Utc>,
) -> ApiResult<()> {
    Ok(())
}
