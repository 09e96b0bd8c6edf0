//! Metered sessions on Bitcoin: bandwidth sold per MB with a peak-hours
//! multiplier; usage, a series of buyer-signed claims, every refusal, and the
//! provider settling the latest claim with only its own key.

use std::str::FromStr;

use agora_domain::clock::Clock;
use agora_escrow::btc::{finalize_payout, verify_spends, ExpectedPayout};
use agora_tests::wallet::{descriptor_of, spent_outputs, transaction, Wallet};
use agora_tests::{on_both_backends, GqlResponse, TestApp};
use bitcoin::base64::engine::general_purpose::STANDARD as BASE64;
use bitcoin::base64::Engine;
use bitcoin::psbt::Psbt;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{json, Value};

use crate::orders_btc::{fund, parties, place_with, Parties, ORDER_FIELDS};

const SESSION: &str = "orderId deposit claimableLimit totalQuantity totalAmount latestClaim unclaimed latestClaimTxid
    latestClaimPsbt usedBps firedAlertsBps capped closed peakWindows { days start end multiplierBps }
    usage { quantity pricePerUnit multiplierBps amount at }";

fn amount(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

#[track_caller]
fn assert_refused(resp: &GqlResponse, code: &str, reason: &str) {
    assert_eq!(
        (resp.error_code(), resp.error()["extensions"]["reason"].as_str()),
        (Some(code), Some(reason)),
        "{}",
        serde_json::to_string_pretty(&resp.body).unwrap_or_default()
    );
}

async fn record(app: &TestApp, p: &Parties, order: &Value, quantity: u64, at: DateTime<Utc>) -> GqlResponse {
    let q = format!(
        "mutation($i: RecordUsageInput!) {{ recordUsage(input: $i) {{ alertsFiredBps record {{ amount multiplierBps }} session {{ {SESSION} }} }} }}"
    );
    app.gql(&q, json!({"i": {"orderId": order["id"], "quantity": quantity.to_string(), "at": at}}), Some(&p.provider.access_token))
        .await
}

async fn next_claim(app: &TestApp, p: &Parties, order: &Value) -> Value {
    let q = "query($id: ID!) { nextClaim(orderId: $id) { cumulative providerAmount commission buyerAmount networkFee psbt txid } }";
    app.gql(q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok()["nextClaim"].clone()
}

async fn submit_claim(app: &TestApp, p: &Parties, order: &Value, psbt: &str) -> GqlResponse {
    let q = format!("mutation($i: SubmitClaimInput!) {{ submitClaim(input: $i) {{ session {{ {SESSION} }} }} }}");
    app.gql(&q, json!({"i": {"orderId": order["id"], "psbt": psbt}}), Some(&p.buyer.access_token)).await
}

async fn close(app: &TestApp, p: &Parties, order: &Value, psbt: Option<&str>) -> GqlResponse {
    let q = format!(
        "mutation($i: CloseSessionInput!) {{ closeSession(input: $i) {{ session {{ {SESSION} }} order {{ {ORDER_FIELDS} }} }} }}"
    );
    app.gql(&q, json!({"i": {"orderId": order["id"], "psbt": psbt}}), Some(&p.provider.access_token)).await
}

fn decode(b64: &str) -> Psbt {
    Psbt::deserialize(&BASE64.decode(b64).unwrap()).unwrap()
}

fn encode(psbt: &Psbt) -> String {
    BASE64.encode(psbt.serialize())
}

fn script_of(address: &Value) -> bitcoin::ScriptBuf {
    bitcoin::Address::from_str(address.as_str().unwrap()).unwrap().assume_checked().script_pubkey()
}

/// A provider selling bandwidth at 10 sats/MB, ×1.5 from 12:00 to 18:00 UTC
/// every day; a buyer with a 100 000 sat deposit, funded.
async fn session(app: &TestApp) -> (Parties, Value) {
    let listing = json!({
        "category": "bandwidth",
        "pricing": { "metered": { "asset": "BTC", "unit": "megabyte", "pricePerUnit": "10", "minDeposit": "20000" } }
    });
    let p = parties(app, listing).await;
    let all_days = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"];
    let set = "mutation($i: SetPeakWindowsInput!) { setPeakWindows(input: $i) { windows { start end multiplierBps } } }";
    let overlapping = app
        .gql(
            set,
            json!({"i": {"listingId": p.listing_id, "windows": [
                {"days": all_days, "start": "12:00", "end": "18:00", "multiplierBps": 15000},
                {"days": ["MONDAY"], "start": "17:00", "end": "19:00", "multiplierBps": 12000}]}}),
            Some(&p.provider.access_token),
        )
        .await;
    assert_eq!(overlapping.error_code(), Some("BAD_USER_INPUT"));
    let below_one = app
        .gql(
            set,
            json!({"i": {"listingId": p.listing_id, "windows": [
                {"days": all_days, "start": "12:00", "end": "18:00", "multiplierBps": 9000}]}}),
            Some(&p.provider.access_token),
        )
        .await;
    assert_eq!(below_one.error_code(), Some("BAD_USER_INPUT"));
    app.gql(
        set,
        json!({"i": {"listingId": p.listing_id, "windows": [
            {"days": all_days, "start": "12:00", "end": "18:00", "multiplierBps": 15000}]}}),
        Some(&p.provider.access_token),
    )
    .await
    .ok();
    let order = place_with(app, &p, json!({"deposit": "100000"}), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    fund(app, &order, 100_000, 6).await;
    (p, order)
}

async fn bandwidth_sold_per_mb_with_a_peak_multiplier_is_settled_by_the_provider_alone(app: TestApp) {
    let (p, order) = session(&app).await;
    let placed = app.clock.now();
    app.clock.advance(Duration::days(3));
    // Two instants between placement and now: 03:00 (off-peak) and 13:00 (peak).
    let day = (placed + Duration::days(1)).duration_trunc(Duration::days(1)).unwrap();
    let off_peak = day + Duration::hours(3);
    let peak = day + Duration::hours(13);

    // Usage: 1 000 MB off-peak (10 000) and 2 000 MB at peak (2 000 × 10 × 1.5 = 30 000).
    let r = record(&app, &p, &order, 1_000, off_peak).await.ok();
    assert_eq!(r["recordUsage"]["record"]["multiplierBps"], 10_000);
    let r = record(&app, &p, &order, 2_000, peak).await.ok();
    assert_eq!(r["recordUsage"]["record"]["multiplierBps"], 15_000);
    assert_eq!(amount(&r["recordUsage"]["record"]["amount"]), 30_000);
    assert_eq!(amount(&r["recordUsage"]["session"]["totalAmount"]), 40_000);
    assert_eq!(r["recordUsage"]["alertsFiredBps"], json!([]));
    // The buyer cannot record usage.
    let q = "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { alertsFiredBps } }";
    let by_buyer = app.gql(q, json!({"i": {"orderId": order["id"], "quantity": "1"}}), Some(&p.buyer.access_token)).await;
    assert_eq!(by_buyer.error_code(), Some("FORBIDDEN"));

    // Claim 1: 40 000.
    let escrow = &order["bitcoinEscrow"];
    let c1 = next_claim(&app, &p, &order).await;
    assert_eq!(amount(&c1["cumulative"]), 40_000);
    assert_eq!(amount(&c1["providerAmount"]) + amount(&c1["commission"]), 40_000);
    assert_eq!(amount(&c1["buyerAmount"]), 100_000 - 40_000 - amount(&c1["networkFee"]));
    let c1_signed = p.buyer_wallet.sign(escrow, c1["psbt"].as_str().unwrap());
    let s = submit_claim(&app, &p, &order, &c1_signed).await.ok();
    assert_eq!(amount(&s["submitClaim"]["session"]["latestClaim"]), 40_000);

    // More usage crosses 50 %: the alert fires once.
    let r = record(&app, &p, &order, 1_500, off_peak + Duration::hours(1)).await.ok();
    assert_eq!(r["recordUsage"]["alertsFiredBps"], json!([5_000]));
    let r = record(&app, &p, &order, 100, off_peak + Duration::hours(2)).await.ok();
    assert_eq!(r["recordUsage"]["alertsFiredBps"], json!([]));
    assert_eq!(amount(&r["recordUsage"]["session"]["totalAmount"]), 56_000);

    // Refusals on the next claim (56 000).
    let c2 = next_claim(&app, &p, &order).await;
    assert_eq!(amount(&c2["cumulative"]), 56_000);
    let c2_psbt = c2["psbt"].as_str().unwrap();
    // Replayed old claim.
    assert_refused(&submit_claim(&app, &p, &order, &c1_signed).await, "CONFLICT", "CLAIM_NOT_INCREASING");
    // Decreasing claim: the provider's output lowered below the latest claim.
    let mut lower = decode(c2_psbt);
    let provider_script = script_of(&escrow["payoutAddresses"]["provider"]);
    let out = lower.unsigned_tx.output.iter_mut().find(|o| o.script_pubkey == provider_script).unwrap();
    out.value = bitcoin::Amount::from_sat(30_000);
    let lower = p.buyer_wallet.sign(escrow, &encode(&lower));
    assert_refused(&submit_claim(&app, &p, &order, &lower).await, "CONFLICT", "CLAIM_NOT_INCREASING");
    // Above the deposit.
    let mut above = decode(c2_psbt);
    let out = above.unsigned_tx.output.iter_mut().find(|o| o.script_pubkey == provider_script).unwrap();
    out.value = bitcoin::Amount::from_sat(99_900);
    let above = p.buyer_wallet.sign(escrow, &encode(&above));
    assert_refused(&submit_claim(&app, &p, &order, &above).await, "BAD_USER_INPUT", "CLAIM_ABOVE_DEPOSIT");
    // Paying a different address.
    let mut elsewhere = decode(c2_psbt);
    let out = elsewhere.unsigned_tx.output.iter_mut().find(|o| o.script_pubkey == provider_script).unwrap();
    out.script_pubkey = Wallet::from_seed(9).address().script_pubkey();
    let elsewhere = p.buyer_wallet.sign(escrow, &encode(&elsewhere));
    assert_refused(&submit_claim(&app, &p, &order, &elsewhere).await, "BAD_USER_INPUT", "PSBT_MISMATCH");
    // Signed by the wrong key: a stranger's, and the provider's.
    let stranger = Wallet::from_seed(9).sign_regardless(escrow, c2_psbt);
    assert_refused(&submit_claim(&app, &p, &order, &stranger).await, "BAD_USER_INPUT", "UNEXPECTED_SIGNER");
    let by_provider = p.provider_wallet.sign(escrow, c2_psbt);
    assert_refused(&submit_claim(&app, &p, &order, &by_provider).await, "BAD_USER_INPUT", "UNEXPECTED_SIGNER");
    // The valid claim 2.
    let c2_signed = p.buyer_wallet.sign(escrow, c2_psbt);
    let s = submit_claim(&app, &p, &order, &c2_signed).await.ok();
    let session = &s["submitClaim"]["session"];
    assert_eq!(amount(&session["latestClaim"]), 56_000);
    assert_eq!(session["latestClaimTxid"], c2["txid"]);

    // The buyer caps the session: no further usage.
    let cap = "mutation($i: SessionActionInput!) { capSession(input: $i) { session { capped } } }";
    app.gql(cap, json!({"i": {"orderId": order["id"]}}), Some(&p.buyer.access_token)).await.ok();
    assert_refused(&record(&app, &p, &order, 1, app.clock.now()).await, "CONFLICT", "SESSION_CAPPED");

    // The provider completes the latest claim with only its own key, without
    // the marketplace: the transaction is valid for Bitcoin Core's interpreter.
    let latest = session["latestClaimPsbt"].as_str().unwrap();
    let completed = p.provider_wallet.sign(escrow, latest);
    let descriptor = descriptor_of(escrow);
    let psbt = decode(&completed);
    let expected = ExpectedPayout::from_psbt(&descriptor, &psbt).unwrap();
    let tx = finalize_payout(&descriptor, &expected, &psbt).expect("buyer + provider complete the 2-of-3");
    verify_spends(&tx, &spent_outputs(escrow, &tx, &[100_000])).expect("passes bitcoinconsensus");
    let paid = |address: &Value| -> u64 {
        let script = script_of(address);
        tx.output.iter().filter(|o| o.script_pubkey == script).map(|o| o.value.to_sat()).sum()
    };
    assert_eq!(paid(&escrow["payoutAddresses"]["provider"]), amount(&c2["providerAmount"]));
    assert_eq!(paid(&escrow["payoutAddresses"]["buyer"]), amount(&c2["buyerAmount"]));
    assert_eq!(paid(&escrow["payoutAddresses"]["marketplace"]), amount(&c2["commission"]));
    assert_eq!(amount(&c2["buyerAmount"]), 100_000 - 56_000 - amount(&c2["networkFee"]));

    // Closing with the old claim is refused; with the latest it settles.
    let old = p.provider_wallet.sign(escrow, &c1_signed);
    assert_refused(&close(&app, &p, &order, Some(&old)).await, "CONFLICT", "CLAIM_NOT_LATEST");
    let closed = close(&app, &p, &order, Some(&completed)).await.ok();
    let order_after = &closed["closeSession"]["order"];
    assert_eq!(order_after["payout"]["complete"], true);
    assert_eq!(order_after["payout"]["txid"].as_str().unwrap(), tx.compute_txid().to_string());
    let final_tx = transaction(order_after["payout"]["transactionHex"].as_str().unwrap());
    verify_spends(&final_tx, &spent_outputs(escrow, &final_tx, &[100_000])).expect("passes bitcoinconsensus");
    assert_eq!(final_tx.compute_txid(), tx.compute_txid());
    assert_eq!(closed["closeSession"]["session"]["closed"], true);
}

async fn the_service_cosigns_the_latest_claim_when_the_provider_asks(app: TestApp) {
    let (p, order) = session(&app).await;
    app.clock.advance(Duration::hours(1));
    record(&app, &p, &order, 3_000, app.clock.now()).await.ok();
    let c = next_claim(&app, &p, &order).await;
    let signed = p.buyer_wallet.sign(&order["bitcoinEscrow"], c["psbt"].as_str().unwrap());
    submit_claim(&app, &p, &order, &signed).await.ok();
    let closed = close(&app, &p, &order, None).await.ok();
    let o = &closed["closeSession"]["order"];
    assert_eq!(o["payout"]["complete"], true);
    assert_eq!(o["arbitratorSignatures"][0]["rule"], format!("latest_claim:{}", amount(&c["cumulative"])));
    let tx = transaction(o["payout"]["transactionHex"].as_str().unwrap());
    verify_spends(&tx, &spent_outputs(&order["bitcoinEscrow"], &tx, &[100_000])).expect("passes bitcoinconsensus");
}

async fn usage_alerts_fire_exactly_once_per_threshold(app: TestApp) {
    let (p, order) = session(&app).await;
    let set = "mutation($i: SetUsageAlertThresholdsInput!) { setUsageAlertThresholds(input: $i) { thresholdsBps } }";
    let t = app.gql(set, json!({"i": {"thresholdsBps": [9000, 2500]}}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(t["setUsageAlertThresholds"]["thresholdsBps"], json!([2500, 9000]));
    app.clock.advance(Duration::hours(1));
    let now = app.clock.now();
    let fired = |r: &Value| r["recordUsage"]["alertsFiredBps"].clone();
    let r = record(&app, &p, &order, 100, now).await.ok();
    assert_eq!(fired(&r), json!([]));
    // 10 sats/MB, or 15 when `now` falls in the peak window.
    let unit = 10 * r["recordUsage"]["record"]["multiplierBps"].as_u64().unwrap() / 10_000;
    let total = |r: &Value| amount(&r["recordUsage"]["session"]["totalAmount"]);
    let r = record(&app, &p, &order, 26_000 / unit, now).await.ok();
    assert_eq!(fired(&r), json!([2500]));
    let r = record(&app, &p, &order, 1, now).await.ok();
    assert_eq!(fired(&r), json!([]));
    let r = record(&app, &p, &order, (92_000 - total(&r)) / unit, now).await.ok();
    assert_eq!(fired(&r), json!([9000]));
    assert_eq!(r["recordUsage"]["session"]["firedAlertsBps"], json!([2500, 9000]));
    let r = record(&app, &p, &order, 1, now).await.ok();
    assert_eq!(fired(&r), json!([]));
    // Beyond what the deposit can pay: refused.
    assert_refused(&record(&app, &p, &order, 2_000, now).await, "CONFLICT", "DEPOSIT_EXHAUSTED");
}

/// A metered deposit is never released whole: not by the buyer, not by the
/// review window passing; it is settled with the latest claim.
async fn a_metered_deposit_is_never_released_whole(app: TestApp) {
    let (p, order) = session(&app).await;
    let q = "mutation($i: OrderActionInput!) { releaseFunds(input: $i) { order { status } } }";
    let release = app.gql(q, json!({"i": {"orderId": order["id"]}}), Some(&p.buyer.access_token)).await;
    assert_refused(&release, "CONFLICT", "METERED_SESSION");
    let q = "mutation($i: OrderActionInput!) { markDelivered(input: $i) { order { status } } }";
    app.gql(q, json!({"i": {"orderId": order["id"]}}), Some(&p.provider.access_token)).await.ok();
    app.clock.advance(chrono::Duration::days(30));
    agora_api::orders::scheduler::sweep(&app.state, agora_domain::clock::Clock::now(app.clock.as_ref())).await.unwrap();
    let q = "query($id: ID!) { order(id: $id) { status } }";
    let o = app.gql(q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(o["order"]["status"], "DELIVERED");
}

/// A dispute over a metered order carries the buyer's latest claim as evidence.
async fn a_dispute_on_a_metered_order_carries_the_latest_claim(app: TestApp) {
    let (p, order) = session(&app).await;
    // An hour from now, whatever the hour: the price does not matter here.
    app.clock.advance(Duration::hours(1));
    record(&app, &p, &order, 100, app.clock.now()).await.ok();
    let claim = next_claim(&app, &p, &order).await;
    let psbt = claim["psbt"].as_str().unwrap();
    let escrow = app
        .gql("query($id: ID!) { order(id: $id) { bitcoinEscrow { address descriptor timelockBlocks buyerPublicKey buyerRefundPublicKey providerPublicKey arbitratorPublicKey } } }",
            json!({"id": order["id"]}), Some(&p.buyer.access_token))
        .await
        .ok()["order"]["bitcoinEscrow"]
        .clone();
    let signed = p.buyer_wallet.sign(&escrow, psbt);
    submit_claim(&app, &p, &order, &signed).await.ok();
    let q = "mutation($i: OpenDisputeInput!) { openDispute(input: $i) { dispute { statements { authorRole text attachments { mediaType } } } } }";
    let d = app
        .gql(q, json!({"i": {"orderId": order["id"], "statement": "The provider overbilled."}}), Some(&p.buyer.access_token))
        .await
        .ok();
    let statements = d["openDispute"]["dispute"]["statements"].as_array().unwrap().clone();
    let evidence = statements.iter().find(|s| s["authorRole"] == "system").expect("the claim is attached");
    assert_eq!(evidence["attachments"][0]["mediaType"], "application/psbt");
    assert!(evidence["text"].as_str().unwrap().contains(&signed));
}

on_both_backends!(
    a_dispute_on_a_metered_order_carries_the_latest_claim,
    a_metered_deposit_is_never_released_whole,
    bandwidth_sold_per_mb_with_a_peak_multiplier_is_settled_by_the_provider_alone,
    the_service_cosigns_the_latest_claim_when_the_provider_asks,
    usage_alerts_fire_exactly_once_per_threshold,
);
