//! A plain XRP Payment signed by one account's master key: the operating account's
//! transfers and the devnet's faucet. Built and checked like the escrow set-up
//! transactions: serialized by xrpl-rust and by Agora's own writer, which must
//! agree, then decoded and verified again before it is returned.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::account::{SigningKey, XrplAddress};
use super::codec::{fields, tx_type, Field, StObject};
use super::setup::{check_fee, sign_single, SignedTx, TxBuildError};

/// What an XRP Payment carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XrpPayment {
    pub destination: XrplAddress,
    pub destination_tag: Option<u32>,
    pub amount_drops: u64,
    pub fee_drops: u64,
    /// The sender's next Sequence.
    pub sequence: u32,
    pub last_ledger_sequence: Option<u32>,
}

/// Signs `payment` from `key`'s account with its master key.
pub fn sign_xrp_payment(key: &SigningKey, payment: &XrpPayment) -> Result<SignedTx, TxBuildError> {
    check_fee("payment", payment.fee_drops)?;
    if payment.amount_drops == 0 {
        return Err(TxBuildError::ZeroAmount);
    }
    if payment.amount_drops > agora_domain::money::Asset::Xrp.max_supply() {
        return Err(TxBuildError::Overflow);
    }
    if &payment.destination == key.address() {
        return Err(TxBuildError::EscrowAccountReused(
            payment.destination.to_string(),
        ));
    }
    let mut json = json!({
        "TransactionType": "Payment",
        "Account": key.address().as_str(),
        "Destination": payment.destination.as_str(),
        "Amount": payment.amount_drops.to_string(),
        "Fee": payment.fee_drops.to_string(),
        "Flags": 0,
        "Sequence": payment.sequence,
    });
    let mut tx_fields = vec![
        Field::u16(fields::TRANSACTION_TYPE, tx_type::PAYMENT),
        Field::account(fields::ACCOUNT, key.address().account_id()),
        Field::account(fields::DESTINATION, payment.destination.account_id()),
        Field::xrp(fields::AMOUNT, payment.amount_drops),
        Field::xrp(fields::FEE, payment.fee_drops),
        Field::u32(fields::FLAGS, 0),
        Field::u32(fields::SEQUENCE, payment.sequence),
    ];
    if let Some(tag) = payment.destination_tag {
        json["DestinationTag"] = tag.into();
        tx_fields.push(Field::u32(fields::DESTINATION_TAG, tag));
    }
    if let Some(last) = payment.last_ledger_sequence {
        json["LastLedgerSequence"] = last.into();
        tx_fields.push(Field::u32(fields::LAST_LEDGER_SEQUENCE, last));
    }
    sign_single(key, json, StObject::new(tx_fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xrpl::inspect::{DecodedTx, TxAuthorization};

    #[test]
    fn a_payment_signed_by_the_genesis_key_decodes_and_verifies() {
        // rippled's well-known genesis account ("masterpassphrase").
        let key = SigningKey::from_seed("snoPBrXtMeMyMHUVTgbuqAfg1SUTb").unwrap();
        assert_eq!(key.address().as_str(), "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh");
        let payment = XrpPayment {
            destination: XrplAddress::from_account_id([7; 20]),
            destination_tag: Some(3),
            amount_drops: 25_000_000,
            fee_drops: 10,
            sequence: 1,
            last_ledger_sequence: None,
        };
        let signed = sign_xrp_payment(&key, &payment).unwrap();
        let tx = DecodedTx::from_hex(&signed.blob).unwrap();
        assert_eq!(tx.hash(), signed.hash);
        assert_eq!(tx.json()["DestinationTag"], 3);
        assert!(tx.json().get("LastLedgerSequence").is_none());
        assert!(matches!(
            tx.verify_signatures(),
            Ok(TxAuthorization::Single { .. })
        ));
        let to_self = XrpPayment {
            destination: key.address().clone(),
            ..payment
        };
        assert!(sign_xrp_payment(&key, &to_self).is_err());
    }
}

/// Signs, with escrow account `escrow_index`'s master key, the Payment that
/// returns a deposit from an escrow account whose lock never held (the order
/// expired before the ledger showed its signer list and disabled master key).
/// Only then is the master key still able to sign; once the lock holds, the
/// ledger refuses it (`tefMASTER_DISABLED`) and refunds go through the multisig.
pub fn sign_unlocked_refund(
    keyring: &super::XrplKeyring,
    escrow_index: u32,
    payment: &XrpPayment,
) -> Result<SignedTx, TxBuildError> {
    sign_xrp_payment(&keyring.escrow_key(escrow_index)?, payment)
}
