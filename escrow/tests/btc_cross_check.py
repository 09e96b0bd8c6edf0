#!/usr/bin/env python3
"""Finalizes a signed escrow payout PSBT with BDK (bdkpython), independently of
agora-escrow, and prints what it got so the Rust test can compare.

Usage: btc_cross_check.py PSBT_FILE
  PSBT_FILE holds the base64 PSBT with partial signatures, not yet finalized.
Prints `key=value` lines: tx_hex, txid, fee (sats), vsize.
Exit status 3 when bdkpython is not installed (pip install bdkpython),
1 when BDK cannot finalize.
"""

import sys

try:
    import bdkpython as bdk
except ImportError:
    print("bdkpython is not installed: pip install bdkpython", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="ascii") as f:
        psbt = bdk.Psbt(f.read().strip())
    result = psbt.finalize()
    if not result.could_finalize:
        print(f"BDK could not finalize: {result.errors}", file=sys.stderr)
        return 1
    finalized = result.psbt
    fee = finalized.fee()
    tx = finalized.extract_tx()
    print(f"tx_hex={bytes(tx.serialize()).hex()}")
    print(f"txid={tx.compute_txid()}")
    print(f"fee={fee}")
    print(f"vsize={tx.vsize()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
