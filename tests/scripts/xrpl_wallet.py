#!/usr/bin/env python3
"""An XRPL wallet and verifier for Agora's end-to-end tests, built on xrpl-py
(an implementation independent of Agora's Rust code).

    python3 xrpl_wallet.py sign SEED TX_JSON
        Multisigns the transaction (rippled JSON, SigningPubKey "") as the
        account of SEED; prints the signer blob (hex).
    python3 xrpl_wallet.py verify CHECK_JSON
        CHECK_JSON: {"signers": [addresses], "quorum": 2, "blobs": [hex, ...],
                     "escrow": address}
        Decodes each blob and checks: it is a Payment from the escrow account
        with an empty SigningPubKey; its Signers are in AccountID order, all in
        the signer list, each key derives to its account, each signature is
        valid over encode_for_multisigning; at least the quorum signed.
        Prints one JSON line per blob: {"hash", "destination", "amount", "signers"}.
    python3 xrpl_wallet.py setup CHECK_JSON
        CHECK_JSON: {"escrow": address, "signers": [addresses], "blobs": {...}}
        Checks the escrow account's setup: the funding Payment's single
        signature, the SignerListSet (quorum 2, exactly the three signers of
        weight 1) and the AccountSet with SetFlag 4 (disable master), each
        signed by the escrow account's own key.

    python3 xrpl_wallet.py claim-sign SEED CHANNEL DROPS
        Signs a payment-channel claim of DROPS on CHANNEL with the key of SEED
        (encode_for_signing_claim); prints the signature (hex).
    python3 xrpl_wallet.py claim-verify PUBLIC_KEY CHANNEL DROPS SIGNATURE
        Exit 0 when SIGNATURE is PUBLIC_KEY's claim of DROPS on CHANNEL.

The escrow's multisigned transactions that `verify` accepts are Payments and
the payment-channel transactions (PaymentChannelCreate, PaymentChannelClaim);
it prints their Destination/Amount when they have them, and their Channel,
Balance and Flags.

Exit status: 0 when every check passed, 1 when one failed, 3 when xrpl-py is
not installed.
"""

import hashlib
import json
import sys

try:
    from xrpl.core import addresscodec, binarycodec, keypairs
    from xrpl.constants import CryptoAlgorithm
except ImportError:
    print("xrpl-py is not installed: pip install xrpl-py", file=sys.stderr)
    sys.exit(3)


def fail(message):
    print(f"FAIL {message}", file=sys.stderr)
    sys.exit(1)


def tx_hash(blob):
    return hashlib.sha512(bytes.fromhex("54584E00" + blob)).digest()[:32].hex().upper()


def sign(seed, tx_json):
    tx = json.loads(tx_json)
    public, private = keypairs.derive_keypair(seed, algorithm=CryptoAlgorithm.SECP256K1)
    account = keypairs.derive_classic_address(public)
    data = binarycodec.encode_for_multisigning(tx, account)
    signature = keypairs.sign(bytes.fromhex(data), private)
    tx["Signers"] = [{"Signer": {"Account": account, "SigningPubKey": public, "TxnSignature": signature}}]
    print(binarycodec.encode(tx))


def sign_single(seed, tx_json):
    """Signs tx_json with the account's own key (an ordinary transaction)."""
    tx = json.loads(tx_json)
    public, private = keypairs.derive_keypair(seed, algorithm=CryptoAlgorithm.SECP256K1)
    tx["SigningPubKey"] = public
    tx["TxnSignature"] = keypairs.sign(bytes.fromhex(binarycodec.encode_for_signing(tx)), private)
    print(binarycodec.encode(tx))


def check_multisigned(blob, signer_list, quorum, escrow):
    tx = binarycodec.decode(blob)
    if tx.get("TransactionType") not in ("Payment", "PaymentChannelCreate", "PaymentChannelClaim"):
        fail(f"not a Payment or a channel transaction: {tx.get('TransactionType')}")
    if tx.get("Account") != escrow:
        fail(f"paid from {tx.get('Account')}, not the escrow {escrow}")
    if tx.get("SigningPubKey") != "":
        fail("a multisigned transaction has an empty SigningPubKey")
    signers = [s["Signer"] for s in tx.get("Signers", [])]
    if len(signers) < quorum:
        fail(f"{len(signers)} signers, quorum {quorum}")
    ids = [addresscodec.decode_classic_address(s["Account"]) for s in signers]
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        fail("signers are not in strictly increasing AccountID order")
    unsigned = {k: v for k, v in tx.items() if k != "Signers"}
    for s in signers:
        if s["Account"] not in signer_list:
            fail(f"{s['Account']} is not in the signer list")
        if keypairs.derive_classic_address(s["SigningPubKey"]) != s["Account"]:
            fail(f"the key of {s['Account']} does not derive to it")
        data = binarycodec.encode_for_multisigning(unsigned, s["Account"])
        if not keypairs.is_valid_message(bytes.fromhex(data), bytes.fromhex(s["TxnSignature"]), s["SigningPubKey"]):
            fail(f"the signature of {s['Account']} does not verify")
    return {
        "hash": tx_hash(blob),
        "type": tx["TransactionType"],
        "destination": tx.get("Destination"),
        "destination_tag": tx.get("DestinationTag"),
        "amount": tx.get("Amount"),
        "channel": tx.get("Channel"),
        "balance": tx.get("Balance"),
        "public_key": tx.get("PublicKey"),
        "settle_delay": tx.get("SettleDelay"),
        "flags": tx.get("Flags", 0),
        "fee": tx["Fee"],
        "sequence": tx["Sequence"],
        "signers": [s["Account"] for s in signers],
    }


def check_single(blob, account):
    tx = binarycodec.decode(blob)
    if tx["Account"] != account:
        fail(f"signed for {tx['Account']}, expected {account}")
    if keypairs.derive_classic_address(tx["SigningPubKey"]) != account:
        fail("the signing key does not belong to the account")
    unsigned = {k: v for k, v in tx.items() if k != "TxnSignature"}
    data = binarycodec.encode_for_signing(unsigned)
    if not keypairs.is_valid_message(bytes.fromhex(data), bytes.fromhex(tx["TxnSignature"]), tx["SigningPubKey"]):
        fail("the signature does not verify")
    return tx


def setup(check):
    escrow = check["escrow"]
    blobs = check["blobs"]
    funding = binarycodec.decode(blobs["funding"])
    check_single(blobs["funding"], funding["Account"])
    if funding["TransactionType"] != "Payment" or funding["Destination"] != escrow:
        fail("the funding transaction does not pay the escrow account")
    signer_list = check_single(blobs["signer_list_set"], escrow)
    if signer_list["TransactionType"] != "SignerListSet" or signer_list["SignerQuorum"] != 2:
        fail("not a SignerListSet with quorum 2")
    entries = sorted((e["SignerEntry"]["Account"], e["SignerEntry"]["SignerWeight"]) for e in signer_list["SignerEntries"])
    if entries != sorted((a, 1) for a in check["signers"]):
        fail(f"signer entries {entries} differ from {check['signers']}")
    disable = check_single(blobs["disable_master"], escrow)
    if disable["TransactionType"] != "AccountSet" or disable.get("SetFlag") != 4:
        fail("not an AccountSet disabling the master key")
    if disable["Sequence"] != signer_list["Sequence"] + 1:
        fail("the AccountSet does not follow the SignerListSet")
    print(json.dumps({"ok": True}))


def claim_sign(seed, channel, drops):
    _, private = keypairs.derive_keypair(seed, algorithm=CryptoAlgorithm.SECP256K1)
    message = binarycodec.encode_for_signing_claim({"channel": channel, "amount": drops})
    print(keypairs.sign(bytes.fromhex(message), private))


def claim_verify(public_key, channel, drops, signature):
    message = binarycodec.encode_for_signing_claim({"channel": channel, "amount": drops})
    if not keypairs.is_valid_message(bytes.fromhex(message), bytes.fromhex(signature), public_key):
        fail(f"the claim of {drops} on {channel} does not verify")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "sign":
        sign(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "sign-single":
        sign_single(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "verify":
        with open(sys.argv[2], encoding="utf-8") as f:
            check = json.load(f)
        for blob in check["blobs"]:
            print(json.dumps(check_multisigned(blob, check["signers"], check["quorum"], check["escrow"])))
    elif sys.argv[1] == "claim-sign":
        claim_sign(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "claim-verify":
        claim_verify(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "setup":
        with open(sys.argv[2], encoding="utf-8") as f:
            setup(json.load(f))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
