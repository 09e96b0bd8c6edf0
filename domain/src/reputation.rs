//! Reputation: the rules for reviews, and the scores computed from settled
//! orders — providers' scores, buyers' records and arbitrators' records.
//!
//! # The provider score
//!
//! Every *observation* is a star value `rᵢ` (1–5) with a weight `wᵢ`:
//!
//! - a **review** by the buyer of a settled order: `rᵢ` = its rating;
//! - a **dispute fault** ([`provider_at_fault`]): an arbitrated split that
//!   gave the provider less than half, or a refund because the delivery
//!   deadline passed undelivered. It counts as an extra 1-star observation
//!   with that order's weight, whether or not the buyer also reviewed.
//!
//! `wᵢ = value(orderᵢ) × recency(orderᵢ)`:
//!
//! - `value = clamp(√(amount / reference(asset)), 0.1, 10)`. The amount is the
//!   order's amount due (what the buyer put at stake) in the asset's minor
//!   units, divided by a per-asset reference amount ([`ValueReference`]) so
//!   satoshis and drops are never compared directly: an order of exactly one
//!   reference amount weighs 1 in either asset. The square root lets larger
//!   orders count more without letting one large order drown a hundred
//!   ordinary ones; the clamp bounds both ends.
//! - `recency = 0.5 ^ (age_days / half_life_days)` with `age` measured from
//!   the order's settlement (when the service was judged) to now: an
//!   observation half a life old counts half.
//!
//! The score is a Bayesian average with prior mean `m` and prior weight `C`
//! (in the same units as `wᵢ`, i.e. `C` fresh reference-sized orders):
//!
//! ```text
//! score = (C·m + Σ wᵢ·rᵢ) / (C + Σ wᵢ)
//!       = m + Σ contributionᵢ,   contributionᵢ = wᵢ·(rᵢ − m) / (C + Σ wⱼ)
//! ```
//!
//! so a single 5-star review moves a new provider only part of the way from
//! `m` towards 5, and every input's share of the score can be shown. A
//! provider without observations has no score (stored as 0 with a count of
//! 0, so unrated providers sort after rated ones). Scores are stored in
//! thousandths of a star, rounded half away from zero, in `0..=5000`.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::escrow::{Party, Settled};
use crate::money::{Amount, Asset, BasisPoints};
use crate::text::{bounded, Lines, Reason, ValidationError};

/// How long after its creation a review can still be edited.
pub const REVIEW_EDIT_WINDOW_DAYS: i64 = 14;
/// The longest review text, in characters.
pub const REVIEW_TEXT_MAX_CHARS: usize = 2_000;

/// A rating of 1 to 5 stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rating(u8);

impl Rating {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 5;

    pub fn parse(value: i64) -> Result<Self, ValidationError> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&value) {
            Ok(Self(value as u8))
        } else {
            Err(ValidationError::new(
                "rating",
                Reason::OutOfRange,
                format!("must be a whole number of stars from {} to {}, got {value}", Self::MIN, Self::MAX),
            ))
        }
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

/// Validates optional review text: trimmed, at most
/// [`REVIEW_TEXT_MAX_CHARS`] characters, line breaks allowed. Blank text is
/// the same as none.
pub fn parse_review_text(input: Option<&str>) -> Result<Option<String>, ValidationError> {
    let Some(input) = input else {
        return Ok(None);
    };
    let text = bounded("text", input, 0, REVIEW_TEXT_MAX_CHARS, Lines::Multi)?;
    Ok((!text.is_empty()).then_some(text))
}

/// The last moment a review created at `created_at` may be edited.
pub fn review_editable_until(created_at: DateTime<Utc>) -> DateTime<Utc> {
    crate::escrow::deadlines::add(created_at, Duration::days(REVIEW_EDIT_WINDOW_DAYS))
}

/// Whether a review whose window ends at `editable_until` may be edited at
/// `now` (allowed up to and including the deadline, as for every deadline).
pub fn may_edit_review(editable_until: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    !crate::escrow::deadlines::passed(now, editable_until)
}

// ---------------------------------------------------------------------------
// Settlements: what a settled order says about its parties.

/// The facts about a settled order that reputation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementFacts {
    pub outcome: Settled,
    /// Refunded because the delivery deadline passed without a delivery
    /// (the buyer's `requestRefund` or the scheduler's automatic refund).
    pub refunded_for_late_delivery: bool,
    /// Who opened a dispute on the order, if anyone did.
    pub dispute_opened_by: Option<Party>,
}

/// Half of the pool, in basis points: the line between winning and losing a split.
const HALF_BPS: u16 = 5_000;

/// Whether the order counts as a fault of the provider: an arbitrator gave
/// the provider less than half, or the buyer was refunded because the
/// provider did not deliver in time. A mutual cancel and an even split are
/// nobody's fault; a refund through the buyer's timelock path alone proves
/// nothing about the provider.
pub fn provider_at_fault(facts: &SettlementFacts) -> bool {
    match facts.outcome {
        Settled::Split { provider_bps } => provider_bps.get() < HALF_BPS,
        Settled::Refunded => facts.refunded_for_late_delivery,
        Settled::Released => false,
    }
}

/// Whether the buyer lost a dispute on the order: an arbitrator gave the
/// provider more than half.
pub fn buyer_lost_dispute(facts: &SettlementFacts) -> bool {
    matches!(facts.outcome, Settled::Split { provider_bps } if provider_bps.get() > HALF_BPS)
}

// ---------------------------------------------------------------------------
// The provider score.

/// The amount of each asset that weighs 1. They are meant to be roughly the
/// same value of an ordinary order; only ratios within one asset matter
/// exactly, so they need revisiting only when prices move by multiples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueReference {
    pub btc_sats: u64,
    pub xrp_drops: u64,
}

impl ValueReference {
    pub const fn minor(&self, asset: Asset) -> u64 {
        match asset {
            Asset::Btc => self.btc_sats,
            Asset::Xrp => self.xrp_drops,
        }
    }
}

/// The constants of the formula (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreParams {
    /// `m`: where a provider without history starts, in stars.
    pub prior_mean: f64,
    /// `C`: how many fresh reference-sized observations the prior is worth.
    pub prior_weight: f64,
    pub half_life_days: f64,
    pub reference: ValueReference,
    pub min_value_weight: f64,
    pub max_value_weight: f64,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            prior_mean: 3.5,
            prior_weight: 5.0,
            half_life_days: 180.0,
            // 0.001 BTC and 20 XRP: an ordinary expert session in each asset.
            reference: ValueReference {
                btc_sats: 100_000,
                xrp_drops: 20_000_000,
            },
            min_value_weight: 0.1,
            max_value_weight: 10.0,
        }
    }
}

/// What an observation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    Review,
    DisputeFault,
}

/// One observation about a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub order_id: Uuid,
    pub kind: InputKind,
    /// The review's rating; 1 for a dispute fault.
    pub stars: u8,
    /// The order's amount due.
    pub value: Amount,
    /// When the order settled; recency counts from here.
    pub at: DateTime<Utc>,
}

impl Observation {
    pub const fn review(order_id: Uuid, rating: Rating, value: Amount, settled_at: DateTime<Utc>) -> Self {
        Self {
            order_id,
            kind: InputKind::Review,
            stars: rating.get(),
            value,
            at: settled_at,
        }
    }

    pub const fn dispute_fault(order_id: Uuid, value: Amount, settled_at: DateTime<Utc>) -> Self {
        Self {
            order_id,
            kind: InputKind::DisputeFault,
            stars: Rating::MIN,
            value,
            at: settled_at,
        }
    }
}

/// An observation with its weights and its share of the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredInput {
    pub observation: Observation,
    pub weight_value: f64,
    pub weight_recency: f64,
    /// `weight_value × weight_recency`.
    pub weight: f64,
    /// How far this input moves the score from the prior mean, in stars.
    pub contribution: f64,
}

/// A provider's score and everything it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderScore {
    /// Stars; `None` without any observation.
    pub score: Option<f64>,
    pub review_count: u32,
    pub fault_count: u32,
    /// The inputs, newest first.
    pub inputs: Vec<ScoredInput>,
    pub params: ScoreParams,
    pub computed_at: DateTime<Utc>,
}

impl ProviderScore {
    /// The score in thousandths of a star (0 when there is none), as stored.
    pub fn milli(&self) -> u16 {
        self.score.map_or(0, to_milli)
    }
}

/// Stars to thousandths of a star, rounded half away from zero, within 0..=5000.
pub fn to_milli(stars: f64) -> u16 {
    if stars.is_nan() {
        return 0;
    }
    (stars * 1000.0).round().clamp(0.0, 5000.0) as u16
}

/// `clamp(√(amount / reference), min, max)`; see the module documentation.
pub fn value_weight(value: Amount, params: &ScoreParams) -> f64 {
    let reference = params.reference.minor(value.asset()).max(1) as f64;
    (value.minor() as f64 / reference)
        .sqrt()
        .clamp(params.min_value_weight, params.max_value_weight)
}

/// `0.5 ^ (age_days / half_life_days)`; an observation from the future (clock
/// skew) counts as fresh, never more.
pub fn recency_weight(at: DateTime<Utc>, now: DateTime<Utc>, params: &ScoreParams) -> f64 {
    let age_days = (now - at).num_seconds().max(0) as f64 / 86_400.0;
    if params.half_life_days <= 0.0 {
        return 1.0;
    }
    (-age_days / params.half_life_days).exp2()
}

/// The provider score at `now` from its observations (see the module
/// documentation for the formula).
pub fn provider_score(observations: &[Observation], now: DateTime<Utc>, params: &ScoreParams) -> ProviderScore {
    let mut inputs: Vec<ScoredInput> = observations
        .iter()
        .map(|o| {
            let weight_value = value_weight(o.value, params);
            let weight_recency = recency_weight(o.at, now, params);
            ScoredInput {
                observation: *o,
                weight_value,
                weight_recency,
                weight: weight_value * weight_recency,
                contribution: 0.0,
            }
        })
        .collect();
    let total_weight: f64 = inputs.iter().map(|i| i.weight).sum();
    let denominator = params.prior_weight + total_weight;
    let m = params.prior_mean;
    for input in &mut inputs {
        input.contribution = if denominator > 0.0 {
            input.weight * (f64::from(input.observation.stars) - m) / denominator
        } else {
            0.0
        };
    }
    let score = (!inputs.is_empty() && denominator > 0.0).then(|| {
        let weighted: f64 = inputs.iter().map(|i| i.weight * f64::from(i.observation.stars)).sum();
        ((params.prior_weight * m + weighted) / denominator).clamp(0.0, 5.0)
    });
    inputs.sort_by(|a, b| b.observation.at.cmp(&a.observation.at).then(a.observation.order_id.cmp(&b.observation.order_id)));
    let count = |kind| inputs.iter().filter(|i| i.observation.kind == kind).count() as u32;
    ProviderScore {
        score,
        review_count: count(InputKind::Review),
        fault_count: count(InputKind::DisputeFault),
        inputs,
        params: *params,
        computed_at: now,
    }
}

// ---------------------------------------------------------------------------
// Buyers.

/// A buyer's record, from its settled orders and the providers' reviews of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuyerRecord {
    pub orders_settled: u32,
    pub disputes_opened: u32,
    pub disputes_lost: u32,
    pub ratings_received: u32,
    /// The plain mean of the providers' ratings; `None` without any.
    pub average_rating_received: Option<f64>,
}

/// Folds a buyer's settled orders and the ratings providers gave it.
pub fn buyer_record(settlements: &[SettlementFacts], ratings_received: &[Rating]) -> BuyerRecord {
    let count = |f: &dyn Fn(&SettlementFacts) -> bool| settlements.iter().filter(|s| f(s)).count() as u32;
    let sum: u32 = ratings_received.iter().map(|r| u32::from(r.get())).sum();
    BuyerRecord {
        orders_settled: settlements.len() as u32,
        disputes_opened: count(&|s| s.dispute_opened_by == Some(Party::Buyer)),
        disputes_lost: count(&buyer_lost_dispute),
        ratings_received: ratings_received.len() as u32,
        average_rating_received: (!ratings_received.is_empty())
            .then(|| f64::from(sum) / ratings_received.len() as f64),
    }
}

// ---------------------------------------------------------------------------
// Arbitrators.

/// One case as the arbitrator record sees it: a dispute (or an appeal)
/// assigned to one arbitrator. Cases reassigned away from the arbitrator
/// before a decision are not its cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArbitratedCase {
    pub case_id: Uuid,
    /// When the case reached this arbitrator (assignment or reassignment).
    pub assigned_at: DateTime<Utc>,
    /// The arbitrator's decision, once made.
    pub decision: Option<CaseDecision>,
    /// The appeal against this decision, if one was filed.
    pub appeal: Option<AppealFacts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseDecision {
    pub decided_at: DateTime<Utc>,
    pub provider_bps: BasisPoints,
}

/// An appeal to a second arbitrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppealFacts {
    /// The second arbitrator's (final) split; `None` while pending.
    pub final_provider_bps: Option<BasisPoints>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArbitratorRecord {
    pub cases_assigned: u32,
    pub cases_decided: u32,
    /// Median of `decided_at − assigned_at` over decided cases (the mean of
    /// the two middle values for an even count, rounded down to the second).
    pub median_time_to_decision: Option<Duration>,
    pub appeals: u32,
    pub appeals_decided: u32,
    /// Decided appeals whose final split differs from this arbitrator's.
    pub appeals_overturned: u32,
}

/// The record of one arbitrator over its cases.
pub fn arbitrator_record(cases: &[ArbitratedCase]) -> ArbitratorRecord {
    let mut times: Vec<i64> = cases
        .iter()
        .filter_map(|c| c.decision.map(|d| (d.decided_at - c.assigned_at).num_seconds().max(0)))
        .collect();
    times.sort_unstable();
    let median = match times.len() {
        0 => None,
        n if n % 2 == 1 => Some(times[n / 2]),
        n => Some(((i128::from(times[n / 2 - 1]) + i128::from(times[n / 2])) / 2) as i64),
    };
    let appealed: Vec<(Option<CaseDecision>, AppealFacts)> =
        cases.iter().filter_map(|c| c.appeal.map(|a| (c.decision, a))).collect();
    let overturned = appealed
        .iter()
        .filter(|(decision, appeal)| match (decision, appeal.final_provider_bps) {
            (Some(d), Some(final_bps)) => final_bps != d.provider_bps,
            _ => false,
        })
        .count();
    ArbitratorRecord {
        cases_assigned: cases.len() as u32,
        cases_decided: times.len() as u32,
        median_time_to_decision: median.map(Duration::seconds),
        appeals: appealed.len() as u32,
        appeals_decided: appealed.iter().filter(|(_, a)| a.final_provider_bps.is_some()).count() as u32,
        appeals_overturned: overturned as u32,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn days_ago(days: i64) -> DateTime<Utc> {
        now() - Duration::days(days)
    }

    fn sats(n: u64) -> Amount {
        Amount::new(Asset::Btc, n).unwrap()
    }

    fn drops(n: u64) -> Amount {
        Amount::new(Asset::Xrp, n).unwrap()
    }

    /// A review on an order of one reference amount (100 000 sats, weight 1).
    fn review(n: u128, stars: i64, settled_at: DateTime<Utc>) -> Observation {
        review_of(n, stars, sats(100_000), settled_at)
    }

    fn review_of(n: u128, stars: i64, value: Amount, settled_at: DateTime<Utc>) -> Observation {
        Observation::review(Uuid::from_u128(n), Rating::parse(stars).unwrap(), value, settled_at)
    }

    fn milli(observations: &[Observation]) -> u16 {
        provider_score(observations, now(), &ScoreParams::default()).milli()
    }

    // Defaults in every fixture: m = 3.5, C = 5, half-life 180 days,
    // reference 100 000 sats / 20 000 000 drops.

    #[test]
    fn one_five_star_review_does_not_outrank_fifty_reviews_averaging_four_point_eight() {
        // (5·3.5 + 1·5) / (5 + 1) = 22.5 / 6 = 3.75
        let one = [review(1, 5, now())];
        assert_eq!(milli(&one), 3_750);
        // 40 fives and 10 fours average 4.8:
        // (17.5 + 40·5 + 10·4) / (5 + 50) = 257.5 / 55 = 4.681818… → 4682
        let fifty: Vec<Observation> = (0..50).map(|i| review(i, if i < 40 { 5 } else { 4 }, now())).collect();
        assert_eq!(milli(&fifty), 4_682);
    }

    #[test]
    fn no_observations_means_no_score() {
        let score = provider_score(&[], now(), &ScoreParams::default());
        assert_eq!((score.score, score.milli(), score.review_count), (None, 0, 0));
    }

    #[test]
    fn recency_halves_every_half_life() {
        let p = ScoreParams::default();
        assert_eq!(recency_weight(now(), now(), &p), 1.0);
        assert_eq!(recency_weight(days_ago(180), now(), &p), 0.5);
        assert_eq!(recency_weight(days_ago(360), now(), &p), 0.25);
        // A settlement "in the future" (clock skew) counts as fresh, not more.
        assert_eq!(recency_weight(now() + Duration::days(3), now(), &p), 1.0);
    }

    #[test]
    fn an_old_one_star_review_matters_less_than_a_recent_one() {
        let fresh_fives: Vec<Observation> = (0..4).map(|i| review(i, 5, now())).collect();
        // Old: the 1-star is 360 days old, recency 0.25:
        // (17.5 + 4·5 + 0.25·1) / (5 + 4 + 0.25) = 37.75 / 9.25 = 4.081081… → 4081
        let mut old = fresh_fives.clone();
        old.push(review(9, 1, days_ago(360)));
        assert_eq!(milli(&old), 4_081);
        // Recent: (17.5 + 20 + 1) / (5 + 4 + 1) = 38.5 / 10 = 3.85
        let mut recent = fresh_fives;
        recent.push(review(9, 1, now()));
        assert_eq!(milli(&recent), 3_850);
    }

    #[test]
    fn decay_pulls_an_idle_provider_back_towards_the_prior() {
        // One 5-star, 180 days ago (w = 0.5): (17.5 + 2.5) / 5.5 = 3.636363… → 3636
        assert_eq!(milli(&[review(1, 5, days_ago(180))]), 3_636);
    }

    #[test]
    fn larger_orders_weigh_more_by_the_square_root_of_their_value() {
        let p = ScoreParams::default();
        assert_eq!(value_weight(sats(400_000), &p), 2.0); // √4
        assert_eq!(value_weight(sats(25_000), &p), 0.5); // √0.25
        // 5★ on the large order, 1★ on the small one:
        // (17.5 + 2·5 + 0.5·1) / (5 + 2 + 0.5) = 28 / 7.5 = 3.733333… → 3733
        assert_eq!(milli(&[review_of(1, 5, sats(400_000), now()), review_of(2, 1, sats(25_000), now())]), 3_733);
        // Swapped: (17.5 + 2·1 + 0.5·5) / 7.5 = 22 / 7.5 = 2.933333… → 2933
        assert_eq!(milli(&[review_of(1, 1, sats(400_000), now()), review_of(2, 5, sats(25_000), now())]), 2_933);
    }

    #[test]
    fn value_is_normalised_per_asset_and_clamped() {
        let p = ScoreParams::default();
        // 80 000 000 drops is 4 XRP references, like 400 000 sats is 4 BTC references.
        assert_eq!(value_weight(drops(80_000_000), &p), value_weight(sats(400_000), &p));
        // 100 000 drops is tiny in XRP although it is a full reference in sats.
        assert_eq!(value_weight(drops(100_000), &p), 0.1); // √0.005 ≈ 0.07 → floor 0.1
        assert_eq!(value_weight(sats(1), &p), 0.1);
        assert_eq!(value_weight(sats(100_000_000), &p), 10.0); // √1000 ≈ 31.6 → cap 10
    }

    #[test]
    fn a_dispute_fault_counts_as_an_extra_one_star_observation() {
        // 5★ review on order 1, fault on order 2, both reference-sized and fresh:
        // (17.5 + 5 + 1) / (5 + 1 + 1) = 23.5 / 7 = 3.357142… → 3357
        let fault = Observation::dispute_fault(Uuid::from_u128(2), sats(100_000), now());
        let score = provider_score(&[review(1, 5, now()), fault], now(), &ScoreParams::default());
        assert_eq!(score.milli(), 3_357);
        assert_eq!((score.review_count, score.fault_count), (1, 1));
    }

    #[test]
    fn contributions_add_up_to_the_score_minus_the_prior() {
        // One 5★ (w = 1): contribution = 1·(5 − 3.5) / 6 = 0.25 = 3.75 − 3.5.
        let score = provider_score(&[review(1, 5, now()), review(2, 2, days_ago(90))], now(), &ScoreParams::default());
        let sum: f64 = score.inputs.iter().map(|i| i.contribution).sum();
        assert!((score.score.unwrap() - (3.5 + sum)).abs() < 1e-12);
        let single = provider_score(&[review(1, 5, now())], now(), &ScoreParams::default());
        assert!((single.inputs[0].contribution - 0.25).abs() < 1e-12);
        // Inputs are listed newest first.
        assert_eq!(score.inputs[0].observation.order_id, Uuid::from_u128(1));
    }

    fn facts(outcome: Settled, late: bool) -> SettlementFacts {
        SettlementFacts {
            outcome,
            refunded_for_late_delivery: late,
            dispute_opened_by: None,
        }
    }

    fn split(bps: i64) -> Settled {
        Settled::Split {
            provider_bps: BasisPoints::new(bps).unwrap(),
        }
    }

    #[test]
    fn faults_are_splits_below_half_and_refunds_for_late_delivery() {
        assert!(provider_at_fault(&facts(split(4_999), false)));
        assert!(!provider_at_fault(&facts(split(5_000), false)));
        assert!(provider_at_fault(&facts(Settled::Refunded, true)));
        // A mutual cancel or a timelock refund is nobody's fault.
        assert!(!provider_at_fault(&facts(Settled::Refunded, false)));
        assert!(!provider_at_fault(&facts(Settled::Released, false)));
        assert!(buyer_lost_dispute(&facts(split(5_001), false)));
        assert!(!buyer_lost_dispute(&facts(split(5_000), false)));
    }

    #[test]
    fn ratings_and_texts_are_validated() {
        assert_eq!(Rating::parse(0).unwrap_err().reason, Reason::OutOfRange);
        assert_eq!(Rating::parse(6).unwrap_err().reason, Reason::OutOfRange);
        assert_eq!(Rating::parse(5).unwrap().get(), 5);
        assert_eq!(parse_review_text(Some("  ")).unwrap(), None);
        assert_eq!(parse_review_text(Some(" fine\nwork ")).unwrap().as_deref(), Some("fine\nwork"));
        let long = "é".repeat(REVIEW_TEXT_MAX_CHARS + 1);
        assert_eq!(parse_review_text(Some(&long)).unwrap_err().reason, Reason::TooLong);
        assert!(parse_review_text(Some(&"é".repeat(REVIEW_TEXT_MAX_CHARS))).is_ok());
    }

    #[test]
    fn reviews_are_editable_for_fourteen_days_inclusive() {
        let until = review_editable_until(now());
        assert_eq!(until, now() + Duration::days(14));
        assert!(may_edit_review(until, until));
        assert!(!may_edit_review(until, until + Duration::seconds(1)));
    }

    #[test]
    fn a_buyer_record_counts_disputes_and_averages_ratings() {
        let opened = SettlementFacts {
            dispute_opened_by: Some(Party::Buyer),
            ..facts(split(7_000), false)
        };
        let record = buyer_record(
            &[facts(Settled::Released, false), opened],
            &[Rating::parse(4).unwrap(), Rating::parse(5).unwrap()],
        );
        assert_eq!(
            record,
            BuyerRecord {
                orders_settled: 2,
                disputes_opened: 1,
                disputes_lost: 1,
                ratings_received: 2,
                average_rating_received: Some(4.5),
            }
        );
        assert_eq!(buyer_record(&[], &[]).average_rating_received, None);
    }

    fn case(n: u128, hours_to_decide: Option<i64>, bps: i64, appeal: Option<Option<i64>>) -> ArbitratedCase {
        let assigned_at = days_ago(10);
        ArbitratedCase {
            case_id: Uuid::from_u128(n),
            assigned_at,
            decision: hours_to_decide.map(|h| CaseDecision {
                decided_at: assigned_at + Duration::hours(h),
                provider_bps: BasisPoints::new(bps).unwrap(),
            }),
            appeal: appeal.map(|a| AppealFacts {
                final_provider_bps: a.map(|b| BasisPoints::new(b).unwrap()),
            }),
        }
    }

    #[test]
    fn an_arbitrator_record_has_cases_median_time_and_overturned_appeals() {
        let cases = [
            case(1, Some(10), 5_000, None),
            // Appealed, and the second arbitrator changed the split: overturned.
            case(2, Some(30), 2_000, Some(Some(6_000))),
            // Appealed, upheld.
            case(3, Some(20), 8_000, Some(Some(8_000))),
            // Appealed, pending.
            case(4, Some(40), 8_000, Some(None)),
            // Still open.
            case(5, None, 0, None),
        ];
        let record = arbitrator_record(&cases);
        assert_eq!(
            record,
            ArbitratorRecord {
                cases_assigned: 5,
                cases_decided: 4,
                // Sorted 10, 20, 30, 40 h: (20 + 30) / 2 = 25 h.
                median_time_to_decision: Some(Duration::hours(25)),
                appeals: 3,
                appeals_decided: 2,
                appeals_overturned: 1,
            }
        );
        // Odd count: the middle value.
        assert_eq!(
            arbitrator_record(&cases[..3]).median_time_to_decision,
            Some(Duration::hours(20))
        );
        assert_eq!(arbitrator_record(&[]).median_time_to_decision, None);
    }

    #[test]
    fn an_even_median_rounds_down_to_the_second() {
        let mut cases = [case(1, Some(0), 0, None), case(2, Some(0), 0, None)];
        if let Some(d) = cases[1].decision.as_mut() {
            d.decided_at = cases[1].assigned_at + Duration::seconds(3);
        }
        // (0 + 3) / 2 = 1.5 s → 1 s.
        assert_eq!(arbitrator_record(&cases).median_time_to_decision, Some(Duration::seconds(1)));
    }
}
