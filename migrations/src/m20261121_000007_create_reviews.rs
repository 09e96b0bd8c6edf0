//! Reputation: reviews of settled orders (one per side per order), and the
//! outcome of every settled order as reputation reads it (faults, disputes).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::m20261121_000001_create_accounts::Users;
use crate::m20261121_000003_create_orders::Orders;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Reviews::Table)
                    .col(uuid(Reviews::Id).primary_key())
                    .col(uuid(Reviews::OrderId))
                    .col(uuid(Reviews::ReviewerId))
                    .col(uuid(Reviews::SubjectId))
                    // The reviewer's side: `buyer` (reviews the provider) or `provider`.
                    .col(string_len(Reviews::Side, 16))
                    .col(small_integer(Reviews::Rating))
                    .col(text_null(Reviews::Text))
                    // The order's asset, amount due and settlement time, frozen with
                    // the order: the score weighs reviews by them.
                    .col(string_len(Reviews::Asset, 8))
                    .col(big_integer(Reviews::OrderValue))
                    .col(timestamp_with_time_zone(Reviews::SettledAt))
                    .col(timestamp_with_time_zone(Reviews::EditableUntil))
                    .col(timestamp_with_time_zone(Reviews::CreatedAt))
                    .col(timestamp_with_time_zone(Reviews::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Reviews::Table, Reviews::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Reviews::Table, Reviews::ReviewerId)
                            .to(Users::Table, Users::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Reviews::Table, Reviews::SubjectId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One review per side per order, enforced by the database so two
        // concurrent submissions cannot both succeed.
        manager
            .create_index(
                Index::create()
                    .name("uq_reviews_order_side")
                    .table(Reviews::Table)
                    .col(Reviews::OrderId)
                    .col(Reviews::Side)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_reviews_subject")
                    .table(Reviews::Table)
                    .col(Reviews::SubjectId)
                    .col(Reviews::Side)
                    .col(Reviews::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderOutcomes::Table)
                    .col(uuid(OrderOutcomes::OrderId).primary_key())
                    .col(uuid(OrderOutcomes::BuyerId))
                    .col(uuid(OrderOutcomes::ProviderId))
                    .col(string_len(OrderOutcomes::Asset, 8))
                    .col(big_integer(OrderOutcomes::OrderValue))
                    // released | refunded | split
                    .col(string_len(OrderOutcomes::Outcome, 16))
                    .col(integer(OrderOutcomes::ProviderBps))
                    .col(boolean(OrderOutcomes::RefundedForLateDelivery))
                    .col(string_len_null(OrderOutcomes::DisputeOpenedBy, 16))
                    // Judged by the domain when the order settles; indexed below so
                    // a score reads only the faults, not every order.
                    .col(boolean(OrderOutcomes::ProviderFault))
                    .col(boolean(OrderOutcomes::BuyerLostDispute))
                    .col(timestamp_with_time_zone(OrderOutcomes::SettledAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrderOutcomes::Table, OrderOutcomes::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("idx_order_outcomes_provider_fault", vec![OrderOutcomes::ProviderId, OrderOutcomes::ProviderFault]),
            ("idx_order_outcomes_buyer", vec![OrderOutcomes::BuyerId]),
        ] {
            let mut index = Index::create();
            index.name(name).table(OrderOutcomes::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OrderOutcomes::Table).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(Reviews::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Reviews {
    Table,
    Id,
    OrderId,
    ReviewerId,
    SubjectId,
    Side,
    Rating,
    Text,
    Asset,
    OrderValue,
    SettledAt,
    EditableUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OrderOutcomes {
    Table,
    OrderId,
    BuyerId,
    ProviderId,
    Asset,
    OrderValue,
    Outcome,
    ProviderBps,
    RefundedForLateDelivery,
    DisputeOpenedBy,
    ProviderFault,
    BuyerLostDispute,
    SettledAt,
}
