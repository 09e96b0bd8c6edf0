//! Bitcoin 2-of-3 escrow: descriptor, arbitrator keys, payout PSBTs.
