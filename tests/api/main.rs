//! End-to-end tests through HTTP. One binary, so it links once.

mod auth;
mod schema;
