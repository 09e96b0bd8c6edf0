//! A payout share the XRP Ledger refused. A `tec` result burns the Payment's
//! fee and consumes its Sequence but moves nothing (the destination needs a
//! tag, does not exist and the share is below the reserve, or accepts only
//! preauthorized deposits): sending the same Payment again would fail the same
//! way. Its recipient names a destination that can receive it; the share, less
//! the burned fee, goes there in a new Payment on a fresh Sequence, which the
//! marketplace co-signs where its policy allows and the parties sign again.

use agora_domain::escrow::{EscrowState, Party};
use agora_escrow::xrpl::{PayoutDestination, Recipient, XrplAddress};
use agora_persistence::orders::{self as store, OrderEventRecord};
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::signing::SigningGate;
use super::xrpl::recipient_name;
use super::{actor_name, load_for, save_and_hint, EscrowRecord, Order};
use crate::graphql::context::AppState;
use crate::graphql::errors::{ApiError, ApiResult};

/// The caller (the buyer or the provider) gives the destination for its own
/// refused share.
pub async fn set_payout_destination(
    app: &AppState,
    id: Uuid,
    user_id: Uuid,
    account: &str,
    destination_tag: Option<u32>,
) -> ApiResult<Order> {
    let address = XrplAddress::parse(account.trim())
        .map_err(|_| ApiError::bad_input("input.account", "INVALID_ADDRESS", "input.account: a classic XRPL address (r…)"))?;
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (mut order, actor) = load_for(&txn, id, user_id).await?;
    let recipient = match Party::from_actor(actor) {
        Some(Party::Buyer) => Recipient::Buyer,
        Some(Party::Provider) => Recipient::Provider,
        None => return Err(ApiError::forbidden("WRONG_ROLE", "only the buyer and the provider name their own destination")),
    };
    let EscrowState::PayingOut { payout, .. } = &order.state else {
        return Err(ApiError::conflict(
            "WRONG_STATE",
            format!("no payout is being paid (the order is {})", order.state.name()),
        ));
    };
    let outcome = payout.outcome();
    let before = order.state.name();
    let scanned = agora_persistence::chain::cursor(&txn, "xrpl")
        .await?
        .map_or(0, |c| u32::try_from(c.height).unwrap_or(u32::MAX));
    let validated = u32::try_from(app.tips.xrpl()).unwrap_or(u32::MAX).max(scanned);
    let EscrowRecord::Xrpl(x) = &mut order.escrow else {
        return Err(ApiError::conflict("WRONG_CHAIN", "only XRPL payouts have refused shares"));
    };
    let position = x
        .payout
        .as_ref()
        .and_then(|p| p.failed.iter().map(|f| f.position).find(|i| p.transactions[*i].recipient == recipient))
        .ok_or_else(|| ApiError::conflict("SHARE_NOT_FAILED", "the ledger has not refused a Payment of your share"))?;
    let destination = PayoutDestination {
        address,
        tag: destination_tag,
    };
    x.redirect_failed_share(&app.xrpl, position, destination.clone(), validated, 0, scanned)?;
    // The marketplace co-signs the new Payment only where its policy allows
    // this payout (an arbitration decision, an automatic outcome, a release);
    // otherwise the two parties sign it.
    let ctx = super::system_context(&order, u64::from(validated), now);
    let cosigned = SigningGate::sign_payout(app, &txn, &mut order, outcome, &ctx).await.is_ok();
    save_and_hint(app, &txn, &mut order, now).await?;
    let whose = recipient_name(recipient);
    let detail = format!(
        "the {whose} named {}{} for its refused share; a new Payment is to be signed{}",
        destination.address,
        destination.tag.map(|t| format!(" (tag {t})")).unwrap_or_default(),
        if cosigned { " (the marketplace co-signed it)" } else { " by the buyer and the provider" },
    );
    store::insert_order_event(
        &txn,
        &OrderEventRecord {
            order_id: order.id(),
            event: "PayoutDestinationChanged".into(),
            actor: actor_name(actor).into(),
            from_status: before.into(),
            to_status: order.state.name().into(),
            detail,
            at: now,
        },
    )
    .await?;
    txn.commit().await?;
    Ok(order)
}
