//! HTTP endpoints: GraphQL over HTTP, GraphiQL, health and readiness.

pub mod graphiql;
pub mod graphql;
pub mod health;
