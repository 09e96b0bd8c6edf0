use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reviews")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub order_id: Uuid,
    pub reviewer_id: Uuid,
    pub subject_id: Uuid,
    /// The reviewer's side: `buyer` or `provider`.
    pub side: String,
    pub rating: i16,
    pub text: Option<String>,
    pub asset: String,
    pub order_value: i64,
    pub settled_at: DateTimeUtc,
    pub editable_until: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
