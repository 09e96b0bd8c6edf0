//! End-to-end tests through HTTP. One binary, so it links once.

pub use agora_tests::GqlResponse;

/// One test per backend for each scenario `async fn name(backend: Backend)`
/// (the chain scenarios run on both PostgreSQL and SQLite).
macro_rules! chain_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(agora_tests::Backend::Postgres).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(agora_tests::Backend::Sqlite).await
                }
            }
        )+
    };
}

mod auth;
mod authz_matrix;
mod chains_btc;
mod chains_xrpl;
mod devnet_bitcoin;
mod disputes;
mod escrow_liveness;
mod faults;
mod fuzz;
mod graphql_http_audit;
mod devnet_xrpl;
mod orders_btc;
mod orders_xrpl;
mod relay_ids;
mod reputation;
mod hardening;
mod http;
mod listings;
mod metered;
mod metrics;
mod notifications;
mod schema;
mod search;
mod subscriptions;
mod watcher_election;
mod xrpl_channel_model;
mod xrpl_channels;
mod xrpl_liveness;
mod xrpl_model;
