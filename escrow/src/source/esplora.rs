//! Esplora HTTP adapter of the Bitcoin source port.
