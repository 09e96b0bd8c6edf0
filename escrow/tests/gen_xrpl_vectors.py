#!/usr/bin/env python3
"""Generates escrow/tests/vectors/xrpl/xrpl_py_vectors.json with xrpl-py.

    pip install xrpl-py==5.2.0
    python3 escrow/tests/gen_xrpl_vectors.py

Everything in the file is computed by xrpl-py, independently of Agora's Rust code:
the marketplace key derivation, the escrow set-up transactions, the payout Payments
with each signer's multisigned blob and the combined transactions, and blobs that
must be rejected. escrow/tests/xrpl_golden.rs checks the Rust implementation
against it without needing Python. The inputs are fixed, and secp256k1 and Ed25519
signatures are deterministic, so running this again gives the same file.
"""

import hashlib
import hmac
import importlib.metadata
import json
import os
import sys

from xrpl.constants import CryptoAlgorithm
from xrpl.core import addresscodec, binarycodec, keypairs
from xrpl.models.transactions import AccountSet, AccountSetAsfFlag, Payment, SignerListSet
from xrpl.models.transactions.signer_list_set import SignerEntry
from xrpl.transaction import multisign, sign
from xrpl.wallet import Wallet

SECRET = bytes([0x11] * 32)
ESCROW_INDEX = 1
RESERVES = {"base_drops": 1_000_000, "owner_drops": 200_000}
CONFIG_FEE = 12

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors", "xrpl", "xrpl_py_vectors.json")


def marketplace_wallet(label: bytes):
    entropy = hmac.new(SECRET, label, hashlib.sha512).digest()[:16]
    seed = addresscodec.encode_seed(entropy, CryptoAlgorithm.SECP256K1)
    return Wallet.from_seed(seed), entropy, seed


def escrow_label(index: int) -> bytes:
    return b"agora/xrpl-escrow/" + index.to_bytes(4, "big")


def party(byte: int, algorithm: CryptoAlgorithm):
    seed = addresscodec.encode_seed(bytes([byte] * 16), algorithm)
    return Wallet.from_seed(seed), seed


def blob_of(tx) -> str:
    return binarycodec.encode(tx.to_xrpl())


def account_id(address: str) -> bytes:
    return addresscodec.decode_classic_address(address)


def split(funded, fee, provider_bps, commission_bps, arbitration_fee):
    """agora_domain::escrow::payout::split, reimplemented."""
    if fee >= funded:
        return None
    after_fee = funded - fee
    arbitration = min(arbitration_fee, after_fee)
    pool = after_fee - arbitration
    provider_gross = pool * provider_bps // 10_000
    buyer = pool - provider_gross
    commission = provider_gross * commission_bps // 10_000
    return {"provider": provider_gross - commission, "buyer": buyer, "marketplace": commission + arbitration}


def plan(funded, base_fee, provider_bps, commission_bps, arbitration_fee):
    """The smallest number of fees k whose split needs at most k Payments."""
    per_tx = base_fee * 3
    for k in (1, 2, 3):
        shares = split(funded, per_tx * k, provider_bps, commission_bps, arbitration_fee)
        if shares is None:
            raise ValueError("fee exceeds funds")
        if sum(1 for v in shares.values() if v > 0) <= k:
            return per_tx, shares
    raise AssertionError("unreachable")


def payment(escrow, destination, tag, amount, fee, sequence, lls):
    return Payment(
        account=escrow,
        destination=destination,
        destination_tag=tag,
        amount=str(amount),
        fee=str(fee),
        sequence=sequence,
        last_ledger_sequence=lls,
        flags=0,
        signing_pub_key="",
    )


def signers_blob(tx, entries):
    """`tx` with exactly these Signers entries, in this order, unchecked."""
    d = tx.to_xrpl()
    d["Signers"] = [{"Signer": e} for e in entries]
    return binarycodec.encode(d)


def signer_entry(wallet, tx_for_signature, as_account=None):
    account = as_account or wallet.address
    message = bytes.fromhex(binarycodec.encode_for_multisigning(tx_for_signature.to_xrpl(), account))
    return {
        "Account": account,
        "SigningPubKey": wallet.public_key,
        "TxnSignature": keypairs.sign(message, wallet.private_key),
    }


def main():
    escrow, _, escrow_seed = marketplace_wallet(escrow_label(ESCROW_INDEX))
    arbitrator, arbitrator_entropy, arbitrator_seed = marketplace_wallet(b"agora/xrpl-arbitrator")

    # Escrow keys for a few indices, including one whose private key starts with a
    # zero hex digit (xrpl-rust 1.3.0 cannot sign with those).
    keys = []
    leading_zero_found = False
    for index in range(0, 200):
        wallet, entropy, seed = marketplace_wallet(escrow_label(index))
        leading_zero = wallet.private_key[2] == "0"
        if index < 4 or (leading_zero and not leading_zero_found):
            keys.append({
                "label": "escrow", "index": index, "entropy": entropy.hex().upper(), "seed": seed,
                "public_key": wallet.public_key, "address": wallet.address,
                "private_key_starts_with_zero": leading_zero,
            })
            leading_zero_found |= leading_zero
    assert leading_zero_found
    keys.append({
        "label": "arbitrator", "entropy": arbitrator_entropy.hex().upper(), "seed": arbitrator_seed,
        "public_key": arbitrator.public_key, "address": arbitrator.address,
    })

    buyer, buyer_seed = party(0xB1, CryptoAlgorithm.SECP256K1)
    provider, provider_seed = party(0xC2, CryptoAlgorithm.ED25519)
    outsider, outsider_seed = party(0xD3, CryptoAlgorithm.SECP256K1)
    operating, operating_seed = party(0xE4, CryptoAlgorithm.SECP256K1)
    parties = {
        name: {"seed": seed, "address": w.address, "public_key": w.public_key}
        for name, (w, seed) in {
            "buyer": (buyer, buyer_seed), "provider": (provider, provider_seed),
            "outsider": (outsider, outsider_seed), "operating": (operating, operating_seed),
        }.items()
    }

    # --- set-up ---------------------------------------------------------------
    funding_amount = RESERVES["base_drops"] + RESERVES["owner_drops"] + 2 * CONFIG_FEE
    funding_params = {"amount_drops": funding_amount, "reserves": RESERVES,
                      "configuration_fee_drops": CONFIG_FEE, "fee_drops": 12,
                      "sequence": 7, "last_ledger_sequence": 1_000}
    funding = sign(Payment(account=operating.address, destination=escrow.address,
                           amount=str(funding_amount), fee="12", sequence=7,
                           last_ledger_sequence=1_000, flags=0), operating)
    signer_list = sorted([buyer.address, provider.address, arbitrator.address], key=account_id)
    config_params = {"first_sequence": 500, "fee_drops": CONFIG_FEE,
                     "last_ledger_sequence": 1_000, "reserves": RESERVES}
    signer_list_set = sign(SignerListSet(
        account=escrow.address, fee=str(CONFIG_FEE), sequence=500, last_ledger_sequence=1_000,
        flags=0, signer_quorum=2,
        signer_entries=[SignerEntry(account=a, signer_weight=1) for a in signer_list]), escrow)
    disable_master = sign(AccountSet(
        account=escrow.address, fee=str(CONFIG_FEE), sequence=501, last_ledger_sequence=1_000,
        flags=0, set_flag=AccountSetAsfFlag.ASF_DISABLE_MASTER), escrow)
    setup = {
        "escrow_index": ESCROW_INDEX,
        "escrow_address": escrow.address,
        "funding": {"params": funding_params, "blob": blob_of(funding), "hash": funding.get_hash()},
        "configuration": {
            "params": config_params,
            "signer_list": signer_list,
            "signer_list_set": {"blob": blob_of(signer_list_set), "hash": signer_list_set.get_hash()},
            "disable_master": {"blob": blob_of(disable_master), "hash": disable_master.get_hash()},
        },
    }

    # --- payouts --------------------------------------------------------------
    destinations = {
        "provider": {"address": provider.address, "tag": None},
        "buyer": {"address": buyer.address, "tag": 4242},
        "marketplace": {"address": operating.address, "tag": 7},
    }
    wallets = {"buyer": buyer, "provider": provider, "arbitrator": arbitrator}
    scenarios = [
        ("release", 10_000, 250, 0, ("buyer", "provider")),
        ("refund", 0, 250, 0, ("provider", "arbitrator")),
        ("split", 6_000, 1_000, 100_000, ("buyer", "arbitrator")),
    ]
    payouts = []
    txs_by_scenario = {}
    for name, provider_bps, commission_bps, arbitration_fee, pair in scenarios:
        params = {"funded_drops": 5_000_000, "base_fee_drops": 10, "first_sequence": 502,
                  "last_ledger_sequence": 2_000,
                  "terms": {"provider_bps": provider_bps, "commission_bps": commission_bps,
                            "arbitration_fee": arbitration_fee}}
        per_tx, shares = plan(params["funded_drops"], params["base_fee_drops"],
                              provider_bps, commission_bps, arbitration_fee)
        transactions = []
        sequence = params["first_sequence"]
        for recipient in ("provider", "buyer", "marketplace"):
            amount = shares[recipient]
            if amount == 0:
                continue
            dest = destinations[recipient]
            tx = payment(escrow.address, dest["address"], dest["tag"], amount, per_tx,
                         sequence, params["last_ledger_sequence"])
            sequence += 1
            txs_by_scenario.setdefault(name, []).append(tx)
            signed = {who: sign(tx, w, multisign=True) for who, w in wallets.items()}
            combined = multisign(tx, [signed[pair[0]], signed[pair[1]]])
            transactions.append({
                "recipient": recipient,
                "destination": dest,
                "amount_drops": amount,
                "fee_drops": per_tx,
                "sequence": tx.sequence,
                "unsigned_blob": blob_of(tx),
                "signing_data": {
                    w.address: binarycodec.encode_for_multisigning(tx.to_xrpl(), w.address)
                    for w in (buyer, provider, arbitrator, outsider)
                },
                "signer_blobs": {who: blob_of(s) for who, s in signed.items()},
                "final_signers": list(pair),
                "final_blob": blob_of(combined),
                "final_hash": combined.get_hash(),
            })
        payouts.append({"name": name, "params": params, "parties": destinations,
                        "transactions": transactions})

    # --- blobs that must be rejected ----------------------------------------------
    tx = txs_by_scenario["split"][0]
    other_amount = payment(tx.account, tx.destination, tx.destination_tag, int(tx.amount) + 1,
                           tx.fee, tx.sequence, tx.last_ledger_sequence)
    other_destination = payment(tx.account, outsider.address, tx.destination_tag, tx.amount,
                                tx.fee, tx.sequence, tx.last_ledger_sequence)
    buyer_entry = signer_entry(buyer, tx)
    arbitrator_entry = signer_entry(arbitrator, tx)
    provider_entry = signer_entry(provider, tx)
    low, high = sorted([buyer_entry, arbitrator_entry], key=lambda e: account_id(e["Account"]))
    all_three = sorted([buyer_entry, arbitrator_entry, provider_entry],
                       key=lambda e: account_id(e["Account"]))
    good_final = payouts[2]["transactions"][0]["final_blob"]
    negative = [
        ("outsider_signer", "collector", blob_of(sign(tx, outsider, multisign=True)),
         "SignerNotInList", None),
        ("different_amount", "collector", blob_of(sign(other_amount, buyer, multisign=True)),
         "TransactionMismatch", "Amount"),
        ("different_destination", "collector",
         blob_of(sign(other_destination, buyer, multisign=True)), "TransactionMismatch", "Destination"),
        ("signature_over_different_amount", "collector",
         signers_blob(tx, [signer_entry(buyer, other_amount)]), "InvalidSignature", None),
        ("key_does_not_match_account", "collector",
         signers_blob(tx, [signer_entry(provider, tx, as_account=buyer.address)]),
         "KeyDoesNotMatchAccount", None),
        ("duplicate_signer_in_one_blob", "collector", signers_blob(tx, [buyer_entry, buyer_entry]),
         "DuplicateSigner", None),
        ("single_signed_not_multisigned", "collector", blob_of(sign(tx, buyer)),
         "TransactionMismatch", "SigningPubKey"),
        ("no_signers", "collector", blob_of(tx), "NotMultisigned", None),
        ("truncated", "collector", good_final[:-10], "MalformedBlob", None),
        ("not_hex", "collector", "12000022zz", "MalformedBlob", None),
        ("trailing_garbage", "final", good_final + "00", "MalformedBlob", None),
        ("duplicate_signer", "final", signers_blob(tx, [buyer_entry, buyer_entry]),
         "DuplicateSigner", None),
        ("quorum_not_met", "final", signers_blob(tx, [buyer_entry]), "QuorumNotMet", None),
        ("unsorted_signers", "final", signers_blob(tx, [high, low]), "UnsortedSigners", None),
        ("too_many_signers", "final", signers_blob(tx, all_three), "TooManySigners", None),
        ("outsider_in_final", "final",
         signers_blob(tx, sorted([buyer_entry, signer_entry(outsider, tx)],
                                 key=lambda e: account_id(e["Account"]))),
         "SignerNotInList", None),
    ]

    vectors = {
        "generator": f"xrpl-py {importlib.metadata.version('xrpl-py')}",
        "marketplace_secret_hex": SECRET.hex().upper(),
        "keys": keys,
        "parties": parties,
        "setup": setup,
        "payouts": payouts,
        "negative": [
            {"name": n, "scenario": "split", "tx_index": 0, "check": check, "blob": blob,
             "error": error, "field": field}
            for n, check, blob, error, field in negative
        ],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(vectors, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
