use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "order_outcomes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: Uuid,
    pub buyer_id: Uuid,
    pub provider_id: Uuid,
    pub asset: String,
    pub order_value: i64,
    /// `released`, `refunded` or `split`.
    pub outcome: String,
    pub provider_bps: i32,
    pub refunded_for_late_delivery: bool,
    /// `buyer` or `provider`.
    pub dispute_opened_by: Option<String>,
    pub provider_fault: bool,
    pub buyer_lost_dispute: bool,
    pub settled_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
