//! Metered services: peak-load windows of listings, one session per metered
//! order (running totals, the latest buyer claim, alerts fired), usage
//! records with their frozen price, every accepted claim, and per-user alert
//! thresholds.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::m20261121_000001_create_accounts::Users;
use crate::m20261121_000002_create_listings::Listings;
use crate::m20261121_000003_create_orders::Orders;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ListingPeakWindows::Table)
                    .col(uuid(ListingPeakWindows::ListingId).primary_key())
                    // JSON of the domain's `PeakSchedule`.
                    .col(text(ListingPeakWindows::Windows))
                    .col(timestamp_with_time_zone(ListingPeakWindows::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ListingPeakWindows::Table, ListingPeakWindows::ListingId)
                            .to(Listings::Table, Listings::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MeteredSessions::Table)
                    .col(uuid(MeteredSessions::OrderId).primary_key())
                    // JSON of the domain's `Session` (totals, latest claim, alerts fired).
                    .col(text(MeteredSessions::Session))
                    // The listing's peak windows, frozen when the order was placed.
                    .col(text(MeteredSessions::Windows))
                    // The buyer-signed PSBT of the latest valid claim (base64) and its txid.
                    .col(text_null(MeteredSessions::LatestClaimPsbt))
                    .col(string_len_null(MeteredSessions::LatestClaimTxid, 64))
                    .col(integer(MeteredSessions::Version))
                    .col(timestamp_with_time_zone(MeteredSessions::CreatedAt))
                    .col(timestamp_with_time_zone(MeteredSessions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MeteredSessions::Table, MeteredSessions::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageRecords::Table)
                    .col(uuid(UsageRecords::Id).primary_key())
                    .col(uuid(UsageRecords::OrderId))
                    .col(big_integer(UsageRecords::Quantity))
                    .col(big_integer(UsageRecords::PricePerUnit))
                    .col(integer(UsageRecords::MultiplierBps))
                    .col(big_integer(UsageRecords::Amount))
                    .col(timestamp_with_time_zone(UsageRecords::At))
                    .col(timestamp_with_time_zone(UsageRecords::RecordedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UsageRecords::Table, UsageRecords::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_usage_records_order")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::OrderId)
                    .col(UsageRecords::RecordedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MeteredClaims::Table)
                    .col(uuid(MeteredClaims::Id).primary_key())
                    .col(uuid(MeteredClaims::OrderId))
                    .col(big_integer(MeteredClaims::Cumulative))
                    .col(string_len(MeteredClaims::Txid, 64))
                    .col(text(MeteredClaims::Psbt))
                    .col(timestamp_with_time_zone(MeteredClaims::SubmittedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MeteredClaims::Table, MeteredClaims::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Amounts only grow: two claims of one session never share an amount.
        manager
            .create_index(
                Index::create()
                    .name("uq_metered_claims_order_cumulative")
                    .table(MeteredClaims::Table)
                    .col(MeteredClaims::OrderId)
                    .col(MeteredClaims::Cumulative)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageAlertSettings::Table)
                    .col(uuid(UsageAlertSettings::UserId).primary_key())
                    // JSON array of thresholds in basis points of the deposit.
                    .col(text(UsageAlertSettings::Thresholds))
                    .col(timestamp_with_time_zone(UsageAlertSettings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UsageAlertSettings::Table, UsageAlertSettings::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UsageAlertSettings::Table.into_iden(),
            MeteredClaims::Table.into_iden(),
            UsageRecords::Table.into_iden(),
            MeteredSessions::Table.into_iden(),
            ListingPeakWindows::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ListingPeakWindows {
    Table,
    ListingId,
    Windows,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MeteredSessions {
    Table,
    OrderId,
    Session,
    Windows,
    LatestClaimPsbt,
    LatestClaimTxid,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    Id,
    OrderId,
    Quantity,
    PricePerUnit,
    MultiplierBps,
    Amount,
    At,
    RecordedAt,
}

#[derive(DeriveIden)]
enum MeteredClaims {
    Table,
    Id,
    OrderId,
    Cumulative,
    Txid,
    Psbt,
    SubmittedAt,
}

#[derive(DeriveIden)]
enum UsageAlertSettings {
    Table,
    UserId,
    Thresholds,
    UpdatedAt,
}
