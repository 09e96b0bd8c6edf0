use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "disputes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub order_id: Uuid,
    pub opened_by: String,
    pub opened_at: DateTimeUtc,
    pub respond_by: DateTimeUtc,
    pub responded_at: Option<DateTimeUtc>,
    pub reminded_at: Option<DateTimeUtc>,
    pub escalated_at: Option<DateTimeUtc>,
    pub status: String,
    pub round: i32,
    pub arbitrator_id: Option<Uuid>,
    pub first_arbitrator_id: Option<Uuid>,
    pub decision_bps: Option<i32>,
    pub rationale: Option<String>,
    pub decided_at: Option<DateTimeUtc>,
    pub decided_by: Option<Uuid>,
    pub first_decision_bps: Option<i32>,
    pub first_decided_at: Option<DateTimeUtc>,
    pub appeal_by: Option<DateTimeUtc>,
    pub appealed_at: Option<DateTimeUtc>,
    pub appealed_by: Option<String>,
    pub decision_escalated_at: Option<DateTimeUtc>,
    pub version: i32,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
