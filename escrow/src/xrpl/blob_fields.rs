//! Reading fields of signed blobs that Agora made itself (stored set-up and
//! payout transactions), through the strict codec.

use super::codec::{decode_hex_blob, fields, FieldId, StObject};

/// The `LastLedgerSequence` of a blob, if it has one.
pub fn last_ledger_sequence_of(blob_hex: &str) -> Option<u32> {
    u32_field_of(blob_hex, fields::LAST_LEDGER_SEQUENCE)
}

/// The `Sequence` of a serialized transaction, if it parses and has one.
pub fn sequence_of(blob_hex: &str) -> Option<u32> {
    u32_field_of(blob_hex, fields::SEQUENCE)
}

fn u32_field_of(blob_hex: &str, field: FieldId) -> Option<u32> {
    let bytes = decode_hex_blob(blob_hex).ok()?;
    let parsed = StObject::parse(&bytes).ok()?;
    let leaf = parsed.get(field)?.as_leaf()?;
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
        assert_eq!(sequence_of(&signed.blob), Some(5));
        assert_eq!(sequence_of("zz"), None);
    }

    #[test]
    fn the_master_disable_alone_is_the_configuration_s_second_transaction() {
        use crate::xrpl::{sign_escrow_configuration, sign_master_disable, ConfigurationParams, EscrowSigners};
        let keyring = XrplKeyring::from_secret(&[7u8; 32]).unwrap();
        let party = |i: u32| keyring.escrow_account(100 + i).unwrap().address;
        let signers = EscrowSigners::new(party(1), party(2), party(3)).unwrap();
        let reserves = Reserves { base_drops: 1_000_000, owner_drops: 200_000 };
        let params = ConfigurationParams { first_sequence: 40, fee_drops: 12, last_ledger_sequence: 90, reserves };
        let both = sign_escrow_configuration(&keyring, 1, &signers, &params).unwrap();
        let alone = sign_master_disable(&keyring, 1, 41, 12, 90).unwrap();
        // Signatures are deterministic (RFC 6979): the same fields give the same blob.
        assert_eq!(alone, both.disable_master);
        assert_eq!(sequence_of(&both.signer_list_set.blob), Some(40));
        assert_eq!(sequence_of(&alone.blob), Some(41));
        assert!(sign_master_disable(&keyring, 1, 41, 0, 90).is_err(), "a zero fee is refused");
    }
}
