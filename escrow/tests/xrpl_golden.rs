//! The XRPL escrow checked against golden vectors made by xrpl-py
//! (`tests/gen_xrpl_vectors.py` → `tests/vectors/xrpl/xrpl_py_vectors.json`):
//! keys, set-up transactions and payouts must be byte-identical to xrpl-py's, the
//! blobs xrpl-py signed must be accepted, and the bad ones rejected for the right
//! reason. No Python needed.

// Test helpers outside #[test] fns count as non-test code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod xrpl_support;

use agora_escrow::xrpl::{
    plan_payout, sign_escrow_configuration, sign_funding_payment, sign_payout, verify_multisigned,
    ConfigurationParams, FundingParams, PayoutTx, Recipient, SignatureCollector, SigningKey,
};
use serde_json::Value;
use xrpl_support::*;

fn recipient_name(r: Recipient) -> &'static str {
    match r {
        Recipient::Provider => "provider",
        Recipient::Buyer => "buyer",
        Recipient::Marketplace => "marketplace",
    }
}

fn signer_key(name: &str) -> SigningKey {
    match name {
        "buyer" => buyer(),
        "provider" => provider(),
        "outsider" => outsider(),
        _ => panic!("no seed for {name}"),
    }
}

/// Each scenario's plan, built by us, paired with xrpl-py's transactions.
fn scenarios() -> Vec<(String, Vec<PayoutTx>, Vec<Value>)> {
    let v = vectors();
    v["payouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let plan = plan_payout(
                &escrow_address(),
                &parties(&p["parties"]),
                &payout_params(&p["params"]),
            )
            .unwrap();
            (
                p["name"].as_str().unwrap().to_owned(),
                plan.transactions,
                p["transactions"].as_array().unwrap().clone(),
            )
        })
        .collect()
}

#[test]
fn marketplace_keys_match_xrpl_py() {
    let v = vectors();
    assert_eq!(
        hex::decode(v["marketplace_secret_hex"].as_str().unwrap()).unwrap(),
        SECRET
    );
    let keyring = keyring();
    let mut leading_zero = false;
    for key in v["keys"].as_array().unwrap() {
        let account = match key["label"].as_str().unwrap() {
            "escrow" => keyring
                .escrow_account(key["index"].as_u64().unwrap() as u32)
                .unwrap(),
            _ => keyring.arbitrator_account().unwrap(),
        };
        assert_eq!(account.address.as_str(), key["address"]);
        assert_eq!(account.public_key.to_hex(), key["public_key"]);
        // The seed xrpl-py derived from, imported as a wallet would, agrees too.
        let from_seed = SigningKey::from_seed(key["seed"].as_str().unwrap()).unwrap();
        assert_eq!(from_seed.address(), &account.address);
        leading_zero |= key["private_key_starts_with_zero"].as_bool() == Some(true);
    }
    assert!(
        leading_zero,
        "the vectors must cover a private key with a leading zero digit"
    );
}

#[test]
fn party_seeds_give_the_same_keys_as_xrpl_py() {
    let v = vectors();
    for (name, key) in v["parties"].as_object().unwrap() {
        let ours = SigningKey::from_seed(key["seed"].as_str().unwrap()).unwrap();
        assert_eq!(ours.address().as_str(), key["address"], "{name}");
        assert_eq!(ours.public_key().to_hex(), key["public_key"], "{name}");
    }
    assert_eq!(v["parties"]["buyer"]["address"], buyer().address().as_str());
    assert_eq!(
        v["parties"]["provider"]["address"],
        provider().address().as_str()
    );
}

#[test]
fn setup_transactions_are_byte_identical_to_xrpl_py() {
    let v = vectors();
    let setup = &v["setup"];
    assert_eq!(setup["escrow_address"], escrow_address().as_str());

    let funding_params: FundingParams =
        serde_json::from_value(setup["funding"]["params"].clone()).unwrap();
    let funding = sign_funding_payment(&operating(), &escrow_address(), &funding_params).unwrap();
    assert_eq!(funding.blob, setup["funding"]["blob"]);
    assert_eq!(funding.hash, setup["funding"]["hash"]);

    let config = &setup["configuration"];
    let params: ConfigurationParams = serde_json::from_value(config["params"].clone()).unwrap();
    let ours = sign_escrow_configuration(&keyring(), ESCROW_INDEX, &signers(), &params).unwrap();
    assert_eq!(ours.signer_list_set.blob, config["signer_list_set"]["blob"]);
    assert_eq!(ours.signer_list_set.hash, config["signer_list_set"]["hash"]);
    assert_eq!(ours.disable_master.blob, config["disable_master"]["blob"]);
    assert_eq!(ours.disable_master.hash, config["disable_master"]["hash"]);

    let check = &ours.buyer_check;
    let listed: Vec<&str> = check
        .signer_entries
        .iter()
        .map(|e| e.account.as_str())
        .collect();
    let expected: Vec<&str> = config["signer_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(
        (
            check.quorum,
            check.master_disabled,
            check.regular_key.clone()
        ),
        (2, true, None)
    );
    assert_eq!(check.expected_reserve_drops, 1_200_000);
}

#[test]
fn payout_transactions_are_byte_identical_to_xrpl_py() {
    for (name, ours, theirs) in scenarios() {
        assert_eq!(ours.len(), theirs.len(), "{name}: number of payments");
        for (tx, t) in ours.iter().zip(&theirs) {
            assert_eq!(recipient_name(tx.recipient()), t["recipient"], "{name}");
            assert_eq!(
                tx.amount_drops(),
                t["amount_drops"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(tx.fee_drops(), t["fee_drops"].as_u64().unwrap(), "{name}");
            assert_eq!(
                u64::from(tx.sequence()),
                t["sequence"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(tx.destination(), &destination(&t["destination"]), "{name}");
            assert_eq!(tx.unsigned_blob(), t["unsigned_blob"], "{name}");
            for (account, data) in t["signing_data"].as_object().unwrap() {
                let ours =
                    hex::encode_upper(tx.signing_data(&address(&Value::from(account.as_str()))));
                assert_eq!(&ours, data, "{name}: signing data of {account}");
            }
        }
    }
}

#[test]
fn our_signer_blobs_are_identical_to_xrpl_py() {
    for (name, ours, theirs) in scenarios() {
        for (tx, t) in ours.iter().zip(&theirs) {
            for who in ["buyer", "provider"] {
                let blob = sign_payout(tx, &signer_key(who)).unwrap();
                assert_eq!(blob, t["signer_blobs"][who], "{name}: {who}");
            }
            let blob = keyring().sign_payout_as_arbitrator(tx).unwrap();
            assert_eq!(blob, t["signer_blobs"]["arbitrator"], "{name}: arbitrator");
        }
    }
}

#[test]
fn xrpl_py_signer_blobs_combine_into_xrpl_py_final_blob() {
    for (name, ours, theirs) in scenarios() {
        for (tx, t) in ours.iter().zip(&theirs) {
            let mut collector = SignatureCollector::new(tx.clone(), signers());
            for who in t["final_signers"].as_array().unwrap() {
                let added = collector
                    .add_signer_blob(t["signer_blobs"][who.as_str().unwrap()].as_str().unwrap())
                    .unwrap();
                assert_eq!(added.len(), 1, "{name}");
            }
            let done = collector.finalize().unwrap();
            assert_eq!(done.blob, t["final_blob"], "{name}");
            assert_eq!(done.hash, t["final_hash"], "{name}");

            // And every blob xrpl-py produced verifies on its own, the final one too.
            let mut all = SignatureCollector::new(tx.clone(), signers());
            for who in ["buyer", "provider", "arbitrator"] {
                all.add_signer_blob(t["signer_blobs"][who].as_str().unwrap())
                    .unwrap();
            }
            assert_eq!(all.signed_by().len(), 3);
            let verified =
                verify_multisigned(t["final_blob"].as_str().unwrap(), tx, &signers()).unwrap();
            assert_eq!(verified.hash, t["final_hash"], "{name}");
            assert_eq!(verified.signers.len(), 2);
        }
    }
}

#[test]
fn blobs_xrpl_py_made_wrong_are_rejected_for_the_right_reason() {
    let v = vectors();
    let scenarios = scenarios();
    let mut checked = 0;
    for case in v["negative"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (_, txs, _) = scenarios.iter().find(|s| s.0 == case["scenario"]).unwrap();
        let tx = &txs[case["tx_index"].as_u64().unwrap() as usize];
        let blob = case["blob"].as_str().unwrap();
        let err = match case["check"].as_str().unwrap() {
            "collector" => {
                let mut collector = SignatureCollector::new(tx.clone(), signers());
                let err = collector.add_signer_blob(blob).unwrap_err();
                assert!(
                    collector.signed_by().is_empty(),
                    "{name}: nothing may be kept"
                );
                err
            }
            _ => verify_multisigned(blob, tx, &signers()).unwrap_err(),
        };
        assert_eq!(error_name(&err), case["error"], "{name}: got {err}");
        if let Some(field) = case["field"].as_str() {
            assert_eq!(
                err,
                agora_escrow::xrpl::MultisigError::TransactionMismatch {
                    field: field.into()
                },
                "{name}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10);
}
