//! The Bitcoin regtest devnet.
