//! Disputes and arbitration end to end: a case from opening to a confirmed
//! payout on the local chains, the appeal path, deadline escalation, who may
//! do what, concurrent decisions, and the arbitration fee's cap.

use agora_api::watcher::bitcoin::{BitcoinWatcher, Step};
use agora_domain::clock::Clock;
use agora_escrow::source::bitcoin_rpc::BitcoinCoreRpc;
use agora_escrow::source::BitcoinSource;
use agora_tests::{on_both_backends, Backend, GqlResponse, Session, TestApp};
use bitcoin::Address;
use serde_json::{json, Value};
use std::str::FromStr;

use crate::orders_btc::{fund, parties, place, submit, Parties};

pub(crate) const DISPUTE: &str = "id status round openedBy respondBy respondedAt escalatedAt arbitratorId version appealBy
    decision { providerBps rationale } firstDecision { providerBps }
    statements { authorRole text attachments { contentHash size mediaType name } }";

/// An arbitrator (granted by a separate admin, so it has no admin powers itself).
pub(crate) async fn arbitrator(app: &TestApp, name: &str) -> Session {
    let s = app.new_user(name).await;
    let admin = app.new_user(&format!("{name}-admin")).await;
    app.make_admin(&admin.email).await;
    let q = "mutation($i: GrantRoleInput!) { grantRole(input: $i) { user { roles } } }";
    app.gql(q, json!({"i": {"userId": s.user_id, "role": "ARBITRATOR"}}), Some(&admin.access_token)).await.ok();
    s
}

pub(crate) async fn open(app: &TestApp, order: &Value, token: &str) -> GqlResponse {
    let q = format!("mutation($i: OpenDisputeInput!) {{ openDispute(input: $i) {{ dispute {{ {DISPUTE} }} }} }}");
    let attachment = json!({"contentHash": "ab".repeat(32), "size": 1234, "mediaType": "image/png", "name": "photo.png"});
    app.gql(
        &q,
        json!({"i": {"orderId": order["id"], "statement": "Nothing was delivered.", "attachments": [attachment]}}),
        Some(token),
    )
    .await
}

async fn statement(app: &TestApp, dispute: &Value, text: &str, token: &str) -> GqlResponse {
    let q = format!("mutation($i: AddStatementInput!) {{ addDisputeStatement(input: $i) {{ dispute {{ {DISPUTE} }} }} }}");
    app.gql(&q, json!({"i": {"disputeId": dispute["id"], "statement": text}}), Some(token)).await
}

pub(crate) async fn decide(app: &TestApp, dispute: &Value, bps: i32, token: &str, version: Option<i64>) -> GqlResponse {
    let q = format!("mutation($i: DecideDisputeInput!) {{ decideDispute(input: $i) {{ dispute {{ {DISPUTE} }} }} }}");
    app.gql(
        &q,
        json!({"i": {"disputeId": dispute["id"], "providerBps": bps, "rationale": "Half was delivered.", "expectedVersion": version}}),
        Some(token),
    )
    .await
}

pub(crate) async fn appeal(app: &TestApp, dispute: &Value, token: &str) -> GqlResponse {
    let q = format!("mutation($i: AppealDecisionInput!) {{ appealDecision(input: $i) {{ dispute {{ {DISPUTE} }} }} }}");
    app.gql(&q, json!({"i": {"disputeId": dispute["id"], "statement": "The arbitrator missed the logs."}}), Some(token))
        .await
}

pub(crate) async fn view(app: &TestApp, dispute: &Value, token: &str) -> GqlResponse {
    let q = format!("query($id: ID!) {{ dispute(id: $id) {{ {DISPUTE} }} }}");
    app.gql(&q, json!({"id": dispute["id"]}), Some(token)).await
}

/// The order fields these tests look at.
async fn get_order(app: &TestApp, order: &Value, token: &str) -> Value {
    let q = "query($id: ID!) { order(id: $id) { status bitcoinEscrow { address descriptor timelockBlocks buyerPublicKey buyerRefundPublicKey providerPublicKey arbitratorPublicKey }
        payout { providerBps psbt signedBy complete breakdown { provider buyer commission arbitrationFee networkFee } }
        settlement { outcome providerBps txid } arbitratorSignatures { rule } } }";
    app.gql(q, json!({"id": order["id"]}), Some(token)).await.ok()["order"].clone()
}

fn reason(r: &GqlResponse) -> String {
    r.error()["extensions"]["reason"].as_str().unwrap_or_default().to_owned()
}

/// A funded BTC order with a dispute opened by the buyer and an arbitrator.
async fn disputed(app: &TestApp) -> (Parties, Session, Value, Value) {
    let arb = arbitrator(app, "arbiter").await;
    let p = parties(app, json!({})).await;
    let order = place(app, &p).await;
    fund(app, &order, 50_000, 1).await;
    let d = open(app, &order, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    (p, arb, order, d)
}

async fn a_dispute_is_assigned_heard_decided_and_paid_out_on_the_chain(backend: Backend) {
    let app = TestApp::spawn_with_chains(backend).await;
    let chains = app.chains().clone();
    let watcher = BitcoinWatcher::new(
        app.state.clone(),
        BitcoinCoreRpc::new(&chains.bitcoin_rpc_url, Some(("agora".into(), "devnet".into()))),
    );
    while watcher.step().await.unwrap() != Step::Idle {}
    let arb = arbitrator(&app, "arbiter").await;
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    let address = Address::from_str(order["bitcoinEscrow"]["address"].as_str().unwrap()).unwrap().assume_checked();
    chains.bitcoin.faucet(&address, 50_000).unwrap();
    chains.bitcoin.mine(1);
    while watcher.step().await.unwrap() != Step::Idle {}

    let opened = open(&app, &order, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    assert_eq!(opened["status"], "OPEN");
    assert_eq!(opened["arbitratorId"], json!(arb.user_id), "assigned to the only arbitrator");
    assert_eq!(opened["statements"][0]["attachments"][0]["size"], 1234);
    assert_eq!(get_order(&app, &order, &p.buyer.access_token).await["status"], "DISPUTED");
    let answered = statement(&app, &opened, "It was delivered on time.", &p.provider.access_token).await.ok();
    assert!(answered["addDisputeStatement"]["dispute"]["respondedAt"].is_string());
    let queue = app.gql("{ arbitratorQueue { id status } }", json!({}), Some(&arb.access_token)).await.ok();
    assert_eq!(queue["arbitratorQueue"][0]["id"], opened["id"]);
    // The arbitrator sees the order it is assigned to.
    assert_eq!(get_order(&app, &order, &arb.access_token).await["status"], "DISPUTED");

    let decided = decide(&app, &opened, 6_000, &arb.access_token, None).await.ok()["decideDispute"]["dispute"].clone();
    assert_eq!(decided["status"], "DECIDED");
    assert_eq!(decided["decision"]["providerBps"], 6_000);
    // Nothing is paid during the appeal window.
    assert_eq!(get_order(&app, &order, &p.buyer.access_token).await["status"], "DISPUTED");
    app.clock.advance(chrono::Duration::hours(73));
    agora_api::disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    assert_eq!(view(&app, &opened, &p.buyer.access_token).await.ok()["dispute"]["status"], "FINAL");
    let settling = get_order(&app, &order, &p.provider.access_token).await;
    assert_eq!(settling["status"], "SETTLING");
    assert_eq!(settling["payout"]["signedBy"], json!(["MARKETPLACE"]));
    assert!(settling["arbitratorSignatures"][0]["rule"].as_str().unwrap().starts_with("arbitration_decision"));
    let b = &settling["payout"]["breakdown"];
    // 5 000 sats fixed + 1 % of 50 000.
    assert_eq!(b["arbitrationFee"], "5500");
    let psbt = settling["payout"]["psbt"].as_str().unwrap();
    let done = submit(&app, &order, &p.provider_wallet.sign(&settling["bitcoinEscrow"], psbt), &p.provider.access_token)
        .await
        .ok();
    assert_eq!(done["submitPayoutSignature"]["payout"]["complete"], true);
    watcher.broadcast_pending().await.unwrap();
    chains.bitcoin.mine(1);
    while watcher.step().await.unwrap() != Step::Idle {}
    let settled = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    assert_eq!(settled["settlement"]["outcome"], "SPLIT");
    assert_eq!(settled["settlement"]["providerBps"], 6_000);
    let _ = watcher.source().tip().await.unwrap();
}

async fn an_appeal_goes_to_a_different_arbitrator_whose_decision_is_final(app: TestApp) {
    let (p, first, order, d) = disputed(&app).await;
    let second = arbitrator(&app, "second").await;
    decide(&app, &d, 2_000, &first.access_token, None).await.ok();
    let appealed = appeal(&app, &d, &p.provider.access_token).await.ok()["appealDecision"]["dispute"].clone();
    assert_eq!(appealed["status"], "APPEALED");
    assert_eq!(appealed["round"], 2);
    assert_eq!(appealed["arbitratorId"], json!(second.user_id));
    assert_eq!(appealed["firstDecision"]["providerBps"], 2_000);
    // The first arbitrator no longer decides; the second does, for good.
    assert_eq!(reason(&decide(&app, &d, 9_000, &first.access_token, None).await), "WRONG_ROLE");
    let last = decide(&app, &d, 7_000, &second.access_token, None).await.ok()["decideDispute"]["dispute"].clone();
    assert_eq!(last["status"], "FINAL");
    let o = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(o["status"], "SETTLING");
    assert_eq!(o["payout"]["providerBps"], 7_000);
    // Once is enough.
    assert_eq!(appeal(&app, &d, &p.buyer.access_token).await.error_code(), Some("CONFLICT"));
    // The first arbitrator's record shows the overturned appeal; the second's a decided case.
    let q = "query($id: ID!) { arbitratorRecord(userId: $id) { casesAssigned casesDecided appeals appealsDecided appealsOverturned medianSecondsToDecision } }";
    let first_record = app.gql(q, json!({"id": first.user_id}), Some(&p.buyer.access_token)).await.ok()["arbitratorRecord"].clone();
    assert_eq!(first_record["casesDecided"], 1);
    assert_eq!(first_record["appeals"], 1);
    assert_eq!(first_record["appealsOverturned"], 1);
    let second_record = app.gql(q, json!({"id": second.user_id}), Some(&p.buyer.access_token)).await.ok()["arbitratorRecord"].clone();
    assert_eq!(second_record["casesDecided"], 1);
    assert_eq!(second_record["appeals"], 0);
}

async fn an_appeal_after_the_window_is_refused(app: TestApp) {
    let (p, arb, _order, d) = disputed(&app).await;
    decide(&app, &d, 5_000, &arb.access_token, None).await.ok();
    app.clock.advance(chrono::Duration::hours(73));
    let late = appeal(&app, &d, &p.buyer.access_token).await;
    assert_eq!((late.error_code(), reason(&late).as_str()), (Some("CONFLICT"), "DEADLINE_PASSED"));
}

async fn an_unanswered_dispute_is_reminded_then_escalated(app: TestApp) {
    let (p, _arb, _order, d) = disputed(&app).await;
    let respond_by = chrono::DateTime::parse_from_rfc3339(d["respondBy"].as_str().unwrap()).unwrap().with_timezone(&chrono::Utc);
    let until = respond_by - app.clock.now();
    app.clock.advance(until - chrono::Duration::hours(6));
    assert_eq!(agora_api::disputes::sweep(&app.state, app.clock.now()).await.unwrap(), 1, "the reminder");
    assert_eq!(agora_api::disputes::sweep(&app.state, app.clock.now()).await.unwrap(), 0, "only once");
    assert!(view(&app, &d, &p.buyer.access_token).await.ok()["dispute"]["escalatedAt"].is_null());
    app.clock.advance(chrono::Duration::hours(7));
    assert_eq!(agora_api::disputes::sweep(&app.state, app.clock.now()).await.unwrap(), 1, "the escalation");
    assert!(view(&app, &d, &p.buyer.access_token).await.ok()["dispute"]["escalatedAt"].is_string());
}

async fn each_role_may_do_only_its_part(app: TestApp) {
    let (p, arb, order, d) = disputed(&app).await;
    let other_arb = arbitrator(&app, "other").await;
    let outsider = app.new_user("outsider").await;
    // Opening: only a party, only once.
    assert_eq!(open(&app, &order, &p.provider.access_token).await.error_code(), Some("CONFLICT"));
    assert_eq!(open(&app, &order, &outsider.access_token).await.error_code(), Some("NOT_FOUND"));
    assert_eq!(open(&app, &order, &arb.access_token).await.error_code(), Some("FORBIDDEN"));
    // Seeing it: parties and the assigned arbitrator; not others.
    assert!(view(&app, &d, &p.provider.access_token).await.ok()["dispute"].is_object());
    assert!(view(&app, &d, &arb.access_token).await.ok()["dispute"].is_object());
    assert!(view(&app, &d, &other_arb.access_token).await.ok()["dispute"].is_null());
    assert!(view(&app, &d, &outsider.access_token).await.ok()["dispute"].is_null());
    let other_queue = app.gql("{ arbitratorQueue { id } }", json!({}), Some(&other_arb.access_token)).await.ok();
    assert_eq!(other_queue["arbitratorQueue"], json!([]));
    assert_eq!(app.gql("{ arbitratorQueue { id } }", json!({}), Some(&p.buyer.access_token)).await.error_code(), Some("FORBIDDEN"));
    // Statements: parties and the arbitrator.
    assert_eq!(statement(&app, &d, "me too", &outsider.access_token).await.error_code(), Some("NOT_FOUND"));
    assert_eq!(statement(&app, &d, "noted", &other_arb.access_token).await.error_code(), Some("NOT_FOUND"));
    statement(&app, &d, "Please send the logs.", &arb.access_token).await.ok();
    // Deciding: only the assigned arbitrator.
    for token in [&p.buyer.access_token, &p.provider.access_token] {
        assert_eq!(decide(&app, &d, 5_000, token, None).await.error_code(), Some("FORBIDDEN"));
    }
    assert_eq!(decide(&app, &d, 5_000, &other_arb.access_token, None).await.error_code(), Some("NOT_FOUND"));
    assert_eq!(decide(&app, &d, 10_001, &arb.access_token, None).await.error_code(), Some("BAD_USER_INPUT"));
    // Appealing before a decision, or by the arbitrator: refused.
    assert_eq!(appeal(&app, &d, &p.buyer.access_token).await.error_code(), Some("CONFLICT"));
    assert_eq!(appeal(&app, &d, &arb.access_token).await.error_code(), Some("FORBIDDEN"));
    // Reassigning: admins only.
    let q = "mutation($i: ReassignDisputeInput!) { reassignDispute(input: $i) { dispute { arbitratorId } } }";
    let input = json!({"i": {"disputeId": d["id"], "arbitratorId": other_arb.user_id}});
    assert_eq!(app.gql(q, input.clone(), Some(&p.buyer.access_token)).await.error_code(), Some("FORBIDDEN"));
    let admin = app.new_user("admin").await;
    app.make_admin("admin@example.org").await;
    let moved = app.gql(q, input, Some(&admin.access_token)).await.ok();
    assert_eq!(moved["reassignDispute"]["dispute"]["arbitratorId"], json!(other_arb.user_id));
    // A party cannot be made the arbitrator of its own case.
    let own = json!({"i": {"disputeId": d["id"], "arbitratorId": p.buyer.user_id}});
    assert_eq!(app.gql(q, own, Some(&admin.access_token)).await.error_code(), Some("BAD_USER_INPUT"));
}

async fn a_party_who_is_an_arbitrator_is_never_assigned_its_own_case(app: TestApp) {
    let p = parties(&app, json!({})).await;
    // The buyer is an arbitrator too, and the only one.
    app.make_admin(&p.buyer.email).await;
    let q = "mutation($i: GrantRoleInput!) { grantRole(input: $i) { user { roles } } }";
    app.gql(q, json!({"i": {"userId": p.buyer.user_id, "role": "ARBITRATOR"}}), Some(&p.buyer.access_token)).await.ok();
    let order = place(&app, &p).await;
    fund(&app, &order, 50_000, 1).await;
    let d = open(&app, &order, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    assert!(d["arbitratorId"].is_null(), "left for an admin to assign: {d}");
    assert_eq!(decide(&app, &d, 10_000, &p.buyer.access_token, None).await.error_code(), Some("FORBIDDEN"));
}

async fn of_two_concurrent_decisions_exactly_one_stands(app: TestApp) {
    let (_p, arb, _order, d) = disputed(&app).await;
    let version = d["version"].as_i64();
    let (a, b) = tokio::join!(
        decide(&app, &d, 3_000, &arb.access_token, version),
        decide(&app, &d, 8_000, &arb.access_token, version)
    );
    let ok = [&a, &b].iter().filter(|r| r.body.get("errors").is_none()).count();
    assert_eq!(ok, 1, "{:?} / {:?}", a.body, b.body);
    let loser = if a.body.get("errors").is_some() { &a } else { &b };
    assert_eq!(loser.error_code(), Some("CONFLICT"));
}

async fn the_arbitration_fee_never_exceeds_the_escrow_and_dust_shares_are_dropped(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.bitcoin.arbitration_fee_fixed_sats = 10_000_000).await;
    let (p, arb, order, d) = disputed(&app).await;
    let last = decide(&app, &d, 9_990, &arb.access_token, None).await;
    assert!(last.body.get("errors").is_none(), "{:?}", last.body);
    app.clock.advance(chrono::Duration::hours(73));
    agora_api::disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    let o = get_order(&app, &order, &p.buyer.access_token).await;
    let b = &o["payout"]["breakdown"];
    let fee: u64 = b["arbitrationFee"].as_str().unwrap().parse().unwrap();
    let network: u64 = b["networkFee"].as_str().unwrap().parse().unwrap();
    // Capped at what the escrow holds after the network fee: nothing is left for the parties.
    assert!(fee <= 50_000 - network);
    assert_eq!(b["provider"], "0");
    assert_eq!(b["buyer"], "0");
    let psbt = o["payout"]["psbt"].as_str().unwrap();
    let done = submit(&app, &order, &p.buyer_wallet.sign(&o["bitcoinEscrow"], psbt), &p.buyer.access_token).await.ok();
    assert_eq!(done["submitPayoutSignature"]["payout"]["complete"], true);
}

/// The same case on the XRP Ledger devnet: decided, final after the appeal
/// window, paid by multisigned Payments the watcher submits and sees validated,
/// and the provider's score reflects the outcome.
async fn an_xrp_dispute_is_decided_and_paid_out_on_the_ledger(backend: Backend) {
    use crate::chains_xrpl::{pay_deposit, setup, tick};
    use crate::orders_xrpl::{sign_all, submit as submit_xrpl, view as view_xrpl};
    let Some((app, watcher, p, order)) = setup(backend).await else { return };
    let arb = arbitrator(&app, "xarb").await;
    let escrow = view_xrpl(&app, &order, &p.buyer.access_token).await["xrplEscrow"]["account"].as_str().unwrap().to_owned();
    pay_deposit(&app, &escrow, 25_000_000).await;
    tick(&app, &watcher).await;
    let d = open(&app, &order, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    assert_eq!(d["arbitratorId"], json!(arb.user_id));
    statement(&app, &d, "Half of it arrived.", &p.provider.access_token).await.ok();
    decide(&app, &d, 4_000, &arb.access_token, None).await.ok();
    app.clock.advance(chrono::Duration::hours(73));
    agora_api::disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    let settling = view_xrpl(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settling["status"], "SETTLING");
    assert_eq!(settling["payout"]["providerBps"], 4_000);
    assert_eq!(settling["payout"]["signedBy"], json!(["MARKETPLACE"]));
    // 1 XRP fixed + 1 % of 25 XRP.
    assert_eq!(settling["payout"]["breakdown"]["arbitrationFee"], "1250000");
    submit_xrpl(&app, &order, &sign_all(&settling, agora_tests::xrpl::BUYER_SEED), &p.buyer.access_token).await.ok();
    watcher.submit_pending().await.unwrap();
    tick(&app, &watcher).await;
    let settled = view_xrpl(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED", "{settled}");
    // A split below half for the provider counts against it.
    let q = "query($id: ID!) { provider(id: $id) { reputation { faultCount inputs { kind } } } }";
    let provider_id = app.gql("{ me { provider { id } } }", json!({}), Some(&p.provider.access_token)).await.ok()["me"]["provider"]["id"].clone();
    let rep = app.gql(q, json!({"id": provider_id}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(rep["provider"]["reputation"]["faultCount"], 1, "{rep}");
}

async fn a_split_share_below_dust_is_dropped_and_the_payout_stays_valid(app: TestApp) {
    let (p, arb, order, d) = disputed(&app).await;
    decide(&app, &d, 9_995, &arb.access_token, None).await.ok();
    app.clock.advance(chrono::Duration::hours(73));
    agora_api::disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    let o = get_order(&app, &order, &p.buyer.access_token).await;
    // The buyer's ~20 sats are below the dust limit: no output, folded into the fee.
    let q = "query($id: ID!) { order(id: $id) { payout { outputs { role amount } droppedDust { role amount } } } }";
    let payout = app.gql(q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok()["order"]["payout"].clone();
    assert!(payout["outputs"].as_array().unwrap().iter().all(|o| o["role"] != "buyer"), "{payout}");
    assert_eq!(payout["droppedDust"][0]["role"], "buyer", "{payout}");
    let psbt = o["payout"]["psbt"].as_str().unwrap();
    let done = submit(&app, &order, &p.provider_wallet.sign(&o["bitcoinEscrow"], psbt), &p.provider.access_token).await.ok();
    assert_eq!(done["submitPayoutSignature"]["payout"]["complete"], true);
}

chain_tests!(
    a_dispute_is_assigned_heard_decided_and_paid_out_on_the_chain,
    an_xrp_dispute_is_decided_and_paid_out_on_the_ledger,
    the_arbitration_fee_never_exceeds_the_escrow_and_dust_shares_are_dropped,
);

on_both_backends!(
    an_appeal_goes_to_a_different_arbitrator_whose_decision_is_final,
    an_appeal_after_the_window_is_refused,
    an_unanswered_dispute_is_reminded_then_escalated,
    each_role_may_do_only_its_part,
    a_party_who_is_an_arbitrator_is_never_assigned_its_own_case,
    of_two_concurrent_decisions_exactly_one_stands,
    a_split_share_below_dust_is_dropped_and_the_payout_stays_valid,
);

async fn reassign(app: &TestApp, dispute: &Value, arbitrator: &Session, admin: &Session) -> GqlResponse {
    let q = "mutation($i: ReassignDisputeInput!) { reassignDispute(input: $i) { dispute { arbitratorId } } }";
    app.gql(q, json!({"i": {"disputeId": dispute["id"], "arbitratorId": arbitrator.user_id}}), Some(&admin.access_token))
        .await
}

async fn an_admin(app: &TestApp, name: &str) -> Session {
    let admin = app.new_user(name).await;
    app.make_admin(&admin.email).await;
    admin
}

async fn a_decided_case_stays_with_its_decider_and_its_appeal_goes_to_another(app: TestApp) {
    let (p, first, _order, d) = disputed(&app).await;
    let second = arbitrator(&app, "second").await;
    let admin = an_admin(&app, "boss").await;
    decide(&app, &d, 2_000, &first.access_token, None).await.ok();
    // Moving a decided case would credit the wrong arbitrator and send the
    // appeal back to the one who decided.
    let moved = reassign(&app, &d, &second, &admin).await;
    assert_eq!((moved.error_code(), reason(&moved).as_str()), (Some("CONFLICT"), "WRONG_STATE"), "{:?}", moved.body);
    let appealed = appeal(&app, &d, &p.buyer.access_token).await.ok()["appealDecision"]["dispute"].clone();
    assert_eq!(appealed["arbitratorId"], json!(second.user_id));
    // While the appeal is undecided it may move, but never to the first decider.
    let back = reassign(&app, &d, &first, &admin).await;
    assert_eq!(reason(&back), "FIRST_ARBITRATOR", "{:?}", back.body);
    let q = "query($id: ID!) { arbitratorRecord(userId: $id) { casesDecided appeals } }";
    let record = app.gql(q, json!({"id": first.user_id}), Some(&p.buyer.access_token)).await.ok()["arbitratorRecord"].clone();
    assert_eq!((record["casesDecided"].clone(), record["appeals"].clone()), (json!(1), json!(1)));
    let record = app.gql(q, json!({"id": second.user_id}), Some(&p.buyer.access_token)).await.ok()["arbitratorRecord"].clone();
    assert_eq!(record["casesDecided"], 0);
}

async fn an_arbitrator_whose_role_was_removed_loses_its_cases(app: TestApp) {
    let (p, arb, _order, d) = disputed(&app).await;
    let admin = an_admin(&app, "boss").await;
    assert!(view(&app, &d, &arb.access_token).await.body.get("errors").is_none());
    let q = "mutation($i: RevokeRoleInput!) { revokeRole(input: $i) { revoked user { roles } } }";
    let revoked = app
        .gql(q, json!({"i": {"userId": arb.user_id, "role": "ARBITRATOR"}}), Some(&admin.access_token))
        .await
        .ok();
    assert_eq!(revoked["revokeRole"]["revoked"], true);
    assert!(!revoked["revokeRole"]["user"]["roles"].as_array().unwrap().contains(&json!("ARBITRATOR")));
    let seen = view(&app, &d, &arb.access_token).await.ok();
    assert!(seen["dispute"].is_null(), "{seen}");
    let said = statement(&app, &d, "Still here.", &arb.access_token).await;
    assert_eq!(said.error_code(), Some("NOT_FOUND"), "{:?}", said.body);
    // Only admins revoke roles; the parties still see their case.
    let refused = app
        .gql(q, json!({"i": {"userId": arb.user_id, "role": "ARBITRATOR"}}), Some(&p.buyer.access_token))
        .await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    assert!(view(&app, &d, &p.buyer.access_token).await.body.get("errors").is_none());
}

on_both_backends!(
    a_decided_case_stays_with_its_decider_and_its_appeal_goes_to_another,
    an_arbitrator_whose_role_was_removed_loses_its_cases,
);
