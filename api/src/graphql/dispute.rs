//! Disputes over GraphQL: opening, statements and evidence, the arbitrators'
//! queue, decisions, appeals, reassignment by admins.

use agora_persistence::disputes::{self as store, DisputeRecord};
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::context::{state, viewer};
use super::errors::{ApiError, ApiResult};
use super::node::{expect, global_id, NodeType};
use super::order::OrderObject;
use crate::disputes::{self, Attachment};
use crate::orders;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DisputeStatus {
    /// Waiting for statements and the arbitrator's decision.
    Open,
    /// Decided; either party may appeal until `appealBy`.
    Decided,
    /// Appealed; a second arbitrator decides, for good.
    Appealed,
    /// Decided for good; the payout follows the decision.
    Final,
}

fn status_of(s: &str) -> DisputeStatus {
    match s {
        "decided" => DisputeStatus::Decided,
        "appealed" => DisputeStatus::Appealed,
        "final" => DisputeStatus::Final,
        _ => DisputeStatus::Open,
    }
}

#[derive(SimpleObject)]
pub struct AttachmentGql {
    pub content_hash: String,
    pub size: u64,
    pub media_type: String,
    pub name: Option<String>,
}

#[derive(SimpleObject)]
pub struct StatementGql {
    /// buyer, provider or arbitrator.
    pub author_role: String,
    pub text: String,
    pub attachments: Vec<AttachmentGql>,
    pub at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct DecisionGql {
    /// Share of the escrow's pool to the provider, in basis points.
    pub provider_bps: i32,
    pub rationale: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

pub struct DisputeObject(pub DisputeRecord);

#[Object(name = "Dispute")]
impl DisputeObject {
    pub async fn id(&self) -> ID {
        global_id(NodeType::Dispute, self.0.id)
    }

    async fn status(&self) -> DisputeStatus {
        status_of(&self.0.status)
    }

    /// 1, or 2 after an appeal.
    async fn round(&self) -> i32 {
        self.0.round
    }

    /// buyer or provider.
    async fn opened_by(&self) -> &str {
        &self.0.opened_by
    }

    async fn opened_at(&self) -> DateTime<Utc> {
        self.0.opened_at
    }

    /// The other side's response deadline.
    async fn respond_by(&self) -> DateTime<Utc> {
        self.0.respond_by
    }

    async fn responded_at(&self) -> Option<DateTime<Utc>> {
        self.0.responded_at
    }

    /// Set when the response deadline passed unanswered.
    async fn escalated_at(&self) -> Option<DateTime<Utc>> {
        self.0.escalated_at
    }

    /// The assigned arbitrator (global user id); null while none is available.
    async fn arbitrator_id(&self) -> Option<ID> {
        self.0.arbitrator_id.map(|id| global_id(NodeType::User, id))
    }

    async fn decision(&self) -> Option<DecisionGql> {
        self.0.decision_bps.map(|bps| DecisionGql {
            provider_bps: bps,
            rationale: self.0.rationale.clone(),
            decided_at: self.0.decided_at,
        })
    }

    /// The appealed first decision, after an appeal.
    async fn first_decision(&self) -> Option<DecisionGql> {
        self.0.first_decision_bps.map(|bps| DecisionGql {
            provider_bps: bps,
            rationale: None,
            decided_at: self.0.first_decided_at,
        })
    }

    async fn appeal_by(&self) -> Option<DateTime<Utc>> {
        self.0.appeal_by
    }

    async fn appealed_at(&self) -> Option<DateTime<Utc>> {
        self.0.appealed_at
    }

    /// Pass it back as `expectedVersion` when deciding.
    async fn version(&self) -> i32 {
        self.0.version
    }

    async fn order(&self, ctx: &Context<'_>) -> ApiResult<OrderObject> {
        Ok(OrderObject(orders::load(&state(ctx).db, self.0.order_id).await?))
    }

    async fn statements(&self, ctx: &Context<'_>) -> ApiResult<Vec<StatementGql>> {
        let rows = store::statements_of(&state(ctx).db, self.0.id).await?;
        rows.into_iter()
            .map(|s| {
                let attachments: Vec<Attachment> = serde_json::from_str(&s.attachments_json).map_err(ApiError::internal)?;
                Ok(StatementGql {
                    author_role: s.author_role,
                    text: s.text,
                    attachments: attachments
                        .into_iter()
                        .map(|a| AttachmentGql {
                            content_hash: a.content_hash,
                            size: a.size,
                            media_type: a.media_type,
                            name: a.name,
                        })
                        .collect(),
                    at: s.at,
                })
            })
            .collect()
    }
}

#[derive(InputObject)]
pub struct AttachmentInput {
    /// SHA-256 of the file, hex.
    pub content_hash: String,
    pub size: u64,
    pub media_type: String,
    pub name: Option<String>,
}

impl From<&AttachmentInput> for Attachment {
    fn from(a: &AttachmentInput) -> Self {
        Attachment {
            content_hash: a.content_hash.clone(),
            size: a.size,
            media_type: a.media_type.clone(),
            name: a.name.clone(),
        }
    }
}

#[derive(InputObject)]
pub struct OpenDisputeInput {
    pub order_id: ID,
    pub statement: String,
    #[graphql(default)]
    pub attachments: Vec<AttachmentInput>,
}

#[derive(InputObject)]
pub struct AddStatementInput {
    pub dispute_id: ID,
    pub statement: String,
    #[graphql(default)]
    pub attachments: Vec<AttachmentInput>,
}

#[derive(InputObject)]
pub struct DecideDisputeInput {
    pub dispute_id: ID,
    /// Share of the pool to the provider: 0 (all to the buyer) … 10000 (all to the provider).
    pub provider_bps: i32,
    pub rationale: String,
    /// Fails with CONFLICT when the dispute changed since this version.
    pub expected_version: Option<i32>,
}

#[derive(InputObject)]
pub struct AppealDecisionInput {
    pub dispute_id: ID,
    pub statement: String,
}

#[derive(InputObject)]
pub struct ReassignDisputeInput {
    pub dispute_id: ID,
    pub arbitrator_id: ID,
}

#[derive(SimpleObject)]
pub struct DisputePayload {
    pub dispute: DisputeObject,
}

fn attachments(a: &[AttachmentInput]) -> Vec<Attachment> {
    a.iter().map(Attachment::from).collect()
}

pub async fn load_dispute_node(ctx: &Context<'_>, id: uuid::Uuid) -> ApiResult<Option<DisputeObject>> {
    let v = viewer(ctx).await?;
    match disputes::load_for(&state(ctx).db, &v, id).await {
        Ok((d, _)) => Ok(Some(DisputeObject(d))),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Default)]
pub struct DisputeQuery;

#[Object]
impl DisputeQuery {
    /// A dispute you take part in (party, arbitrator) or, for admins, any.
    async fn dispute(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<DisputeObject>> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Dispute, &id, "id")?;
        match disputes::load_for(&state(ctx).db, &v, id).await {
            Ok((d, _)) => Ok(Some(DisputeObject(d))),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Any arbitrator's public track record.
    async fn arbitrator_record(&self, ctx: &Context<'_>, user_id: ID) -> ApiResult<ArbitratorRecordGql> {
        let id = expect(NodeType::User, &user_id, "userId")?;
        let disputes = store::cases_of_arbitrator(&state(ctx).db, id).await?;
        let r = agora_domain::reputation::arbitrator_record(&arbitrated_cases(id, &disputes));
        Ok(ArbitratorRecordGql {
            cases_assigned: r.cases_assigned,
            cases_decided: r.cases_decided,
            median_seconds_to_decision: r.median_time_to_decision.map(|d| d.num_seconds()),
            appeals: r.appeals,
            appeals_decided: r.appeals_decided,
            appeals_overturned: r.appeals_overturned,
        })
    }

    /// Arbitrators: the cases assigned to you that are not final, most urgent first.
    async fn arbitrator_queue(&self, ctx: &Context<'_>) -> ApiResult<Vec<DisputeObject>> {
        let v = viewer(ctx).await?;
        v.require(agora_domain::account::Role::Arbitrator)?;
        Ok(store::queue_of(&state(ctx).db, v.user_id).await?.into_iter().map(DisputeObject).collect())
    }
}

/// An arbitrator's track record, computed from its cases.
#[derive(SimpleObject)]
pub struct ArbitratorRecordGql {
    pub cases_assigned: u32,
    pub cases_decided: u32,
    /// Median time from assignment to decision, in seconds.
    pub median_seconds_to_decision: Option<i64>,
    pub appeals: u32,
    pub appeals_decided: u32,
    /// Appealed decisions the second arbitrator changed.
    pub appeals_overturned: u32,
}

/// Whose case a dispute is: whoever decided it once decided, else its assignee.
fn case_holder(d: &DisputeRecord) -> Option<uuid::Uuid> {
    if d.decided_at.is_some() {
        d.decided_by.or(d.arbitrator_id)
    } else {
        d.arbitrator_id
    }
}

/// The cases of `arbitrator` as the reputation rules count them: a first
/// decision carries its appeal; an appeal is the second arbitrator's own case.
fn arbitrated_cases(arbitrator: uuid::Uuid, disputes: &[DisputeRecord]) -> Vec<agora_domain::reputation::ArbitratedCase> {
    use agora_domain::money::BasisPoints;
    use agora_domain::reputation::{AppealFacts, ArbitratedCase, CaseDecision};
    let bps = |v: Option<i32>| v.and_then(|b| BasisPoints::new(i64::from(b)).ok());
    disputes
        .iter()
        .filter_map(|d| {
            if d.first_arbitrator_id == Some(arbitrator) {
                Some(ArbitratedCase {
                    case_id: d.id,
                    assigned_at: d.opened_at,
                    decision: d.first_decided_at.zip(bps(d.first_decision_bps)).map(|(decided_at, provider_bps)| CaseDecision {
                        decided_at,
                        provider_bps,
                    }),
                    appeal: Some(AppealFacts {
                        final_provider_bps: if d.status == "final" { bps(d.decision_bps) } else { None },
                    }),
                })
            } else if case_holder(d) == Some(arbitrator) {
                Some(ArbitratedCase {
                    case_id: d.id,
                    assigned_at: if d.round == 2 { d.appealed_at.unwrap_or(d.opened_at) } else { d.opened_at },
                    decision: d.decided_at.zip(bps(d.decision_bps)).map(|(decided_at, provider_bps)| CaseDecision {
                        decided_at,
                        provider_bps,
                    }),
                    appeal: None,
                })
            } else {
                None
            }
        })
        .collect()
}

#[derive(Default)]
pub struct DisputeMutation;

#[Object]
impl DisputeMutation {
    /// Buyer or provider: opens a dispute on a funded, unsettled order.
    async fn open_dispute(&self, ctx: &Context<'_>, input: OpenDisputeInput) -> ApiResult<DisputePayload> {
        let v = viewer(ctx).await?;
        let order_id = expect(NodeType::Order, &input.order_id, "input.orderId")?;
        let d = disputes::open(state(ctx), &v, order_id, &input.statement, &attachments(&input.attachments)).await?;
        Ok(DisputePayload { dispute: DisputeObject(d) })
    }

    /// A party or the assigned arbitrator adds a statement with evidence.
    async fn add_dispute_statement(&self, ctx: &Context<'_>, input: AddStatementInput) -> ApiResult<DisputePayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Dispute, &input.dispute_id, "input.disputeId")?;
        let d = disputes::add_statement(state(ctx), &v, id, &input.statement, &attachments(&input.attachments)).await?;
        Ok(DisputePayload { dispute: DisputeObject(d) })
    }

    /// The assigned arbitrator decides the split.
    async fn decide_dispute(&self, ctx: &Context<'_>, input: DecideDisputeInput) -> ApiResult<DisputePayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Dispute, &input.dispute_id, "input.disputeId")?;
        let d = disputes::decide(state(ctx), &v, id, input.provider_bps, &input.rationale, input.expected_version).await?;
        Ok(DisputePayload { dispute: DisputeObject(d) })
    }

    /// A party appeals a first decision (once, within the appeal window).
    async fn appeal_decision(&self, ctx: &Context<'_>, input: AppealDecisionInput) -> ApiResult<DisputePayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Dispute, &input.dispute_id, "input.disputeId")?;
        let d = disputes::appeal(state(ctx), &v, id, &input.statement).await?;
        Ok(DisputePayload { dispute: DisputeObject(d) })
    }

    /// Admins: assign the case to another arbitrator.
    async fn reassign_dispute(&self, ctx: &Context<'_>, input: ReassignDisputeInput) -> ApiResult<DisputePayload> {
        let v = viewer(ctx).await?;
        let id = expect(NodeType::Dispute, &input.dispute_id, "input.disputeId")?;
        let arbitrator = expect(NodeType::User, &input.arbitrator_id, "input.arbitratorId")?;
        let d = disputes::reassign(state(ctx), &v, id, arbitrator).await?;
        Ok(DisputePayload { dispute: DisputeObject(d) })
    }
}
