//! The words of order notifications: one subject and plain-text body per
//! notice and recipient, each naming the order and what to do next.

use agora_domain::escrow::{Notice, Outcome, PayoutBasis, Settled, TimelockWatch};
use agora_domain::money::Amount;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::NotificationKind;
use crate::orders::Order;

/// Whom a text is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    Buyer,
    Provider,
    Arbitrator,
}

/// What every order text draws on.
#[derive(Debug, Clone)]
pub struct OrderFacts {
    pub id: Uuid,
    pub title: String,
    pub amount_due: Amount,
    pub escrow_address: Option<String>,
    pub funding_by: DateTime<Utc>,
    pub delivery_by: DateTime<Utc>,
}

impl OrderFacts {
    pub fn of(order: &Order) -> Self {
        let deadlines = order.terms.deadlines();
        Self {
            id: order.id(),
            title: order.terms.listing().title.clone(),
            amount_due: order.terms.amount_due(),
            escrow_address: order.record.escrow_address.clone(),
            funding_by: deadlines.funding_by,
            delivery_by: deadlines.delivery_by,
        }
    }

    /// The first block of the id: enough to tell orders apart in a subject line.
    fn short(&self) -> String {
        self.id.simple().to_string().chars().take(8).collect()
    }

    fn what(&self) -> String {
        format!("\"{}\" (order {})", self.title, self.id)
    }
}

const FOOTER: &str = "\n\n-- \nAgora. You choose which notifications reach you by e-mail in your notification preferences.";

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn text(subject: String, body: String) -> (String, String) {
    (subject, format!("{body}{FOOTER}"))
}

pub fn order_placed(f: &OrderFacts, to: Recipient) -> (String, String) {
    let address = f.escrow_address.as_deref().unwrap_or("shown on the order");
    match to {
        Recipient::Buyer => text(
            format!("Order {} placed: fund the escrow", f.short()),
            format!(
                "You ordered {}.\n\nNext: send {} to the escrow address {} by {}. The order counts as funded once \
                 the payment has its confirmations; if it is not funded in time, it expires.",
                f.what(),
                f.amount_due,
                address,
                when(f.funding_by)
            ),
        ),
        _ => text(
            format!("New order {} for \"{}\"", f.short(), f.title),
            format!(
                "A buyer ordered {}.\n\nNext: nothing yet. The buyer has until {} to fund the escrow with {}; \
                 we will tell you when the money is in escrow, and only then should you start.",
                f.what(),
                when(f.funding_by),
                f.amount_due
            ),
        ),
    }
}

/// The notification for an escrow notice, or `None` for notices that only
/// go to the order history.
pub fn for_notice(f: &OrderFacts, to: Recipient, notice: &Notice) -> Option<(NotificationKind, String, String)> {
    let (kind, (subject, body)) = match notice {
        Notice::Funded { amount, .. } => (NotificationKind::Funded, funded(f, to, *amount)),
        Notice::Delivered { review_ends } => (NotificationKind::Delivered, delivered(f, to, *review_ends)),
        Notice::PayoutPrepared { outcome, basis } => match outcome {
            Outcome::Release => (NotificationKind::Released, released(f, to, *basis)),
            Outcome::Refund => (NotificationKind::Refunded, refunded(f, to)),
            // A split only follows an arbitrator's decision, which the
            // dispute service announces with the case.
            Outcome::Split { .. } => return None,
        },
        Notice::Settled { outcome } => (NotificationKind::PayoutConfirmed, settled(f, *outcome)),
        _ => return None,
    };
    Some((kind, subject, body))
}

fn funded(f: &OrderFacts, to: Recipient, amount: Amount) -> (String, String) {
    match to {
        Recipient::Provider => text(
            format!("Order {} funded: you can start", f.short()),
            format!(
                "The buyer's payment of {amount} for {} is confirmed and held in escrow.\n\nNext: deliver by {}, \
                 then mark the order delivered in Agora.",
                f.what(),
                when(f.delivery_by)
            ),
        ),
        _ => text(
            format!("Order {} funded: your payment is in escrow", f.short()),
            format!(
                "Your payment of {amount} for {} is confirmed and held in escrow.\n\nNext: the provider has until {} \
                 to deliver. If nothing is delivered by then, you can ask for a refund.",
                f.what(),
                when(f.delivery_by)
            ),
        ),
    }
}

fn delivered(f: &OrderFacts, to: Recipient, review_ends: DateTime<Utc>) -> (String, String) {
    match to {
        Recipient::Provider => text(
            format!("Order {} marked delivered", f.short()),
            format!(
                "You marked {} delivered.\n\nNext: the buyer reviews it until {}; the funds are released to you \
                 then at the latest, unless the buyer opens a dispute.",
                f.what(),
                when(review_ends)
            ),
        ),
        _ => text(
            format!("Order {} delivered: please review", f.short()),
            format!(
                "The provider marked {} delivered.\n\nNext: check the delivery, then release the funds, or open a \
                 dispute, by {}. If you do nothing, the funds are released to the provider then.",
                f.what(),
                when(review_ends)
            ),
        ),
    }
}

fn released(f: &OrderFacts, to: Recipient, basis: PayoutBasis) -> (String, String) {
    let why = match basis {
        PayoutBasis::ReviewWindowPassed { .. } => "The review period ended without a dispute, so the funds go to the provider.",
        PayoutBasis::BuyerReleased { .. } => "The buyer released the funds to the provider.",
        _ => "The funds go to the provider.",
    };
    let next = match to {
        Recipient::Provider => "Next: sign the payout with your escrow key in Agora; it is broadcast once it has every signature.",
        _ => "Next: if Agora asks for your signature on this payout, sign it with your escrow key.",
    };
    text(
        format!("Order {}: funds released to the provider", f.short()),
        format!("{why} The payout for {} is ready.\n\n{next}", f.what()),
    )
}

fn refunded(f: &OrderFacts, to: Recipient) -> (String, String) {
    let next = match to {
        Recipient::Buyer => "Next: sign the refund with your escrow key in Agora; it is broadcast once it has every signature.",
        _ => "Next: if Agora asks for your signature on this refund, sign it with your escrow key.",
    };
    text(
        format!("Order {}: the buyer is refunded", f.short()),
        format!("The escrow of {} is being refunded to the buyer; the refund payout is ready.\n\n{next}", f.what()),
    )
}

fn settled(f: &OrderFacts, outcome: Settled) -> (String, String) {
    let how = match outcome {
        Settled::Released => "the funds were paid to the provider".to_owned(),
        Settled::Refunded => "the funds were refunded to the buyer".to_owned(),
        Settled::Split { provider_bps } => format!(
            "the funds were split: {}.{:02} % to the provider, the rest to the buyer",
            provider_bps.get() / 100,
            provider_bps.get() % 100
        ),
    };
    text(
        format!("Order {} settled: payout confirmed", f.short()),
        format!(
            "The payout of {} is confirmed on chain: {how}.\n\nNext: nothing more is needed. You can now review \
             the other party.",
            f.what()
        ),
    )
}

pub fn timelock_margin(f: &OrderFacts, to: Recipient, watch: &TimelockWatch) -> (String, String) {
    let next = match to {
        Recipient::Arbitrator => "Next: decide the dispute now so the payout can confirm in time.",
        _ => "Next: settle the order now: release the funds, agree on a cancel, or finish the dispute.",
    };
    text(
        format!("Order {}: settle it before the refund timelock opens", f.short()),
        format!(
            "{} is not settled, and from block {} the buyer can take the escrowed funds back alone (this alert \
             fires from block {}).\n\n{next}",
            f.what(),
            watch.unlock_height,
            watch.alert_height
        ),
    )
}

/// A metered session's usage alert: `threshold_bps` of the deposit is used;
/// `last` when it is the buyer's highest threshold (the deposit is nearly
/// exhausted: top up or stop).
pub fn usage_alert(f: &OrderFacts, to: Recipient, threshold_bps: u16, used: &Amount, last: bool) -> (NotificationKind, String, String) {
    let percent = format!("{}.{:02} %", threshold_bps / 100, threshold_bps % 100);
    let percent = percent.replace(".00 %", " %");
    let kind = if last {
        NotificationKind::DepositNearlyExhausted
    } else {
        NotificationKind::UsageThreshold
    };
    let next = match (to, last) {
        (Recipient::Buyer, true) => {
            "Next: top up by funding a new escrow for this session, or cap the session to stop. Sign a claim for \
             the usage so far either way."
        }
        (Recipient::Buyer, false) => "Next: nothing is needed; keep signing claims as usage accrues.",
        (_, true) => {
            "Next: ask the buyer for a claim of the usage so far; when the deposit runs out, close the session \
             with the latest claim."
        }
        (_, false) => "Next: nothing is needed; the buyer's claims keep your earnings safe.",
    };
    let subject = if last {
        format!("Order {}: the deposit is nearly used up ({percent})", f.short())
    } else {
        format!("Order {}: {percent} of the deposit used", f.short())
    };
    let (subject, body) = text(
        subject,
        format!(
            "Usage of {} reached {percent} of the deposit of {} ({used} so far).\n\n{next}",
            f.what(),
            f.amount_due
        ),
    );
    (kind, subject, body)
}

#[cfg(test)]
mod tests {
    use agora_domain::money::{Asset, BasisPoints};
    use chrono::TimeZone;

    use super::*;

    fn facts() -> OrderFacts {
        OrderFacts {
            id: Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap(),
            title: "Rust code review".into(),
            amount_due: Amount::new(Asset::Btc, 50_000).unwrap(),
            escrow_address: Some("bcrt1qescrow".into()),
            funding_by: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
            delivery_by: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
        }
    }

    #[test]
    fn funded_tells_each_party_its_next_step_with_the_order_id() {
        let f = facts();
        let notice = Notice::Funded {
            amount: f.amount_due,
            excess: 0,
        };
        let (kind, subject, body) = for_notice(&f, Recipient::Buyer, &notice).unwrap();
        assert_eq!(kind, NotificationKind::Funded);
        assert_eq!(subject, "Order 0193a1b2 funded: your payment is in escrow");
        assert!(body.contains("order 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), "{body}");
        assert!(body.contains("2026-11-24 10:00 UTC"), "{body}");
        let (_, subject, body) = for_notice(&f, Recipient::Provider, &notice).unwrap();
        assert_eq!(subject, "Order 0193a1b2 funded: you can start");
        assert!(body.contains("mark the order delivered"), "{body}");
    }

    #[test]
    fn payouts_map_to_released_refunded_and_confirmed() {
        let f = facts();
        let at = f.funding_by;
        let release = Notice::PayoutPrepared {
            outcome: Outcome::Release,
            basis: PayoutBasis::BuyerReleased { at },
        };
        assert_eq!(for_notice(&f, Recipient::Buyer, &release).unwrap().0, NotificationKind::Released);
        let refund = Notice::PayoutPrepared {
            outcome: Outcome::Refund,
            basis: PayoutBasis::DeliveryDeadlinePassed,
        };
        assert_eq!(for_notice(&f, Recipient::Buyer, &refund).unwrap().0, NotificationKind::Refunded);
        let split = Notice::PayoutPrepared {
            outcome: Outcome::Split {
                provider_bps: BasisPoints::new(2_500).unwrap(),
            },
            basis: PayoutBasis::DeliveryDeadlinePassed,
        };
        assert!(for_notice(&f, Recipient::Buyer, &split).is_none());
        let settled = Notice::Settled {
            outcome: Settled::Split {
                provider_bps: BasisPoints::new(2_550).unwrap(),
            },
        };
        let (kind, _, body) = for_notice(&f, Recipient::Provider, &settled).unwrap();
        assert_eq!(kind, NotificationKind::PayoutConfirmed);
        assert!(body.contains("25.50 % to the provider"), "{body}");
    }

    #[test]
    fn notices_without_a_kind_make_no_notification() {
        let f = facts();
        assert!(for_notice(&f, Recipient::Buyer, &Notice::Expired).is_none());
        assert!(for_notice(&f, Recipient::Buyer, &Notice::FundingReorged).is_none());
    }

    #[test]
    fn the_order_placed_e_mail_tells_the_buyer_where_and_when_to_pay() {
        let (subject, body) = order_placed(&facts(), Recipient::Buyer);
        assert_eq!(subject, "Order 0193a1b2 placed: fund the escrow");
        assert!(body.contains("send 50000 sats to the escrow address bcrt1qescrow by 2026-11-22 10:00 UTC"), "{body}");
    }
}
