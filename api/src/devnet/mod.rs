//! Local chains for development and tests: a Bitcoin regtest node speaking the
//! Bitcoin Core JSON-RPC and Esplora HTTP subsets Agora uses, and an XRPL devnet
//! speaking rippled's WebSocket and JSON-RPC subsets. Clearly development
//! chains (regtest / devnet), never a substitute for real nodes in production.

pub mod bitcoin;
pub mod xrpl;
