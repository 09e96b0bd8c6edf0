//! What every resolver can reach: the shared state and the caller's identity.

use std::sync::Arc;

use agora_domain::account::{Role, Roles};
use agora_persistence::accounts;
use async_graphql::Context;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::errors::{ApiError, ApiResult};
use crate::auth::password::HashingPool;
use crate::auth::rate_limit::Throttle;
use crate::config::{BitcoinSettings, OrderSettings, XrplSettings};
use crate::orders::xrpl::XrplContext;
use crate::orders::bitcoin::BitcoinContext;
use agora_domain::clock::Clock;
use crate::auth::{AccessClaims, JwtKeys, TokenError};

/// Shared, immutable state of the server.
pub struct AppState {
    pub db: DatabaseConnection,
    pub jwt: JwtKeys,
    pub refresh_ttl: chrono::Duration,
    /// Login and sign-up counts, shared by every replica through the database.
    pub throttle: Throttle,
    /// Bounds concurrent password hashing.
    pub hashing: HashingPool,
    /// What `graphql::guard` refuses before validation.
    pub document_limits: super::guard::DocumentLimits,
    /// Parsed documents that passed `guard`, by query text.
    pub documents: super::documents::DocumentCache,
    pub subscriptions_per_socket: usize,
    /// Whether `GET /graphql` serves GraphiQL.
    pub graphiql: bool,
    /// Whose `X-Forwarded-For` is believed.
    pub trusted_proxies: crate::http::client::TrustedProxies,
    /// The time deadlines are judged by (tests move it forward).
    pub clock: Arc<dyn Clock>,
    pub bitcoin: BitcoinContext,
    pub bitcoin_settings: BitcoinSettings,
    pub xrpl: XrplContext,
    pub xrpl_settings: XrplSettings,
    /// Heights the chain watchers last processed.
    pub tips: crate::watcher::ChainTips,
    /// Hints that an order changed (see `graphql::subscription`).
    pub order_updates: tokio::sync::broadcast::Sender<Uuid>,
    pub order_settings: OrderSettings,
    /// The e-mail transport and dispatcher settings, and `myNotifications` hints.
    pub notifications: crate::notifications::Notifications,
    /// What `/metrics` serves.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The authenticated caller, loaded at most once per request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub roles: Roles,
}

impl Viewer {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.has(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("this needs the {} role", role.code())))
        }
    }
}

/// Per-request data: the bearer token's claims, checked lazily.
pub struct RequestAuth {
    claims: Option<Result<AccessClaims, TokenError>>,
    viewer: OnceCell<Option<Viewer>>,
}

impl RequestAuth {
    pub fn new(claims: Option<Result<AccessClaims, TokenError>>) -> Self {
        Self {
            claims,
            viewer: OnceCell::new(),
        }
    }

    pub fn anonymous() -> Self {
        Self::new(None)
    }
}

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn state<'a>(ctx: &Context<'a>) -> &'a Arc<AppState> {
    // The schema is always built with the state; see `schema::build`.
    ctx.data_unchecked::<Arc<AppState>>()
}

/// The caller, or `None` for anonymous requests. A present but invalid or
/// expired token is an error, so clients learn to refresh.
pub async fn optional_viewer(ctx: &Context<'_>) -> ApiResult<Option<Viewer>> {
    let Some(auth) = ctx.data_opt::<RequestAuth>() else {
        return Ok(None);
    };
    let claims = match &auth.claims {
        None => return Ok(None),
        Some(Err(e)) => return Err(ApiError::Unauthenticated(e.to_string())),
        Some(Ok(claims)) => claims,
    };
    let db = &state(ctx).db;
    let viewer = auth
        .viewer
        .get_or_try_init(|| async {
            // A token outlives neither its user nor its session (logout revokes it);
            // both and the roles are read in one statement, on every request.
            let Some(roles) = accounts::session_roles(db, claims.sub, claims.sid).await? else {
                return Ok::<_, ApiError>(None);
            };
            Ok(Some(Viewer {
                user_id: claims.sub,
                session_id: claims.sid,
                roles,
            }))
        })
        .await?;
    match viewer {
        Some(v) => Ok(Some(v.clone())),
        None => Err(ApiError::Unauthenticated("the session has ended; log in again".into())),
    }
}

/// The caller; `UNAUTHENTICATED` when there is none.
pub async fn viewer(ctx: &Context<'_>) -> ApiResult<Viewer> {
    optional_viewer(ctx)
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("log in first: send `Authorization: Bearer <accessToken>`".into()))
}
