//! Orders: a buyer's purchase of a listing with its terms frozen.

pub mod place;
pub mod terms;

pub use place::{place_order, OrderTiming, PlaceOrderError, PlaceOrderInput, TimelockTiming};
pub use terms::{ArbitratorKey, EscrowKeys, ListingSnapshot, OrderTerms, PricingSnapshot};
