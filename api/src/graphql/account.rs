//! Accounts and sessions: register, login, refresh, logout, `me`, roles, and the
//! escrow public keys users register per chain.

use agora_domain::account::{EmailAddress, Password, Role};
use agora_escrow::keys::{parse_bitcoin_key, parse_xrpl_key, BitcoinKeyKind};
use agora_persistence::accounts::{self, EscrowKeyRecord, RefreshTokenRecord, UserRecord};
use agora_persistence::StoreError;
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::context::{now, optional_viewer, state, viewer, AppState, Viewer};
use super::errors::{ApiError, ApiResult};
use super::node::{expect, global_id, NodeType};
use super::provider::ProviderObject;
use crate::auth::{password, refresh};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Role")]
pub enum RoleGql {
    Buyer,
    Provider,
    Arbitrator,
    Admin,
}

impl From<Role> for RoleGql {
    fn from(r: Role) -> Self {
        match r {
            Role::Buyer => RoleGql::Buyer,
            Role::Provider => RoleGql::Provider,
            Role::Arbitrator => RoleGql::Arbitrator,
            Role::Admin => RoleGql::Admin,
        }
    }
}

impl From<RoleGql> for Role {
    fn from(r: RoleGql) -> Self {
        match r {
            RoleGql::Buyer => Role::Buyer,
            RoleGql::Provider => Role::Provider,
            RoleGql::Arbitrator => Role::Arbitrator,
            RoleGql::Admin => Role::Admin,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Chain {
    Bitcoin,
    Xrpl,
}

impl Chain {
    fn code(self) -> &'static str {
        match self {
            Chain::Bitcoin => "bitcoin",
            Chain::Xrpl => "xrpl",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code {
            "bitcoin" => Some(Chain::Bitcoin),
            "xrpl" => Some(Chain::Xrpl),
            _ => None,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EscrowKeyKind {
    /// A compressed secp256k1 public key (Bitcoin).
    CompressedPublicKey,
    /// A BIP32 extended public key (Bitcoin).
    ExtendedPublicKey,
    /// An XRPL signing key with its classic address.
    XrplAccountKey,
}

impl EscrowKeyKind {
    fn code(self) -> &'static str {
        match self {
            EscrowKeyKind::CompressedPublicKey => "compressed_public_key",
            EscrowKeyKind::ExtendedPublicKey => "extended_public_key",
            EscrowKeyKind::XrplAccountKey => "xrpl_account_key",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        [Self::CompressedPublicKey, Self::ExtendedPublicKey, Self::XrplAccountKey]
            .into_iter()
            .find(|k| k.code() == code)
    }
}

/// An account. Visible to the account itself and to admins.
pub struct UserObject(pub UserRecord);

#[Object(name = "User")]
impl UserObject {
    pub async fn id(&self) -> ID {
        global_id(NodeType::User, self.0.id)
    }

    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn roles(&self, ctx: &Context<'_>) -> ApiResult<Vec<RoleGql>> {
        let mut roles = accounts::roles_of(&state(ctx).db, self.0.id).await?;
        // Everyone is a buyer.
        roles.insert(Role::Buyer);
        Ok(roles.into_iter().map(RoleGql::from).collect())
    }

    /// The provider profile, once the account became a provider.
    async fn provider(&self, ctx: &Context<'_>) -> ApiResult<Option<ProviderObject>> {
        ProviderObject::load(ctx, self.0.id).await
    }

    /// Public keys registered for escrows, oldest first.
    async fn escrow_keys(&self, ctx: &Context<'_>) -> ApiResult<Vec<EscrowKeyObject>> {
        let keys = accounts::escrow_keys_of(&state(ctx).db, &[self.0.id]).await?;
        Ok(keys.into_iter().map(EscrowKeyObject).collect())
    }
}

pub struct EscrowKeyObject(EscrowKeyRecord);

#[Object(name = "EscrowKey")]
impl EscrowKeyObject {
    pub async fn id(&self) -> ID {
        super::node::global_id(super::node::NodeType::EscrowKey, self.0.id)
    }

    async fn chain(&self) -> ApiResult<Chain> {
        Chain::from_code(&self.0.chain).ok_or_else(|| ApiError::internal("stored chain is unknown"))
    }

    async fn kind(&self) -> ApiResult<EscrowKeyKind> {
        EscrowKeyKind::from_code(&self.0.kind).ok_or_else(|| ApiError::internal("stored key kind is unknown"))
    }

    /// Hex public key (lower-case for Bitcoin, upper-case for XRPL) or the xpub.
    async fn public_key(&self) -> &str {
        &self.0.public_key
    }

    /// The XRPL classic address the key controls.
    async fn address(&self) -> Option<&str> {
        self.0.address.as_deref()
    }

    async fn label(&self) -> &str {
        &self.0.label
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct RegisterInput {
    pub email: String,
    /// At least 12 characters.
    pub password: String,
}

#[derive(SimpleObject)]
pub struct RegisterPayload {
    pub user: UserObject,
}

#[derive(InputObject)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

#[derive(InputObject)]
pub struct RefreshSessionInput {
    pub refresh_token: String,
}

#[derive(InputObject)]
pub struct LogoutInput {
    /// The session to end; without it, the session of the access token is ended.
    pub refresh_token: Option<String>,
}

#[derive(SimpleObject)]
pub struct LogoutPayload {
    pub ok: bool,
}

/// A new session or a rotated one. Keep the refresh token secret: it is shown
/// once, stored only hashed, and works exactly once.
#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
    pub user: UserObject,
}

#[derive(InputObject)]
pub struct GrantRoleInput {
    pub user_id: ID,
    /// ARBITRATOR or ADMIN; buyers are everyone and providers sign up themselves.
    pub role: RoleGql,
}

#[derive(SimpleObject)]
pub struct GrantRolePayload {
    pub user: UserObject,
}

#[derive(InputObject)]
pub struct RevokeRoleInput {
    pub user_id: ID,
    /// ARBITRATOR or ADMIN.
    pub role: RoleGql,
}

#[derive(SimpleObject)]
pub struct RevokeRolePayload {
    pub user: UserObject,
    /// Whether the user had the role.
    pub revoked: bool,
}

#[derive(InputObject)]
pub struct RegisterEscrowKeyInput {
    pub chain: Chain,
    /// Bitcoin: a compressed public key (66 hex characters) or an xpub/tpub.
    /// XRPL: the 33-byte public key in hex (secp256k1 or Ed25519).
    pub public_key: String,
    /// XRPL only: the classic address of that key (checked against it).
    pub address: Option<String>,
    /// A name to tell keys apart, e.g. "hardware wallet".
    pub label: Option<String>,
}

#[derive(SimpleObject)]
pub struct RegisterEscrowKeyPayload {
    pub escrow_key: EscrowKeyObject,
}

#[derive(InputObject)]
pub struct RemoveEscrowKeyInput {
    pub id: ID,
}

#[derive(SimpleObject)]
pub struct RemoveEscrowKeyPayload {
    pub removed_id: ID,
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The logged-in account.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<UserObject> {
        let v = viewer(ctx).await?;
        let user = accounts::find_user(&state(ctx).db, v.user_id)
            .await?
            .ok_or_else(|| ApiError::Unauthenticated("the account no longer exists".into()))?;
        Ok(UserObject(user))
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account (with the buyer role).
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> ApiResult<RegisterPayload> {
        let email = EmailAddress::parse(&input.email).map_err(|e| ApiError::invalid("input", e))?;
        let password = Password::parse(&input.password).map_err(|e| ApiError::invalid("input", e))?;
        check_password_policy(password.expose())?;
        let app = state(ctx);
        app.throttle
            .signup(&app.db, client_addr(ctx), now().timestamp())
            .await
            .map_err(throttle_error)?;
        let hash = app.hashing.hash(password).await.map_err(hashing_error)?;
        let db = &app.db;
        let id = Uuid::now_v7();
        let now = now();
        let txn = db.begin().await?;
        match accounts::insert_user(&txn, id, email.as_str(), &hash, now).await {
            Err(StoreError::Duplicate) => {
                // The same answer as for a new account, so that sign-up does not
                // tell who has one: an account that was never stored (its id
                // resolves to nothing; logging in with this password fails).
                // The work done (the hash) is the same either way.
                drop(txn);
                tracing::info!("sign-up for an e-mail address that has an account");
                return Ok(RegisterPayload {
                    user: UserObject(UserRecord {
                        id,
                        email: email.as_str().to_owned(),
                        password_hash: String::new(),
                        created_at: now,
                    }),
                });
            }
            other => other?,
        }
        txn.commit().await?;
        tracing::info!(user.id = %id, "account registered");
        let user = accounts::find_user(db, id).await?.ok_or_else(|| ApiError::internal("new user vanished"))?;
        Ok(RegisterPayload { user: UserObject(user) })
    }

    /// Starts a session: a short-lived access token and a refresh token.
    /// Attempts are limited per (account, client address) and per client
    /// address; a correct password from another address is never held back.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> ApiResult<AuthPayload> {
        let app = state(ctx);
        let key = input.email.trim().to_lowercase();
        let attempt = app
            .throttle
            .login_attempt(&app.db, &key, client_addr(ctx), now().timestamp())
            .await
            .map_err(throttle_error)?;
        let user = accounts::find_user_by_email(&app.db, &key).await?;
        let ok = app
            .hashing
            .verify(input.password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(hashing_error)?;
        let user = match (ok, user) {
            (true, Some(user)) => user,
            _ => return Err(ApiError::Unauthenticated("wrong e-mail or password".into())),
        };
        app.throttle.login_succeeded(&app.db, attempt).await?;
        start_session(app, user, Uuid::now_v7()).await
    }

    /// Exchanges a refresh token for a new pair. Each refresh token works once:
    /// presenting one that was already used ends the whole session, because only
    /// a stolen copy would be presented twice.
    async fn refresh_session(&self, ctx: &Context<'_>, input: RefreshSessionInput) -> ApiResult<AuthPayload> {
        let app = state(ctx);
        let hash = refresh::hash(input.refresh_token.trim());
        let now = now();
        let txn = app.db.begin().await?;
        let token = accounts::find_refresh_token(&txn, &hash)
            .await?
            .ok_or_else(|| ApiError::Unauthenticated("unknown refresh token".into()))?;
        if token.revoked_at.is_some() {
            return Err(ApiError::Unauthenticated("the session has ended; log in again".into()));
        }
        if token.used_at.is_some() || !accounts::mark_refresh_token_used(&txn, token.id, now).await? {
            accounts::revoke_refresh_family(&txn, token.family_id, now).await?;
            txn.commit().await?;
            tracing::warn!(user.id = %token.user_id, session.id = %token.family_id, "refresh token reused; session revoked");
            return Err(ApiError::Unauthenticated(
                "this refresh token was already used; the session has been ended for safety".into(),
            ));
        }
        if token.expires_at <= now {
            return Err(ApiError::Unauthenticated("the refresh token has expired; log in again".into()));
        }
        let user = accounts::find_user(&txn, token.user_id)
            .await?
            .ok_or_else(|| ApiError::Unauthenticated("the account no longer exists".into()))?;
        let payload = issue_tokens(app, &txn, user, token.family_id, now).await?;
        txn.commit().await?;
        Ok(payload)
    }

    /// Ends a session: its refresh tokens stop working, and so do its access tokens.
    async fn logout(&self, ctx: &Context<'_>, input: LogoutInput) -> ApiResult<LogoutPayload> {
        let app = state(ctx);
        let family = match input.refresh_token {
            Some(token) => {
                accounts::find_refresh_token(&app.db, &refresh::hash(token.trim()))
                    .await?
                    .ok_or_else(|| ApiError::Unauthenticated("unknown refresh token".into()))?
                    .family_id
            }
            None => viewer(ctx).await?.session_id,
        };
        accounts::revoke_refresh_family(&app.db, family, now()).await?;
        Ok(LogoutPayload { ok: true })
    }

    /// Admins only: grants the arbitrator (or admin) role.
    async fn grant_role(&self, ctx: &Context<'_>, input: GrantRoleInput) -> ApiResult<GrantRolePayload> {
        let admin = viewer(ctx).await?;
        admin.require(Role::Admin)?;
        let role = Role::from(input.role);
        if !role.is_grantable() {
            return Err(ApiError::bad_input(
                "input.role",
                "NOT_GRANTABLE",
                "input.role: only ARBITRATOR and ADMIN are granted; everyone is a buyer and providers sign up themselves",
            ));
        }
        let user_id = expect(NodeType::User, &input.user_id, "input.userId")?;
        let db = &state(ctx).db;
        let user = accounts::find_user(db, user_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
        accounts::grant_role(db, user_id, role, Some(admin.user_id), now()).await?;
        tracing::info!(user.id = %user_id, admin.id = %admin.user_id, role = role.code(), "role granted");
        Ok(GrantRolePayload { user: UserObject(user) })
    }

    /// Admins only: removes the arbitrator (or admin) role. A former arbitrator
    /// no longer sees its cases, and its subscriptions that needed the role end.
    async fn revoke_role(&self, ctx: &Context<'_>, input: RevokeRoleInput) -> ApiResult<RevokeRolePayload> {
        let admin = viewer(ctx).await?;
        admin.require(Role::Admin)?;
        let role = Role::from(input.role);
        if !role.is_grantable() {
            return Err(ApiError::bad_input(
                "input.role",
                "NOT_GRANTABLE",
                "input.role: only ARBITRATOR and ADMIN are granted and revoked",
            ));
        }
        let user_id = expect(NodeType::User, &input.user_id, "input.userId")?;
        if user_id == admin.user_id && role == Role::Admin {
            return Err(ApiError::conflict("SELF", "an admin cannot revoke its own admin role"));
        }
        let db = &state(ctx).db;
        let user = accounts::find_user(db, user_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
        let revoked = accounts::revoke_role(db, user_id, role).await?;
        tracing::info!(user.id = %user_id, admin.id = %admin.user_id, role = role.code(), revoked, "role revoked");
        Ok(RevokeRolePayload {
            user: UserObject(user),
            revoked,
        })
    }

    /// Registers a public key the account will sign escrows with.
    async fn register_escrow_key(
        &self,
        ctx: &Context<'_>,
        input: RegisterEscrowKeyInput,
    ) -> ApiResult<RegisterEscrowKeyPayload> {
        let v = viewer(ctx).await?;
        let label = agora_domain::text::bounded(
            "label",
            input.label.as_deref().unwrap_or(""),
            0,
            80,
            agora_domain::text::Lines::Single,
        )
        .map_err(|e| ApiError::invalid("input", e))?;
        let key_error = |field: &str, e: agora_escrow::keys::KeyError| {
            ApiError::bad_input(format!("input.{field}"), "INVALID_KEY", format!("input.{field}: {e}"))
        };
        let (kind, public_key, address) = match input.chain {
            Chain::Bitcoin => {
                if input.address.is_some() {
                    return Err(ApiError::bad_input(
                        "input.address",
                        "NOT_ALLOWED",
                        "input.address: Bitcoin escrow keys have no address; escrow addresses are derived per order",
                    ));
                }
                let key = parse_bitcoin_key(&input.public_key).map_err(|e| key_error("publicKey", e))?;
                let kind = match key.kind {
                    BitcoinKeyKind::CompressedPublicKey => EscrowKeyKind::CompressedPublicKey,
                    BitcoinKeyKind::ExtendedPublicKey => EscrowKeyKind::ExtendedPublicKey,
                };
                (kind, key.canonical, None)
            }
            Chain::Xrpl => {
                let address = input.address.as_deref().ok_or_else(|| {
                    ApiError::bad_input("input.address", "EMPTY", "input.address: XRPL keys need their classic address")
                })?;
                let key = parse_xrpl_key(&input.public_key, address).map_err(|e| match e {
                    agora_escrow::keys::KeyError::InvalidXrplAddress
                    | agora_escrow::keys::KeyError::AddressMismatch { .. } => key_error("address", e),
                    other => key_error("publicKey", other),
                })?;
                (EscrowKeyKind::XrplAccountKey, key.public_key, Some(key.classic_address))
            }
        };
        let record = EscrowKeyRecord {
            id: Uuid::now_v7(),
            user_id: v.user_id,
            chain: input.chain.code().to_owned(),
            kind: kind.code().to_owned(),
            public_key,
            address,
            label,
            created_at: now(),
        };
        match accounts::insert_escrow_key(&state(ctx).db, &record).await {
            Err(StoreError::Duplicate) => {
                return Err(ApiError::Conflict("this key is already registered".into()))
            }
            other => other?,
        }
        Ok(RegisterEscrowKeyPayload {
            escrow_key: EscrowKeyObject(record),
        })
    }

    async fn remove_escrow_key(
        &self,
        ctx: &Context<'_>,
        input: RemoveEscrowKeyInput,
    ) -> ApiResult<RemoveEscrowKeyPayload> {
        let v = viewer(ctx).await?;
        let key_id = super::order::key_id(&input.id, "input.id")?;
        if !accounts::delete_escrow_key(&state(ctx).db, v.user_id, key_id).await? {
            return Err(ApiError::NotFound("you have no escrow key with this id".into()));
        }
        Ok(RemoveEscrowKeyPayload { removed_id: input.id })
    }
}

async fn start_session(app: &AppState, user: UserRecord, family: Uuid) -> ApiResult<AuthPayload> {
    let txn = app.db.begin().await?;
    let payload = issue_tokens(app, &txn, user, family, now()).await?;
    txn.commit().await?;
    tracing::info!(session.id = %family, "session started");
    Ok(payload)
}

async fn issue_tokens<C: sea_orm::ConnectionTrait>(
    app: &AppState,
    db: &C,
    user: UserRecord,
    family: Uuid,
    now: DateTime<Utc>,
) -> ApiResult<AuthPayload> {
    let (refresh_token, hash) = refresh::generate();
    let record = RefreshTokenRecord {
        id: Uuid::now_v7(),
        user_id: user.id,
        family_id: family,
        expires_at: now + app.refresh_ttl,
        used_at: None,
        revoked_at: None,
    };
    accounts::insert_refresh_token(db, &record, &hash, now).await?;
    let (access_token, access_expires) = app.jwt.issue(user.id, family, now);
    Ok(AuthPayload {
        access_token,
        access_token_expires_at: access_expires,
        refresh_token,
        refresh_token_expires_at: record.expires_at,
        user: UserObject(user),
    })
}

/// The client address of the request, when it came over HTTP.
fn client_addr(ctx: &Context<'_>) -> Option<std::net::IpAddr> {
    ctx.data_opt::<crate::http::client::ClientAddr>().map(|c| c.0)
}

fn throttle_error(e: crate::auth::rate_limit::ThrottleError) -> ApiError {
    match e {
        crate::auth::rate_limit::ThrottleError::Limited { retry_after_secs } => ApiError::RateLimited { retry_after_secs },
        crate::auth::rate_limit::ThrottleError::Store(e) => e.into(),
    }
}

fn hashing_error(e: password::PasswordError) -> ApiError {
    match e {
        password::PasswordError::Busy { retry_after } => ApiError::RateLimited {
            retry_after_secs: retry_after.as_secs().max(1),
        },
        other => ApiError::internal(other),
    }
}

/// The most common passwords of at least 12 characters, refused at sign-up.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012", "1234567890123", "12345678901234", "123456789123", "111111111111", "000000000000",
    "qwertyuiopas", "qwertyuiop123", "qwerty123456", "1q2w3e4r5t6y", "1qaz2wsx3edc", "password1234",
    "password12345", "password123!", "passwordpassword", "iloveyou1234", "abcdefghijkl", "abc123456789",
    "aaaaaaaaaaaa", "letmein12345", "welcome12345", "administrator", "adminadmin123", "changeme1234",
    "football1234", "baseball1234", "superman1234", "princess1234", "sunshine1234", "trustno1trustno1",
    "zaq12wsxcde3", "asdfghjkl123", "monkey123456", "dragon123456", "master123456",
];

/// Refuses passwords of only whitespace, of a single repeated character, and
/// the most common ones (compared case-insensitively, ignoring spaces).
fn check_password_policy(password: &str) -> ApiResult<()> {
    let weak = |message: &str| ApiError::bad_input("input.password", "TOO_WEAK", format!("input.password: {message}"));
    if password.trim().is_empty() {
        return Err(weak("a password of only whitespace is not allowed"));
    }
    let mut chars = password.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) {
            return Err(weak("a single repeated character is not a password"));
        }
    }
    let normalized: String = password.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect();
    if COMMON_PASSWORDS.contains(&normalized.as_str()) {
        return Err(weak("this is one of the most common passwords; choose another"));
    }
    Ok(())
}

/// Whether `viewer` may see the account `user_id` (itself, or an admin).
pub fn may_see_user(viewer: Option<&Viewer>, user_id: Uuid) -> bool {
    viewer.is_some_and(|v| v.user_id == user_id || v.has(Role::Admin))
}

/// Loads a user for `node(id)`, hidden from everyone but itself and admins.
pub async fn load_user_node(ctx: &Context<'_>, id: Uuid) -> ApiResult<Option<UserObject>> {
    let v = optional_viewer(ctx).await?;
    if !may_see_user(v.as_ref(), id) {
        return Ok(None);
    }
    Ok(accounts::find_user(&state(ctx).db, id).await?.map(UserObject))
}
