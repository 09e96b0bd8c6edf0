//! Metered sessions: peak-load pricing windows, usage records with their
//! frozen price, the rules a buyer's claim must meet, and usage alerts.
//!
//! Money is integer minor units of the order's asset. Rounding:
//! - a usage record costs `floor(quantity × price_per_unit × multiplier_bps / 10 000)`
//!   (computed in `u128`, so nothing overflows before the final check); the
//!   remainder of less than one minor unit per record favours the buyer;
//! - a threshold of `t` basis points is crossed when
//!   `total × 10 000 ≥ deposit × t` (exact, no division).

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::text::{Reason, ValidationError};

/// No multiplier: 10 000 basis points.
pub const BASE_MULTIPLIER_BPS: u32 = 10_000;
/// The largest peak multiplier a listing may set (10×).
pub const MAX_MULTIPLIER_BPS: u32 = 100_000;
pub const MAX_PEAK_WINDOWS: usize = 32;
const MINUTES_PER_DAY: u16 = 24 * 60;
/// The usage alerts of a user who configured none: 50 %, 80 %, 95 % of the deposit.
pub const DEFAULT_ALERT_THRESHOLDS_BPS: [u16; 3] = [5_000, 8_000, 9_500];
pub const MAX_ALERT_THRESHOLDS: usize = 10;

/// A peak-load window: on the given days (UTC), from `start_minute` included
/// to `end_minute` excluded (minutes after midnight UTC), the listing's price
/// per unit is multiplied by `multiplier_bps / 10 000`. A window does not wrap
/// past midnight: a night window is two windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeakWindow {
    days: Vec<Weekday>,
    start_minute: u16,
    end_minute: u16,
    multiplier_bps: u32,
}

impl PeakWindow {
    pub fn days(&self) -> &[Weekday] {
        &self.days
    }
    pub const fn start_minute(&self) -> u16 {
        self.start_minute
    }
    pub const fn end_minute(&self) -> u16 {
        self.end_minute
    }
    pub const fn multiplier_bps(&self) -> u32 {
        self.multiplier_bps
    }

    fn contains(&self, at: DateTime<Utc>) -> bool {
        let minute = u16::try_from(at.hour() * 60 + at.minute()).unwrap_or(u16::MAX);
        self.days.contains(&at.weekday()) && self.start_minute <= minute && minute < self.end_minute
    }

    fn overlaps(&self, other: &PeakWindow) -> bool {
        self.days.iter().any(|d| other.days.contains(d))
            && self.start_minute < other.end_minute
            && other.start_minute < self.end_minute
    }
}

/// A window as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeakWindowInput {
    pub days: Vec<Weekday>,
    /// `HH:MM`, UTC.
    pub start: String,
    /// `HH:MM`, UTC; `24:00` for the end of the day.
    pub end: String,
    pub multiplier_bps: i64,
}

/// A listing's peak windows: validated, non-overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeakSchedule {
    windows: Vec<PeakWindow>,
}

impl PeakSchedule {
    pub fn windows(&self) -> &[PeakWindow] {
        &self.windows
    }

    pub fn parse(inputs: &[PeakWindowInput]) -> Result<Self, ValidationError> {
        if inputs.len() > MAX_PEAK_WINDOWS {
            return Err(ValidationError::new(
                "windows",
                Reason::TooMany,
                format!("at most {MAX_PEAK_WINDOWS} peak windows"),
            ));
        }
        let mut windows: Vec<PeakWindow> = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let mut days = input.days.clone();
            days.sort_by_key(Weekday::num_days_from_monday);
            days.dedup();
            if days.is_empty() {
                return Err(ValidationError::new("windows.days", Reason::Empty, format!("window {i}: name at least one day")));
            }
            let start_minute = parse_time("windows.start", i, &input.start)?;
            let end_minute = parse_time("windows.end", i, &input.end)?;
            if start_minute >= end_minute {
                return Err(ValidationError::new(
                    "windows.end",
                    Reason::Inconsistent,
                    format!("window {i}: the end must be after the start (split a window that crosses midnight in two)"),
                ));
            }
            let multiplier_bps = u32::try_from(input.multiplier_bps)
                .ok()
                .filter(|m| (BASE_MULTIPLIER_BPS..=MAX_MULTIPLIER_BPS).contains(m))
                .ok_or_else(|| {
                    ValidationError::new(
                        "windows.multiplierBps",
                        Reason::OutOfRange,
                        format!("window {i}: must be between {BASE_MULTIPLIER_BPS} and {MAX_MULTIPLIER_BPS} basis points"),
                    )
                })?;
            let window = PeakWindow {
                days,
                start_minute,
                end_minute,
                multiplier_bps,
            };
            if let Some(j) = windows.iter().position(|w| w.overlaps(&window)) {
                return Err(ValidationError::new(
                    "windows.start",
                    Reason::Inconsistent,
                    format!("window {i} overlaps window {j}"),
                ));
            }
            windows.push(window);
        }
        Ok(Self { windows })
    }

    /// The multiplier in force at `at`: the window containing it, or 10 000.
    pub fn multiplier_at(&self, at: DateTime<Utc>) -> u32 {
        self.windows
            .iter()
            .find(|w| w.contains(at))
            .map_or(BASE_MULTIPLIER_BPS, |w| w.multiplier_bps)
    }
}

fn parse_time(field: &'static str, index: usize, input: &str) -> Result<u16, ValidationError> {
    let bad = || {
        ValidationError::new(field, Reason::InvalidFormat, format!("window {index}: use HH:MM (UTC), 00:00 to 24:00"))
    };
    let (h, m) = input.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    let minute = h * 60 + m;
    if m >= 60 || minute > MINUTES_PER_DAY {
        return Err(bad());
    }
    Ok(minute)
}

/// Formats minutes after midnight as `HH:MM`.
pub fn format_minute(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The price of one usage record, frozen when it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCharge {
    pub quantity: u64,
    pub price_per_unit: u64,
    pub multiplier_bps: u32,
    pub amount: u64,
}

impl UsageCharge {
    /// `floor(quantity × price_per_unit × multiplier_bps / 10 000)`; `None` on
    /// overflow of `u64`.
    pub fn price(quantity: u64, price_per_unit: u64, multiplier_bps: u32) -> Option<Self> {
        let amount = (u128::from(quantity) * u128::from(price_per_unit)).checked_mul(u128::from(multiplier_bps))? / 10_000;
        Some(Self {
            quantity,
            price_per_unit,
            multiplier_bps,
            amount: u64::try_from(amount).ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("the quantity must be positive")]
    NotPositive,
    #[error("the buyer capped this session: no further usage is accepted")]
    Capped,
    #[error("the session is closed")]
    Closed,
    #[error("this usage ({amount}) would take the total to {total}, above what the deposit can pay ({limit})")]
    DepositExhausted { amount: u64, total: u64, limit: u64 },
    #[error("the amount overflows")]
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("the claim ({claimed}) is not above the latest claim ({latest})")]
    NotIncreasing { claimed: u64, latest: u64 },
    #[error("the claim ({claimed}) is above what the deposit can pay after fees ({limit})")]
    AboveDeposit { claimed: u64, limit: u64 },
    #[error("the claim ({claimed}) is above the usage recorded so far ({usage})")]
    AboveUsage { claimed: u64, usage: u64 },
    #[error("the session is closed")]
    Closed,
}

/// The running state of a metered session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub total_quantity: u64,
    /// Cumulative cost of every usage record, in minor units.
    pub total_amount: u64,
    /// The cumulative amount of the latest valid claim (0: none).
    pub latest_claim: u64,
    pub capped: bool,
    pub closed: bool,
    /// Thresholds (basis points of the deposit) that already fired.
    pub fired_alerts: Vec<u16>,
    /// A top-up: the order whose session this one continues with a new deposit.
    #[serde(default)]
    pub continues: Option<uuid::Uuid>,
    /// The order that continues this session with a new deposit, once placed.
    #[serde(default)]
    pub continued_by: Option<uuid::Uuid>,
}

impl Session {
    /// Adds `charge`; `limit` is the most the deposit can pay the provider
    /// (deposit minus the payout's network fee).
    pub fn record(&mut self, charge: &UsageCharge, limit: u64) -> Result<(), UsageError> {
        if self.closed {
            return Err(UsageError::Closed);
        }
        if self.capped {
            return Err(UsageError::Capped);
        }
        if charge.quantity == 0 {
            return Err(UsageError::NotPositive);
        }
        let total = self.total_amount.checked_add(charge.amount).ok_or(UsageError::Overflow)?;
        if total > limit {
            return Err(UsageError::DepositExhausted {
                amount: charge.amount,
                total,
                limit,
            });
        }
        self.total_quantity = self.total_quantity.checked_add(charge.quantity).ok_or(UsageError::Overflow)?;
        self.total_amount = total;
        Ok(())
    }

    /// Whether a claim of `claimed` may replace the latest one; `limit` as in
    /// [`Session::record`].
    pub fn check_claim(&self, claimed: u64, limit: u64) -> Result<(), ClaimError> {
        if self.closed {
            return Err(ClaimError::Closed);
        }
        if claimed <= self.latest_claim {
            return Err(ClaimError::NotIncreasing {
                claimed,
                latest: self.latest_claim,
            });
        }
        if claimed > limit {
            return Err(ClaimError::AboveDeposit { claimed, limit });
        }
        if claimed > self.total_amount {
            return Err(ClaimError::AboveUsage {
                claimed,
                usage: self.total_amount,
            });
        }
        Ok(())
    }

    /// The thresholds of `deposit` the running total has crossed and that did
    /// not fire yet; they are recorded as fired, so each fires exactly once.
    pub fn crossed_alerts(&mut self, deposit: u64, thresholds_bps: &[u16]) -> Vec<u16> {
        let mut fired = Vec::new();
        for &t in thresholds_bps {
            let crossed = u128::from(self.total_amount) * 10_000 >= u128::from(deposit) * u128::from(t);
            if crossed && !self.fired_alerts.contains(&t) {
                self.fired_alerts.push(t);
                fired.push(t);
            }
        }
        fired
    }
}

/// Validates a user's alert thresholds: 1–10 distinct values in (0, 10 000] bps.
pub fn parse_thresholds(inputs: &[i64]) -> Result<Vec<u16>, ValidationError> {
    if inputs.is_empty() || inputs.len() > MAX_ALERT_THRESHOLDS {
        return Err(ValidationError::new(
            "thresholdsBps",
            Reason::OutOfRange,
            format!("give 1 to {MAX_ALERT_THRESHOLDS} thresholds"),
        ));
    }
    let mut out: Vec<u16> = Vec::with_capacity(inputs.len());
    for &t in inputs {
        let t = u16::try_from(t).ok().filter(|t| (1..=10_000).contains(t)).ok_or_else(|| {
            ValidationError::new("thresholdsBps", Reason::OutOfRange, "each threshold is 1 to 10000 basis points")
        })?;
        if out.contains(&t) {
            return Err(ValidationError::new("thresholdsBps", Reason::Duplicate, format!("{t} is listed twice")));
        }
        out.push(t);
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn window(days: &[Weekday], start: &str, end: &str, m: i64) -> PeakWindowInput {
        PeakWindowInput {
            days: days.to_vec(),
            start: start.into(),
            end: end.into(),
            multiplier_bps: m,
        }
    }

    #[test]
    fn the_multiplier_of_the_window_containing_the_instant_applies() {
        let s = PeakSchedule::parse(&[window(&[Weekday::Mon, Weekday::Tue], "18:00", "22:00", 15_000)]).unwrap();
        // 2026-11-23 is a Monday.
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap();
        assert_eq!(s.multiplier_at(at(18, 0)), 15_000);
        assert_eq!(s.multiplier_at(at(21, 59)), 15_000);
        assert_eq!(s.multiplier_at(at(22, 0)), 10_000);
        assert_eq!(s.multiplier_at(at(17, 59)), 10_000);
        let wed = Utc.with_ymd_and_hms(2026, 11, 25, 19, 0, 0).unwrap();
        assert_eq!(s.multiplier_at(wed), 10_000);
    }

    #[test]
    fn overlapping_or_invalid_windows_are_refused() {
        let overlap = PeakSchedule::parse(&[
            window(&[Weekday::Mon], "08:00", "10:00", 12_000),
            window(&[Weekday::Mon, Weekday::Fri], "09:59", "11:00", 12_000),
        ]);
        assert!(overlap.is_err());
        assert!(PeakSchedule::parse(&[
            window(&[Weekday::Mon], "08:00", "10:00", 12_000),
            window(&[Weekday::Mon], "10:00", "24:00", 12_000),
        ])
        .is_ok());
        assert!(PeakSchedule::parse(&[window(&[Weekday::Mon], "10:00", "08:00", 12_000)]).is_err());
        assert!(PeakSchedule::parse(&[window(&[Weekday::Mon], "08:00", "10:00", 9_999)]).is_err());
        assert!(PeakSchedule::parse(&[window(&[], "08:00", "10:00", 12_000)]).is_err());
        assert!(PeakSchedule::parse(&[window(&[Weekday::Mon], "8:00", "24:01", 12_000)]).is_err());
    }

    #[test]
    fn a_usage_charge_rounds_down_in_the_buyers_favour() {
        let c = UsageCharge::price(3, 7, 15_000).unwrap();
        assert_eq!(c.amount, 31); // 3 × 7 × 1.5 = 31.5
        assert!(UsageCharge::price(u64::MAX, u64::MAX, 100_000).is_none());
    }

    #[test]
    fn alerts_fire_once_per_threshold() {
        let mut s = Session::default();
        let t = DEFAULT_ALERT_THRESHOLDS_BPS;
        s.total_amount = 499;
        assert!(s.crossed_alerts(1_000, &t).is_empty());
        s.total_amount = 800;
        assert_eq!(s.crossed_alerts(1_000, &t), vec![5_000, 8_000]);
        assert!(s.crossed_alerts(1_000, &t).is_empty());
        s.total_amount = 950;
        assert_eq!(s.crossed_alerts(1_000, &t), vec![9_500]);
    }

    #[test]
    fn claims_must_increase_and_stay_within_deposit_and_usage() {
        let mut s = Session {
            total_amount: 5_000,
            latest_claim: 2_000,
            ..Session::default()
        };
        assert!(matches!(s.check_claim(2_000, 9_000), Err(ClaimError::NotIncreasing { .. })));
        assert!(matches!(s.check_claim(9_001, 9_000), Err(ClaimError::AboveDeposit { .. })));
        assert!(matches!(s.check_claim(5_001, 9_000), Err(ClaimError::AboveUsage { .. })));
        assert!(s.check_claim(5_000, 9_000).is_ok());
        s.closed = true;
        assert!(s.check_claim(5_000, 9_000).is_err());
    }

    proptest! {
        #[test]
        fn usage_never_exceeds_the_limit(charges in prop::collection::vec((1u64..1_000, 1u64..1_000, 10_000u32..=30_000), 0..40), limit in 0u64..5_000_000) {
            let mut s = Session::default();
            for (q, p, m) in charges {
                let c = UsageCharge::price(q, p, m).unwrap();
                let before = s.total_amount;
                match s.record(&c, limit) {
                    Ok(()) => prop_assert_eq!(s.total_amount, before + c.amount),
                    Err(_) => prop_assert_eq!(s.total_amount, before),
                }
                prop_assert!(s.total_amount <= limit);
            }
        }
    }
}
