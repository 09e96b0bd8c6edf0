//! XRP Ledger 2-of-3 escrow accounts and multisigned payouts.
