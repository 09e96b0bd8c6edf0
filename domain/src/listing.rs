//! Listings (offerings): their validated fields, pricing and lifecycle.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::{Amount, AmountError, Asset};
use crate::text::{bounded, Lines, Reason, ValidationError};

pub const TITLE_MAX: usize = 120;
pub const DESCRIPTION_MAX: usize = 5_000;
pub const TAGS_MAX: usize = 10;
pub const TAG_MAX: usize = 32;
pub const DELIVERY_WINDOW_MAX_HOURS: u32 = 24 * 365;

/// What kind of offering a listing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Category {
    ExpertSession,
    Bandwidth,
    Compute,
    Content,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::ExpertSession,
        Category::Bandwidth,
        Category::Compute,
        Category::Content,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            Category::ExpertSession => "expert-session",
            Category::Bandwidth => "bandwidth",
            Category::Compute => "compute",
            Category::Content => "content",
        }
    }

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let wanted = input.trim().to_lowercase();
        Self::ALL.into_iter().find(|c| c.code() == wanted).ok_or_else(|| {
            ValidationError::new(
                "category",
                Reason::UnknownValue,
                format!(
                    "unknown category `{}`; use one of: {}",
                    input.trim(),
                    Self::ALL.map(Category::code).join(", ")
                ),
            )
        })
    }
}

/// The unit a metered listing is billed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MeteredUnit {
    Minute,
    Hour,
    Megabyte,
    Gigabyte,
    Job,
}

impl MeteredUnit {
    pub const ALL: [MeteredUnit; 5] = [
        MeteredUnit::Minute,
        MeteredUnit::Hour,
        MeteredUnit::Megabyte,
        MeteredUnit::Gigabyte,
        MeteredUnit::Job,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            MeteredUnit::Minute => "minute",
            MeteredUnit::Hour => "hour",
            MeteredUnit::Megabyte => "megabyte",
            MeteredUnit::Gigabyte => "gigabyte",
            MeteredUnit::Job => "job",
        }
    }

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let wanted = input.trim().to_lowercase();
        Self::ALL.into_iter().find(|u| u.code() == wanted).ok_or_else(|| {
            ValidationError::new(
                "pricing.unit",
                Reason::UnknownValue,
                format!(
                    "unknown unit `{}`; use one of: {}",
                    input.trim(),
                    Self::ALL.map(MeteredUnit::code).join(", ")
                ),
            )
        })
    }
}

/// How a listing is paid for. All amounts are in the listing asset's minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pricing {
    Fixed {
        amount: Amount,
    },
    Metered {
        unit: MeteredUnit,
        price_per_unit: Amount,
        min_deposit: Amount,
    },
}

impl Pricing {
    pub fn asset(&self) -> Asset {
        match self {
            Pricing::Fixed { amount } => amount.asset(),
            Pricing::Metered { price_per_unit, .. } => price_per_unit.asset(),
        }
    }

    /// The price that search filters and sorting use: the fixed amount, or the
    /// price of one unit.
    pub fn headline_price(&self) -> Amount {
        match self {
            Pricing::Fixed { amount } => *amount,
            Pricing::Metered { price_per_unit, .. } => *price_per_unit,
        }
    }
}

/// The smallest escrow worth locking on each chain: below it the network fees of
/// funding and paying out would eat most of the value (Bitcoin), or it would not
/// cover an account's reserve (XRPL).
pub const fn minimum_escrow(asset: Asset) -> u64 {
    match asset {
        Asset::Btc => 10_000,
        Asset::Xrp => 1_000_000,
    }
}

/// Pricing as a client sends it: amounts as decimal strings, each with the asset
/// the client meant. Naming the asset with every amount guards against a price
/// meant in sats landing on an XRP listing as drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingInput {
    Fixed {
        asset: Asset,
        amount: String,
    },
    Metered {
        asset: Asset,
        unit: String,
        price_per_unit: String,
        min_deposit: String,
    },
}

impl PricingInput {
    /// Validates the pricing for a listing sold in `listing_asset`.
    pub fn parse(&self, listing_asset: Asset) -> Result<Pricing, ValidationError> {
        let pricing_asset = match self {
            PricingInput::Fixed { asset, .. } | PricingInput::Metered { asset, .. } => *asset,
        };
        if pricing_asset != listing_asset {
            return Err(ValidationError::new(
                "pricing.asset",
                Reason::AssetMismatch,
                format!("the listing is sold in {listing_asset} but the pricing is in {pricing_asset}"),
            ));
        }
        match self {
            PricingInput::Fixed { asset, amount } => {
                let amount = parse_amount("pricing.amount", *asset, amount)?;
                require_minimum("pricing.amount", amount)?;
                Ok(Pricing::Fixed { amount })
            }
            PricingInput::Metered {
                asset,
                unit,
                price_per_unit,
                min_deposit,
            } => {
                let unit = MeteredUnit::parse(unit)?;
                let price_per_unit = parse_amount("pricing.pricePerUnit", *asset, price_per_unit)?;
                let min_deposit = parse_amount("pricing.minDeposit", *asset, min_deposit)?;
                require_minimum("pricing.minDeposit", min_deposit)?;
                if min_deposit.minor() < price_per_unit.minor() {
                    return Err(ValidationError::new(
                        "pricing.minDeposit",
                        Reason::Inconsistent,
                        "the minimum deposit must cover at least one unit",
                    ));
                }
                Ok(Pricing::Metered {
                    unit,
                    price_per_unit,
                    min_deposit,
                })
            }
        }
    }
}

fn parse_amount(field: &'static str, asset: Asset, input: &str) -> Result<Amount, ValidationError> {
    Amount::parse_positive(asset, input).map_err(|e| {
        let reason = match e {
            AmountError::NotPositive => Reason::NotPositive,
            AmountError::AboveSupply { .. } => Reason::Overflow,
            _ => Reason::InvalidFormat,
        };
        ValidationError::new(field, reason, e.to_string())
    })
}

fn require_minimum(field: &'static str, amount: Amount) -> Result<(), ValidationError> {
    let min = minimum_escrow(amount.asset());
    if amount.minor() < min {
        return Err(ValidationError::new(
            field,
            Reason::OutOfRange,
            format!(
                "must be at least {min} {} to be worth an escrow",
                amount.asset().minor_unit()
            ),
        ));
    }
    Ok(())
}

/// A search tag: lower-case letters, digits and single hyphens, 1–32 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let value = input.trim().to_lowercase();
        let ok = !value.is_empty()
            && value.chars().count() <= TAG_MAX
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !value.starts_with('-')
            && !value.ends_with('-')
            && !value.contains("--");
        if !ok {
            return Err(ValidationError::new(
                "tags",
                Reason::InvalidFormat,
                format!(
                    "`{}` is not a valid tag: use 1–{TAG_MAX} letters, digits and single hyphens",
                    input.trim()
                ),
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a list of tags: at most [`TAGS_MAX`], no duplicates.
    pub fn parse_list(inputs: &[String]) -> Result<Vec<Tag>, ValidationError> {
        if inputs.len() > TAGS_MAX {
            return Err(ValidationError::new(
                "tags",
                Reason::TooMany,
                format!("at most {TAGS_MAX} tags"),
            ));
        }
        let mut tags: Vec<Tag> = Vec::with_capacity(inputs.len());
        for input in inputs {
            let tag = Tag::parse(input)?;
            if tags.contains(&tag) {
                return Err(ValidationError::new(
                    "tags",
                    Reason::Duplicate,
                    format!("tag `{}` is listed twice", tag.as_str()),
                ));
            }
            tags.push(tag);
        }
        Ok(tags)
    }
}

/// Lifecycle of a listing. Only active listings are found by search and can be ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ListingStatus {
    Draft,
    Active,
    Paused,
    Archived,
}

impl ListingStatus {
    pub const fn code(self) -> &'static str {
        match self {
            ListingStatus::Draft => "draft",
            ListingStatus::Active => "active",
            ListingStatus::Paused => "paused",
            ListingStatus::Archived => "archived",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [Self::Draft, Self::Active, Self::Paused, Self::Archived]
            .into_iter()
            .find(|s| s.code() == code)
    }

    /// The status after `action`, or why the action is not allowed now.
    pub fn apply(self, action: ListingAction) -> Result<ListingStatus, ListingStatusError> {
        use ListingAction as A;
        use ListingStatus as S;
        match (self, action) {
            (S::Draft | S::Paused, A::Publish) => Ok(S::Active),
            (S::Active, A::Pause) => Ok(S::Paused),
            (S::Draft | S::Active | S::Paused, A::Archive) => Ok(S::Archived),
            (S::Draft | S::Active | S::Paused, A::Update) => Ok(self),
            (from, action) => Err(ListingStatusError { from, action }),
        }
    }
}

impl fmt::Display for ListingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingAction {
    Update,
    Publish,
    Pause,
    Archive,
}

impl fmt::Display for ListingAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListingAction::Update => "update",
            ListingAction::Publish => "publish",
            ListingAction::Pause => "pause",
            ListingAction::Archive => "archive",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a listing that is {from}")]
pub struct ListingStatusError {
    pub from: ListingStatus,
    pub action: ListingAction,
}

/// The editable content of a listing, every field validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingContent {
    pub title: String,
    pub description: String,
    pub category: Category,
    pub tags: Vec<Tag>,
    pub region: crate::account::Region,
    pub asset: Asset,
    pub pricing: Pricing,
    pub delivery_window_hours: u32,
}

/// A listing as a client describes it, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingContentInput {
    pub title: String,
    pub description: String,
    pub category: String,
    pub tags: Vec<String>,
    pub region: String,
    pub asset: Asset,
    pub pricing: PricingInput,
    pub delivery_window_hours: i64,
}

impl ListingContent {
    /// Validates every field; the first invalid field is reported.
    pub fn parse(input: &ListingContentInput) -> Result<Self, ValidationError> {
        let title = bounded("title", &input.title, 1, TITLE_MAX, Lines::Single)?;
        let description = bounded("description", &input.description, 1, DESCRIPTION_MAX, Lines::Multi)?;
        let category = Category::parse(&input.category)?;
        let tags = Tag::parse_list(&input.tags)?;
        let region = crate::account::Region::parse(&input.region)?;
        let pricing = input.pricing.parse(input.asset)?;
        let delivery_window_hours = u32::try_from(input.delivery_window_hours)
            .ok()
            .filter(|h| (1..=DELIVERY_WINDOW_MAX_HOURS).contains(h))
            .ok_or_else(|| {
                ValidationError::new(
                    "deliveryWindowHours",
                    Reason::OutOfRange,
                    format!("must be between 1 and {DELIVERY_WINDOW_MAX_HOURS} hours"),
                )
            })?;
        Ok(Self {
            title,
            description,
            category,
            tags,
            region,
            asset: input.asset,
            pricing,
            delivery_window_hours,
        })
    }

    /// Lower-cased text that search matches against: title, description and tags.
    pub fn search_text(&self) -> String {
        let mut text = format!("{}\n{}", self.title, self.description);
        for tag in &self.tags {
            text.push('\n');
            text.push_str(tag.as_str());
        }
        text.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ListingContentInput {
        ListingContentInput {
            title: "Rust code review".into(),
            description: "An hour with an expert.".into(),
            category: "expert-session".into(),
            tags: vec!["rust".into(), "Code-Review".into()],
            region: "eu".into(),
            asset: Asset::Btc,
            pricing: PricingInput::Fixed {
                asset: Asset::Btc,
                amount: "50000".into(),
            },
            delivery_window_hours: 48,
        }
    }

    fn reject(change: impl FnOnce(&mut ListingContentInput)) -> ValidationError {
        let mut i = input();
        change(&mut i);
        ListingContent::parse(&i).unwrap_err()
    }

    #[test]
    fn a_valid_listing_is_normalised() {
        let l = ListingContent::parse(&input()).unwrap();
        assert_eq!(l.tags[1].as_str(), "code-review");
        assert_eq!(l.pricing.headline_price().minor(), 50_000);
        assert!(l.search_text().contains("code-review"));
    }

    #[test]
    fn each_invalid_field_is_named() {
        let e = reject(|i| i.title = " ".into());
        assert_eq!((e.field, e.reason), ("title", Reason::Empty));
        let e = reject(|i| i.title = "x".repeat(TITLE_MAX + 1));
        assert_eq!((e.field, e.reason), ("title", Reason::TooLong));
        let e = reject(|i| i.category = "weapons".into());
        assert_eq!((e.field, e.reason), ("category", Reason::UnknownValue));
        let e = reject(|i| i.tags = vec!["no spaces".into()]);
        assert_eq!((e.field, e.reason), ("tags", Reason::InvalidFormat));
        let e = reject(|i| i.tags = vec!["a".into(), "A".into()]);
        assert_eq!((e.field, e.reason), ("tags", Reason::Duplicate));
        let e = reject(|i| i.tags = (0..11).map(|n| format!("t{n}")).collect());
        assert_eq!((e.field, e.reason), ("tags", Reason::TooMany));
        let e = reject(|i| i.delivery_window_hours = 0);
        assert_eq!((e.field, e.reason), ("deliveryWindowHours", Reason::OutOfRange));
    }

    #[test]
    fn prices_must_be_positive_integers_within_supply_in_the_listing_asset() {
        let fixed = |amount: &str| PricingInput::Fixed {
            asset: Asset::Btc,
            amount: amount.into(),
        };
        assert_eq!(fixed("0").parse(Asset::Btc).unwrap_err().reason, Reason::NotPositive);
        assert_eq!(fixed("-100").parse(Asset::Btc).unwrap_err().reason, Reason::NotPositive);
        assert_eq!(fixed("1.5").parse(Asset::Btc).unwrap_err().reason, Reason::InvalidFormat);
        assert_eq!(
            fixed("18446744073709551616").parse(Asset::Btc).unwrap_err().reason,
            Reason::Overflow
        );
        assert_eq!(fixed("100").parse(Asset::Btc).unwrap_err().reason, Reason::OutOfRange);
        assert_eq!(fixed("50000").parse(Asset::Xrp).unwrap_err().reason, Reason::AssetMismatch);
    }

    #[test]
    fn metered_pricing_checks_unit_and_deposit() {
        let metered = |unit: &str, price: &str, deposit: &str| PricingInput::Metered {
            asset: Asset::Xrp,
            unit: unit.into(),
            price_per_unit: price.into(),
            min_deposit: deposit.into(),
        };
        assert!(metered("minute", "1000", "1000000").parse(Asset::Xrp).is_ok());
        assert_eq!(
            metered("parsec", "1000", "1000000").parse(Asset::Xrp).unwrap_err().reason,
            Reason::UnknownValue
        );
        assert_eq!(
            metered("minute", "2000000", "1000000").parse(Asset::Xrp).unwrap_err().reason,
            Reason::Inconsistent
        );
    }

    #[test]
    fn status_transitions() {
        use ListingAction as A;
        use ListingStatus as S;
        assert_eq!(S::Draft.apply(A::Publish), Ok(S::Active));
        assert_eq!(S::Active.apply(A::Pause), Ok(S::Paused));
        assert_eq!(S::Paused.apply(A::Publish), Ok(S::Active));
        assert_eq!(S::Active.apply(A::Archive), Ok(S::Archived));
        assert!(S::Archived.apply(A::Publish).is_err());
        assert!(S::Archived.apply(A::Update).is_err());
        assert!(S::Draft.apply(A::Pause).is_err());
        assert!(S::Active.apply(A::Publish).is_err());
    }
}
