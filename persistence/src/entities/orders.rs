use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub buyer_id: Uuid,
    pub provider_id: Uuid,
    pub listing_id: Uuid,
    pub arbitrator_id: Option<Uuid>,
    pub chain: String,
    pub asset: String,
    pub amount_due: i64,
    pub status: String,
    /// JSON of the domain's `OrderTerms`.
    pub terms: String,
    /// JSON of the domain's `EscrowState`.
    pub state: String,
    /// JSON of the chain adapter's escrow record.
    pub escrow: String,
    pub arbitrator_key_index: i32,
    pub escrow_address: Option<String>,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
