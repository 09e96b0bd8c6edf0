//! Rippled WebSocket/JSON-RPC adapter of the XRPL source port.
