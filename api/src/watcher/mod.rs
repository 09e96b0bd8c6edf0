//! Chain watchers: one per chain, elected across replicas, scanning blocks
//! (ledgers) in order and turning what they see into escrow events; and the
//! broadcasters that send finished payouts until they confirm.

pub mod bench;
pub mod bitcoin;
pub mod bitcoin_index;
pub mod lock;
pub mod xrpl;

use std::sync::atomic::{AtomicU64, Ordering};

/// The chain heights the watchers last processed, for deadline checks that
/// count blocks (the Bitcoin timelock margin).
#[derive(Debug, Default)]
pub struct ChainTips {
    bitcoin: AtomicU64,
    xrpl: AtomicU64,
}

impl ChainTips {
    pub fn bitcoin(&self) -> u64 {
        self.bitcoin.load(Ordering::Relaxed)
    }

    pub fn xrpl(&self) -> u64 {
        self.xrpl.load(Ordering::Relaxed)
    }

    pub fn set_bitcoin(&self, height: u64) {
        self.bitcoin.store(height, Ordering::Relaxed);
    }

    pub fn set_xrpl(&self, index: u64) {
        self.xrpl.store(index, Ordering::Relaxed);
    }
}

/// Why a watcher step failed; the loop logs it and retries after a pause.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Source(#[from] agora_escrow::source::SourceError),
    #[error("{0}")]
    Store(String),
    #[error("the chain reorganised deeper than the {0} blocks kept; an operator must look")]
    ReorgTooDeep(u64),
}

impl From<crate::graphql::errors::ApiError> for WatchError {
    fn from(e: crate::graphql::errors::ApiError) -> Self {
        WatchError::Store(e.message())
    }
}

impl From<agora_persistence::StoreError> for WatchError {
    fn from(e: agora_persistence::StoreError) -> Self {
        WatchError::Store(e.to_string())
    }
}

impl From<sea_orm::DbErr> for WatchError {
    fn from(e: sea_orm::DbErr) -> Self {
        WatchError::Store(e.to_string())
    }
}

/// Records something the chain showed that changes no state (an unexpected
/// spend, a refused submission, an alert) in the order's history.
async fn note<C: sea_orm::ConnectionTrait>(
    db: &C,
    order_id: uuid::Uuid,
    event: &str,
    detail: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), WatchError> {
    agora_persistence::orders::insert_order_event(
        db,
        &agora_persistence::orders::OrderEventRecord {
            order_id,
            event: event.to_owned(),
            actor: "chain".into(),
            from_status: String::new(),
            to_status: String::new(),
            detail: detail.to_owned(),
            at,
        },
    )
    .await?;
    Ok(())
}
