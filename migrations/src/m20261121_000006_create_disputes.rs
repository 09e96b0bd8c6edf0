//! Disputes over orders: the case, its statements and evidence, the assigned
//! arbitrator, the decision and its appeal.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::m20261121_000003_create_orders::Orders;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Disputes::Table)
                    .col(uuid(Disputes::Id).primary_key())
                    .col(uuid_uniq(Disputes::OrderId))
                    .col(string_len(Disputes::OpenedBy, 16))
                    .col(timestamp_with_time_zone(Disputes::OpenedAt))
                    .col(timestamp_with_time_zone(Disputes::RespondBy))
                    .col(timestamp_with_time_zone_null(Disputes::RespondedAt))
                    .col(timestamp_with_time_zone_null(Disputes::RemindedAt))
                    .col(timestamp_with_time_zone_null(Disputes::EscalatedAt))
                    // open → decided → (appealed → final) | final
                    .col(string_len(Disputes::Status, 16))
                    .col(integer(Disputes::Round).default(1))
                    .col(uuid_null(Disputes::ArbitratorId))
                    .col(uuid_null(Disputes::FirstArbitratorId))
                    .col(integer_null(Disputes::DecisionBps))
                    .col(text_null(Disputes::Rationale))
                    .col(timestamp_with_time_zone_null(Disputes::DecidedAt))
                    .col(uuid_null(Disputes::DecidedBy))
                    .col(integer_null(Disputes::FirstDecisionBps))
                    .col(timestamp_with_time_zone_null(Disputes::FirstDecidedAt))
                    .col(timestamp_with_time_zone_null(Disputes::AppealBy))
                    .col(timestamp_with_time_zone_null(Disputes::AppealedAt))
                    .col(string_len_null(Disputes::AppealedBy, 16))
                    .col(integer(Disputes::Version).default(0))
                    .col(timestamp_with_time_zone(Disputes::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Disputes::Table, Disputes::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_disputes_arbitrator")
                    .table(Disputes::Table)
                    .col(Disputes::ArbitratorId)
                    .col(Disputes::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DisputeStatements::Table)
                    .col(uuid(DisputeStatements::Id).primary_key())
                    .col(uuid(DisputeStatements::DisputeId))
                    .col(uuid(DisputeStatements::AuthorId))
                    .col(string_len(DisputeStatements::AuthorRole, 16))
                    .col(text(DisputeStatements::Text))
                    // JSON array of {contentHash, size, mediaType, name}.
                    .col(text(DisputeStatements::Attachments))
                    .col(timestamp_with_time_zone(DisputeStatements::At))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DisputeStatements::Table, DisputeStatements::DisputeId)
                            .to(Disputes::Table, Disputes::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_dispute_statements_dispute")
                    .table(DisputeStatements::Table)
                    .col(DisputeStatements::DisputeId)
                    .col(DisputeStatements::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DisputeStatements::Table).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(Disputes::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum Disputes {
    Table,
    Id,
    OrderId,
    OpenedBy,
    OpenedAt,
    RespondBy,
    RespondedAt,
    RemindedAt,
    EscalatedAt,
    Status,
    Round,
    ArbitratorId,
    FirstArbitratorId,
    DecisionBps,
    Rationale,
    DecidedAt,
    DecidedBy,
    FirstDecisionBps,
    FirstDecidedAt,
    AppealBy,
    AppealedAt,
    AppealedBy,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DisputeStatements {
    Table,
    Id,
    DisputeId,
    AuthorId,
    AuthorRole,
    Text,
    Attachments,
    At,
}
