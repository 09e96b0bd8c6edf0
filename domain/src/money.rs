//! Money: integer minor units tagged with their asset, and basis points.
//!
//! Amounts are never floats. Bitcoin amounts are satoshis, XRP amounts are drops.
//! Every arithmetic operation is checked; an amount can never exceed its asset's
//! total supply, which keeps all sums of two amounts inside `u64`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A chain asset Agora can hold in escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Asset {
    /// Bitcoin, counted in satoshis.
    Btc,
    /// XRP, counted in drops.
    Xrp,
}

impl Asset {
    /// The largest amount of this asset that can ever exist, in minor units.
    pub const fn max_supply(self) -> u64 {
        match self {
            // 21 million BTC.
            Asset::Btc => 2_100_000_000_000_000,
            // 100 billion XRP.
            Asset::Xrp => 100_000_000_000_000_000,
        }
    }

    /// Stable lower-case code, used in storage and cursors.
    pub const fn code(self) -> &'static str {
        match self {
            Asset::Btc => "btc",
            Asset::Xrp => "xrp",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "btc" => Some(Asset::Btc),
            "xrp" => Some(Asset::Xrp),
            _ => None,
        }
    }

    /// Name of the minor unit, for messages.
    pub const fn minor_unit(self) -> &'static str {
        match self {
            Asset::Btc => "sats",
            Asset::Xrp => "drops",
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Asset::Btc => "BTC",
            Asset::Xrp => "XRP",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be a whole number of {unit}")]
    NotAnInteger { unit: &'static str },
    #[error("amount must be positive")]
    NotPositive,
    #[error("amount exceeds the total supply of {asset} ({max} {unit})")]
    AboveSupply { asset: Asset, max: u64, unit: &'static str },
    #[error("amounts of different assets cannot be combined")]
    AssetMismatch,
    #[error("amount arithmetic underflowed")]
    Underflow,
}

/// A non-negative amount of one asset, in minor units, never above the asset's supply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Amount {
    asset: Asset,
    minor: u64,
}

impl Amount {
    /// An amount of `minor` units; fails above the asset's supply.
    pub fn new(asset: Asset, minor: u64) -> Result<Self, AmountError> {
        if minor > asset.max_supply() {
            return Err(AmountError::AboveSupply {
                asset,
                max: asset.max_supply(),
                unit: asset.minor_unit(),
            });
        }
        Ok(Self { asset, minor })
    }

    /// A strictly positive amount, as prices and deposits must be.
    pub fn positive(asset: Asset, minor: u64) -> Result<Self, AmountError> {
        if minor == 0 {
            return Err(AmountError::NotPositive);
        }
        Self::new(asset, minor)
    }

    /// Parses user input: a decimal integer string of minor units, strictly positive.
    /// Rejects signs, decimals, exponents and anything above the asset's supply.
    pub fn parse_positive(asset: Asset, input: &str) -> Result<Self, AmountError> {
        let trimmed = input.trim();
        if let Some(rest) = trimmed.strip_prefix('-') {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AmountError::NotPositive);
            }
        }
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotAnInteger {
                unit: asset.minor_unit(),
            });
        }
        // More digits than u64 can hold is above every supply.
        let minor: u64 = trimmed.parse().map_err(|_| AmountError::AboveSupply {
            asset,
            max: asset.max_supply(),
            unit: asset.minor_unit(),
        })?;
        Self::positive(asset, minor)
    }

    pub const fn zero(asset: Asset) -> Self {
        Self { asset, minor: 0 }
    }

    pub const fn asset(self) -> Asset {
        self.asset
    }

    pub const fn minor(self) -> u64 {
        self.minor
    }

    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        if self.asset != other.asset {
            return Err(AmountError::AssetMismatch);
        }
        // Both are at most max_supply (< u64::MAX / 2), so the sum cannot wrap.
        Amount::new(self.asset, self.minor + other.minor)
    }

    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountError> {
        if self.asset != other.asset {
            return Err(AmountError::AssetMismatch);
        }
        self.minor
            .checked_sub(other.minor)
            .map(|minor| Amount { asset: self.asset, minor })
            .ok_or(AmountError::Underflow)
    }

    /// `self × bps / 10 000`, rounded down (the remainder stays with whoever
    /// receives "the rest", which callers document per use).
    pub fn mul_bps_floor(self, bps: BasisPoints) -> Amount {
        let minor = (u128::from(self.minor) * u128::from(bps.get()) / 10_000) as u64;
        Amount { asset: self.asset, minor }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.asset.minor_unit())
    }
}

/// A fraction in basis points: 0 ..= 10 000 (100 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BasisPoints(u16);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("basis points must be between 0 and 10000, got {0}")]
pub struct BasisPointsError(pub i64);

impl BasisPoints {
    pub const ZERO: BasisPoints = BasisPoints(0);
    pub const FULL: BasisPoints = BasisPoints(10_000);

    pub fn new(value: i64) -> Result<Self, BasisPointsError> {
        if (0..=10_000).contains(&value) {
            Ok(Self(value as u16))
        } else {
            Err(BasisPointsError(value))
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    /// The complement: `10 000 − self`.
    pub const fn complement(self) -> BasisPoints {
        BasisPoints(10_000 - self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_rejects_negative_decimal_and_garbage() {
        assert_eq!(Amount::parse_positive(Asset::Btc, "-5"), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse_positive(Asset::Btc, "0"), Err(AmountError::NotPositive));
        assert!(matches!(
            Amount::parse_positive(Asset::Btc, "1.5"),
            Err(AmountError::NotAnInteger { .. })
        ));
        assert!(matches!(
            Amount::parse_positive(Asset::Btc, "1e3"),
            Err(AmountError::NotAnInteger { .. })
        ));
        assert!(matches!(
            Amount::parse_positive(Asset::Btc, ""),
            Err(AmountError::NotAnInteger { .. })
        ));
    }

    #[test]
    fn parse_rejects_amounts_above_supply_and_u64() {
        assert!(matches!(
            Amount::parse_positive(Asset::Btc, "2100000000000001"),
            Err(AmountError::AboveSupply { .. })
        ));
        assert!(matches!(
            Amount::parse_positive(Asset::Xrp, "99999999999999999999999"),
            Err(AmountError::AboveSupply { .. })
        ));
        assert_eq!(
            Amount::parse_positive(Asset::Btc, "2100000000000000").map(Amount::minor),
            Ok(2_100_000_000_000_000)
        );
    }

    #[test]
    fn amounts_of_different_assets_do_not_add() {
        let a = Amount::new(Asset::Btc, 1).unwrap();
        let b = Amount::new(Asset::Xrp, 1).unwrap();
        assert_eq!(a.checked_add(b), Err(AmountError::AssetMismatch));
    }

    #[test]
    fn basis_points_are_bounded() {
        assert!(BasisPoints::new(-1).is_err());
        assert!(BasisPoints::new(10_001).is_err());
        assert_eq!(BasisPoints::new(2_500).unwrap().complement().get(), 7_500);
    }

    proptest! {
        #[test]
        fn a_bps_share_and_its_complement_never_exceed_the_whole(minor in 0..=Asset::Xrp.max_supply(), bps in 0i64..=10_000) {
            let whole = Amount::new(Asset::Xrp, minor).unwrap();
            let bps = BasisPoints::new(bps).unwrap();
            let a = whole.mul_bps_floor(bps);
            let b = whole.mul_bps_floor(bps.complement());
            prop_assert!(a.minor() + b.minor() <= whole.minor());
            // Flooring loses at most one unit per share.
            prop_assert!(whole.minor() - (a.minor() + b.minor()) <= 1);
        }

        #[test]
        fn parse_round_trips_every_valid_amount(minor in 1..=Asset::Btc.max_supply()) {
            let parsed = Amount::parse_positive(Asset::Btc, &minor.to_string()).unwrap();
            prop_assert_eq!(parsed.minor(), minor);
        }
    }
}
