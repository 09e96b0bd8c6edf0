//! HTTP endpoints: GraphQL over HTTP, GraphiQL, health and readiness.

pub mod client;
pub mod graphiql;
pub mod graphql;
pub mod headers;
pub mod health;
pub mod socket;
