//! Bitcoin Core JSON-RPC adapter of the Bitcoin source port.
