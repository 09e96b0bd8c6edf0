//! The XRPL side of the tests' wallet: signing and verification by xrpl-py
//! (`tests/scripts/xrpl_wallet.py`), an implementation independent of Agora's.

use std::process::Command;

use serde_json::Value;

/// Family seeds (secp256k1) of the test's XRPL accounts, as xrpl-py derives them.
pub const BUYER_SEED: &str = "sp5fV4UGhZhfCvcDRuY3dyyh5PjHf";
pub const BUYER_PUBLIC_KEY: &str = "035A7FA22521397BE0FFE9CD7C35DDE0FB0C8EA96E48FF84E0C6309D0D4D70D9EA";
pub const BUYER_ADDRESS: &str = "rMPrYipfRHJryWfwYARAwhsVGvHwpUDjgA";
pub const PROVIDER_SEED: &str = "sp5vYGGekvDhXJSn6f7oPdcjheQXW";
pub const PROVIDER_PUBLIC_KEY: &str = "03FBFD40E353E4829EE084AB6D150980D880C430C2BE12C567A732011B95EAA124";
pub const PROVIDER_ADDRESS: &str = "raa1x16A7hZRavaSTL8F8LQhFw7i3cUa4A";
pub const OUTSIDER_SEED: &str = "spjjbwMsTH4r4gEAxKR79HGMooipq";

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/xrpl_wallet.py").to_owned()
}

/// Whether xrpl-py is importable. Without it the XRPL flow tests are skipped
/// locally, and fail in CI (which installs it).
pub fn available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import xrpl"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "xrpl-py is required in CI (pip install -r escrow/tests/requirements.txt)"
        );
        println!("SKIPPED: xrpl-py is not installed (pip install -r escrow/tests/requirements.txt)");
    }
    ok
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("python3").arg(script()).args(args).output().expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// Multisigns `tx_json` with the account of `seed`; returns the signer blob.
pub fn sign(seed: &str, tx_json: &str) -> String {
    let (ok, out, err) = run(&["sign", seed, tx_json]);
    assert!(ok, "xrpl-py could not sign: {err}");
    out
}

/// Signs `tx_json` with the key of `seed` as an ordinary single-signed
/// transaction of that account; returns the blob to submit.
pub fn sign_single(seed: &str, tx_json: &str) -> String {
    let (ok, out, err) = run(&["sign-single", seed, tx_json]);
    assert!(ok, "xrpl-py could not sign: {err}");
    out
}

/// Signs a payment-channel claim of `drops` on `channel` with the key of
/// `seed` (xrpl-py's `encode_for_signing_claim`); returns the signature (hex).
pub fn sign_claim(seed: &str, channel: &str, drops: u64) -> String {
    let (ok, out, err) = run(&["claim-sign", seed, channel, &drops.to_string()]);
    assert!(ok, "xrpl-py could not sign the claim: {err}");
    out
}

/// Whether xrpl-py verifies `signature` as `public_key`'s claim of `drops` on `channel`.
pub fn verify_claim(public_key: &str, channel: &str, drops: u64, signature: &str) -> bool {
    run(&["claim-verify", public_key, channel, &drops.to_string(), signature]).0
}

fn with_file<T>(check: &Value, f: impl FnOnce(&str) -> T) -> T {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("check.json");
    std::fs::write(&path, check.to_string()).expect("write check");
    f(path.to_str().expect("utf-8 path"))
}

/// Verifies final multisigned blobs with xrpl-py; returns what it decoded.
pub fn verify(escrow: &str, signers: &[&str], blobs: &[String]) -> Result<Vec<Value>, String> {
    let check = serde_json::json!({"escrow": escrow, "signers": signers, "quorum": 2, "blobs": blobs});
    with_file(&check, |path| {
        let (ok, out, err) = run(&["verify", path]);
        if !ok {
            return Err(err);
        }
        Ok(out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect())
    })
}

/// Verifies the escrow account's setup transactions with xrpl-py.
pub fn verify_setup(escrow: &str, signers: &[&str], funding: &str, signer_list_set: &str, disable_master: &str) -> Result<(), String> {
    let check = serde_json::json!({
        "escrow": escrow,
        "signers": signers,
        "blobs": {"funding": funding, "signer_list_set": signer_list_set, "disable_master": disable_master},
    });
    with_file(&check, |path| {
        let (ok, _, err) = run(&["setup", path]);
        if ok {
            Ok(())
        } else {
            Err(err)
        }
    })
}
