//! Payment channels on the devnet, by rippled's rules (`PayChan.cpp`) as far as
//! Agora's flows use them:
//! - PaymentChannelCreate: the source keeps its reserve for one more owned
//!   object (`tecINSUFFICIENT_RESERVE`) and the amount (`tecUNFUNDED`); the
//!   destination exists (`tecNO_DST`) and gets its tag if it requires one
//!   (`tecDST_TAG_NEEDED`); a `CancelAfter` already past is `tecEXPIRED`. The
//!   channel id is the keylet of (source, destination, Sequence).
//! - PaymentChannelFund: source only (`tecNO_PERMISSION`), an unknown channel is
//!   `tecNO_ENTRY`; a new `Expiration` is at least close time + SettleDelay.
//! - PaymentChannelClaim: source or destination only; an unknown channel is
//!   `tecNO_TARGET`. A claim signature is checked in preflight
//!   (`temBAD_SIGNATURE`) and must be by the channel's key (`temBAD_SIGNER`); the
//!   destination needs one, the source does not. The balance only grows
//!   (`tecUNFUNDED_PAYMENT` for one at or below it) and never above the amount
//!   (`tecUNFUNDED_PAYMENT`). `tfClose` by the destination, or on a dry
//!   channel, closes at once; by the source it sets `Expiration` to close time +
//!   SettleDelay. `tfRenew` (source only) clears `Expiration`.
//! - Any Fund or Claim on a channel whose `Expiration` or `CancelAfter` passed
//!   closes it: the rest goes back to the source, whose owner count drops.
//!
//! Times are the parent ledger's close time, in seconds since the XRPL epoch.

use agora_escrow::xrpl::{verify_claim, ChannelId, XrplPublicKey};

use super::apply::reserve;
use super::ledger::{AccountId, PayChannel, State, LSF_REQUIRE_DEST_TAG};

pub(crate) const TF_RENEW: u32 = 0x0001_0000;
pub(crate) const TF_CLOSE: u32 = 0x0002_0000;
const TF_FULLY_CANONICAL_SIG: u32 = 0x8000_0000;

/// The channel fields a transaction carries, as the engine reads them.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelFields {
    pub channel: Option<String>,
    pub amount: Option<u64>,
    pub balance: Option<u64>,
    pub public_key: Option<String>,
    pub signature: Option<String>,
    pub settle_delay: Option<u32>,
    pub expiration: Option<u32>,
    pub cancel_after: Option<u32>,
}

fn channel_key(text: Option<&str>) -> Option<[u8; 32]> {
    ChannelId::parse(text?).ok().map(|c| *c.as_bytes())
}

/// The `tem` checks of the three channel transactions.
pub(crate) fn preflight(
    tx_type: &str,
    account: &AccountId,
    destination: Option<&AccountId>,
    flags: u32,
    f: &ChannelFields,
) -> Result<(), &'static str> {
    match tx_type {
        "PaymentChannelCreate" => {
            if flags & !TF_FULLY_CANONICAL_SIG != 0 {
                return Err("temINVALID_FLAG");
            }
            if !f.amount.is_some_and(|a| a > 0) {
                return Err("temBAD_AMOUNT");
            }
            if destination == Some(account) {
                return Err("temDST_IS_SRC");
            }
            let key = f.public_key.as_deref().map(XrplPublicKey::parse_hex);
            if !matches!(key, Some(Ok(_))) {
                return Err("temMALFORMED");
            }
        }
        "PaymentChannelFund" => {
            if flags & !TF_FULLY_CANONICAL_SIG != 0 {
                return Err("temINVALID_FLAG");
            }
            if !f.amount.is_some_and(|a| a > 0) {
                return Err("temBAD_AMOUNT");
            }
            if channel_key(f.channel.as_deref()).is_none() {
                return Err("temMALFORMED");
            }
        }
        "PaymentChannelClaim" => {
            if flags & !(TF_FULLY_CANONICAL_SIG | TF_RENEW | TF_CLOSE) != 0 {
                return Err("temINVALID_FLAG");
            }
            if flags & TF_RENEW != 0 && flags & TF_CLOSE != 0 {
                return Err("temMALFORMED");
            }
            let Some(channel) = channel_key(f.channel.as_deref()) else {
                return Err("temMALFORMED");
            };
            if f.balance == Some(0) || f.amount == Some(0) {
                return Err("temBAD_AMOUNT");
            }
            if let (Some(b), Some(a)) = (f.balance, f.amount) {
                if b > a {
                    return Err("temBAD_AMOUNT");
                }
            }
            if let Some(signature) = &f.signature {
                let (Some(key), Some(balance)) = (&f.public_key, f.balance) else {
                    return Err("temMALFORMED");
                };
                let authorized = f.amount.unwrap_or(balance);
                let Ok(key) = XrplPublicKey::parse_hex(key) else {
                    return Err("temMALFORMED");
                };
                let Ok(signature) = hex::decode(signature) else {
                    return Err("temMALFORMED");
                };
                if !verify_claim(&key, &ChannelId::from_bytes(channel), authorized, &signature) {
                    return Err("temBAD_SIGNATURE");
                }
            }
        }
        _ => return Err("temDISABLED"),
    }
    Ok(())
}

/// Closes `id`: what was not paid out goes back to the owner.
fn close_channel(state: &mut State, id: &[u8; 32]) {
    let Some(c) = state.channels.remove(id) else { return };
    if let Some(owner) = state.accounts.get_mut(&c.owner) {
        owner.balance += c.amount - c.balance;
        owner.owner_count = owner.owner_count.saturating_sub(1);
    }
}

fn expired(c: &PayChannel, now: u32) -> bool {
    c.cancel_after.is_some_and(|t| now >= t) || c.expiration.is_some_and(|t| now >= t)
}

/// The transaction's effects on channels (the fee and Sequence are the
/// caller's; `prior_balance` is the sender's balance before the fee).
/// `Err` carries a `tec` (kept, fee taken) or a `tem` (dropped) result.
#[allow(clippy::too_many_arguments)]
pub(crate) fn do_apply(
    state: &mut State,
    tx_type: &str,
    account: &AccountId,
    destination: Option<&AccountId>,
    destination_tag: Option<u32>,
    flags: u32,
    f: &ChannelFields,
    sequence: u32,
    prior_balance: u64,
    fee: u64,
    tx_hash: &str,
    ledger_index: u32,
) -> Result<(), &'static str> {
    let now = state.parent_close_time;
    let sender = state.accounts.get(account).cloned().ok_or("tecUNFUNDED")?;
    match tx_type {
        "PaymentChannelCreate" => {
            let dst = *destination.ok_or("temDST_NEEDED")?;
            let amount = f.amount.ok_or("temBAD_AMOUNT")?;
            let needed = reserve(sender.owner_count + 1);
            if prior_balance < needed {
                return Err("tecINSUFFICIENT_RESERVE");
            }
            if prior_balance < needed.saturating_add(amount) {
                return Err("tecUNFUNDED");
            }
            let Some(d) = state.accounts.get(&dst) else {
                return Err("tecNO_DST");
            };
            if d.flags & LSF_REQUIRE_DEST_TAG != 0 && destination_tag.is_none() {
                return Err("tecDST_TAG_NEEDED");
            }
            if f.cancel_after.is_some_and(|t| now >= t) {
                return Err("tecEXPIRED");
            }
            let owner = agora_escrow::xrpl::XrplAddress::from_account_id(*account);
            let to = agora_escrow::xrpl::XrplAddress::from_account_id(dst);
            let id = *agora_escrow::xrpl::channel_id(&owner, &to, sequence).as_bytes();
            let public_key = f
                .public_key
                .as_deref()
                .and_then(|k| hex::decode(k).ok())
                .ok_or("temMALFORMED")?;
            state.channels.insert(
                id,
                PayChannel {
                    owner: *account,
                    destination: dst,
                    amount,
                    balance: 0,
                    public_key,
                    settle_delay: f.settle_delay.unwrap_or_default(),
                    expiration: None,
                    cancel_after: f.cancel_after,
                    destination_tag,
                    previous_txn_id: tx_hash.to_owned(),
                    previous_txn_lgr_seq: ledger_index,
                },
            );
            if let Some(s) = state.accounts.get_mut(account) {
                s.balance -= amount;
                s.owner_count += 1;
            }
        }
        "PaymentChannelFund" => {
            let id = channel_key(f.channel.as_deref()).ok_or("temMALFORMED")?;
            let c = state.channels.get(&id).cloned().ok_or("tecNO_ENTRY")?;
            if c.owner != *account {
                return Err("tecNO_PERMISSION");
            }
            if expired(&c, now) {
                close_channel(state, &id);
                return Ok(());
            }
            let amount = f.amount.ok_or("temBAD_AMOUNT")?;
            // After the fee, as rippled's doApply sees the account.
            let balance = prior_balance - fee;
            let needed = reserve(sender.owner_count);
            if balance < needed {
                return Err("tecINSUFFICIENT_RESERVE");
            }
            if balance < needed.saturating_add(amount) {
                return Err("tecUNFUNDED");
            }
            let mut c = c;
            if let Some(e) = f.expiration {
                let min = now.saturating_add(c.settle_delay);
                if e < min {
                    return Err("temBAD_EXPIRATION");
                }
                c.expiration = Some(e);
            }
            c.amount += amount;
            c.previous_txn_id = tx_hash.to_owned();
            c.previous_txn_lgr_seq = ledger_index;
            state.channels.insert(id, c);
            if let Some(s) = state.accounts.get_mut(account) {
                s.balance -= amount;
            }
        }
        "PaymentChannelClaim" => {
            let id = channel_key(f.channel.as_deref()).ok_or("temMALFORMED")?;
            let mut c = state.channels.get(&id).cloned().ok_or("tecNO_TARGET")?;
            let is_source = c.owner == *account;
            let is_destination = c.destination == *account;
            if !is_source && !is_destination {
                return Err("tecNO_PERMISSION");
            }
            if expired(&c, now) {
                close_channel(state, &id);
                return Ok(());
            }
            if let Some(requested) = f.balance {
                if is_destination && f.signature.is_none() {
                    return Err("temBAD_SIGNATURE");
                }
                if f.signature.is_some() {
                    let key = f.public_key.as_deref().and_then(|k| hex::decode(k).ok());
                    if key.as_deref() != Some(c.public_key.as_slice()) {
                        return Err("temBAD_SIGNER");
                    }
                }
                if requested > c.amount {
                    return Err("tecUNFUNDED_PAYMENT");
                }
                if requested <= c.balance {
                    // Nothing requested.
                    return Err("tecUNFUNDED_PAYMENT");
                }
                let delta = requested - c.balance;
                let dst = state.accounts.get_mut(&c.destination).ok_or("tecNO_DST")?;
                dst.balance += delta;
                c.balance = requested;
            }
            if flags & TF_RENEW != 0 {
                if !is_source {
                    return Err("tecNO_PERMISSION");
                }
                c.expiration = None;
            }
            c.previous_txn_id = tx_hash.to_owned();
            c.previous_txn_lgr_seq = ledger_index;
            state.channels.insert(id, c.clone());
            if flags & TF_CLOSE != 0 {
                if is_destination || c.balance == c.amount {
                    close_channel(state, &id);
                } else {
                    let settle = now.saturating_add(c.settle_delay);
                    if c.expiration.is_none_or(|e| e > settle) {
                        if let Some(stored) = state.channels.get_mut(&id) {
                            stored.expiration = Some(settle);
                        }
                    }
                }
            }
        }
        _ => return Err("temDISABLED"),
    }
    Ok(())
}

/// The accounts a channel transaction may change besides its sender: the
/// channel's owner and destination.
pub(crate) fn channel_parties(state: &State, channel: Option<&str>) -> Vec<AccountId> {
    channel_key(channel)
        .and_then(|id| state.channels.get(&id))
        .map(|c| vec![c.owner, c.destination])
        .unwrap_or_default()
}
