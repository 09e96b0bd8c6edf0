//! Payment-channel artifacts from the Rust escrow, checked by xrpl-py
//! (`tests/xrpl_channel_cross_check.py`): channel ids against the keylet rule,
//! the buyer's claims (secp256k1 and Ed25519) over `encode_for_signing_claim`,
//! the escrow's multisigned PaymentChannelCreate / Fund / Claim decoded and
//! re-encoded byte-identical with their signatures verified, a destination's
//! own PaymentChannelClaim; and claims signed by xrpl-py verified here.
//!
//! Needs `pip install xrpl-py==5.2.0`; skipped without it, except when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod xrpl_support;

use std::path::PathBuf;
use std::process::Command;

use agora_escrow::xrpl::{
    channel_id, sign_claim, sign_destination_claim, sign_payout, verify_claim, ChannelId, ChannelTx,
    ChannelTxKind, DestinationClaim, PayoutDestination, SignatureCollector, SigningKey, XrplAddress,
    XrplPublicKey, TF_CLOSE,
};
use serde_json::{json, Value};
use xrpl_support::*;

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/xrpl_channel_cross_check.py")
}

/// Golden vector: the keylet of owner 0x01…01, destination 0x02…02, Sequence 7,
/// computed with Python's hashlib from the rule, not by this crate.
#[test]
fn the_channel_id_matches_the_golden_keylet() {
    let owner = XrplAddress::from_account_id([1; 20]);
    let destination = XrplAddress::from_account_id([2; 20]);
    assert_eq!(
        channel_id(&owner, &destination, 7).to_hex(),
        "95BF86C07A53272B475D6DB1CC2D3FDD92E17DC2564CCBA292D4FD473DCCDB0B"
    );
}

/// Golden vector: the claim message xrpl-py's `encode_for_signing_claim` gives.
#[test]
fn the_claim_message_matches_xrpl_py() {
    let channel = ChannelId::from_bytes([0xAB; 32]);
    assert_eq!(
        hex::encode_upper(agora_escrow::xrpl::claim_message(&channel, 1_000_000)),
        format!("434C4D00{}00000000000F4240", "AB".repeat(32))
    );
}

fn multisign(tx: &ChannelTx, who: &[&SigningKey], arbitrator: bool) -> String {
    let mut c = SignatureCollector::new(tx.clone(), signers());
    for k in who {
        c.add_signer_blob(&sign_payout(tx, k).unwrap()).unwrap();
    }
    if arbitrator {
        c.add_signer_blob(&keyring().sign_payout_as_arbitrator(tx).unwrap()).unwrap();
    }
    c.finalize().unwrap().blob
}

fn artifacts() -> Value {
    let escrow = escrow_address();
    let (buyer, provider) = (buyer(), provider());
    let listed: Vec<String> = signers().sorted().iter().map(|a| a.to_string()).collect();
    let create = ChannelTx::new(
        &escrow,
        ChannelTxKind::Create {
            destination: PayoutDestination { address: provider.address().clone(), tag: Some(9) },
            amount_drops: 9_000_000,
            settle_delay: 3_600,
            public_key: buyer.public_key().clone(),
        },
        12,
        90_000_002,
        Some(90_000_100),
    )
    .unwrap();
    let channel = create.channel();
    let fund = ChannelTx::new(
        &escrow,
        ChannelTxKind::Fund { channel, amount_drops: 2_000_000 },
        12,
        90_000_003,
        Some(90_000_100),
    )
    .unwrap();
    let close = ChannelTx::new(
        &escrow,
        ChannelTxKind::Claim { channel, balance_drops: Some(1_462_500), close: true },
        12,
        90_000_004,
        Some(90_000_100),
    )
    .unwrap();
    let finish = ChannelTx::new(&escrow, ChannelTxKind::Claim { channel, balance_drops: None, close: false }, 12, 90_000_005, None)
        .unwrap();
    let common = |seq: u32| json!({"Account": escrow.as_str(), "Fee": "36", "Sequence": seq});
    let mut create_expect = common(90_000_002);
    create_expect["TransactionType"] = "PaymentChannelCreate".into();
    create_expect["Destination"] = provider.address().as_str().into();
    create_expect["DestinationTag"] = 9.into();
    create_expect["Amount"] = "9000000".into();
    create_expect["SettleDelay"] = 3_600.into();
    create_expect["PublicKey"] = buyer.public_key().to_hex().into();
    create_expect["LastLedgerSequence"] = 90_000_100.into();
    let mut fund_expect = common(90_000_003);
    fund_expect["TransactionType"] = "PaymentChannelFund".into();
    fund_expect["Channel"] = channel.to_hex().into();
    fund_expect["Amount"] = "2000000".into();
    let mut close_expect = common(90_000_004);
    close_expect["TransactionType"] = "PaymentChannelClaim".into();
    close_expect["Channel"] = channel.to_hex().into();
    close_expect["Balance"] = "1462500".into();
    close_expect["Flags"] = TF_CLOSE.into();
    let mut finish_expect = common(90_000_005);
    finish_expect["TransactionType"] = "PaymentChannelClaim".into();
    finish_expect["Flags"] = 0.into();
    let multisigned = vec![
        json!({"blob": multisign(&create, &[&provider], true), "signer_list": listed, "quorum": 2, "expect": create_expect}),
        json!({"blob": multisign(&fund, &[&buyer], true), "signer_list": listed, "quorum": 2, "expect": fund_expect}),
        json!({"blob": multisign(&close, &[&buyer], true), "signer_list": listed, "quorum": 2, "expect": close_expect}),
        json!({"blob": multisign(&finish, &[&buyer, &provider], false), "signer_list": listed, "quorum": 2, "expect": finish_expect}),
    ];
    // Claims by a secp256k1 key (the buyer) and an Ed25519 key (the provider's).
    let mut claims = Vec::new();
    for (key, amount) in [(&buyer, 1u64), (&buyer, 1_462_500), (&provider, 9_000_000)] {
        let sig = sign_claim(key, &channel, amount).unwrap();
        claims.push(json!({"channel": channel.to_hex(), "amount": amount.to_string(),
            "public_key": key.public_key().to_hex(), "signature": hex::encode_upper(&sig)}));
    }
    // A claim for one amount presented as another must fail there too.
    let sig = sign_claim(&buyer, &channel, 100).unwrap();
    claims.push(json!({"channel": channel.to_hex(), "amount": "101", "public_key": buyer.public_key().to_hex(),
        "signature": hex::encode_upper(&sig), "valid": false}));
    let redeem = sign_destination_claim(
        &provider,
        &DestinationClaim {
            channel,
            balance_drops: 1_462_500,
            public_key: buyer.public_key().clone(),
            signature: sign_claim(&buyer, &channel, 1_462_500).unwrap(),
            close: true,
            fee_drops: 12,
            sequence: 5,
            last_ledger_sequence: Some(90_000_100),
        },
    )
    .unwrap();
    json!({
        "channels": [
            {"owner": escrow.as_str(), "destination": provider.address().as_str(), "sequence": 90_000_002, "id": channel.to_hex()},
            {"owner": provider.address().as_str(), "destination": escrow.as_str(), "sequence": 1, "id": channel_id(provider.address(), &escrow, 1).to_hex()},
        ],
        "claims": claims,
        "multisigned": multisigned,
        "single_signed": [{"blob": redeem.blob, "account": provider.address().as_str(),
            "expect": {"TransactionType": "PaymentChannelClaim", "Channel": channel.to_hex(), "Balance": "1462500",
                       "Amount": "1462500", "Flags": TF_CLOSE, "Sequence": 5}}],
        "to_sign": [
            {"seed": xrpl::core::addresscodec::encode_seed([0xB1; 16], xrpl::constants::CryptoAlgorithm::SECP256K1).unwrap(),
             "channel": channel.to_hex(), "amount": "777"},
            {"seed": xrpl::core::addresscodec::encode_seed([0xC2; 16], xrpl::constants::CryptoAlgorithm::ED25519).unwrap(),
             "channel": channel.to_hex(), "amount": "888"},
        ],
        "_channel": channel.to_hex(),
    })
}

#[test]
fn xrpl_py_checks_our_channels_and_claims_and_we_verify_its_claims() {
    let available = Command::new("python3").args(["-c", "import xrpl"]).output().is_ok_and(|o| o.status.success());
    if !available {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "xrpl-py is required in CI");
        eprintln!("SKIPPED: xrpl-py is not installed (pip install xrpl-py==5.2.0)");
        return;
    }
    let check = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channels.json");
    std::fs::write(&path, check.to_string()).unwrap();
    let out = Command::new("python3").arg(script_path()).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "xrpl-py rejected a channel artifact: {}", String::from_utf8_lossy(&out.stderr));
    let channel = ChannelId::parse(check["_channel"].as_str().unwrap()).unwrap();
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for (line, amount) in lines.iter().zip([777u64, 888]) {
        let key = XrplPublicKey::parse_hex(line["public_key"].as_str().unwrap()).unwrap();
        let sig = hex::decode(line["signature"].as_str().unwrap()).unwrap();
        assert!(verify_claim(&key, &channel, amount, &sig), "xrpl-py's claim of {amount} verifies here");
        assert!(!verify_claim(&key, &channel, amount + 1, &sig), "and only for its amount");
    }
    assert_eq!(lines[0]["public_key"].as_str().unwrap(), buyer().public_key().to_hex());
    assert!(lines[1]["public_key"].as_str().unwrap().starts_with("ED"));
}
