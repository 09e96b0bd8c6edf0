//! DataLoaders: one query per batch of keys, never one per row.

use std::collections::HashMap;

use agora_persistence::accounts::{self, ProviderRecord};
use agora_persistence::listings::{self, ListingRecord};
use async_graphql::dataloader::Loader;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

pub struct ProviderLoader(pub DatabaseConnection);

impl Loader<Uuid> for ProviderLoader {
    type Value = ProviderRecord;
    type Error = String;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, ProviderRecord>, String> {
        let rows = accounts::find_providers(&self.0, keys).await.map_err(|e| e.to_string())?;
        Ok(rows.into_iter().map(|p| (p.user_id, p)).collect())
    }
}

pub struct ListingLoader(pub DatabaseConnection);

impl Loader<Uuid> for ListingLoader {
    type Value = ListingRecord;
    type Error = String;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, ListingRecord>, String> {
        let rows = listings::find_listings(&self.0, keys).await.map_err(|e| e.to_string())?;
        Ok(rows.into_iter().map(|l| (l.id, l)).collect())
    }
}
