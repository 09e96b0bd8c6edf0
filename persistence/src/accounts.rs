//! Users, roles, refresh tokens, provider profiles and registered escrow keys.

use std::collections::HashMap;

use agora_domain::account::{ProviderProfile, Role, Roles};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::{escrow_keys, providers, refresh_tokens, user_roles, users};
use crate::StoreError;

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

impl From<users::Model> for UserRecord {
    fn from(m: users::Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            password_hash: m.password_hash,
            created_at: m.created_at,
        }
    }
}

/// Inserts a user with the buyer role. `Duplicate` when the e-mail is taken.
pub async fn insert_user<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    email: &str,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    users::Entity::insert(users::ActiveModel {
        id: Set(id),
        email: Set(email.to_owned()),
        password_hash: Set(password_hash.to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    grant_role(db, id, Role::Buyer, None, now).await?;
    Ok(())
}

pub async fn find_user<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
    Ok(users::Entity::find_by_id(id).one(db).await?.map(Into::into))
}

pub async fn find_users<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<Vec<UserRecord>, StoreError> {
    Ok(users::Entity::find()
        .filter(users::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub async fn find_user_by_email<C: ConnectionTrait>(
    db: &C,
    email: &str,
) -> Result<Option<UserRecord>, StoreError> {
    Ok(users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(db)
        .await?
        .map(Into::into))
}

pub async fn roles_of<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Roles, StoreError> {
    Ok(roles_of_many(db, &[user_id]).await?.remove(&user_id).unwrap_or_default())
}

pub async fn roles_of_many<C: ConnectionTrait>(
    db: &C,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, Roles>, StoreError> {
    let rows = user_roles::Entity::find()
        .filter(user_roles::Column::UserId.is_in(user_ids.iter().copied()))
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Roles> = HashMap::new();
    for row in rows {
        let role = Role::from_code(&row.role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {}", row.role)))?;
        out.entry(row.user_id).or_default().insert(role);
    }
    Ok(out)
}

/// Grants `role`; granting a role the user already has changes nothing.
pub async fn grant_role<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    role: Role,
    granted_by: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    user_roles::Entity::insert(user_roles::ActiveModel {
        user_id: Set(user_id),
        role: Set(role.code().to_owned()),
        granted_by: Set(granted_by),
        granted_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([user_roles::Column::UserId, user_roles::Column::Role])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Removes `role`; whether the user had it.
pub async fn revoke_role<C: ConnectionTrait>(db: &C, user_id: Uuid, role: Role) -> Result<bool, StoreError> {
    let done = user_roles::Entity::delete_many()
        .filter(user_roles::Column::UserId.eq(user_id))
        .filter(user_roles::Column::Role.eq(role.code()))
        .exec(db)
        .await?;
    Ok(done.rows_affected > 0)
}

pub async fn set_password_hash<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    users::Entity::update_many()
        .col_expr(users::Column::PasswordHash, password_hash.into())
        .col_expr(users::Column::UpdatedAt, now.into())
        .filter(users::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Refresh tokens

#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert_refresh_token<C: ConnectionTrait>(
    db: &C,
    record: &RefreshTokenRecord,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
        id: Set(record.id),
        user_id: Set(record.user_id),
        family_id: Set(record.family_id),
        token_hash: Set(token_hash.to_owned()),
        created_at: Set(now),
        expires_at: Set(record.expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_refresh_token<C: ConnectionTrait>(
    db: &C,
    token_hash: &str,
) -> Result<Option<RefreshTokenRecord>, StoreError> {
    Ok(refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(token_hash))
        .one(db)
        .await?
        .map(|m| RefreshTokenRecord {
            id: m.id,
            user_id: m.user_id,
            family_id: m.family_id,
            expires_at: m.expires_at,
            used_at: m.used_at,
            revoked_at: m.revoked_at,
        }))
}

/// Marks a token used. Returns false when it was already used or revoked, so two
/// concurrent refreshes with the same token cannot both succeed.
pub async fn mark_refresh_token_used<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::UsedAt, now.into())
        .filter(refresh_tokens::Column::Id.eq(id))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Revokes every token of a login session (a token family).
pub async fn revoke_refresh_family<C: ConnectionTrait>(
    db: &C,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, now.into())
        .filter(refresh_tokens::Column::FamilyId.eq(family_id))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Provider profiles

#[derive(Debug, Clone)]
pub struct ProviderRecord {
    pub user_id: Uuid,
    pub display_name: String,
    pub bio: String,
    pub region: String,
    pub languages: Vec<String>,
    pub rating_milli: i32,
    pub rating_count: i32,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<providers::Model> for ProviderRecord {
    type Error = StoreError;

    fn try_from(m: providers::Model) -> Result<Self, StoreError> {
        let languages = serde_json::from_str(&m.languages)
            .map_err(|e| StoreError::Corrupt(format!("provider languages: {e}")))?;
        Ok(Self {
            user_id: m.user_id,
            display_name: m.display_name,
            bio: m.bio,
            region: m.region,
            languages,
            rating_milli: m.rating_milli,
            rating_count: m.rating_count,
            created_at: m.created_at,
        })
    }
}

/// Creates or replaces the provider profile of `user_id` (the rating is kept).
pub async fn upsert_provider<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    profile: &ProviderProfile,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let languages: Vec<&str> = profile.languages.iter().map(|l| l.as_str()).collect();
    let languages = serde_json::to_string(&languages)
        .map_err(|e| StoreError::Corrupt(format!("provider languages: {e}")))?;
    providers::Entity::insert(providers::ActiveModel {
        user_id: Set(user_id),
        display_name: Set(profile.display_name.clone()),
        bio: Set(profile.bio.clone()),
        region: Set(profile.region.as_str().to_owned()),
        languages: Set(languages),
        rating_milli: Set(0),
        rating_count: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(providers::Column::UserId)
            .update_columns([
                providers::Column::DisplayName,
                providers::Column::Bio,
                providers::Column::Region,
                providers::Column::Languages,
                providers::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_providers<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<Vec<ProviderRecord>, StoreError> {
    providers::Entity::find()
        .filter(providers::Column::UserId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
}

// ---------------------------------------------------------------------------
// Escrow keys

#[derive(Debug, Clone)]
pub struct EscrowKeyRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub chain: String,
    pub kind: String,
    pub public_key: String,
    pub address: Option<String>,
    pub label: String,
    pub created_at: DateTime<Utc>,
}

/// Stores a validated key. `Duplicate` when the key is already registered (by anyone).
pub async fn insert_escrow_key<C: ConnectionTrait>(
    db: &C,
    key: &EscrowKeyRecord,
) -> Result<(), StoreError> {
    escrow_keys::Entity::insert(escrow_keys::ActiveModel {
        id: Set(key.id),
        user_id: Set(key.user_id),
        chain: Set(key.chain.clone()),
        kind: Set(key.kind.clone()),
        public_key: Set(key.public_key.clone()),
        address: Set(key.address.clone()),
        label: Set(key.label.clone()),
        created_at: Set(key.created_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn escrow_keys_of<C: ConnectionTrait>(
    db: &C,
    user_ids: &[Uuid],
) -> Result<Vec<EscrowKeyRecord>, StoreError> {
    Ok(escrow_keys::Entity::find()
        .filter(escrow_keys::Column::UserId.is_in(user_ids.iter().copied()))
        .order_by_asc(escrow_keys::Column::CreatedAt)
        .order_by_asc(escrow_keys::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| EscrowKeyRecord {
            id: m.id,
            user_id: m.user_id,
            chain: m.chain,
            kind: m.kind,
            public_key: m.public_key,
            address: m.address,
            label: m.label,
            created_at: m.created_at,
        })
        .collect())
}

/// Deletes a key of `user_id`; false when the user has no such key.
pub async fn delete_escrow_key<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    key_id: Uuid,
) -> Result<bool, StoreError> {
    let result = escrow_keys::Entity::delete_many()
        .filter(escrow_keys::Column::Id.eq(key_id))
        .filter(escrow_keys::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Whether a login session was ended (logout, or reuse of a rotated token).
/// The roles of `user_id` if that user exists and session `family_id` has not
/// been revoked; `None` otherwise. One statement: an authenticated request
/// learns who is calling in a single round trip, and a logout or a role change
/// is seen by the very next request on every replica.
pub async fn session_roles<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<Option<Roles>, StoreError> {
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    let revoked = Query::select()
        .expr(Expr::val(1))
        .from(refresh_tokens::Entity)
        .and_where(Expr::col((refresh_tokens::Entity, refresh_tokens::Column::FamilyId)).eq(family_id))
        .and_where(Expr::col((refresh_tokens::Entity, refresh_tokens::Column::RevokedAt)).is_not_null())
        .to_owned();
    // One row per role (a single row with a NULL role for a user without any),
    // no row when the user is gone or the session revoked.
    let query = Query::select()
        .column((user_roles::Entity, user_roles::Column::Role))
        .from(users::Entity)
        .left_join(
            user_roles::Entity,
            Expr::col((user_roles::Entity, user_roles::Column::UserId)).equals((users::Entity, users::Column::Id)),
        )
        .and_where(Expr::col((users::Entity, users::Column::Id)).eq(user_id))
        .and_where(Expr::exists(revoked).not())
        .to_owned();
    let rows = db.query_all(&query).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut roles = Roles::default();
    for row in rows {
        let role: Option<String> = row.try_get("", "role")?;
        if let Some(code) = role {
            let role = Role::from_code(&code).ok_or_else(|| StoreError::Corrupt(format!("unknown role {code}")))?;
            roles.insert(role);
        }
    }
    Ok(Some(roles))
}

pub async fn is_session_revoked<C: ConnectionTrait>(
    db: &C,
    family_id: Uuid,
) -> Result<bool, StoreError> {
    let revoked = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::FamilyId.eq(family_id))
        .filter(refresh_tokens::Column::RevokedAt.is_not_null())
        .one(db)
        .await?;
    Ok(revoked.is_some())
}
