//! Metered sessions on Bitcoin: bandwidth sold per MB with a peak-hours
//! multiplier; usage, a series of buyer-signed claims, every refusal, and the
//! provider settling the latest claim with only its own key.

use std::str::FromStr;

use agora_domain::clock::Clock;
use agora_escrow::btc::{
    build_refund, finalize_payout, finalize_refund, sign_escrow_input, verify_spends, ExpectedPayout, FundingUtxo,
};
use agora_tests::wallet::{descriptor_of, spent_outputs, transaction, Wallet};
use agora_api::watcher::bitcoin::BitcoinWatcher;
use agora_tests::{for_both_backends, on_both_backends, Backend, GqlResponse, TestApp};
use bitcoin::base64::engine::general_purpose::STANDARD as BASE64;
use bitcoin::base64::Engine;
use bitcoin::psbt::Psbt;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{json, Value};

use crate::chains_btc::{catch_up, escrow_address, rpc};
use crate::orders_btc::{fund, get_order, parties, place_with, Parties, ORDER_FIELDS};

const SESSION: &str = "orderId deposit claimableLimit totalQuantity totalAmount latestClaim unclaimed latestClaimTxid
    latestClaimPsbt usedBps firedAlertsBps capped closed peakWindows { days start end multiplierBps }
    usage { quantity pricePerUnit multiplierBps amount at }";

fn amount(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

#[track_caller]
pub(crate) fn assert_refused(resp: &GqlResponse, code: &str, reason: &str) {
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

/// The bandwidth session with a 100 000 sat deposit, funded (by a chain
/// event delivered directly, without a chain).
async fn session(app: &TestApp) -> (Parties, Value) {
    let p = bandwidth_parties(app).await;
    let order = place_with(app, &p, json!({"deposit": "100000"}), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    fund(app, &order, 100_000, 6).await;
    (p, order)
}

/// A provider selling bandwidth at 10 sats/MB, ×1.5 from 12:00 to 18:00 UTC
/// every day (overlapping or discounting windows refused), and a buyer.
async fn bandwidth_parties(app: &TestApp) -> Parties {
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
    p
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

    // Each crossing is one notification for each party: the lower threshold
    // as a usage alert, the buyer's highest as "nearly exhausted".
    for token in [&p.buyer.access_token, &p.provider.access_token] {
        let alerts = usage_notifications(&app, token).await;
        assert_eq!(
            alerts.iter().map(|(kind, _)| kind.as_str()).collect::<Vec<_>>(),
            ["DEPOSIT_NEARLY_EXHAUSTED", "USAGE_THRESHOLD"],
            "newest first: {alerts:?}"
        );
        assert!(alerts[0].1.contains("90 %") && alerts[1].1.contains("25 %"), "{alerts:?}");
    }
}

/// The caller's usage alerts, newest first, as (kind, subject).
async fn usage_notifications(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let q = "{ myNotifications(first: 100) { edges { node { kind subject } } } }";
    let all = app.gql(q, json!({}), Some(token)).await.ok()["myNotifications"]["edges"].clone();
    all.as_array()
        .unwrap()
        .iter()
        .map(|e| (e["node"]["kind"].as_str().unwrap().to_owned(), e["node"]["subject"].as_str().unwrap().to_owned()))
        .filter(|(kind, _)| kind == "USAGE_THRESHOLD" || kind == "DEPOSIT_NEARLY_EXHAUSTED")
        .collect()
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

/// Off-peak (03:00) and peak (13:00) instants of the day after `placed`;
/// the clock is moved three days on so both are in the past.
fn off_peak_and_peak(app: &TestApp, placed: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    app.clock.advance(Duration::days(3));
    let day = (placed + Duration::days(1)).duration_trunc(Duration::days(1)).unwrap();
    (day + Duration::hours(3), day + Duration::hours(13))
}

/// The claim to sign next, signed by the buyer and accepted; returns the claim.
async fn sign_next_claim(app: &TestApp, p: &Parties, order: &Value) -> Value {
    let c = next_claim(app, p, order).await;
    let signed = p.buyer_wallet.sign(&order["bitcoinEscrow"], c["psbt"].as_str().unwrap());
    let s = submit_claim(app, p, order, &signed).await.ok();
    assert_eq!(s["submitClaim"]["session"]["latestClaim"], c["cumulative"]);
    c
}

/// What `tx` pays to `address`.
fn paid_to(tx: &bitcoin::Transaction, address: &Value) -> u64 {
    let script = script_of(address);
    tx.output.iter().filter(|o| o.script_pubkey == script).map(|o| o.value.to_sat()).sum()
}

#[track_caller]
fn assert_exact_split(tx: &bitcoin::Transaction, escrow: &Value, claim: &Value) {
    let to = &escrow["payoutAddresses"];
    assert_eq!(paid_to(tx, &to["provider"]), amount(&claim["providerAmount"]));
    assert_eq!(paid_to(tx, &to["buyer"]), amount(&claim["buyerAmount"]));
    assert_eq!(paid_to(tx, &to["marketplace"]), amount(&claim["commission"]));
}

/// The whole session on the local regtest chain: the watcher sees the deposit,
/// usage runs across the peak window, the buyer signs two claims, the provider
/// completes the latest with its own key, the watcher broadcasts and confirms it.
async fn a_metered_session_settles_on_the_local_chain_with_the_exact_claim_split(backend: Backend) {
    let app = TestApp::spawn_with_chains(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = bandwidth_parties(&app).await;
    let order = place_with(&app, &p, json!({"deposit": "100000"}), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    let placed = app.clock.now();
    let funding = chains.bitcoin.faucet(&escrow_address(&order), 100_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let funded = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(funded["status"], "FUNDED");

    let (off_peak, peak) = off_peak_and_peak(&app, placed);
    record(&app, &p, &order, 1_000, off_peak).await.ok();
    let r = record(&app, &p, &order, 2_000, peak).await.ok();
    assert_eq!(r["recordUsage"]["record"]["multiplierBps"], 15_000);
    let c1 = sign_next_claim(&app, &p, &order).await;
    assert_eq!(amount(&c1["cumulative"]), 40_000);
    record(&app, &p, &order, 1_500, off_peak + Duration::hours(1)).await.ok();
    let c2 = sign_next_claim(&app, &p, &order).await;
    assert_eq!(amount(&c2["cumulative"]), 55_000);

    // The provider completes the latest claim with only its own key.
    let q = format!("query($id: ID!) {{ session(orderId: $id) {{ {SESSION} }} }}");
    let s = app.gql(&q, json!({"id": order["id"]}), Some(&p.provider.access_token)).await.ok()["session"].clone();
    let escrow = &order["bitcoinEscrow"];
    let completed = p.provider_wallet.sign(escrow, s["latestClaimPsbt"].as_str().unwrap());
    let closed = close(&app, &p, &order, Some(&completed)).await.ok();
    assert_eq!(closed["closeSession"]["order"]["payout"]["txid"], c2["txid"]);

    assert_eq!(watcher.broadcast_pending().await.unwrap(), 1);
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    assert_eq!(settled["settlement"]["txid"], c2["txid"]);
    let txid = bitcoin::Txid::from_str(c2["txid"].as_str().unwrap()).unwrap();
    let tx = chains.bitcoin.transaction(&txid).expect("the payout is on chain");
    assert_eq!(tx.input.len(), 1);
    assert_eq!(tx.input[0].previous_output.txid, funding);
    assert_exact_split(&tx, escrow, &c2);
    assert_eq!(amount(&c2["buyerAmount"]), 100_000 - 55_000 - amount(&c2["networkFee"]));
    verify_spends(&tx, &spent_outputs(escrow, &tx, &[100_000])).expect("passes bitcoinconsensus");
}

/// The provider records usage and the buyer signs claims, but the provider
/// never marks the order delivered and vanishes: on the local chain the
/// service settles the latest claim after the delivery deadline (not a full
/// refund), the provider gets exactly what the buyer signed for.
async fn on_the_chain_a_session_never_marked_delivered_settles_the_latest_claim(backend: Backend) {
    let app = TestApp::spawn_with_chains(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = bandwidth_parties(&app).await;
    let order = place_with(&app, &p, json!({"deposit": "100000"}), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    let placed = app.clock.now();
    chains.bitcoin.faucet(&escrow_address(&order), 100_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let funded_at = chains.bitcoin.tip().height;
    let (off_peak, _) = off_peak_and_peak(&app, placed);
    // 4 000 MB at 10 sats: a commission above the dust limit, so every share is an output.
    record(&app, &p, &order, 4_000, off_peak).await.ok();
    let claim = sign_next_claim(&app, &p, &order).await;
    let delivery_by = get_order(&app, &order, &p.buyer.access_token).await["deadlines"]["deliveryBy"].clone();
    let delivery_by = chrono::DateTime::parse_from_rfc3339(delivery_by.as_str().unwrap()).unwrap().with_timezone(&chrono::Utc);
    if app.clock.now() <= delivery_by {
        app.clock.advance(delivery_by - app.clock.now() + Duration::seconds(1));
    }
    assert_eq!(agora_api::orders::scheduler::sweep(&app.state, app.clock.now()).await.unwrap(), 1);
    assert_eq!(watcher.broadcast_pending().await.unwrap(), 1);
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    let txid = bitcoin::Txid::from_str(settled["settlement"]["txid"].as_str().unwrap()).unwrap();
    let tx = chains.bitcoin.transaction(&txid).expect("the payout is on chain");
    assert_exact_split(&tx, &order["bitcoinEscrow"], &claim);
    verify_spends(&tx, &spent_outputs(&order["bitcoinEscrow"], &tx, &[100_000])).expect("passes bitcoinconsensus");
    let t = order["bitcoinEscrow"]["timelockBlocks"].as_u64().unwrap();
    assert!(chains.bitcoin.tip().height < funded_at + t, "before the buyer's refund path opens");
}

async fn top_up(app: &TestApp, p: &Parties, order: &Value, deposit: &str) -> GqlResponse {
    let q = format!(
        "mutation($i: TopUpSessionInput!) {{ topUpSession(input: $i) {{ order {{ {ORDER_FIELDS} }} session {{ continuesOrderId {SESSION} }} }} }}"
    );
    let i = json!({"orderId": order["id"], "deposit": deposit, "buyerKeyId": p.buyer_key_id, "buyerRefundKeyId": p.buyer_refund_key_id});
    app.gql(&q, json!({"i": i}), Some(&p.buyer.access_token)).await
}

/// A buyer alerted near the end of the deposit tops up with a new escrow for
/// the same session and continues; the first escrow settles with its latest claim.
async fn a_buyer_alerted_near_the_end_of_the_deposit_tops_up_and_continues(app: TestApp) {
    let (p, order) = session(&app).await;
    let (off_peak, _) = off_peak_and_peak(&app, app.clock.now());
    let r = record(&app, &p, &order, 9_500, off_peak).await.ok();
    assert_eq!(r["recordUsage"]["alertsFiredBps"], json!([5_000, 8_000, 9_500]));
    let alerts = usage_notifications(&app, &p.buyer.access_token).await;
    assert_eq!(alerts[0].0, "DEPOSIT_NEARLY_EXHAUSTED", "{alerts:?}");
    let c = sign_next_claim(&app, &p, &order).await;
    assert_eq!(amount(&c["cumulative"]), 95_000);

    // Only the buyer tops up, once.
    let q = "mutation($i: TopUpSessionInput!) { topUpSession(input: $i) { order { id } } }";
    let i = json!({"orderId": order["id"], "deposit": "50000", "buyerKeyId": p.buyer_key_id});
    assert_refused(&app.gql(q, json!({"i": i}), Some(&p.provider.access_token)).await, "FORBIDDEN", "WRONG_ROLE");
    let t = top_up(&app, &p, &order, "50000").await.ok();
    let next = t["topUpSession"]["order"].clone();
    assert_eq!(next["status"], "AWAITING_FUNDING");
    assert_eq!(t["topUpSession"]["session"]["continuesOrderId"], order["id"]);
    assert_eq!(amount(&t["topUpSession"]["session"]["deposit"]), 50_000);
    assert_eq!(amount(&t["topUpSession"]["session"]["totalAmount"]), 0);
    assert_eq!(t["topUpSession"]["session"]["peakWindows"][0]["multiplierBps"], 15_000);
    assert_ne!(next["bitcoinEscrow"]["address"], order["bitcoinEscrow"]["address"], "its own escrow");
    assert_refused(&top_up(&app, &p, &order, "50000").await, "CONFLICT", "ALREADY_TOPPED_UP");
    let q = "query($id: ID!) { session(orderId: $id) { continuedByOrderId } }";
    let old = app.gql(q, json!({"id": order["id"]}), Some(&p.provider.access_token)).await.ok();
    assert_eq!(old["session"]["continuedByOrderId"], next["id"]);

    // Usage continues against the new deposit once it is funded.
    assert_refused(&record(&app, &p, &next, 100, app.clock.now()).await, "CONFLICT", "WRONG_STATE");
    fund(&app, &next, 50_000, 6).await;
    let r = record(&app, &p, &next, 1_000, app.clock.now()).await.ok();
    let used = amount(&r["recordUsage"]["record"]["amount"]);
    assert_eq!(amount(&r["recordUsage"]["session"]["totalAmount"]), used);
    assert_eq!(r["recordUsage"]["alertsFiredBps"], json!([]), "alerts count against the new deposit");
    let c_next = sign_next_claim(&app, &p, &next).await;
    assert_eq!(amount(&c_next["cumulative"]), used);

    // The first escrow settles with its latest claim.
    let s = app.gql(&format!("query($id: ID!) {{ session(orderId: $id) {{ {SESSION} }} }}"), json!({"id": order["id"]}), Some(&p.provider.access_token))
        .await
        .ok();
    let completed = p.provider_wallet.sign(&order["bitcoinEscrow"], s["session"]["latestClaimPsbt"].as_str().unwrap());
    let closed = close(&app, &p, &order, Some(&completed)).await.ok();
    let tx = transaction(closed["closeSession"]["order"]["payout"]["transactionHex"].as_str().unwrap());
    verify_spends(&tx, &spent_outputs(&order["bitcoinEscrow"], &tx, &[100_000])).expect("passes bitcoinconsensus");
    assert_exact_split(&tx, &order["bitcoinEscrow"], &c);
}

/// A call where the buyer vanishes after a claim: usage goes on unclaimed, the
/// buyer signs nothing more, and the provider settles the best (latest) claim
/// alone; the transaction is valid for Bitcoin Core's interpreter and mined.
async fn the_provider_settles_the_best_claim_alone_after_the_buyer_vanishes(backend: Backend) {
    let app = TestApp::spawn_with_chains(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = bandwidth_parties(&app).await;
    let order = place_with(&app, &p, json!({"deposit": "100000"}), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    let placed = app.clock.now();
    chains.bitcoin.faucet(&escrow_address(&order), 100_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let (off_peak, peak) = off_peak_and_peak(&app, placed);
    record(&app, &p, &order, 1_000, off_peak).await.ok();
    sign_next_claim(&app, &p, &order).await;
    record(&app, &p, &order, 500, peak).await.ok();
    let best = sign_next_claim(&app, &p, &order).await;
    assert_eq!(amount(&best["cumulative"]), 17_500);
    // The buyer vanishes: this usage is never claimed; only it is at risk.
    let r = record(&app, &p, &order, 300, peak + Duration::hours(1)).await.ok();
    assert_eq!(amount(&r["recordUsage"]["session"]["unclaimed"]), 4_500);

    let latest = r["recordUsage"]["session"]["latestClaimPsbt"].as_str().unwrap().to_owned();
    let escrow = &order["bitcoinEscrow"];
    let completed = p.provider_wallet.sign(escrow, &latest);
    let descriptor = descriptor_of(escrow);
    let psbt = decode(&completed);
    let expected = ExpectedPayout::from_psbt(&descriptor, &psbt).unwrap();
    let tx = finalize_payout(&descriptor, &expected, &psbt).expect("buyer's claim + provider's key complete the 2-of-3");
    verify_spends(&tx, &spent_outputs(escrow, &tx, &[100_000])).expect("passes bitcoinconsensus");
    assert_exact_split(&tx, escrow, &best);

    close(&app, &p, &order, Some(&completed)).await.ok();
    assert_eq!(watcher.broadcast_pending().await.unwrap(), 1);
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = get_order(&app, &order, &p.provider.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    let mined = chains.bitcoin.transaction(&tx.compute_txid()).expect("the provider's settlement is on chain");
    verify_spends(&mined, &spent_outputs(escrow, &mined, &[100_000])).expect("passes bitcoinconsensus");
    assert_exact_split(&mined, escrow, &best);
}

/// The buyer alone cannot take more than the remainder of its latest claim:
/// it cannot close the session, cannot complete its own claim without a
/// second key, cannot lower its claim, and its refund key is locked until
/// the timelock.
async fn the_buyer_alone_cannot_take_more_than_the_remainder(backend: Backend) {
    let app = TestApp::spawn_with_chains(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = bandwidth_parties(&app).await;
    let order = place_with(&app, &p, json!({"deposit": "100000"}), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    let funding = chains.bitcoin.faucet(&escrow_address(&order), 100_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    app.clock.advance(Duration::hours(1));
    record(&app, &p, &order, 3_000, app.clock.now()).await.ok();
    let claim = sign_next_claim(&app, &p, &order).await;
    let escrow = &order["bitcoinEscrow"];

    // Not through the marketplace: closing is the provider's.
    let signed = p.buyer_wallet.sign(escrow, claim["psbt"].as_str().unwrap());
    let q = "mutation($i: CloseSessionInput!) { closeSession(input: $i) { session { closed } } }";
    for psbt in [None, Some(signed.as_str())] {
        let by_buyer = app.gql(q, json!({"i": {"orderId": order["id"], "psbt": psbt}}), Some(&p.buyer.access_token)).await;
        assert_refused(&by_buyer, "FORBIDDEN", "WRONG_ROLE");
    }
    // Not on chain: its claim needs a second signature ...
    let descriptor = descriptor_of(escrow);
    let psbt = decode(&signed);
    let expected = ExpectedPayout::from_psbt(&descriptor, &psbt).unwrap();
    assert!(finalize_payout(&descriptor, &expected, &psbt).is_err(), "one key does not spend a 2-of-3");
    // ... and its refund key only opens the timelocked path after T blocks.
    let funding_tx = chains.bitcoin.transaction(&funding).unwrap();
    let vout = funding_tx.output.iter().position(|o| o.script_pubkey == descriptor.script_pubkey()).unwrap();
    let utxo = FundingUtxo {
        outpoint: bitcoin::OutPoint::new(funding, vout as u32),
        value: funding_tx.output[vout].value,
    };
    let refund = build_refund(&descriptor, &[utxo], &p.buyer_wallet.address(), 2).unwrap();
    let mut refund_psbt = refund.psbt.clone();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    sign_escrow_input(&secp, &mut refund_psbt, 0, &descriptor, &p.buyer_refund_wallet.secret()).unwrap();
    let refund_tx = finalize_refund(&descriptor, &refund.expected, &refund_psbt).unwrap();
    assert!(chains.bitcoin.submit(&refund_tx).is_err(), "the refund path is closed before the timelock");
    // Nor by signing a smaller claim.
    let mut lower = decode(claim["psbt"].as_str().unwrap());
    let provider_script = script_of(&escrow["payoutAddresses"]["provider"]);
    let out = lower.unsigned_tx.output.iter_mut().find(|o| o.script_pubkey == provider_script).unwrap();
    out.value = bitcoin::Amount::from_sat(1_000);
    let lower = p.buyer_wallet.sign(escrow, &encode(&lower));
    assert_refused(&submit_claim(&app, &p, &order, &lower).await, "CONFLICT", "CLAIM_NOT_INCREASING");
    let q = format!("query($id: ID!) {{ session(orderId: $id) {{ {SESSION} }} }}");
    let s = app.gql(&q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok()["session"].clone();
    assert_eq!(s["latestClaim"], claim["cumulative"]);
    assert_eq!(s["closed"], false);
}

/// The provider delivered, was paid through claims, then disappeared: once the
/// review window passes the latest claim is settled with the marketplace
/// co-signing, so the buyer gets the rest back without the provider.
async fn an_abandoned_session_is_settled_with_the_latest_claim_after_the_review_window(app: TestApp) {
    let (p, order) = session(&app).await;
    app.clock.advance(Duration::hours(1));
    record(&app, &p, &order, 500, app.clock.now()).await.ok();
    let claim = next_claim(&app, &p, &order).await;
    let escrow = app
        .gql("query($id: ID!) { order(id: $id) { bitcoinEscrow { address descriptor timelockBlocks buyerPublicKey buyerRefundPublicKey providerPublicKey arbitratorPublicKey } } }",
            json!({"id": order["id"]}), Some(&p.buyer.access_token))
        .await
        .ok()["order"]["bitcoinEscrow"]
        .clone();
    submit_claim(&app, &p, &order, &p.buyer_wallet.sign(&escrow, claim["psbt"].as_str().unwrap())).await.ok();
    let q = "mutation($i: OrderActionInput!) { markDelivered(input: $i) { order { status } } }";
    app.gql(q, json!({"i": {"orderId": order["id"]}}), Some(&p.provider.access_token)).await.ok();
    // Not before the review window ends.
    assert_eq!(agora_api::metered::settle_abandoned(&app.state, app.clock.now()).await.unwrap(), 0);
    app.clock.advance(Duration::hours(73));
    assert_eq!(agora_api::metered::settle_abandoned(&app.state, app.clock.now()).await.unwrap(), 1);
    let q = "query($id: ID!) { order(id: $id) { status payout { complete signedBy transactionHex breakdown { provider commission buyer } } arbitratorSignatures { rule } } }";
    let o = app.gql(q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok()["order"].clone();
    assert_eq!(o["payout"]["complete"], true, "{o}");
    assert_eq!(o["payout"]["signedBy"], json!(["BUYER", "MARKETPLACE"]));
    assert!(o["arbitratorSignatures"][0]["rule"].as_str().unwrap().starts_with("latest_claim"));
    let b = &o["payout"]["breakdown"];
    assert_eq!(amount(&b["provider"]) + amount(&b["commission"]), amount(&claim["cumulative"]));
    let tx = transaction(o["payout"]["transactionHex"].as_str().unwrap());
    verify_spends(&tx, &spent_outputs(&escrow, &tx, &[100_000])).expect("bitcoinconsensus");
}


async fn a_session_never_marked_delivered_pays_the_buyers_latest_claim_not_a_full_refund(app: TestApp) {
    let (p, order) = session(&app).await;
    app.clock.advance(Duration::hours(1));
    record(&app, &p, &order, 500, app.clock.now()).await.ok();
    let claim = next_claim(&app, &p, &order).await;
    let escrow = app
        .gql("query($id: ID!) { order(id: $id) { deadlines { deliveryBy } bitcoinEscrow { address descriptor timelockBlocks buyerPublicKey buyerRefundPublicKey providerPublicKey arbitratorPublicKey } } }",
            json!({"id": order["id"]}), Some(&p.buyer.access_token))
        .await
        .ok()["order"]
        .clone();
    submit_claim(&app, &p, &order, &p.buyer_wallet.sign(&escrow["bitcoinEscrow"], claim["psbt"].as_str().unwrap())).await.ok();
    // The provider never marks the order delivered. Past the delivery
    // deadline the buyer's refund would ignore what it signed for: refused.
    let delivery_by = chrono::DateTime::parse_from_rfc3339(escrow["deadlines"]["deliveryBy"].as_str().unwrap()).unwrap().with_timezone(&chrono::Utc);
    app.clock.advance(delivery_by - app.clock.now() + Duration::seconds(1));
    let q = "mutation($i: OrderActionInput!) { requestRefund(input: $i) { order { status } } }";
    let refused = app.gql(q, json!({"i": {"orderId": order["id"]}}), Some(&p.buyer.access_token)).await;
    assert_refused(&refused, "CONFLICT", "CLAIM_OUTSTANDING");
    // The scheduler's automatic outcome settles the latest claim instead.
    assert_eq!(agora_api::orders::scheduler::sweep(&app.state, app.clock.now()).await.unwrap(), 1);
    let q = "query($id: ID!) { order(id: $id) { status payout { complete signedBy transactionHex breakdown { provider commission buyer } } arbitratorSignatures { rule } } }";
    let o = app.gql(q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok()["order"].clone();
    assert_eq!(o["status"], "RELEASING", "{o}");
    assert_eq!(o["payout"]["complete"], true, "buyer's claim + marketplace: {o}");
    assert!(o["arbitratorSignatures"][0]["rule"].as_str().unwrap().starts_with("latest_claim"));
    let b = &o["payout"]["breakdown"];
    assert_eq!(amount(&b["provider"]) + amount(&b["commission"]), amount(&claim["cumulative"]));
    let tx = transaction(o["payout"]["transactionHex"].as_str().unwrap());
    verify_spends(&tx, &spent_outputs(&escrow["bitcoinEscrow"], &tx, &[100_000])).expect("bitcoinconsensus");
}

on_both_backends!(
    a_session_never_marked_delivered_pays_the_buyers_latest_claim_not_a_full_refund,
    an_abandoned_session_is_settled_with_the_latest_claim_after_the_review_window,
    a_buyer_alerted_near_the_end_of_the_deposit_tops_up_and_continues,
    a_dispute_on_a_metered_order_carries_the_latest_claim,
    a_metered_deposit_is_never_released_whole,
    bandwidth_sold_per_mb_with_a_peak_multiplier_is_settled_by_the_provider_alone,
    the_service_cosigns_the_latest_claim_when_the_provider_asks,
    usage_alerts_fire_exactly_once_per_threshold,
);

for_both_backends!(
    a_metered_session_settles_on_the_local_chain_with_the_exact_claim_split,
    on_the_chain_a_session_never_marked_delivered_settles_the_latest_claim,
    the_provider_settles_the_best_claim_alone_after_the_buyer_vanishes,
    the_buyer_alone_cannot_take_more_than_the_remainder,
);
