//! `/healthz` (the process is up) and `/readyz` (it can serve: the database
//! answers and no migration is pending).

use actix_web::{web, HttpResponse};
use agora_migrations::{Migrator, MigratorTrait};
use serde_json::json;

use crate::graphql::context::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<std::sync::Arc<AppState>>) -> HttpResponse {
    let db_ok = agora_persistence::db::ping(&state.db).await;
    let pending = if db_ok {
        Migrator::get_pending_migrations(&state.db).await.map(|p| p.len()).ok()
    } else {
        None
    };
    match (db_ok, pending) {
        (true, Some(0)) => HttpResponse::Ok().json(json!({ "status": "ready", "database": "ok", "pendingMigrations": 0 })),
        (true, Some(n)) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not ready", "database": "ok", "pendingMigrations": n })),
        _ => HttpResponse::ServiceUnavailable().json(json!({ "status": "not ready", "database": "unreachable" })),
    }
}
