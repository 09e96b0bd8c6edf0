//! The XRPL devnet.
