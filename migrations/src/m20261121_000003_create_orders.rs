//! Orders with their escrows, the order history, and the append-only audit log
//! of every signature the marketplace (arbitrator) key makes.

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
                    .table(Orders::Table)
                    .col(uuid(Orders::Id).primary_key())
                    .col(uuid(Orders::BuyerId))
                    .col(uuid(Orders::ProviderId))
                    .col(uuid(Orders::ListingId))
                    .col(uuid_null(Orders::ArbitratorId))
                    .col(string_len(Orders::Chain, 16))
                    .col(string_len(Orders::Asset, 8))
                    .col(big_integer(Orders::AmountDue))
                    // The escrow state's name, for filtering; `state` holds the whole state.
                    .col(string_len(Orders::Status, 32))
                    .col(text(Orders::Terms))
                    .col(text(Orders::State))
                    // Chain-specific escrow details (address, descriptor, key index, funding, payout).
                    .col(text(Orders::Escrow))
                    .col(integer(Orders::ArbitratorKeyIndex))
                    .col(string_len_null(Orders::EscrowAddress, 128))
                    .col(integer(Orders::Version).default(0))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Orders::Table, Orders::BuyerId)
                            .to(Users::Table, Users::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Orders::Table, Orders::ProviderId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols, unique) in [
            ("idx_orders_buyer", vec![Orders::BuyerId, Orders::Id], false),
            ("idx_orders_provider", vec![Orders::ProviderId, Orders::Id], false),
            ("idx_orders_arbitrator", vec![Orders::ArbitratorId, Orders::Id], false),
            ("idx_orders_status", vec![Orders::Status, Orders::Id], false),
            // One derived marketplace key per escrow, never reused.
            ("uq_orders_key_index", vec![Orders::Chain, Orders::ArbitratorKeyIndex], true),
        ] {
            let mut index = Index::create();
            index.name(name).table(Orders::Table);
            for col in cols {
                index.col(col);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(OrderEvents::Table)
                    .col(uuid(OrderEvents::Id).primary_key())
                    .col(uuid(OrderEvents::OrderId))
                    .col(string_len(OrderEvents::Event, 48))
                    .col(string_len(OrderEvents::Actor, 16))
                    .col(string_len(OrderEvents::FromStatus, 32))
                    .col(string_len(OrderEvents::ToStatus, 32))
                    .col(text(OrderEvents::Detail))
                    .col(timestamp_with_time_zone(OrderEvents::At))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrderEvents::Table, OrderEvents::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_order_events_order")
                    .table(OrderEvents::Table)
                    .col(OrderEvents::OrderId)
                    .col(OrderEvents::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ArbitratorSignatures::Table)
                    .col(uuid(ArbitratorSignatures::Id).primary_key())
                    .col(uuid(ArbitratorSignatures::OrderId))
                    .col(string_len(ArbitratorSignatures::Chain, 16))
                    .col(integer(ArbitratorSignatures::KeyIndex))
                    .col(string_len(ArbitratorSignatures::PublicKey, 140))
                    .col(string_len(ArbitratorSignatures::Rule, 48))
                    .col(string_len(ArbitratorSignatures::Outcome, 32))
                    // The id of the transaction signed (txid or XRPL hash of the unsigned tx).
                    .col(string_len(ArbitratorSignatures::TxId, 128))
                    .col(text(ArbitratorSignatures::Detail))
                    .col(timestamp_with_time_zone(ArbitratorSignatures::SignedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ArbitratorSignatures::Table, ArbitratorSignatures::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // The audit log is append-only for everyone, the application included.
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE FUNCTION agora_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN RAISE EXCEPTION 'arbitrator_signatures is append-only'; END $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE TRIGGER arbitrator_signatures_append_only BEFORE UPDATE OR DELETE ON arbitrator_signatures \
                     FOR EACH ROW EXECUTE FUNCTION agora_append_only()",
                )
                .await?;
            }
            _ => {
                for op in ["UPDATE", "DELETE"] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER arbitrator_signatures_no_{} BEFORE {op} ON arbitrator_signatures \
                         BEGIN SELECT RAISE(ABORT, 'arbitrator_signatures is append-only'); END",
                        op.to_lowercase()
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP TRIGGER IF EXISTS arbitrator_signatures_append_only ON arbitrator_signatures")
                .await?;
            db.execute_unprepared("DROP FUNCTION IF EXISTS agora_append_only()").await?;
        }
        for table in [
            ArbitratorSignatures::Table.into_iden(),
            OrderEvents::Table.into_iden(),
            Orders::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
pub enum Orders {
    Table,
    Id,
    BuyerId,
    ProviderId,
    ListingId,
    ArbitratorId,
    Chain,
    Asset,
    AmountDue,
    Status,
    Terms,
    State,
    Escrow,
    ArbitratorKeyIndex,
    EscrowAddress,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderEvents {
    Table,
    Id,
    OrderId,
    Event,
    Actor,
    FromStatus,
    ToStatus,
    Detail,
    At,
}

#[derive(DeriveIden)]
enum ArbitratorSignatures {
    Table,
    Id,
    OrderId,
    Chain,
    KeyIndex,
    PublicKey,
    Rule,
    Outcome,
    TxId,
    Detail,
    SignedAt,
}
