//! Agora's storage: connections, sea-orm entities and the repositories the API
//! calls. No HTTP here; rows never leave this crate — repositories return records.

pub mod accounts;
pub mod chain;
pub mod db;
pub mod disputes;
pub mod entities;
pub mod error;
pub mod listings;
pub mod metering;
pub mod notifications;
pub mod orders;
pub mod rate_limits;
pub mod reviews;
pub mod stats;

pub use error::StoreError;
