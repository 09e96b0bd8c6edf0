//! What one subscription WebSocket holds: its current access token (renewable
//! by a `ping` carrying `{"Authorization": "Bearer <accessToken>"}`), its count
//! of subscriptions, and an executor that keeps every subscription within the
//! life of the session that started it.
//!
//! A subscription ends (an error naming why, then `complete`) when its
//! session is logged out or its refresh family revoked, when the access token
//! expires and was not renewed over the socket, or when the subscriber loses a
//! role it had when it subscribed. The session is checked at most once per
//! second per socket, whatever the number of subscriptions on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_domain::account::Roles;
use agora_persistence::accounts;
use async_graphql::{Data, ErrorExtensionValues, Executor, Request, Response, ServerError};
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::auth::{AccessClaims, TokenError};
use crate::graphql::context::{AppState, RequestAuth};
use crate::graphql::{guard, AgoraSchema};
use crate::http::graphql::label_errors;

/// How often a subscription re-checks its session.
const CHECK_EVERY: Duration = Duration::from_secs(1);

type Claims = Option<Result<AccessClaims, TokenError>>;

/// The session state of one socket.
pub struct SocketSession {
    // The claims the socket's subscriptions are judged by.
    claims: Mutex<Claims>,
    active: AtomicUsize,
    /// The last session check: when, for which session, and the roles then
    /// (`None`: the session had ended).
    checked: tokio::sync::Mutex<Option<(Instant, uuid::Uuid, Option<Roles>)>>,
}

impl Default for SocketSession {
    fn default() -> Self {
        Self {
            claims: Mutex::new(None),
            active: AtomicUsize::new(0),
            checked: tokio::sync::Mutex::new(None),
        }
    }
}

impl SocketSession {
    pub fn current(&self) -> Claims {
        self.claims.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the token of `connection_init`.
    pub fn start(&self, claims: Claims) {
        *self.claims.lock().unwrap_or_else(|p| p.into_inner()) = claims;
    }

    /// Replaces the token with a newer one of the same user and session;
    /// anything else is refused and changes nothing.
    pub fn renew(&self, claims: AccessClaims) -> Result<(), &'static str> {
        let mut current = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some(Ok(old)) if old.sub == claims.sub && old.sid == claims.sid => {
                *current = Some(Ok(claims));
                Ok(())
            }
            _ => Err("a renewed token must belong to the session the socket started with"),
        }
    }

    /// The roles of `claims`' session now: `Ok(None)` when it has ended,
    /// `Err` when that cannot be told right now.
    async fn session_roles(&self, app: &AppState, claims: &AccessClaims) -> Result<Option<Roles>, ()> {
        let mut checked = self.checked.lock().await;
        if let Some((at, sid, roles)) = &*checked {
            if *sid == claims.sid && at.elapsed() < CHECK_EVERY {
                return Ok(roles.clone());
            }
        }
        let roles = load_session_roles(app, claims).await.map_err(|e| {
            // A database hiccup ends nobody's subscription; the next check retries.
            tracing::warn!(error.cause = %e, "cannot check a subscription's session");
        })?;
        *checked = Some((Instant::now(), claims.sid, roles.clone()));
        Ok(roles)
    }
}

async fn load_session_roles(app: &AppState, claims: &AccessClaims) -> Result<Option<Roles>, agora_persistence::StoreError> {
    if accounts::find_user(&app.db, claims.sub).await?.is_none() || accounts::is_session_revoked(&app.db, claims.sid).await? {
        return Ok(None);
    }
    Ok(Some(accounts::roles_of(&app.db, claims.sub).await?))
}

fn error_response(code: &str, reason: Option<&str>, message: &str) -> Response {
    let mut error = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    if let Some(reason) = reason {
        ext.set("reason", reason);
    }
    error.extensions = Some(ext);
    Response::from_errors(vec![error])
}

/// Gives a subscription slot back when its stream is dropped.
struct Slot(Arc<SocketSession>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The schema as one socket runs it.
#[derive(Clone)]
pub struct SocketExecutor {
    pub schema: AgoraSchema,
    pub app: Arc<AppState>,
    pub session: Arc<SocketSession>,
}

impl Executor for SocketExecutor {
    async fn execute(&self, mut request: Request) -> Response {
        if let Err(refusal) = guard::check_cached(&mut request, self.app.document_limits, &self.app.documents) {
            return Response::from_errors(vec![refusal.into_server_error()]);
        }
        let query = request.query.clone();
        let request = request.data(RequestAuth::new(self.session.current()));
        let mut response = self.schema.execute(request).await;
        label_errors(&mut response, &query);
        response
    }

    fn execute_stream(&self, mut request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        if let Err(refusal) = guard::check_cached(&mut request, self.app.document_limits, &self.app.documents) {
            return stream::once(async move { Response::from_errors(vec![refusal.into_server_error()]) }).boxed();
        }
        let cap = self.app.subscriptions_per_socket;
        if self.session.active.fetch_add(1, Ordering::AcqRel) >= cap {
            self.session.active.fetch_sub(1, Ordering::AcqRel);
            let message = format!("a socket holds at most {cap} subscriptions; complete one first");
            return stream::once(async move { error_response("RATE_LIMITED", Some("TOO_MANY_SUBSCRIPTIONS"), &message) })
                .boxed();
        }
        let slot = Slot(self.session.clone());
        let claims = self.session.current();
        let query = request.query.clone();
        let request = request.data(RequestAuth::new(claims.clone()));
        let inner = Executor::execute_stream(&self.schema, request, session_data)
            .map(move |mut response| {
                label_errors(&mut response, &query);
                response
            })
            .boxed();
        match claims {
            // Anonymous or with a bad token: the resolvers refuse it themselves.
            None | Some(Err(_)) => inner.map(move |r| {
                let _slot = &slot;
                r
            })
            .boxed(),
            Some(Ok(claims)) => guarded(inner, self.app.clone(), self.session.clone(), claims, slot),
        }
    }
}

/// Why a session no longer covers a subscription.
async fn ended(app: &AppState, session: &SocketSession, started: &AccessClaims, initial: &Option<Roles>) -> Option<Response> {
    let current = session.current();
    {
        let claims = match current {
            Some(Ok(c)) if c.sub == started.sub && c.sid == started.sid => c,
            _ => return Some(error_response("UNAUTHENTICATED", Some("SESSION_ENDED"), "the session has ended; log in again")),
        };
        if claims.exp <= chrono::Utc::now().timestamp() {
            return Some(error_response(
                "UNAUTHENTICATED",
                Some("TOKEN_EXPIRED"),
                "the access token has expired; renew it with a ping carrying the new token, or subscribe again",
            ));
        }
        let now_roles = match session.session_roles(app, &claims).await {
            Ok(Some(roles)) => roles,
            Ok(None) => {
                return Some(error_response("UNAUTHENTICATED", Some("SESSION_ENDED"), "the session has ended; log in again"))
            }
            Err(()) => return None,
        };
        if initial.as_ref().is_some_and(|had| !had.is_subset(&now_roles)) {
            return Some(error_response(
                "FORBIDDEN",
                Some("ROLE_REMOVED"),
                "a role this subscription was started with has been removed",
            ));
        }
        None
    }
}

fn guarded(
    inner: BoxStream<'static, Response>,
    app: Arc<AppState>,
    session: Arc<SocketSession>,
    claims: AccessClaims,
    slot: Slot,
) -> BoxStream<'static, Response> {
    struct State {
        inner: Option<BoxStream<'static, Response>>,
        app: Arc<AppState>,
        session: Arc<SocketSession>,
        claims: AccessClaims,
        roles: Option<Roles>,
        _slot: Slot,
    }
    let state = State {
        inner: Some(inner),
        app,
        session,
        claims,
        roles: None,
        _slot: slot,
    };
    stream::unfold(state, |mut st| async move {
        let mut inner = st.inner.take()?;
        if st.roles.is_none() {
            st.roles = st.session.session_roles(&st.app, &st.claims).await.ok().flatten();
        }
        loop {
            tokio::select! {
                item = inner.next() => {
                    let item = item?;
                    st.inner = Some(inner);
                    return Some((item, st));
                }
                () = tokio::time::sleep(CHECK_EVERY) => {
                    if let Some(why) = ended(&st.app, &st.session, &st.claims, &st.roles).await {
                        // `inner` is dropped: the subscription's own stream stops.
                        return Some((why, st));
                    }
                }
            }
        }
    })
    .boxed()
}
