//! sea-orm entities: the shape of the tables, nothing else. Never exposed past
//! the persistence crate's repositories.

pub mod arbitrator_signatures;
pub mod chain_blocks;
pub mod dispute_statements;
pub mod disputes;
pub mod escrow_keys;
pub mod listing_peak_windows;
pub mod listing_tags;
pub mod listings;
pub mod metered_claims;
pub mod metered_sessions;
pub mod notification_preferences;
pub mod notifications;
pub mod order_events;
pub mod order_outcomes;
pub mod orders;
pub mod providers;
pub mod refresh_tokens;
pub mod reviews;
pub mod usage_alert_settings;
pub mod usage_records;
pub mod user_roles;
pub mod users;
