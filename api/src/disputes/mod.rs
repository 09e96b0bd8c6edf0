//! Disputes and arbitration: opening a case on a funded order, statements and
//! evidence, automatic assignment to an arbitrator who is not a party, the
//! response deadline with a reminder and escalation, the decision (a split in
//! basis points with a rationale), one appeal to a different arbitrator, and
//! the hand-over to the escrow: the final decision becomes the escrow's
//! `Decide` event, whose payout the marketplace co-signs under its policy.
//!
//! Two arbitrators deciding at once: the dispute row's `version` lets exactly
//! one write win; the other gets CONFLICT.

use agora_domain::account::Role;
use agora_domain::escrow::{Actor, EscrowEvent, EscrowState};
use agora_domain::money::BasisPoints;
use agora_persistence::disputes::{self as store, DisputeRecord, StatementRecord};
use agora_persistence::StoreError;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::graphql::context::{AppState, Viewer};
use crate::graphql::errors::{ApiError, ApiResult};
use crate::notifications;
use crate::orders::{self, Order};

/// The reminder goes out this long before the response deadline.
pub const REMINDER_BEFORE_HOURS: i64 = 12;
const MAX_STATEMENT_CHARS: usize = 10_000;
const MAX_ATTACHMENTS: usize = 20;
const MAX_ATTACHMENT_BYTES: u64 = 50 * 1024 * 1024;

/// Evidence referenced by content hash; the file itself lives elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// SHA-256 of the file, lower-case hex.
    pub content_hash: String,
    pub size: u64,
    pub media_type: String,
    pub name: Option<String>,
}

impl Attachment {
    pub fn validate(&self, field: &str) -> ApiResult<Attachment> {
        let hash = self.content_hash.trim().to_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::bad_input(
                format!("{field}.contentHash"),
                "INVALID_FORMAT",
                format!("{field}.contentHash: a SHA-256 in hex (64 characters)"),
            ));
        }
        if self.size == 0 || self.size > MAX_ATTACHMENT_BYTES {
            return Err(ApiError::bad_input(
                format!("{field}.size"),
                "OUT_OF_RANGE",
                format!("{field}.size: between 1 byte and {MAX_ATTACHMENT_BYTES} bytes"),
            ));
        }
        let media = self.media_type.trim().to_lowercase();
        let valid_media = media.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty() && !s.is_empty() && media.len() <= 127 && !media.contains(char::is_whitespace)
        });
        if !valid_media {
            return Err(ApiError::bad_input(
                format!("{field}.mediaType"),
                "INVALID_FORMAT",
                format!("{field}.mediaType: a media type such as image/png"),
            ));
        }
        let name = match &self.name {
            Some(n) => Some(
                agora_domain::text::bounded("name", n, 1, 200, agora_domain::text::Lines::Single)
                    .map_err(|e| ApiError::invalid(field, e))?,
            ),
            None => None,
        };
        Ok(Attachment {
            content_hash: hash,
            size: self.size,
            media_type: media,
            name,
        })
    }
}

fn statement_text(text: &str) -> ApiResult<String> {
    agora_domain::text::bounded("statement", text, 1, MAX_STATEMENT_CHARS, agora_domain::text::Lines::Multi)
        .map_err(|e| ApiError::invalid("input", e))
}

fn attachments_json(attachments: &[Attachment]) -> ApiResult<String> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::bad_input(
            "input.attachments",
            "TOO_MANY",
            format!("input.attachments: at most {MAX_ATTACHMENTS}"),
        ));
    }
    let valid = attachments
        .iter()
        .enumerate()
        .map(|(i, a)| a.validate(&format!("input.attachments[{i}]")))
        .collect::<ApiResult<Vec<_>>>()?;
    serde_json::to_string(&valid).map_err(ApiError::internal)
}

fn role_name(actor: Actor) -> &'static str {
    match actor {
        Actor::Buyer => "buyer",
        Actor::Provider => "provider",
        Actor::Arbitrator => "arbitrator",
        Actor::System => "system",
        Actor::Chain => "chain",
    }
}

/// Who may see a dispute: its parties, its arbitrator (current or first) while
/// still an arbitrator, admins.
pub fn may_view(viewer: &Viewer, dispute: &DisputeRecord, order: &Order) -> bool {
    let arbitrates = dispute.arbitrator_id == Some(viewer.user_id) || dispute.first_arbitrator_id == Some(viewer.user_id);
    let is_party = order
        .actor_of(viewer.user_id)
        .is_some_and(|a| matches!(a, Actor::Buyer | Actor::Provider));
    is_party || (arbitrates && viewer.has(Role::Arbitrator)) || viewer.has(Role::Admin)
}

/// Loads a dispute the viewer may see (NOT_FOUND otherwise) with its order.
pub async fn load_for<C: sea_orm::ConnectionTrait>(db: &C, viewer: &Viewer, id: Uuid) -> ApiResult<(DisputeRecord, Order)> {
    let dispute = store::find_dispute(db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such dispute".into()))?;
    let order = orders::load(db, dispute.order_id).await?;
    if !may_view(viewer, &dispute, &order) {
        return Err(ApiError::NotFound("no such dispute".into()));
    }
    Ok((dispute, order))
}

/// What a dispute tells its participants; mapped to notification kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    Opened,
    NewStatement,
    DeadlineApproaching,
    Escalated,
    Decision,
    Appeal,
}

async fn notify(
    txn: &DatabaseTransaction,
    users: &[Option<Uuid>],
    notice: Notice,
    subject: &str,
    body: &str,
    dispute: &DisputeRecord,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let mut seen: Vec<Uuid> = Vec::new();
    for user in users.iter().flatten() {
        if seen.contains(user) {
            continue;
        }
        seen.push(*user);
        notifications::dispute_notice(txn, *user, notice_kind(notice), subject, body, dispute.order_id, dispute.id, now).await?;
    }
    Ok(())
}

fn notice_kind(notice: Notice) -> &'static str {
    match notice {
        Notice::Opened => "dispute_opened",
        Notice::NewStatement => "new_statement",
        Notice::DeadlineApproaching => "deadline_approaching",
        Notice::Escalated => "escalated",
        Notice::Decision => "decision",
        Notice::Appeal => "appeal",
    }
}

fn bump(d: &mut DisputeRecord, now: DateTime<Utc>) {
    d.version += 1;
    d.updated_at = now;
}

async fn save(txn: &DatabaseTransaction, d: &DisputeRecord) -> ApiResult<()> {
    match store::update_dispute(txn, d).await {
        Err(StoreError::VersionConflict) => Err(ApiError::conflict(
            "CONCURRENT_UPDATE",
            "the dispute was changed at the same moment (another decision?); reload it",
        )),
        other => Ok(other?),
    }
}

/// A party opens a dispute with a first statement.
pub async fn open(
    app: &AppState,
    viewer: &Viewer,
    order_id: Uuid,
    statement: &str,
    attachments: &[Attachment],
) -> ApiResult<DisputeRecord> {
    let text = statement_text(statement)?;
    let attachments = attachments_json(attachments)?;
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (order, actor) = orders::load_for(&txn, order_id, viewer.user_id).await?;
    if !matches!(actor, Actor::Buyer | Actor::Provider) {
        return Err(ApiError::forbidden("WRONG_ROLE", "only the buyer or the provider opens a dispute"));
    }
    if store::dispute_of_order(&txn, order_id).await?.is_some() {
        return Err(ApiError::conflict("ALREADY_DISPUTED", "this order already has a dispute"));
    }
    // The escrow decides whether a dispute may open now (funded, not settled,
    // within the review window).
    let order = orders::transition(app, &txn, order, actor, &EscrowEvent::OpenDispute, now).await?;
    let EscrowState::Disputed { respond_by, .. } = &order.state else {
        return Err(ApiError::internal("the escrow did not enter Disputed"));
    };
    let arbitrator = store::least_busy_arbitrator(&txn, &[order.record.buyer_id, order.record.provider_id]).await?;
    let dispute = DisputeRecord {
        id: Uuid::now_v7(),
        order_id,
        opened_by: role_name(actor).into(),
        opened_at: now,
        respond_by: *respond_by,
        responded_at: None,
        reminded_at: None,
        escalated_at: None,
        status: "open".into(),
        round: 1,
        arbitrator_id: arbitrator,
        first_arbitrator_id: None,
        decision_bps: None,
        rationale: None,
        decided_at: None,
        decided_by: None,
        first_decision_bps: None,
        first_decided_at: None,
        appeal_by: None,
        appealed_at: None,
        appealed_by: None,
        decision_escalated_at: None,
        version: 0,
        updated_at: now,
    };
    store::insert_dispute(&txn, dispute.clone()).await?;
    store::assign_order_arbitrator(&txn, order_id, arbitrator).await?;
    store::insert_statement(
        &txn,
        &StatementRecord {
            id: Uuid::now_v7(),
            dispute_id: dispute.id,
            author_id: viewer.user_id,
            author_role: role_name(actor).into(),
            text,
            attachments_json: attachments,
            at: now,
        },
    )
    .await?;
    attach_latest_claim(&txn, &order, dispute.id, now).await?;
    let other = if actor == Actor::Buyer { order.record.provider_id } else { order.record.buyer_id };
    notify(
        &txn,
        &[Some(other), arbitrator],
        Notice::Opened,
        "A dispute was opened",
        &format!(
            "A dispute was opened on order {order_id}. The other side has until {} to respond.",
            dispute.respond_by
        ),
        &dispute,
        now,
    )
    .await?;
    txn.commit().await?;
    if arbitrator.is_none() {
        tracing::warn!(dispute.id = %dispute.id, "no arbitrator available; an admin must assign one");
    }
    tracing::info!(dispute.id = %dispute.id, order.id = %order_id, "dispute opened");
    Ok(dispute)
}

/// On a metered order, the buyer's latest claim goes into the case as evidence:
/// the signed PSBT itself, referenced by its hash like any attachment.
async fn attach_latest_claim(txn: &DatabaseTransaction, order: &Order, dispute_id: Uuid, now: DateTime<Utc>) -> ApiResult<()> {
    if !order.is_metered() {
        return Ok(());
    }
    let claims = agora_persistence::metering::claims_of(txn, order.id()).await?;
    let Some(latest) = claims.iter().max_by_key(|c| c.cumulative) else {
        return Ok(());
    };
    use sha2::{Digest, Sha256};
    let attachment = Attachment {
        content_hash: hex::encode(Sha256::digest(latest.psbt.as_bytes())),
        size: latest.psbt.len() as u64,
        media_type: "application/psbt".into(),
        name: Some("latest-claim.psbt.base64".into()),
    };
    store::insert_statement(
        txn,
        &StatementRecord {
            id: Uuid::now_v7(),
            dispute_id,
            author_id: order.record.buyer_id,
            author_role: "system".into(),
            text: format!(
                "The buyer's latest claim: {} minor units to the provider (txid {}), signed {}.\nPSBT: {}",
                latest.cumulative, latest.txid, latest.submitted_at, latest.psbt
            ),
            attachments_json: serde_json::to_string(&[attachment]).map_err(ApiError::internal)?,
            at: now,
        },
    )
    .await?;
    Ok(())
}

/// A party or the arbitrator adds a statement (with evidence).
pub async fn add_statement(
    app: &AppState,
    viewer: &Viewer,
    dispute_id: Uuid,
    statement: &str,
    attachments: &[Attachment],
) -> ApiResult<DisputeRecord> {
    let text = statement_text(statement)?;
    let attachments = attachments_json(attachments)?;
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (mut dispute, order) = load_for(&txn, viewer, dispute_id).await?;
    let role = match order.actor_of(viewer.user_id) {
        Some(a @ (Actor::Buyer | Actor::Provider)) => role_name(a),
        _ if dispute.arbitrator_id == Some(viewer.user_id) && viewer.has(Role::Arbitrator) => "arbitrator",
        _ => return Err(ApiError::forbidden("WRONG_ROLE", "only the parties and the assigned arbitrator add statements")),
    };
    if dispute.status == "final" {
        return Err(ApiError::conflict("WRONG_STATE", "the dispute is decided for good"));
    }
    store::insert_statement(
        &txn,
        &StatementRecord {
            id: Uuid::now_v7(),
            dispute_id,
            author_id: viewer.user_id,
            author_role: role.into(),
            text,
            attachments_json: attachments,
            at: now,
        },
    )
    .await?;
    if role != "arbitrator" && role != dispute.opened_by && dispute.responded_at.is_none() {
        dispute.responded_at = Some(now);
    }
    bump(&mut dispute, now);
    save(&txn, &dispute).await?;
    let others: Vec<Option<Uuid>> = [Some(order.record.buyer_id), Some(order.record.provider_id), dispute.arbitrator_id]
        .into_iter()
        .filter(|u| *u != Some(viewer.user_id))
        .collect();
    notify(
        &txn,
        &others,
        Notice::NewStatement,
        "New statement in your dispute",
        &format!("The {role} added a statement to the dispute on order {}.", dispute.order_id),
        &dispute,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(dispute)
}

fn parse_bps(bps: i32) -> ApiResult<BasisPoints> {
    BasisPoints::new(i64::from(bps)).map_err(|_| {
        ApiError::bad_input("input.providerBps", "OUT_OF_RANGE", "input.providerBps: between 0 and 10000")
    })
}

/// The assigned arbitrator decides: a split to the provider with a rationale.
/// A first decision can be appealed for the order's appeal window; an appeal's
/// decision is final and goes to the escrow at once.
pub async fn decide(
    app: &AppState,
    viewer: &Viewer,
    dispute_id: Uuid,
    provider_bps: i32,
    rationale: &str,
    expected_version: Option<i32>,
) -> ApiResult<DisputeRecord> {
    let bps = parse_bps(provider_bps)?;
    let rationale = agora_domain::text::bounded("rationale", rationale, 1, MAX_STATEMENT_CHARS, agora_domain::text::Lines::Multi)
        .map_err(|e| ApiError::invalid("input", e))?;
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (mut dispute, order) = load_for(&txn, viewer, dispute_id).await?;
    if dispute.arbitrator_id != Some(viewer.user_id) || !viewer.has(Role::Arbitrator) {
        return Err(ApiError::forbidden("WRONG_ROLE", "only the dispute's assigned arbitrator decides it"));
    }
    if order.actor_of(viewer.user_id).is_some_and(|a| a != Actor::Arbitrator) {
        return Err(ApiError::forbidden("PARTY", "a party cannot decide its own case"));
    }
    if let Some(expected) = expected_version {
        if expected != dispute.version {
            return Err(ApiError::conflict("CONCURRENT_UPDATE", "the dispute changed since you loaded it; reload it"));
        }
    }
    let final_round = match (dispute.status.as_str(), dispute.round) {
        ("open", 1) => false,
        ("appealed", 2) => true,
        _ => return Err(ApiError::conflict("WRONG_STATE", format!("the dispute is {}", dispute.status))),
    };
    dispute.decision_bps = Some(i32::from(bps.get()));
    dispute.rationale = Some(rationale);
    dispute.decided_at = Some(now);
    dispute.decided_by = Some(viewer.user_id);
    if final_round {
        dispute.status = "final".into();
    } else {
        dispute.status = "decided".into();
        dispute.appeal_by = Some(agora_domain::escrow::deadlines::add(now, order.terms.deadlines().appeal_window));
    }
    bump(&mut dispute, now);
    save(&txn, &dispute).await?;
    if final_round {
        hand_to_escrow(app, &txn, &dispute, order, now).await?;
    }
    notify(
        &txn,
        &[Some(order_party(&dispute, &txn, true).await?), Some(order_party(&dispute, &txn, false).await?)],
        Notice::Decision,
        "The arbitrator decided your dispute",
        &format!(
            "The provider receives {}.{:02} % of the escrow. {}",
            bps.get() / 100,
            bps.get() % 100,
            if final_round {
                "This decision is final; the payout is ready to sign.".to_owned()
            } else {
                format!("Either party may appeal until {}.", dispute.appeal_by.unwrap_or(now))
            }
        ),
        &dispute,
        now,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(dispute.id = %dispute.id, provider_bps = bps.get(), final = final_round, "dispute decided");
    Ok(dispute)
}

async fn order_party(dispute: &DisputeRecord, txn: &DatabaseTransaction, buyer: bool) -> ApiResult<Uuid> {
    let order = orders::load(txn, dispute.order_id).await?;
    Ok(if buyer { order.record.buyer_id } else { order.record.provider_id })
}

/// The final decision becomes the escrow's `Decide`: the payout is prepared
/// and the marketplace co-signs it under the arbitration-decision rule.
async fn hand_to_escrow(
    app: &AppState,
    txn: &DatabaseTransaction,
    dispute: &DisputeRecord,
    order: Order,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let bps = parse_bps(dispute.decision_bps.unwrap_or_default())?;
    orders::transition(app, txn, order, Actor::Arbitrator, &EscrowEvent::Decide { provider_bps: bps }, now).await?;
    Ok(())
}

/// A party appeals a first decision within the appeal window; the case goes to
/// a different arbitrator.
pub async fn appeal(app: &AppState, viewer: &Viewer, dispute_id: Uuid, statement: &str) -> ApiResult<DisputeRecord> {
    let text = statement_text(statement)?;
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (mut dispute, order) = load_for(&txn, viewer, dispute_id).await?;
    let actor = order.actor_of(viewer.user_id);
    let Some(actor @ (Actor::Buyer | Actor::Provider)) = actor else {
        return Err(ApiError::forbidden("WRONG_ROLE", "only the buyer or the provider appeals"));
    };
    if dispute.status != "decided" || dispute.round != 1 {
        return Err(ApiError::conflict("WRONG_STATE", "only a first decision can be appealed, once"));
    }
    if dispute.appeal_by.is_some_and(|by| now > by) {
        return Err(ApiError::conflict("DEADLINE_PASSED", "the appeal window has closed"));
    }
    // The appeal goes to someone other than whoever made the first decision
    // (and other than the case's current holder, should they differ).
    let first = dispute.decided_by.or(dispute.arbitrator_id);
    let exclude: Vec<Uuid> = [Some(order.record.buyer_id), Some(order.record.provider_id), first, dispute.arbitrator_id]
        .into_iter()
        .flatten()
        .collect();
    let second = store::least_busy_arbitrator(&txn, &exclude).await?;
    dispute.first_arbitrator_id = first;
    dispute.first_decision_bps = dispute.decision_bps.take();
    dispute.first_decided_at = dispute.decided_at.take();
    dispute.decided_by = None;
    dispute.rationale = dispute.rationale.take().map(|r| format!("(first decision) {r}"));
    dispute.arbitrator_id = second;
    dispute.status = "appealed".into();
    dispute.round = 2;
    dispute.appealed_at = Some(now);
    dispute.appealed_by = Some(role_name(actor).into());
    bump(&mut dispute, now);
    save(&txn, &dispute).await?;
    store::assign_order_arbitrator(&txn, order.id(), second).await?;
    store::insert_statement(
        &txn,
        &StatementRecord {
            id: Uuid::now_v7(),
            dispute_id,
            author_id: viewer.user_id,
            author_role: role_name(actor).into(),
            text,
            attachments_json: "[]".into(),
            at: now,
        },
    )
    .await?;
    notify(
        &txn,
        &[Some(order.record.buyer_id), Some(order.record.provider_id), second, first],
        Notice::Appeal,
        "A decision was appealed",
        &format!("The decision on order {} was appealed; a second arbitrator will decide, for good.", order.id()),
        &dispute,
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(dispute)
}

/// Admins move a case to another arbitrator (who must not be a party).
pub async fn reassign(app: &AppState, viewer: &Viewer, dispute_id: Uuid, arbitrator_id: Uuid) -> ApiResult<DisputeRecord> {
    viewer.require(Role::Admin)?;
    let now = app.clock.now();
    let txn = app.db.begin().await?;
    let (mut dispute, order) = load_for(&txn, viewer, dispute_id).await?;
    if order.actor_of(arbitrator_id).is_some_and(|a| a != Actor::Arbitrator) {
        return Err(ApiError::bad_input("input.arbitratorId", "PARTY", "a party cannot arbitrate its own order"));
    }
    let roles = agora_persistence::accounts::roles_of(&txn, arbitrator_id).await?;
    if !roles.contains(&Role::Arbitrator) {
        return Err(ApiError::bad_input("input.arbitratorId", "NOT_ARBITRATOR", "that account is not an arbitrator"));
    }
    // A decided case keeps its decider: moving it would credit someone else
    // and could hand the appeal back to the first decider.
    if !matches!(dispute.status.as_str(), "open" | "appealed") {
        return Err(ApiError::conflict(
            "WRONG_STATE",
            format!("the dispute is {}; only an undecided case is reassigned", dispute.status),
        ));
    }
    if dispute.first_arbitrator_id == Some(arbitrator_id) || (dispute.round == 2 && dispute.decided_by == Some(arbitrator_id)) {
        return Err(ApiError::bad_input("input.arbitratorId", "FIRST_ARBITRATOR", "an appeal goes to a different arbitrator"));
    }
    dispute.arbitrator_id = Some(arbitrator_id);
    bump(&mut dispute, now);
    save(&txn, &dispute).await?;
    store::assign_order_arbitrator(&txn, order.id(), Some(arbitrator_id)).await?;
    txn.commit().await?;
    Ok(dispute)
}

/// Deadlines of disputes as of `now`: the reminder before the response
/// deadline, escalation after it; a first decision overdue goes to another
/// arbitrator, and if that one is overdue too the case resolves by default
/// (the escrow returns to the buyer, as its timelock would); a first decision
/// becomes final once the appeal window closed, and stands when the appeal's
/// arbitrator does not decide in time. So every dispute ends within the
/// periods the escrow's timelock was sized for. Each dispute is handled in
/// its own transaction: one that fails never stops the others.
pub async fn sweep(app: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    let mut changed = 0;
    for candidate in store::disputes_in(&app.db, &["open", "decided", "appealed"]).await? {
        match sweep_one(app, candidate.id, now).await {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(dispute.id = %candidate.id, error = ?e, "dispute deadline not applied; retrying on the next sweep"),
        }
    }
    Ok(changed)
}

/// What a passed deadline does to a dispute.
enum Overdue {
    None,
    /// The first decision is late: the case moves to another arbitrator.
    Reassign,
    /// Nobody decided in time: the escrow returns to the buyer.
    DefaultRefund,
    /// The appeal window closed: the first decision is final.
    Finalize,
    /// The appeal's arbitrator is late: the first decision stands.
    FirstStands,
}

fn overdue(d: &DisputeRecord, order: &Order, now: DateTime<Utc>) -> Overdue {
    let deadlines = order.terms.deadlines();
    let after = |at: DateTime<Utc>, period| agora_domain::escrow::deadlines::add(at, period);
    match (d.status.as_str(), d.round) {
        ("open", 1) => match d.decision_escalated_at {
            None if now > deadlines.decide_by(d.opened_at) => Overdue::Reassign,
            Some(at) if now > after(at, deadlines.decision_period) => Overdue::DefaultRefund,
            _ => Overdue::None,
        },
        ("decided", 1) if d.appeal_by.is_some_and(|by| now > by) => Overdue::Finalize,
        ("appealed", 2) if d.appealed_at.is_some_and(|at| now > after(at, deadlines.appeal_decision_period)) => {
            Overdue::FirstStands
        }
        _ => Overdue::None,
    }
}

async fn sweep_one(app: &AppState, id: Uuid, now: DateTime<Utc>) -> ApiResult<bool> {
    let txn = app.db.begin().await?;
    let Some(mut d) = store::find_dispute(&txn, id).await? else { return Ok(false) };
    let order = orders::load(&txn, d.order_id).await?;
    let opener_is_buyer = d.opened_by == "buyer";
    let respondent = if opener_is_buyer { order.record.provider_id } else { order.record.buyer_id };
    let parties = [Some(order.record.buyer_id), Some(order.record.provider_id)];
    let mut touched = false;
    if d.status == "open" && d.responded_at.is_none() {
        if d.reminded_at.is_none() && now >= d.respond_by - Duration::hours(REMINDER_BEFORE_HOURS) && now <= d.respond_by {
            d.reminded_at = Some(now);
            notify(
                &txn,
                &[Some(respondent)],
                Notice::DeadlineApproaching,
                "Respond to the dispute soon",
                &format!("Your response to the dispute on order {} is due by {}.", d.order_id, d.respond_by),
                &d,
                now,
            )
            .await?;
            touched = true;
        }
        if d.escalated_at.is_none() && now > d.respond_by {
            d.escalated_at = Some(now);
            notify(
                &txn,
                &[parties[0], parties[1], d.arbitrator_id],
                Notice::Escalated,
                "The dispute was escalated",
                &format!(
                    "The response deadline of the dispute on order {} passed without an answer; the arbitrator decides on what was said.",
                    d.order_id
                ),
                &d,
                now,
            )
            .await?;
            touched = true;
        }
    }
    let mut hand_over = false;
    let mut lapsed = false;
    match overdue(&d, &order, now) {
        Overdue::None => {}
        Overdue::Reassign => {
            let late = d.arbitrator_id;
            let exclude: Vec<Uuid> = [parties[0], parties[1], late].into_iter().flatten().collect();
            // Another arbitrator if there is one; the same one keeps it otherwise.
            let next = store::least_busy_arbitrator(&txn, &exclude).await?.or(late);
            d.arbitrator_id = next;
            d.decision_escalated_at = Some(now);
            store::assign_order_arbitrator(&txn, order.id(), next).await?;
            notify(
                &txn,
                &[parties[0], parties[1], late, next],
                Notice::Escalated,
                "The dispute's decision is overdue",
                &format!(
                    "No decision on the dispute over order {} came in time; it goes to another arbitrator, who has {} hours. \
                     If no decision comes by then, the escrow is refunded to the buyer.",
                    d.order_id,
                    order.terms.deadlines().decision_period.num_hours()
                ),
                &d,
                now,
            )
            .await?;
            touched = true;
        }
        Overdue::DefaultRefund => {
            d.status = "final".into();
            d.decision_bps = Some(0);
            d.decided_at = Some(now);
            d.decided_by = None;
            d.rationale = Some(
                "No arbitrator decided in time: the escrow returns to the buyer, as its timelock would, without an arbitration fee."
                    .into(),
            );
            touched = true;
            lapsed = true;
        }
        Overdue::Finalize => {
            d.status = "final".into();
            touched = true;
            hand_over = true;
        }
        Overdue::FirstStands => {
            d.status = "final".into();
            d.decision_bps = d.first_decision_bps;
            d.decided_at = d.first_decided_at;
            d.decided_by = d.first_arbitrator_id;
            d.arbitrator_id = d.first_arbitrator_id;
            d.rationale = d.rationale.take().or_else(|| Some("The appeal was not decided in time: the first decision stands.".into()));
            touched = true;
            hand_over = true;
        }
    }
    if !touched {
        return Ok(false);
    }
    bump(&mut d, now);
    save(&txn, &d).await?;
    if lapsed {
        // No decision: a refund without an arbitration fee (the domain checks
        // that the decision and escalation deadlines both passed).
        orders::transition(app, &txn, order, Actor::System, &EscrowEvent::ArbitrationLapsed, now).await?;
    } else if hand_over {
        hand_to_escrow(app, &txn, &d, order, now).await?;
    }
    txn.commit().await?;
    Ok(true)
}
