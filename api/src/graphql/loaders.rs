//! DataLoaders: one query per batch of keys, never one per row.

use std::collections::HashMap;

use agora_persistence::accounts::{self, ProviderRecord};
use agora_persistence::listings::{self, ListingRecord};
use agora_persistence::orders::{self, ArbitratorSignatureRecord, OrderEventRecord};
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

/// The history of orders, one query per batch.
pub struct OrderEventsLoader(pub DatabaseConnection);

impl Loader<Uuid> for OrderEventsLoader {
    type Value = Vec<OrderEventRecord>;
    type Error = String;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<OrderEventRecord>>, String> {
        let rows = orders::order_events_of_many(&self.0, keys).await.map_err(|e| e.to_string())?;
        let mut out: HashMap<Uuid, Vec<OrderEventRecord>> = HashMap::new();
        for row in rows {
            out.entry(row.order_id).or_default().push(row);
        }
        Ok(out)
    }
}

/// The marketplace-signature audit records of orders, one query per batch.
pub struct ArbitratorSignaturesLoader(pub DatabaseConnection);

impl Loader<Uuid> for ArbitratorSignaturesLoader {
    type Value = Vec<ArbitratorSignatureRecord>;
    type Error = String;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<ArbitratorSignatureRecord>>, String> {
        let rows = orders::arbitrator_signatures_of_many(&self.0, keys).await.map_err(|e| e.to_string())?;
        let mut out: HashMap<Uuid, Vec<ArbitratorSignatureRecord>> = HashMap::new();
        for row in rows {
            out.entry(row.order_id).or_default().push(row);
        }
        Ok(out)
    }
}
