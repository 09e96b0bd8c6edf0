//! Reading fields of signed blobs that Agora made itself (stored set-up and
//! payout transactions), through the strict codec.

use super::codec::{decode_hex_blob, fields, StObject};

/// The `LastLedgerSequence` of a blob, if it has one.
pub fn last_ledger_sequence_of(blob_hex: &str) -> Option<u32> {
    let bytes = decode_hex_blob(blob_hex).ok()?;
    let parsed = StObject::parse(&bytes).ok()?;
    let leaf = parsed.get(fields::LAST_LEDGER_SEQUENCE)?.as_leaf()?;
    let raw: [u8; 4] = leaf.try_into().ok()?;
    Some(u32::from_be_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xrpl::{sign_funding_payment, FundingParams, Reserves, SigningKey, XrplKeyring};

    #[test]
    fn reads_the_last_ledger_sequence_of_a_signed_payment() {
        let keyring = XrplKeyring::from_secret(&[7u8; 32]).unwrap();
        let operating: SigningKey = keyring.operating_key().unwrap();
        let escrow = keyring.escrow_account(1).unwrap().address;
        let reserves = Reserves { base_drops: 1_000_000, owner_drops: 200_000 };
        let signed = sign_funding_payment(
            &operating,
            &escrow,
            &FundingParams {
                amount_drops: reserves.funding_amount_drops(10).unwrap(),
                reserves,
                configuration_fee_drops: 10,
                fee_drops: 10,
                sequence: 5,
                last_ledger_sequence: 4_321,
            },
        )
        .unwrap();
        assert_eq!(last_ledger_sequence_of(&signed.blob), Some(4_321));
        assert_eq!(last_ledger_sequence_of("zz"), None);
    }
}
