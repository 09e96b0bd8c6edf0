//! `agora create-admin`: the first admin, created from the command line because
//! only an admin can grant roles through the API.

use agora_domain::account::{EmailAddress, Password, Role};
use agora_persistence::accounts;
use anyhow::{anyhow, Context};
use sea_orm::{DatabaseConnection, TransactionTrait};
use uuid::Uuid;

/// What `create_admin` did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminOutcome {
    Created(Uuid),
    Promoted(Uuid),
}

impl AdminOutcome {
    /// The line `agora create-admin` prints: the user's Relay global id, the
    /// one `grantRole(input: {userId})`, `node(id)` and every other call take.
    pub fn describe(&self, email: &str) -> String {
        let global = |id: &Uuid| crate::graphql::node::global_id(crate::graphql::node::NodeType::User, *id).0;
        match self {
            AdminOutcome::Created(id) => format!("created admin {email}; user id {}", global(id)),
            AdminOutcome::Promoted(id) => format!("{email} is now an admin; user id {}", global(id)),
        }
    }
}

/// Creates an admin account, or makes an existing account an admin (its
/// password is left unchanged then, and `password` may be empty).
pub async fn create_admin(db: &DatabaseConnection, email: &str, password: &str) -> anyhow::Result<AdminOutcome> {
    let email = EmailAddress::parse(email).map_err(|e| anyhow!("{e}"))?;
    let now = chrono::Utc::now();
    if let Some(user) = accounts::find_user_by_email(db, email.as_str()).await? {
        accounts::grant_role(db, user.id, Role::Admin, None, now).await?;
        return Ok(AdminOutcome::Promoted(user.id));
    }
    let password = Password::parse(password).map_err(|e| anyhow!("{e}"))?;
    let hash = crate::auth::password::hash(password).await?;
    let id = Uuid::now_v7();
    let txn = db.begin().await.context("cannot start a transaction")?;
    accounts::insert_user(&txn, id, email.as_str(), &hash, now).await?;
    accounts::grant_role(&txn, id, Role::Admin, None, now).await?;
    txn.commit().await?;
    Ok(AdminOutcome::Created(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::node::{decode, NodeType};

    #[test]
    fn create_admin_prints_the_relay_id_of_the_user() {
        let uuid = Uuid::now_v7();
        let line = AdminOutcome::Created(uuid).describe("ada@example.org");
        assert!(!line.contains(&uuid.to_string()), "{line}");
        let id = line.rsplit(' ').next().unwrap();
        assert_eq!(decode(id), Some((NodeType::User, uuid)));
        let line = AdminOutcome::Promoted(uuid).describe("ada@example.org");
        assert_eq!(decode(line.rsplit(' ').next().unwrap()), Some((NodeType::User, uuid)));
    }
}
