//! When a dispute's first decision was overdue and the case went to another
//! arbitrator; a second miss resolves the case by default (see the disputes
//! sweep), so arbitration always ends before the escrow's timelock.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Disputes::Table)
                    .add_column(timestamp_with_time_zone_null(Disputes::DecisionEscalatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Disputes::Table)
                    .drop_column(Disputes::DecisionEscalatedAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Disputes {
    Table,
    DecisionEscalatedAt,
}
