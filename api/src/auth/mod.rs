//! Authentication: argon2id passwords, Ed25519-signed access tokens, and opaque
//! refresh tokens that are stored hashed and rotated on every use.

pub mod jwt;
pub mod password;
pub mod rate_limit;
pub mod refresh;

pub use jwt::{AccessClaims, JwtKeys, TokenError};
