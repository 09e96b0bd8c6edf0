//! Agora's API: the GraphQL schema, the actix-web server, authentication and the
//! `agora` command line. `main.rs` only parses the command line and calls in here.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod chains;
pub mod config;
pub mod devnet;
pub mod disputes;
pub mod devwallet;
pub mod graphql;
pub mod http;
pub mod metered;
pub mod metrics;
pub mod notifications;
pub mod orders;
pub mod reputation;
pub mod startup;
pub mod telemetry;
pub mod watcher;
