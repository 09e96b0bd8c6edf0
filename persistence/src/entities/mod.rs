//! sea-orm entities: the shape of the tables, nothing else. Never exposed past
//! the persistence crate's repositories.

pub mod arbitrator_signatures;
pub mod chain_blocks;
pub mod escrow_keys;
pub mod listing_tags;
pub mod listings;
pub mod order_events;
pub mod orders;
pub mod providers;
pub mod refresh_tokens;
pub mod user_roles;
pub mod users;
