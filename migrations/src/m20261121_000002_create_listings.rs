//! Provider profiles, listings and their tags, with the indexes that keep
//! discovery fast: one composite index per ordering, and on PostgreSQL a trigram
//! index for text search.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::m20261121_000001_create_accounts::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Providers::Table)
                    .col(uuid(Providers::UserId).primary_key())
                    .col(string_len(Providers::DisplayName, 80))
                    .col(text(Providers::Bio))
                    .col(string_len(Providers::Region, 32))
                    .col(text(Providers::Languages))
                    // Provider score in thousandths of a star (0..=5000), filled by reputation.
                    .col(integer(Providers::RatingMilli).default(0))
                    .col(integer(Providers::RatingCount).default(0))
                    .col(timestamp_with_time_zone(Providers::CreatedAt))
                    .col(timestamp_with_time_zone(Providers::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Providers::Table, Providers::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Listings::Table)
                    .col(uuid(Listings::Id).primary_key())
                    .col(uuid(Listings::ProviderId))
                    .col(string_len(Listings::Title, 120))
                    .col(text(Listings::Description))
                    .col(string_len(Listings::Category, 32))
                    .col(text(Listings::Tags))
                    .col(string_len(Listings::Region, 32))
                    .col(string_len(Listings::Asset, 8))
                    .col(string_len(Listings::PricingKind, 16))
                    .col(big_integer(Listings::Price))
                    .col(string_len_null(Listings::MeteredUnit, 16))
                    .col(big_integer_null(Listings::MinDeposit))
                    .col(integer(Listings::DeliveryWindowHours))
                    .col(string_len(Listings::Status, 16))
                    .col(text(Listings::SearchText))
                    // Denormalised from providers.rating_milli so ordering by rating uses an index.
                    .col(integer(Listings::ProviderRating).default(0))
                    .col(integer(Listings::Version).default(0))
                    .col(timestamp_with_time_zone(Listings::CreatedAt))
                    .col(timestamp_with_time_zone(Listings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Listings::Table, Listings::ProviderId)
                            .to(Providers::Table, Providers::UserId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ListingTags::Table)
                    .col(uuid(ListingTags::ListingId))
                    .col(string_len(ListingTags::Tag, 32))
                    .primary_key(Index::create().col(ListingTags::ListingId).col(ListingTags::Tag))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ListingTags::Table, ListingTags::ListingId)
                            .to(Listings::Table, Listings::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes: [(&str, Vec<Listings>); 6] = [
            ("idx_listings_status_id", vec![Listings::Status, Listings::Id]),
            ("idx_listings_status_price", vec![Listings::Status, Listings::Price, Listings::Id]),
            (
                "idx_listings_status_rating",
                vec![Listings::Status, Listings::ProviderRating, Listings::Id],
            ),
            (
                "idx_listings_status_category",
                vec![Listings::Status, Listings::Category, Listings::Id],
            ),
            ("idx_listings_provider", vec![Listings::ProviderId, Listings::Id]),
            ("idx_listings_status_region", vec![Listings::Status, Listings::Region, Listings::Id]),
        ];
        for (name, cols) in indexes {
            let mut index = Index::create();
            index.name(name).table(Listings::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_listing_tags_tag")
                    .table(ListingTags::Table)
                    .col(ListingTags::Tag)
                    .col(ListingTags::ListingId)
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            let db = manager.get_connection();
            // pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it.
            db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm").await?;
            db.execute_unprepared(
                "CREATE INDEX idx_listings_search_trgm ON listings USING gin (search_text gin_trgm_ops)",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ListingTags::Table.into_iden(),
            Listings::Table.into_iden(),
            Providers::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
pub enum Providers {
    Table,
    UserId,
    DisplayName,
    Bio,
    Region,
    Languages,
    RatingMilli,
    RatingCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
pub enum Listings {
    Table,
    Id,
    ProviderId,
    Title,
    Description,
    Category,
    Tags,
    Region,
    Asset,
    PricingKind,
    Price,
    MeteredUnit,
    MinDeposit,
    DeliveryWindowHours,
    Status,
    SearchText,
    ProviderRating,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ListingTags {
    Table,
    ListingId,
    Tag,
}
