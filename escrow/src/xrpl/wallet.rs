//! A minimal wallet for development and the devnet walkthrough: new family
//! seeds, and multisigning any unsigned transaction blob as one signer.

use super::account::{KeyError, SigningKey};
use super::codec::{decode_hex_blob, fields, Field, StObject};
use super::multisig::MultisigError;

/// A new secp256k1 family seed (`s…`) from `entropy`.
pub fn encode_family_seed(entropy: [u8; 16]) -> Result<String, KeyError> {
    xrpl::core::addresscodec::encode_seed(entropy, xrpl::constants::CryptoAlgorithm::SECP256K1)
        .map_err(|e| KeyError::Derivation(e.to_string()))
}

/// Signs the unsigned transaction `unsigned_hex` (`SigningPubKey` empty) as one
/// multisigner with `key` and returns the signer blob, the form
/// `submitPayoutSignature` takes.
pub fn multisign_blob(unsigned_hex: &str, key: &SigningKey) -> Result<String, MultisigError> {
    let malformed = |e: super::codec::DecodeError| MultisigError::MalformedBlob(e.0);
    let bytes = decode_hex_blob(unsigned_hex).map_err(malformed)?;
    let parsed = StObject::parse(&bytes).map_err(malformed)?;
    if parsed.get(fields::SIGNERS).is_some() {
        return Err(MultisigError::MalformedBlob("the blob is already signed".into()));
    }
    let data = super::codec::multisig_signing_data(&parsed.to_bytes(), key.address());
    let signature = key.sign(&data).map_err(|e| MultisigError::Signing(e.to_string()))?;
    let signer = Field::object(
        fields::SIGNER,
        vec![
            Field::blob(fields::SIGNING_PUB_KEY, key.public_key().as_bytes()),
            Field::blob(fields::TXN_SIGNATURE, &signature),
            Field::account(fields::ACCOUNT, key.address().account_id()),
        ],
    );
    let signed = parsed.with(Field::array(fields::SIGNERS, vec![signer]));
    Ok(hex::encode_upper(signed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xrpl::{
        plan_payout, EscrowSigners, PayoutDestination, PayoutParams, PayoutParties, SignatureCollector, XrplKeyring,
    };
    use agora_domain::escrow::payout::PayoutTerms;
    use agora_domain::money::BasisPoints;

    #[test]
    fn a_blob_multisigned_here_is_accepted_by_the_collector() {
        let keyring = XrplKeyring::from_secret(&[9u8; 32]).unwrap();
        let buyer = SigningKey::from_seed(&encode_family_seed([1u8; 16]).unwrap()).unwrap();
        let provider = SigningKey::from_seed(&encode_family_seed([2u8; 16]).unwrap()).unwrap();
        let arbitrator = keyring.arbitrator_account().unwrap();
        let escrow = keyring.escrow_account(3).unwrap().address;
        let to = |k: &SigningKey| PayoutDestination {
            address: k.address().clone(),
            tag: None,
        };
        let plan = plan_payout(
            &escrow,
            &PayoutParties {
                provider: to(&provider),
                buyer: to(&buyer),
                marketplace: PayoutDestination {
                    address: arbitrator.address.clone(),
                    tag: None,
                },
            },
            &PayoutParams {
                funded_drops: 10_000_000,
                terms: PayoutTerms {
                    provider_bps: BasisPoints::FULL,
                    commission_bps: BasisPoints::ZERO,
                    arbitration_fee: 0,
                },
                base_fee_drops: 10,
                first_sequence: 5,
                last_ledger_sequence: 100,
            },
        )
        .unwrap();
        let tx = plan.transactions[0].clone();
        let signers = EscrowSigners::new(buyer.address().clone(), provider.address().clone(), arbitrator.address).unwrap();
        let mut collector = SignatureCollector::new(tx.clone(), signers);
        collector.add_signer_blob(&multisign_blob(&tx.unsigned_blob(), &buyer).unwrap()).unwrap();
        collector.add_signer_blob(&multisign_blob(&tx.unsigned_blob(), &provider).unwrap()).unwrap();
        assert!(collector.finalize().is_ok());
        assert!(multisign_blob("zz", &buyer).is_err());
    }
}
