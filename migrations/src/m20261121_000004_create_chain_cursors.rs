//! Chain watching: the scanners' cursors and the recent blocks/ledgers they
//! processed (to find the fork point of a reorg).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChainBlocks::Table)
                    .col(string_len(ChainBlocks::Chain, 16))
                    .col(big_integer(ChainBlocks::Height))
                    .col(string_len(ChainBlocks::Hash, 80))
                    .col(timestamp_with_time_zone(ChainBlocks::ScannedAt))
                    .primary_key(Index::create().col(ChainBlocks::Chain).col(ChainBlocks::Height))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ChainBlocks::Table).to_owned())
            .await
    }
}

/// One row per processed block (height) per chain; the highest row is the cursor.
#[derive(DeriveIden)]
enum ChainBlocks {
    Table,
    Chain,
    Height,
    Hash,
    ScannedAt,
}
