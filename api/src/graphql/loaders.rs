//! DataLoaders: one query per batch of keys, never one per row. Their error is
//! the `ApiError` itself, so a database outage keeps its `SERVICE_UNAVAILABLE`
//! code through the loader instead of turning into INTERNAL.

use std::collections::HashMap;

use agora_persistence::accounts::{self, ProviderRecord};
use agora_persistence::listings::{self, ListingRecord};
use agora_persistence::orders::{self, ArbitratorSignatureRecord, OrderEventRecord};
use async_graphql::dataloader::Loader;

use super::errors::ApiError;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

pub struct ProviderLoader(pub DatabaseConnection);

impl Loader<Uuid> for ProviderLoader {
    type Value = ProviderRecord;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, ProviderRecord>, ApiError> {
        let rows = accounts::find_providers(&self.0, keys).await?;
        Ok(rows.into_iter().map(|p| (p.user_id, p)).collect())
    }
}

pub struct ListingLoader(pub DatabaseConnection);

impl Loader<Uuid> for ListingLoader {
    type Value = ListingRecord;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, ListingRecord>, ApiError> {
        let rows = listings::find_listings(&self.0, keys).await?;
        Ok(rows.into_iter().map(|l| (l.id, l)).collect())
    }
}

/// The history of orders, one query per batch.
pub struct OrderEventsLoader(pub DatabaseConnection);

impl Loader<Uuid> for OrderEventsLoader {
    type Value = Vec<OrderEventRecord>;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<OrderEventRecord>>, ApiError> {
        let rows = orders::order_events_of_many(&self.0, keys).await?;
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
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<ArbitratorSignatureRecord>>, ApiError> {
        let rows = orders::arbitrator_signatures_of_many(&self.0, keys).await?;
        let mut out: HashMap<Uuid, Vec<ArbitratorSignatureRecord>> = HashMap::new();
        for row in rows {
            out.entry(row.order_id).or_default().push(row);
        }
        Ok(out)
    }
}
