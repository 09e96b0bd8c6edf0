//! Collecting and verifying multisigned XRPL payouts: the whole flow, and every way
//! a signer's blob or a final blob can be wrong. Bad blobs are crafted by editing
//! good ones with xrpl-rust's codec, so they are otherwise well-formed.

// Test helpers outside #[test] fns count as non-test code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod xrpl_support;

use agora_escrow::xrpl::{
    plan_payout, sign_escrow_configuration, sign_funding_payment, sign_payout, verify_multisigned,
    ConfigurationParams, EscrowSigners, FundingParams, MultisigError, PayoutDestination, PayoutTx,
    Recipient, SignatureCollector, TxBuildError, XrplAddress,
};
use serde_json::{json, Value};
use xrpl::core::binarycodec::{decode, encode};
use xrpl_support::*;

fn split_plan() -> Vec<PayoutTx> {
    let parties = parties(&json!({
        "provider": {"address": provider().address().as_str(), "tag": null},
        "buyer": {"address": buyer().address().as_str(), "tag": 4242},
        "marketplace": {"address": operating().address().as_str(), "tag": 7},
    }));
    let params = payout_params(&json!({
        "funded_drops": 5_000_000, "base_fee_drops": 10, "first_sequence": 502, "last_ledger_sequence": 2_000,
        "terms": {"provider_bps": 6_000, "commission_bps": 1_000, "arbitration_fee": 100_000},
    }));
    plan_payout(&escrow_address(), &parties, &params)
        .unwrap()
        .transactions
}

fn tx() -> PayoutTx {
    split_plan().remove(0)
}

fn edit(blob: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v = decode(blob).unwrap();
    f(&mut v);
    encode(&v).unwrap()
}

fn collect(tx: &PayoutTx, blob: &str) -> Result<Vec<XrplAddress>, MultisigError> {
    SignatureCollector::new(tx.clone(), signers()).add_signer_blob(blob)
}

fn buyer_blob(tx: &PayoutTx) -> String {
    sign_payout(tx, &buyer()).unwrap()
}

type Edit = Box<dyn Fn(&mut Value)>;

fn mismatch(field: &str) -> MultisigError {
    MultisigError::TransactionMismatch {
        field: field.into(),
    }
}

#[test]
fn a_payout_is_collected_finalized_and_verified() {
    let keyring = keyring();
    for tx in split_plan() {
        let mut collector = SignatureCollector::new(tx.clone(), signers());
        assert!(!collector.has_quorum());
        assert_eq!(
            collector.add_signer_blob(&buyer_blob(&tx)).unwrap(),
            vec![buyer().address().clone()]
        );
        assert!(matches!(
            collector.finalize(),
            Err(MultisigError::QuorumNotMet { have: 1, need: 2 })
        ));
        collector
            .add_signer_blob(&keyring.sign_payout_as_arbitrator(&tx).unwrap())
            .unwrap();
        let done = collector.finalize().unwrap();
        let again = verify_multisigned(&done.blob, &tx, &signers()).unwrap();
        assert_eq!(again, done);
        let mut sorted = done.signers.clone();
        sorted.sort();
        assert_eq!(done.signers, sorted);
        assert_eq!(done.hash.len(), 64);
    }
}

#[test]
fn with_three_signatures_the_final_blob_carries_the_two_the_fee_pays_for() {
    let tx = tx();
    let mut collector = SignatureCollector::new(tx.clone(), signers());
    collector
        .add_signer_blob(&sign_payout(&tx, &provider()).unwrap())
        .unwrap();
    collector.add_signer_blob(&buyer_blob(&tx)).unwrap();
    collector
        .add_signer_blob(&keyring().sign_payout_as_arbitrator(&tx).unwrap())
        .unwrap();
    let done = collector.finalize().unwrap();
    assert_eq!(done.signers, signers().sorted()[..2].to_vec());
}

#[test]
fn a_signature_from_an_account_not_in_the_signer_list_is_refused() {
    let tx = tx();
    let err = collect(&tx, &sign_payout(&tx, &outsider()).unwrap()).unwrap_err();
    assert_eq!(
        err,
        MultisigError::SignerNotInList {
            account: outsider().address().to_string()
        }
    );
    // Nor is the escrow account's own master key (disabled once set up).
    let v = vectors();
    let escrow_seed = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["index"] == ESCROW_INDEX)
        .unwrap()["seed"]
        .as_str()
        .unwrap()
        .to_owned();
    let escrow_key = agora_escrow::xrpl::SigningKey::from_seed(&escrow_seed).unwrap();
    assert_eq!(escrow_key.address(), &escrow_address());
    assert_eq!(
        collect(&tx, &sign_payout(&tx, &escrow_key).unwrap()).unwrap_err(),
        MultisigError::SignerNotInList {
            account: escrow_address().to_string()
        }
    );
}

#[test]
fn a_signature_over_a_different_amount_or_destination_is_refused() {
    let tx = tx();
    let other_amount = PayoutTx::new(
        tx.escrow(),
        tx.recipient(),
        tx.destination(),
        tx.amount_drops() + 1,
        10,
        tx.sequence(),
        tx.last_ledger_sequence(),
    )
    .unwrap();
    assert_eq!(
        collect(&tx, &buyer_blob(&other_amount)).unwrap_err(),
        mismatch("Amount")
    );

    let elsewhere = PayoutDestination {
        address: outsider().address().clone(),
        tag: tx.destination().tag,
    };
    let other_destination = PayoutTx::new(
        tx.escrow(),
        tx.recipient(),
        &elsewhere,
        tx.amount_drops(),
        10,
        tx.sequence(),
        tx.last_ledger_sequence(),
    )
    .unwrap();
    assert_eq!(
        collect(&tx, &buyer_blob(&other_destination)).unwrap_err(),
        mismatch("Destination")
    );

    // The signature over the other amount, moved onto the right transaction.
    let stolen =
        decode(&buyer_blob(&other_amount)).unwrap()["Signers"][0]["Signer"]["TxnSignature"].clone();
    let spliced = edit(&buyer_blob(&tx), |v| {
        v["Signers"][0]["Signer"]["TxnSignature"] = stolen.clone()
    });
    assert_eq!(
        collect(&tx, &spliced).unwrap_err(),
        MultisigError::InvalidSignature {
            account: buyer().address().to_string()
        }
    );
}

#[test]
fn every_field_of_the_transaction_is_compared() {
    let tx = tx();
    let good = buyer_blob(&tx);
    let cases: Vec<(&str, Edit)> = vec![
        (
            "Account",
            Box::new(|v| v["Account"] = outsider().address().as_str().into()),
        ),
        ("Fee", Box::new(|v| v["Fee"] = "31".into())),
        ("Sequence", Box::new(|v| v["Sequence"] = 503.into())),
        (
            "LastLedgerSequence",
            Box::new(|v| v["LastLedgerSequence"] = 2_001.into()),
        ),
        (
            "LastLedgerSequence",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("LastLedgerSequence");
            }),
        ),
        ("Flags", Box::new(|v| v["Flags"] = 0x0002_0000.into())), // tfPartialPayment
        (
            "TransactionType",
            Box::new(|v| v["TransactionType"] = "AccountDelete".into()),
        ),
        (
            "DestinationTag",
            Box::new(|v| v["DestinationTag"] = 1.into()),
        ),
        ("SourceTag", Box::new(|v| v["SourceTag"] = 1.into())),
        ("SendMax", Box::new(|v| v["SendMax"] = "1".into())),
        (
            "Memos",
            Box::new(|v| v["Memos"] = json!([{"Memo": {"MemoData": "AB"}}])),
        ),
        (
            "SigningPubKey",
            Box::new(|v| v["SigningPubKey"] = buyer().public_key().to_hex().into()),
        ),
        (
            "TxnSignature",
            Box::new(|v| v["TxnSignature"] = "3045".into()),
        ),
    ];
    for (field, change) in cases {
        let bad = edit(&good, |v| change(v));
        assert_eq!(collect(&tx, &bad).unwrap_err(), mismatch(field), "{field}");
    }
}

#[test]
fn a_signer_who_signs_twice_is_a_duplicate() {
    let tx = tx();
    let blob = buyer_blob(&tx);
    let mut collector = SignatureCollector::new(tx.clone(), signers());
    collector.add_signer_blob(&blob).unwrap();
    assert_eq!(
        collector.add_signer_blob(&blob).unwrap_err(),
        MultisigError::DuplicateSigner {
            account: buyer().address().to_string()
        }
    );
    let twice = edit(&blob, |v| {
        let entry = v["Signers"][0].clone();
        v["Signers"] = json!([entry.clone(), entry]);
    });
    assert!(matches!(
        collect(&tx, &twice),
        Err(MultisigError::DuplicateSigner { .. })
    ));
    assert!(matches!(
        verify_multisigned(&twice, &tx, &signers()),
        Err(MultisigError::DuplicateSigner { .. })
    ));
}

#[test]
fn too_few_signers_do_not_make_a_final_transaction() {
    let tx = tx();
    assert_eq!(
        verify_multisigned(&buyer_blob(&tx), &tx, &signers()).unwrap_err(),
        MultisigError::QuorumNotMet { have: 1, need: 2 }
    );
    assert_eq!(
        verify_multisigned(&tx.unsigned_blob(), &tx, &signers()).unwrap_err(),
        MultisigError::NotMultisigned
    );
    let empty = SignatureCollector::new(tx.clone(), signers());
    assert_eq!(
        empty.finalize().unwrap_err(),
        MultisigError::QuorumNotMet { have: 0, need: 2 }
    );
}

#[test]
fn a_public_key_that_does_not_match_the_signer_account_is_refused() {
    let tx = tx();
    // The provider signs the buyer's signing data and claims to be the buyer.
    let provider_key = provider();
    let provider_blob = sign_payout(&tx, &provider_key).unwrap();
    let provider_entry = decode(&provider_blob).unwrap()["Signers"][0]["Signer"].clone();
    let forged = edit(&buyer_blob(&tx), |v| {
        v["Signers"][0]["Signer"]["SigningPubKey"] = provider_entry["SigningPubKey"].clone();
        v["Signers"][0]["Signer"]["TxnSignature"] = provider_entry["TxnSignature"].clone();
    });
    assert_eq!(
        collect(&tx, &forged).unwrap_err(),
        MultisigError::KeyDoesNotMatchAccount {
            account: buyer().address().to_string()
        }
    );
}

#[test]
fn malformed_blobs_are_errors_never_panics() {
    let tx = tx();
    for bad in [
        "",
        "  ",
        "zz",
        "0",
        "E1",
        "F1",
        "0112",
        &"00".repeat(40_000),
    ] {
        assert!(
            matches!(collect(&tx, bad), Err(MultisigError::MalformedBlob(_))),
            "{bad:.20}"
        );
    }
    // Well-formed, but not the payout.
    assert_eq!(
        collect(&tx, "120003").unwrap_err(),
        mismatch("TransactionType")
    );
    assert_eq!(collect(&tx, "120000").unwrap_err(), mismatch("Flags"));
    let mut collector = SignatureCollector::new(tx.clone(), signers());
    collector.add_signer_blob(&buyer_blob(&tx)).unwrap();
    collector
        .add_signer_blob(&keyring().sign_payout_as_arbitrator(&tx).unwrap())
        .unwrap();
    let good = collector.finalize().unwrap().blob;
    for len in (0..good.len()).step_by(2) {
        assert!(
            verify_multisigned(&good[..len], &tx, &signers()).is_err(),
            "truncated to {len}"
        );
    }
    assert!(matches!(
        verify_multisigned(&format!("{good}00"), &tx, &signers()),
        Err(MultisigError::MalformedBlob(_))
    ));
    // No single-byte change of a valid final transaction is accepted.
    let bytes = hex::decode(&good).unwrap();
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        assert!(
            verify_multisigned(&hex::encode_upper(&changed), &tx, &signers()).is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn signers_out_of_order_are_refused_in_a_final_transaction() {
    let tx = tx();
    let mut collector = SignatureCollector::new(tx.clone(), signers());
    collector.add_signer_blob(&buyer_blob(&tx)).unwrap();
    collector
        .add_signer_blob(&sign_payout(&tx, &provider()).unwrap())
        .unwrap();
    let good = collector.finalize().unwrap().blob;
    let swapped = edit(&good, |v| {
        let signers = v["Signers"].as_array_mut().unwrap();
        signers.swap(0, 1);
    });
    assert_eq!(
        verify_multisigned(&swapped, &tx, &signers()).unwrap_err(),
        MultisigError::UnsortedSigners
    );
}

#[test]
fn a_blob_with_one_bad_entry_adds_no_signature() {
    let tx = tx();
    let outsider_entry =
        decode(&sign_payout(&tx, &outsider()).unwrap()).unwrap()["Signers"][0].clone();
    let mixed = edit(&buyer_blob(&tx), |v| {
        v["Signers"].as_array_mut().unwrap().push(outsider_entry)
    });
    let mut collector = SignatureCollector::new(tx.clone(), signers());
    assert!(matches!(
        collector.add_signer_blob(&mixed),
        Err(MultisigError::SignerNotInList { .. })
    ));
    assert!(collector.signed_by().is_empty());
}

#[test]
fn a_signature_for_another_payout_of_the_same_escrow_is_refused() {
    let plan = split_plan();
    let (first, second) = (&plan[0], &plan[1]);
    assert_eq!(first.recipient(), Recipient::Provider);
    assert!(collect(second, &buyer_blob(first)).is_err());
}

#[test]
fn setup_parameters_are_validated() {
    let escrow = escrow_address();
    let ok = FundingParams {
        amount_drops: 1_200_024,
        reserves: reserves(),
        configuration_fee_drops: 12,
        fee_drops: 12,
        sequence: 1,
        last_ledger_sequence: 10,
    };
    assert!(sign_funding_payment(&operating(), &escrow, &ok).is_ok());
    assert_eq!(
        sign_funding_payment(
            &operating(),
            &escrow,
            &FundingParams {
                amount_drops: 1_200_023,
                ..ok
            }
        )
        .unwrap_err(),
        TxBuildError::FundingBelowRequired {
            amount: 1_200_023,
            required: 1_200_024
        }
    );
    assert!(matches!(
        sign_funding_payment(&operating(), &escrow, &FundingParams { fee_drops: 0, ..ok }),
        Err(TxBuildError::FeeOutOfRange { .. })
    ));
    assert!(matches!(
        sign_funding_payment(
            &operating(),
            &escrow,
            &FundingParams {
                fee_drops: 2_000_000,
                ..ok
            }
        ),
        Err(TxBuildError::FeeOutOfRange { .. })
    ));

    let b = buyer().address().clone();
    assert_eq!(
        EscrowSigners::new(b.clone(), b.clone(), escrow.clone()).unwrap_err(),
        TxBuildError::SignersNotDistinct
    );
    let with_escrow = EscrowSigners::new(b, provider().address().clone(), escrow.clone()).unwrap();
    let params = ConfigurationParams {
        first_sequence: 5,
        fee_drops: 12,
        last_ledger_sequence: 20,
        reserves: reserves(),
    };
    assert!(matches!(
        sign_escrow_configuration(&keyring(), ESCROW_INDEX, &with_escrow, &params),
        Err(TxBuildError::EscrowAccountReused(_))
    ));
    let config = sign_escrow_configuration(&keyring(), ESCROW_INDEX, &signers(), &params).unwrap();
    let signer_list = decode(&config.signer_list_set.blob).unwrap();
    let disable = decode(&config.disable_master.blob).unwrap();
    assert_eq!(
        (
            signer_list["Sequence"].as_u64(),
            disable["Sequence"].as_u64()
        ),
        (Some(5), Some(6))
    );
    assert_eq!(disable["SetFlag"], 4);
    assert_eq!(signer_list["SignerQuorum"], 2);
}

#[test]
fn escrow_signers_round_trip_through_serde_and_refuse_duplicates() {
    let s = signers();
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<EscrowSigners>(&text).unwrap(), s);
    let b = buyer().address().to_string();
    let dup = json!({"buyer": b, "provider": b, "arbitrator": b}).to_string();
    assert!(serde_json::from_str::<EscrowSigners>(&dup).is_err());
}
