//! Agora's schema, one file per change. The same migrations run on PostgreSQL and
//! SQLite; Postgres-only extras (trigram search) are switched on by backend here.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_accounts;
mod m20261121_000002_create_listings;
mod m20261121_000003_create_orders;
mod m20261121_000004_create_chain_cursors;
mod m20261121_000005_create_notifications;
mod m20261121_000006_create_disputes;
mod m20261121_000007_create_reviews;
mod m20261121_000008_create_metering;
mod m20261202_000001_add_dispute_decision_escalation;
mod m20261202_120000_create_rate_limits;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_accounts::Migration),
            Box::new(m20261121_000002_create_listings::Migration),
            Box::new(m20261121_000003_create_orders::Migration),
            Box::new(m20261121_000004_create_chain_cursors::Migration),
            Box::new(m20261121_000005_create_notifications::Migration),
            Box::new(m20261121_000006_create_disputes::Migration),
            Box::new(m20261121_000007_create_reviews::Migration),
            Box::new(m20261121_000008_create_metering::Migration),
            Box::new(m20261202_000001_add_dispute_decision_escalation::Migration),
            Box::new(m20261202_120000_create_rate_limits::Migration),
        ]
    }
}

/// Names of all migrations, in order; tests key their template databases on it.
pub fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}
