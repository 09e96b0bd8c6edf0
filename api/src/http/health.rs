//! `/healthz` (the process is up) and `/readyz` (it can serve: the database
//! answers and no migration is pending).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use agora_migrations::{Migrator, MigratorTrait};
use serde_json::json;

use crate::graphql::context::AppState;

/// How long `/readyz` waits for the database. While the server is down the
/// pool keeps retrying a connection for its whole acquire timeout (10 s); a
/// probe must answer within the orchestrator's own timeout (the manifests in
/// k8s/ give it 3 s), so a check that takes longer counts as unreachable.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<std::sync::Arc<AppState>>) -> HttpResponse {
    let check = async {
        if !agora_persistence::db::ping(&state.db).await {
            return None;
        }
        Migrator::get_pending_migrations(&state.db)
            .await
            .map(|p| p.len())
            .ok()
    };
    match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, check).await {
        Ok(Some(0)) => HttpResponse::Ok()
            .json(json!({ "status": "ready", "database": "ok", "pendingMigrations": 0 })),
        Ok(Some(n)) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not ready", "database": "ok", "pendingMigrations": n })),
        _ => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not ready", "database": "unreachable" })),
    }
}
