use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "listings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub provider_id: Uuid,
    pub title: String,
    pub description: String,
    pub category: String,
    /// JSON array of tags, in the provider's order (listing_tags is the index).
    pub tags: String,
    pub region: String,
    pub asset: String,
    pub pricing_kind: String,
    /// The fixed amount, or the price per unit for metered listings.
    pub price: i64,
    pub metered_unit: Option<String>,
    pub min_deposit: Option<i64>,
    pub delivery_window_hours: i32,
    pub status: String,
    pub search_text: String,
    pub provider_rating: i32,
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
