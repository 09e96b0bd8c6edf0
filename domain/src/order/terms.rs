//! An order's terms, frozen when it is placed: what was bought, for how much,
//! from whom, with which keys, fees and deadlines. Later edits of the listing,
//! the fee schedule or the parties' keys never change an existing order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::escrow::{Deadlines, EscrowTerms, FeeSchedule};
use crate::money::{Amount, Asset};

/// The listing as it was when the order was placed. Amounts are minor units
/// of `asset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingSnapshot {
    pub listing_id: Uuid,
    pub title: String,
    /// The listing's category code (e.g. `expert-session`).
    pub category: String,
    pub asset: Asset,
    pub pricing: PricingSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PricingSnapshot {
    Fixed {
        price: u64,
    },
    Metered {
        /// The unit code (e.g. `minute`).
        unit: String,
        price_per_unit: u64,
        min_deposit: u64,
    },
}

/// The public keys the escrow is built from, as the chain adapters encode
/// them; opaque to the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowKeys {
    pub buyer: String,
    /// The key of the time-locked refund path; must differ from `buyer`.
    pub buyer_refund: String,
    pub provider: String,
    pub arbitrator: ArbitratorKey,
}

/// The marketplace key of one escrow: derived from the extended key at
/// `index`; only the index and public key are ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbitratorKey {
    pub index: u32,
    pub public_key: String,
}

/// The terms of a placed order. Built only by [`super::place::place_order`]
/// (or deserialized from storage), never modified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTerms {
    pub(super) order_id: Uuid,
    pub(super) placed_at: DateTime<Utc>,
    pub(super) listing: ListingSnapshot,
    pub(super) buyer_id: Uuid,
    pub(super) provider_id: Uuid,
    pub(super) amount_due: Amount,
    pub(super) keys: EscrowKeys,
    pub(super) fees: FeeSchedule,
    pub(super) deadlines: Deadlines,
    pub(super) required_confirmations: u32,
}

impl OrderTerms {
    pub const fn order_id(&self) -> Uuid {
        self.order_id
    }

    pub const fn placed_at(&self) -> DateTime<Utc> {
        self.placed_at
    }

    pub const fn listing(&self) -> &ListingSnapshot {
        &self.listing
    }

    pub const fn buyer_id(&self) -> Uuid {
        self.buyer_id
    }

    pub const fn provider_id(&self) -> Uuid {
        self.provider_id
    }

    pub const fn asset(&self) -> Asset {
        self.amount_due.asset()
    }

    /// The fixed price, or the metered deposit the buyer chose.
    pub const fn amount_due(&self) -> Amount {
        self.amount_due
    }

    pub const fn keys(&self) -> &EscrowKeys {
        &self.keys
    }

    pub const fn fees(&self) -> &FeeSchedule {
        &self.fees
    }

    pub const fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    pub const fn required_confirmations(&self) -> u32 {
        self.required_confirmations
    }

    /// What the escrow state machine judges events against.
    pub const fn escrow_terms(&self) -> EscrowTerms {
        EscrowTerms {
            amount_due: self.amount_due,
            required_confirmations: self.required_confirmations,
            fees: self.fees,
            deadlines: self.deadlines,
        }
    }
}
