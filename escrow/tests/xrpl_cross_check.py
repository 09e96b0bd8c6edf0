#!/usr/bin/env python3
"""Verifies XRPL artifacts produced by Agora's Rust code with xrpl-py.

    pip install xrpl-py==5.2.0
    python3 escrow/tests/xrpl_cross_check.py ARTIFACTS.json [MORE.json ...]

escrow/tests/xrpl_cross_check.rs writes ARTIFACTS.json and runs this script; the
committed escrow/tests/vectors/xrpl/rust_vectors.json has the same format. For each
artifact, xrpl-py (not Agora's code) decodes the blob and checks:

- keys: derived again here from the marketplace secret and label
  (HMAC-SHA512 -> 16-byte secp256k1 family seed) and compared;
- single-signed transactions: exactly the expected fields, the signing key derives
  to the Account, the signature verifies over encode_for_signing, the hash matches;
- signer blobs and multisigned transactions: exactly the expected fields, an empty
  SigningPubKey, Signers strictly in AccountID order, every signer in the signer
  list, every key deriving to its account, every signature valid over
  encode_for_multisigning, at least the quorum (final transactions), the hash.

Exits non-zero if anything fails.
"""

import hashlib
import hmac
import json
import sys

from xrpl.constants import CryptoAlgorithm
from xrpl.core import addresscodec, binarycodec, keypairs
from xrpl.models.transactions.transaction import Transaction


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}")


def tx_hash(blob: str) -> str:
    return hashlib.sha512(bytes.fromhex("54584E00" + blob)).digest()[:32].hex().upper()


def decode_round_trip(c, name, blob):
    decoded = binarycodec.decode(blob)
    c.check(f"{name}: re-encodes to the same bytes", binarycodec.encode(decoded) == blob.upper())
    return decoded


def check_fields(c, name, decoded, expect, extra):
    keys = set(decoded) - set(extra)
    c.check(f"{name}: field set", keys == set(expect),
            f"decoded {sorted(keys)} expected {sorted(expect)}")
    for k, v in expect.items():
        c.check(f"{name}: {k}", decoded.get(k) == v, f"{decoded.get(k)!r} != {v!r}")


def check_keys(c, artifacts):
    secret = bytes.fromhex(artifacts["marketplace_secret_hex"])
    for key in artifacts["keys"]:
        label = bytes.fromhex(key["label_hex"])
        entropy = hmac.new(secret, label, hashlib.sha512).digest()[:16]
        seed = addresscodec.encode_seed(entropy, CryptoAlgorithm.SECP256K1)
        public, _ = keypairs.derive_keypair(seed)
        name = f"key {key['label_hex']}"
        c.check(f"{name}: public key", public == key["public_key"], f"{public} != {key['public_key']}")
        c.check(f"{name}: address", keypairs.derive_classic_address(public) == key["address"])


def check_single_signed(c, item):
    name = item["name"]
    d = decode_round_trip(c, name, item["blob"])
    check_fields(c, name, d, item["expect"], {"SigningPubKey", "TxnSignature"})
    public = d.get("SigningPubKey", "")
    c.check(f"{name}: key derives to Account",
            public != "" and keypairs.derive_classic_address(public) == d["Account"] == item["account"])
    message = bytes.fromhex(binarycodec.encode_for_signing(d))
    c.check(f"{name}: signature", keypairs.is_valid_message(message, bytes.fromhex(d["TxnSignature"]), public))
    c.check(f"{name}: hash", tx_hash(item["blob"]) == item["hash"] == Transaction.from_xrpl(d).get_hash())


def check_multisigned(c, item, final):
    name = item["name"]
    d = decode_round_trip(c, name, item["blob"])
    check_fields(c, name, d, item["expect"], {"Signers"})
    c.check(f"{name}: SigningPubKey empty", d.get("SigningPubKey") == "")
    c.check(f"{name}: no TxnSignature", "TxnSignature" not in d)
    signers = [s["Signer"] for s in d.get("Signers", [])]
    ids = [addresscodec.decode_classic_address(s["Account"]) for s in signers]
    c.check(f"{name}: Signers strictly sorted", all(a < b for a, b in zip(ids, ids[1:])))
    listed = set(item["signer_list"])
    for s in signers:
        who = f"{name}: signer {s['Account']}"
        c.check(f"{who} in signer list", s["Account"] in listed)
        c.check(f"{who} key derives to account",
                keypairs.derive_classic_address(s["SigningPubKey"]) == s["Account"])
        message = bytes.fromhex(binarycodec.encode_for_multisigning(d, s["Account"]))
        c.check(f"{who} signature",
                keypairs.is_valid_message(message, bytes.fromhex(s["TxnSignature"]), s["SigningPubKey"]))
    if final:
        c.check(f"{name}: quorum", len(signers) >= item["quorum"])
        c.check(f"{name}: hash", tx_hash(item["blob"]) == item["hash"] == Transaction.from_xrpl(d).get_hash())
    else:
        c.check(f"{name}: one signer, the expected one",
                [s["Account"] for s in signers] == [item["signer"]])


def main(paths):
    if not paths:
        print(__doc__)
        return 2
    c = Checker()
    for path in paths:
        with open(path) as f:
            artifacts = json.load(f)
        check_keys(c, artifacts)
        for item in artifacts["single_signed"]:
            check_single_signed(c, item)
        for item in artifacts["signer_blobs"]:
            check_multisigned(c, item, final=False)
        for item in artifacts["multisigned"]:
            check_multisigned(c, item, final=True)
    print(f"xrpl-py cross-check: {c.passed} checks held, {c.failed} did not")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
