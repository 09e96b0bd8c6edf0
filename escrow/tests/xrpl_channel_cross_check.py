#!/usr/bin/env python3
"""Payment-channel artifacts produced by Agora's Rust code, checked by xrpl-py.

    python3 xrpl_channel_cross_check.py CHECK_JSON

CHECK_JSON (written by tests/xrpl_channel_cross_check.rs):
  "channels": [{"owner", "destination", "sequence", "id"}]        channel ids
  "claims":   [{"channel", "amount", "public_key", "signature"}]  buyer claims
  "multisigned": [{"blob", "signer_list", "quorum", "expect"}]    escrow txs
  "single_signed": [{"blob", "account", "expect"}]                destination claims
  "to_sign": [{"seed", "channel", "amount"}]                       claims for xrpl-py to sign

Each blob is decoded and re-encoded byte-identical, compared with "expect",
and its signatures verified over encode_for_multisigning / encode_for_signing;
every claim signature is checked over encode_for_signing_claim; every channel
id is recomputed from the keylet rule. Prints one JSON line per "to_sign"
entry: {"public_key", "signature"}. Exit 0 when all passed, 1 on a failure,
3 when xrpl-py is not installed.
"""

import hashlib
import json
import sys

try:
    from xrpl.core import addresscodec, binarycodec, keypairs
except ImportError:
    print("xrpl-py is not installed: pip install xrpl-py", file=sys.stderr)
    sys.exit(3)


def fail(message):
    print(f"FAIL {message}", file=sys.stderr)
    sys.exit(1)


def sha512_half(data):
    return hashlib.sha512(data).digest()[:32]


def channel_id(owner, destination, sequence):
    data = bytes([0x00, 0x78]) + addresscodec.decode_classic_address(owner) \
        + addresscodec.decode_classic_address(destination) + sequence.to_bytes(4, "big")
    return sha512_half(data).hex().upper()


def decoded(blob):
    tx = binarycodec.decode(blob)
    if binarycodec.encode(tx).upper() != blob.upper():
        fail(f"re-encoding is not byte-identical: {blob[:40]}...")
    return tx


def same_fields(tx, expect, name):
    for key, value in expect.items():
        if tx.get(key) != value:
            fail(f"{name}: {key} is {tx.get(key)!r}, expected {value!r}")


def main(path):
    with open(path) as f:
        check = json.load(f)
    for c in check["channels"]:
        got = channel_id(c["owner"], c["destination"], c["sequence"])
        if got != c["id"]:
            fail(f"channel id {c['id']} != keylet {got}")
    for c in check["claims"]:
        message = binarycodec.encode_for_signing_claim({"channel": c["channel"], "amount": c["amount"]})
        valid = keypairs.is_valid_message(bytes.fromhex(message), bytes.fromhex(c["signature"]), c["public_key"])
        if valid != c.get("valid", True):
            fail(f"claim of {c['amount']} on {c['channel']}: valid={valid}")
    for m in check["multisigned"]:
        tx = decoded(m["blob"])
        same_fields(tx, m["expect"], m["expect"].get("TransactionType"))
        if tx.get("SigningPubKey") != "":
            fail("a multisigned transaction has an empty SigningPubKey")
        signers = [s["Signer"] for s in tx.get("Signers", [])]
        if len(signers) < m["quorum"]:
            fail(f"{len(signers)} signers, quorum {m['quorum']}")
        ids = [addresscodec.decode_classic_address(s["Account"]) for s in signers]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            fail("signers are not in strictly increasing AccountID order")
        unsigned = {k: v for k, v in tx.items() if k != "Signers"}
        for s in signers:
            if s["Account"] not in m["signer_list"]:
                fail(f"{s['Account']} is not in the signer list")
            if keypairs.derive_classic_address(s["SigningPubKey"]) != s["Account"]:
                fail(f"the key of {s['Account']} does not derive to it")
            data = binarycodec.encode_for_multisigning(unsigned, s["Account"])
            if not keypairs.is_valid_message(bytes.fromhex(data), bytes.fromhex(s["TxnSignature"]), s["SigningPubKey"]):
                fail(f"the signature of {s['Account']} does not verify")
    for s in check["single_signed"]:
        tx = decoded(s["blob"])
        same_fields(tx, s["expect"], "destination claim")
        if keypairs.derive_classic_address(tx["SigningPubKey"]) != s["account"]:
            fail("the destination claim is not signed by the destination's key")
        unsigned = {k: v for k, v in tx.items() if k != "TxnSignature"}
        data = binarycodec.encode_for_signing(unsigned)
        if not keypairs.is_valid_message(bytes.fromhex(data), bytes.fromhex(tx["TxnSignature"]), tx["SigningPubKey"]):
            fail("the destination claim's signature does not verify")
        message = binarycodec.encode_for_signing_claim({"channel": tx["Channel"], "amount": tx["Balance"]})
        if not keypairs.is_valid_message(bytes.fromhex(message), bytes.fromhex(tx["Signature"]), tx["PublicKey"]):
            fail("the claim inside the destination's PaymentChannelClaim does not verify")
    for t in check["to_sign"]:
        public, private = keypairs.derive_keypair(t["seed"])
        message = binarycodec.encode_for_signing_claim({"channel": t["channel"], "amount": t["amount"]})
        print(json.dumps({"public_key": public, "signature": keypairs.sign(bytes.fromhex(message), private)}))


if __name__ == "__main__":
    main(sys.argv[1])
