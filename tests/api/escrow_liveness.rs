//! No single party can freeze, rob or outlast a Bitcoin escrow: stray
//! deposits after funding, a buyer who releases and never signs, arbitration
//! that stalls, outputs confirmed in different blocks, spends Agora did not
//! prepare, sweeps that meet a broken order, timelocks at the chain's pace.
//! Each test is a case that once froze an escrow or paid the wrong side.

use std::str::FromStr;

use agora_api::disputes;
use agora_api::orders::scheduler;
use agora_api::watcher::bitcoin::BitcoinWatcher;
use agora_domain::clock::Clock;
use agora_domain::escrow::payout::PayoutBreakdown;
use agora_escrow::source::bitcoin_rpc::BitcoinCoreRpc;
use agora_escrow::btc::{build_payout_with, finalize_payout, verify_spends, FundingUtxo, PayoutAddresses};
use agora_tests::wallet::{descriptor_of, spent_outputs, transaction};
use agora_tests::{for_both_backends, Backend, TestApp};
use bitcoin::{Address, OutPoint, Txid};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::chains_btc::{app as chain_app, catch_up, escrow_address, history, listing_parties, rpc, status};
use crate::disputes::{appeal, arbitrator, decide, open, view};
use crate::orders_btc::{action, fund, get_order, order_uuid, parties, place, submit};

const CHAIN_STATUS: &str = "query($id: ID!) { order(id: $id) { status fundedAmount
    bitcoinEscrow { address descriptor timelockBlocks buyerPublicKey buyerRefundPublicKey providerPublicKey arbitratorPublicKey }
    payout { psbt txid complete transactionHex signedBy breakdown { provider buyer commission arbitrationFee networkFee } outputs { role amount } }
    settlement { outcome providerBps txid byTimelock byOtherTransaction paid { role amount } }
    arbitratorSignatures { rule outcome txid }
    chainStatus { payoutFeeRateSatVb timelockOpensAtHeight serviceActsByHeight
        strayDeposits { index txid vout amount status refundPsbt refundTxid refundAmount spentBy }
        otherSpend { txid paid { role amount } } feeBumps { replacedTxid fromSatVb toSatVb at } }
    history { event detail } } }";

async fn full(app: &TestApp, order: &Value, token: &str) -> Value {
    app.gql(CHAIN_STATUS, json!({"id": order["id"]}), Some(token)).await.ok()["order"].clone()
}

fn deadline(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a time")).unwrap().with_timezone(&Utc)
}

fn advance_past(app: &TestApp, at: DateTime<Utc>) {
    app.clock.advance(at - app.clock.now() + Duration::seconds(1));
}

async fn sweep(app: &TestApp) -> usize {
    scheduler::sweep(&app.state, app.clock.now()).await.expect("sweep")
}

fn rules(order: &Value) -> Vec<String> {
    order["arbitratorSignatures"].as_array().unwrap().iter().map(|s| s["rule"].as_str().unwrap().to_owned()).collect()
}

fn sats(v: &Value) -> u64 {
    v.as_str().expect("minor units").parse().expect("a number")
}

/// What `tx` pays to `address`.
fn paid_to(tx: &bitcoin::Transaction, address: &str) -> u64 {
    let script = Address::from_str(address).unwrap().assume_checked().script_pubkey();
    tx.output.iter().filter(|o| o.script_pubkey == script).map(|o| o.value.to_sat()).sum()
}

/// Pays the usual 50 000 sats into `order`'s escrow on the local chain and
/// lets the watcher see it confirmed; returns the funding txid and its height.
async fn fund_on_chain(app: &TestApp, watcher: &BitcoinWatcher<BitcoinCoreRpc>, order: &Value) -> (Txid, u64) {
    let chains = app.chains();
    let txid = chains.bitcoin.faucet(&escrow_address(order), 50_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(watcher).await;
    (txid, chains.bitcoin.tip().height)
}

async fn a_deposit_after_funding_neither_freezes_the_payout_nor_is_kept(backend: Backend) {
    let app = chain_app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    let order = place(&app, &p).await;
    fund_on_chain(&app, &watcher, &order).await;
    action(&app, "markDelivered", &order, &p.provider.access_token).await.ok();

    // Someone sends a little more after funding and delivery.
    let stray_txid = chains.bitcoin.faucet(&escrow_address(&order), 5_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let seen = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(seen["status"], "DELIVERED", "a stray deposit changes nothing about the order");
    assert_eq!(seen["fundedAmount"], "50000", "the accepted funding is frozen");
    let stray = seen["chainStatus"]["strayDeposits"][0].clone();
    assert_eq!(stray["txid"], stray_txid.to_string());
    assert_eq!(stray["amount"], "5000");
    assert_eq!(stray["status"], "REFUND_TO_SIGN", "{stray}");
    let refund_amount = sats(&stray["refundAmount"]);
    assert!(refund_amount > 4_000 && refund_amount < 5_000, "whole but for the fee: {refund_amount}");
    assert!(
        rules(&seen).contains(&format!("stray_refund:{refund_amount}")),
        "the marketplace's co-signature is audited: {:?}",
        rules(&seen)
    );

    // The release spends exactly the accepted funding and completes.
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await.ok()["releaseFunds"]["order"].clone();
    let psbt = releasing["payout"]["psbt"].as_str().unwrap().to_owned();
    let escrow = releasing["bitcoinEscrow"].clone();
    submit(&app, &order, &p.buyer_wallet.sign(&escrow, &psbt), &p.buyer.access_token).await.ok();
    let done = submit(&app, &order, &p.provider_wallet.sign(&escrow, &psbt), &p.provider.access_token).await.ok();
    let paid = done["submitPayoutSignature"]["order"].clone();
    let b = &paid["payout"]["breakdown"];
    let total: u64 = ["provider", "buyer", "commission", "arbitrationFee", "networkFee"].iter().map(|k| sats(&b[*k])).sum();
    assert_eq!(total, 50_000, "the payout divides the accepted funding, to the satoshi");
    let payout_tx = transaction(paid["payout"]["transactionHex"].as_str().unwrap());
    verify_spends(&payout_tx, &spent_outputs(&escrow, &payout_tx, &[50_000])).expect("bitcoinconsensus accepts the payout");

    // The buyer signs the stray refund; both transactions confirm.
    let signed = p.buyer_wallet.sign(&escrow, stray["refundPsbt"].as_str().unwrap());
    let q = "mutation($i: SubmitStrayRefundSignatureInput!) { submitStrayRefundSignature(input: $i) { order { id } } }";
    let wrong = app.gql(q, json!({"i": {"orderId": order["id"], "index": 7, "psbt": signed}}), Some(&p.buyer.access_token)).await;
    assert_eq!(wrong.error_code(), Some("NOT_FOUND"), "{:?}", wrong.body);
    app.gql(q, json!({"i": {"orderId": order["id"], "index": 0, "psbt": signed}}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(watcher.broadcast_pending().await.unwrap(), 2, "the payout and the stray refund");
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    let refunded = &settled["chainStatus"]["strayDeposits"][0];
    assert_eq!(refunded["status"], "REFUNDED");
    assert_eq!(refunded["spentBy"], refunded["refundTxid"]);
    let refund_tx = chains.bitcoin.transaction(&Txid::from_str(refunded["refundTxid"].as_str().unwrap()).unwrap()).unwrap();
    verify_spends(&refund_tx, &spent_outputs(&escrow, &refund_tx, &[5_000])).expect("bitcoinconsensus accepts the refund");
    let buyer_address = order["bitcoinEscrow"]["payoutAddresses"]["buyer"].as_str().unwrap();
    assert_eq!(paid_to(&refund_tx, buyer_address), refund_amount, "the stray goes back to the buyer");
    // After settlement the order still shows who got what.
    let shown: Vec<(String, u64)> = settled["settlement"]["paid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["role"].as_str().unwrap().to_owned(), sats(&o["amount"])))
        .collect();
    let expected: Vec<(String, u64)> = paid["payout"]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["role"].as_str().unwrap().to_owned(), sats(&o["amount"])))
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(paid_to(&payout_tx, order["bitcoinEscrow"]["payoutAddresses"]["provider"].as_str().unwrap()), expected[0].1);
}

async fn outputs_confirmed_in_different_blocks_are_reorged_each_on_its_own(backend: Backend) {
    let app = chain_app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    let order = place(&app, &p).await;
    chains.bitcoin.faucet(&escrow_address(&order), 30_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    assert_eq!(status(&app, &order, &p).await, "AWAITING_FUNDING");
    let second = chains.bitcoin.faucet(&escrow_address(&order), 20_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    assert_eq!(status(&app, &order, &p).await, "FUNDED");
    // The later block goes away with the second output: the order is no
    // longer funded (it was counted from the first output's block before).
    let second_tx = chains.bitcoin.transaction(&second).unwrap();
    chains.bitcoin.reorg(1, &[second]).unwrap();
    catch_up(&watcher).await;
    assert_eq!(status(&app, &order, &p).await, "AWAITING_FUNDING");
    assert!(history(&app, &order, &p).await.contains("FundingReorged"));
    // The first output is still counted: once the second confirms again, the
    // order is funded with both.
    chains.bitcoin.submit(&second_tx).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    assert_eq!(status(&app, &order, &p).await, "FUNDED");
    let funded = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(funded["fundedAmount"], "50000");
}

async fn a_spend_agora_did_not_prepare_settles_the_order_from_the_chain(backend: Backend) {
    let app = chain_app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    let order = place(&app, &p).await;
    let (funding_txid, _) = fund_on_chain(&app, &watcher, &order).await;
    action(&app, "markDelivered", &order, &p.provider.access_token).await.ok();
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await.ok()["releaseFunds"]["order"].clone();
    let escrow_json = releasing["bitcoinEscrow"].clone();
    // Buyer and provider agree, in their own wallets, on a transaction of their
    // own (everything to the provider at a higher fee) and broadcast it.
    let escrow = descriptor_of(&escrow_json);
    let funding_tx = chains.bitcoin.transaction(&funding_txid).unwrap();
    let vout = funding_tx.output.iter().position(|o| o.script_pubkey == escrow.script_pubkey()).unwrap();
    let utxo = FundingUtxo { outpoint: OutPoint::new(funding_txid, vout as u32), value: funding_tx.output[vout].value };
    let addresses = |role: &str| Address::from_str(order["bitcoinEscrow"]["payoutAddresses"][role].as_str().unwrap()).unwrap().assume_checked();
    let to = PayoutAddresses { provider: addresses("provider"), buyer: addresses("buyer"), marketplace: addresses("marketplace") };
    let built = build_payout_with(&escrow, &[utxo], &to, 7, |total, fee| {
        Ok(PayoutBreakdown { provider: total - fee, buyer: 0, commission: 0, arbitration_fee: 0, network_fee: fee })
    })
    .unwrap();
    let psbt_b64 = bitcoin::base64::Engine::encode(&bitcoin::base64::engine::general_purpose::STANDARD, built.psbt.serialize());
    let signed = p.provider_wallet.sign(&escrow_json, &p.buyer_wallet.sign(&escrow_json, &psbt_b64));
    let psbt = bitcoin::psbt::Psbt::deserialize(&bitcoin::base64::Engine::decode(&bitcoin::base64::engine::general_purpose::STANDARD, signed).unwrap()).unwrap();
    let own = finalize_payout(&escrow, &built.expected, &psbt).unwrap();
    let own_txid = chains.bitcoin.submit(&own).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED", "{}", settled["history"]);
    assert_eq!(settled["settlement"]["txid"], own_txid.to_string());
    assert_eq!(settled["settlement"]["byOtherTransaction"], true);
    assert_eq!(settled["settlement"]["outcome"], "RELEASE");
    assert_eq!(settled["settlement"]["paid"], json!([{"role": "provider", "amount": (50_000 - built.fee.to_sat()).to_string()}]));
    // Nothing is sent again for the order, and its history does not grow.
    let rows = settled["history"].as_array().unwrap().len();
    for _ in 0..3 {
        assert_eq!(watcher.broadcast_pending().await.unwrap(), 0);
    }
    assert_eq!(full(&app, &order, &p.buyer.access_token).await["history"].as_array().unwrap().len(), rows);
}

async fn payouts_take_the_chains_fee_estimate_within_the_configured_bounds(backend: Backend) {
    let app = chain_app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    chains.bitcoin.set_fee_rate(25);
    watcher.refresh_fee_rate().await;
    let order = place(&app, &p).await;
    fund_on_chain(&app, &watcher, &order).await;
    let funded = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(funded["chainStatus"]["payoutFeeRateSatVb"], 25, "fixed when the funding was accepted");
    // A later spike does not change this escrow's payouts (a claim the buyer
    // signed stays the payout built from it) and is clamped for new ones.
    chains.bitcoin.set_fee_rate(1_000_000);
    watcher.refresh_fee_rate().await;
    assert_eq!(app.state.bitcoin.fees.current(), 500, "bitcoin.fee_rate_max_sat_vb");
    action(&app, "markDelivered", &order, &p.provider.access_token).await.ok();
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await.ok()["releaseFunds"]["order"].clone();
    let fee = sats(&releasing["payout"]["breakdown"]["networkFee"]);
    let tx = bitcoin::psbt::Psbt::deserialize(
        &bitcoin::base64::Engine::decode(&bitcoin::base64::engine::general_purpose::STANDARD, releasing["payout"]["psbt"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let vsize_estimate = fee / 25;
    assert!(fee % 25 == 0 && vsize_estimate > 100 && vsize_estimate < 400, "fee {fee} at 25 sat/vB for {} inputs", tx.inputs.len());
}

async fn a_payout_stuck_while_fees_rise_is_replaced_at_the_new_rate(backend: Backend) {
    let app = chain_app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    chains.bitcoin.set_fee_rate(2);
    watcher.refresh_fee_rate().await;
    let order = place(&app, &p).await;
    fund_on_chain(&app, &watcher, &order).await;
    action(&app, "markDelivered", &order, &p.provider.access_token).await.ok();
    // The review window passes: the marketplace co-signs the release; the provider signs.
    app.clock.advance(Duration::hours(2));
    assert_eq!(sweep(&app).await, 1);
    let releasing = full(&app, &order, &p.provider.access_token).await;
    let first_txid = releasing["payout"]["txid"].as_str().unwrap().to_owned();
    let escrow = releasing["bitcoinEscrow"].clone();
    submit(&app, &order, &p.provider_wallet.sign(&escrow, releasing["payout"]["psbt"].as_str().unwrap()), &p.provider.access_token).await.ok();
    assert_eq!(watcher.broadcast_pending().await.unwrap(), 1);
    // Fees rise; not yet long enough to call it stuck.
    chains.bitcoin.set_fee_rate(20);
    watcher.refresh_fee_rate().await;
    assert_eq!(watcher.bump_stuck_payouts().await.unwrap(), 0);
    app.clock.advance(agora_api::watcher::bitcoin::BUMP_AFTER + Duration::seconds(1));
    assert_eq!(watcher.bump_stuck_payouts().await.unwrap(), 1);
    let bumped = full(&app, &order, &p.provider.access_token).await;
    let bump = &bumped["chainStatus"]["feeBumps"][0];
    assert_eq!(bump["replacedTxid"], first_txid);
    assert_eq!((bump["fromSatVb"].as_u64(), bump["toSatVb"].as_u64()), (Some(2), Some(20)));
    assert_ne!(bumped["payout"]["txid"], first_txid);
    assert_eq!(bumped["payout"]["signedBy"], json!(["MARKETPLACE"]), "re-signed through the gate; the provider signs again");
    assert_eq!(rules(&bumped), vec!["review_window_passed".to_owned(), "review_window_passed".to_owned()]);
    let fee = sats(&bumped["payout"]["breakdown"]["networkFee"]);
    assert!(fee > 10 * sats(&releasing["payout"]["breakdown"]["networkFee"]) / 2, "at the new rate: {fee}");
    assert_eq!(watcher.bump_stuck_payouts().await.unwrap(), 0, "bumped once");
    submit(&app, &order, &p.provider_wallet.sign(&escrow, bumped["payout"]["psbt"].as_str().unwrap()), &p.provider.access_token).await.ok();
    watcher.broadcast_pending().await.unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = full(&app, &order, &p.provider.access_token).await;
    assert_eq!(settled["status"], "SETTLED", "{}", settled["history"]);
    let txid = settled["settlement"]["txid"].as_str().unwrap().to_owned();
    assert!(txid == first_txid || json!(txid) == bumped["payout"]["txid"], "one of the two confirmed");
    let to_provider: u64 = settled["settlement"]["paid"].as_array().unwrap().iter().filter(|o| o["role"] == "provider").map(|o| sats(&o["amount"])).sum();
    assert!(to_provider > 40_000, "the provider is paid either way: {}", settled["settlement"]);
}

/// The buyer pays, the provider delivers, the buyer releases and vanishes:
/// on the local chain the provider is paid, before the timelock could open.
async fn on_the_chain_a_buyer_who_releases_and_vanishes_cannot_take_the_funds_back(backend: Backend) {
    let app = chain_app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    let order = place(&app, &p).await;
    let (_, funded_at) = fund_on_chain(&app, &watcher, &order).await;
    action(&app, "markDelivered", &order, &p.provider.access_token).await.ok();
    let released = action(&app, "releaseFunds", &order, &p.buyer.access_token).await.ok()["releaseFunds"]["order"].clone();
    submit(&app, &order, &p.provider_wallet.sign(&released["bitcoinEscrow"], released["payout"]["psbt"].as_str().unwrap()), &p.provider.access_token)
        .await
        .ok();
    // The grace is an hour (the test settings); blocks keep coming meanwhile.
    chains.bitcoin.mine(5);
    catch_up(&watcher).await;
    app.clock.advance(Duration::seconds(3601));
    assert_eq!(sweep(&app).await, 1);
    assert_eq!(watcher.broadcast_pending().await.unwrap(), 1);
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = full(&app, &order, &p.provider.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    assert_eq!(settled["settlement"]["outcome"], "RELEASE");
    let tx = chains.bitcoin.transaction(&Txid::from_str(settled["settlement"]["txid"].as_str().unwrap()).unwrap()).unwrap();
    let provider = order["bitcoinEscrow"]["payoutAddresses"]["provider"].as_str().unwrap();
    assert!(paid_to(&tx, provider) > 45_000, "the provider is paid");
    let t = order["bitcoinEscrow"]["timelockBlocks"].as_u64().unwrap();
    assert!(chains.bitcoin.tip().height < funded_at + t, "settled before the refund path could open");
}

/// A dispute neither arbitrator decides: on the local chain the buyer gets
/// its money back (no arbitration fee) before its own timelock would open.
async fn on_the_chain_a_dispute_nobody_decides_refunds_the_buyer_before_the_timelock(backend: Backend) {
    let app = chain_app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    arbitrator(&app, "arb-one").await;
    let p = listing_parties(&app).await;
    let order = place(&app, &p).await;
    let (_, funded_at) = fund_on_chain(&app, &watcher, &order).await;
    let d = open(&app, &order, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    // Response (1 h) + decision (1 h) + escalation (1 h) at the chain's pace.
    for _ in 0..3 {
        chains.bitcoin.mine(8);
        catch_up(&watcher).await;
        app.clock.advance(Duration::hours(1));
        disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    }
    app.clock.advance(Duration::seconds(1));
    disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    assert_eq!(view(&app, &d, &p.buyer.access_token).await.ok()["dispute"]["status"], "FINAL");
    let refunding = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(refunding["status"], "REFUNDING", "{}", refunding["history"]);
    let escrow = refunding["bitcoinEscrow"].clone();
    submit(&app, &order, &p.buyer_wallet.sign(&escrow, refunding["payout"]["psbt"].as_str().unwrap()), &p.buyer.access_token).await.ok();
    assert_eq!(watcher.broadcast_pending().await.unwrap(), 1);
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    assert_eq!(settled["settlement"]["outcome"], "REFUND");
    assert_eq!(settled["settlement"]["byTimelock"], false);
    let tx = chains.bitcoin.transaction(&Txid::from_str(settled["settlement"]["txid"].as_str().unwrap()).unwrap()).unwrap();
    let buyer = order["bitcoinEscrow"]["payoutAddresses"]["buyer"].as_str().unwrap();
    let fee = sats(&refunding["payout"]["breakdown"]["networkFee"]);
    assert_eq!(paid_to(&tx, buyer), 50_000 - fee, "everything but the network fee");
    let t = order["bitcoinEscrow"]["timelockBlocks"].as_u64().unwrap();
    assert!(chains.bitcoin.tip().height < funded_at + t, "refunded before the buyer's own path opens");
}

/// A funded, delivered order on the fake chain, with short periods.
async fn quick_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |s| {
        s.orders.review_period_secs = 3600;
        s.orders.dispute_response_secs = 3600;
        s.orders.decision_period_secs = 7200;
        s.orders.appeal_window_secs = 3600;
        s.orders.appeal_decision_period_secs = 3600;
        s.orders.release_signing_grace_secs = 1800;
    })
    .await
}

async fn a_release_the_buyer_never_signs_is_completed_by_the_marketplace_and_the_provider(backend: Backend) {
    let app = quick_app(backend).await;
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 50_000, 1).await;
    action(&app, "markDelivered", &order, &p.provider.access_token).await.ok();
    let released = action(&app, "releaseFunds", &order, &p.buyer.access_token).await.ok()["releaseFunds"]["order"].clone();
    let psbt = released["payout"]["psbt"].as_str().unwrap().to_owned();
    // The provider signs; the buyer goes silent.
    submit(&app, &order, &p.provider_wallet.sign(&released["bitcoinEscrow"], &psbt), &p.provider.access_token).await.ok();
    assert_eq!(sweep(&app).await, 0, "the buyer still has its grace to sign");
    let waiting = full(&app, &order, &p.provider.access_token).await;
    assert_eq!(waiting["payout"]["complete"], false);
    assert!(rules(&waiting).is_empty());
    app.clock.advance(Duration::seconds(1800 + 1));
    assert_eq!(sweep(&app).await, 1);
    let done = full(&app, &order, &p.provider.access_token).await;
    assert_eq!(done["payout"]["complete"], true, "marketplace + provider complete the release");
    assert_eq!(rules(&done), vec!["unsigned_release".to_owned()]);
    let tx = transaction(done["payout"]["transactionHex"].as_str().unwrap());
    verify_spends(&tx, &spent_outputs(&released["bitcoinEscrow"], &tx, &[50_000])).expect("bitcoinconsensus");
    assert_eq!(sweep(&app).await, 0, "signed once");
}

async fn arbitration_that_stalls_is_escalated_then_resolved_before_the_timelock(backend: Backend) {
    let app = quick_app(backend).await;
    let first = arbitrator(&app, "arb-one").await;
    let second = arbitrator(&app, "arb-two").await;
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 50_000, 1).await;
    let d = open(&app, &order, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    let assigned = d["arbitratorId"].clone();
    let other = if assigned == json!(first.user_id) { &second } else { &first };
    // Response deadline (1 h) + decision period (2 h): no decision yet.
    let opened_at = app.clock.now();
    app.clock.advance(Duration::hours(3) - Duration::minutes(1));
    disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    assert_eq!(view(&app, &d, &p.buyer.access_token).await.ok()["dispute"]["arbitratorId"], assigned);
    advance_past(&app, opened_at + Duration::hours(3));
    disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    let moved = view(&app, &d, &p.buyer.access_token).await.ok()["dispute"].clone();
    assert_eq!(moved["arbitratorId"], json!(other.user_id), "an overdue case goes to another arbitrator");
    assert_eq!(moved["status"], "OPEN");
    // The second arbitrator is silent too: the escrow returns to the buyer.
    advance_past(&app, app.clock.now() + Duration::hours(2));
    disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    let ended = view(&app, &d, &p.buyer.access_token).await.ok()["dispute"].clone();
    assert_eq!(ended["status"], "FINAL");
    assert_eq!(ended["decision"]["providerBps"], 0);
    let refunding = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(refunding["status"], "REFUNDING");
    assert_eq!(rules(&refunding), vec!["arbitration_lapsed".to_owned()], "the marketplace co-signed the default");
    let b = &refunding["payout"]["breakdown"];
    assert_eq!((sats(&b["provider"]), sats(&b["arbitrationFee"])), (0, 0), "no fee for a decision nobody made");
    assert_eq!(sats(&b["buyer"]) + sats(&b["networkFee"]), 50_000);
}

async fn an_appeal_nobody_decides_leaves_the_first_decision_standing(backend: Backend) {
    let app = quick_app(backend).await;
    let first = arbitrator(&app, "arb-one").await;
    let second = arbitrator(&app, "arb-two").await;
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 50_000, 1).await;
    let d = open(&app, &order, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    let decider = if d["arbitratorId"] == json!(first.user_id) { &first } else { &second };
    decide(&app, &d, 7_000, &decider.access_token, None).await.ok();
    appeal(&app, &d, &p.buyer.access_token).await.ok();
    advance_past(&app, app.clock.now() + Duration::hours(1));
    disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    let ended = view(&app, &d, &p.buyer.access_token).await.ok()["dispute"].clone();
    assert_eq!(ended["status"], "FINAL");
    assert_eq!(ended["decision"]["providerBps"], 7_000, "the first decision stands");
    let paying = full(&app, &order, &p.buyer.access_token).await;
    assert_eq!(paying["status"], "SETTLING");
    assert_eq!(rules(&paying), vec!["arbitration_decision:7000".to_owned()]);
}

async fn the_timelock_covers_arbitration_and_follows_the_chains_pace(backend: Backend) {
    // Blocks every 60 s (48 s counted): the timelock is the longest path in
    // blocks of that pace, plus the margin.
    let app = TestApp::spawn_with(backend, |s| {
        s.bitcoin.block_interval_secs = Some(60);
        s.bitcoin.timelock_margin_blocks = 10;
        s.orders.funding_window_secs = 3600;
        s.orders.review_period_secs = 3600;
        s.orders.dispute_response_secs = 3600;
        s.orders.decision_period_secs = 3600;
        s.orders.appeal_window_secs = 3600;
        s.orders.appeal_decision_period_secs = 3600;
        s.orders.release_signing_grace_secs = 3600;
    })
    .await;
    let p = parties(&app, json!({"deliveryWindowHours": 1})).await;
    let order = place(&app, &p).await;
    // funding 1 h + delivery 1 h + review 1 h + response 1 h + 2 × decision
    // 1 h + appeal window 1 h + appeal decision 1 h = 8 h = 600 blocks of 48 s.
    assert_eq!(order["bitcoinEscrow"]["timelockBlocks"], 600 + 10 + 1);

    // Periods that cannot fit in the largest relative timelock are refused.
    let app = TestApp::spawn_with(backend, |s| {
        s.bitcoin.block_interval_secs = Some(60);
        s.orders.appeal_window_secs = 90 * 24 * 3600;
    })
    .await;
    let p = parties(&app, json!({"deliveryWindowHours": 1})).await;
    let refused = crate::orders_btc::place_with(&app, &p, json!({}), &p.buyer.access_token).await;
    assert_eq!(refused.error_code(), Some("CONFLICT"), "{:?}", refused.body);
    assert_eq!(refused.error()["extensions"]["reason"], "DELIVERY_WINDOW_TOO_LONG");
}

async fn one_order_that_cannot_be_paid_out_does_not_block_the_others(backend: Backend) {
    let app = quick_app(backend).await;
    let p = parties(&app, json!({})).await;
    let broken = place(&app, &p).await;
    fund(&app, &broken, 50_000, 1).await;
    let healthy = place(&app, &p).await;
    fund(&app, &healthy, 50_000, 1).await;
    // Corrupt the first order's stored funding so no payout can be built for it.
    let db = &app.state.db;
    let id = order_uuid(&broken);
    let record = agora_persistence::orders::find_order(db, id).await.unwrap().unwrap();
    let corrupted = record.escrow_json.replace("\"value\":50000", "\"value\":1");
    assert_ne!(corrupted, record.escrow_json);
    agora_persistence::orders::update_order(db, id, record.version, &record.status, &record.state_json, &corrupted, app.clock.now())
        .await
        .unwrap();
    advance_past(&app, deadline(&healthy["deadlines"]["deliveryBy"]));
    assert_eq!(sweep(&app).await, 1, "the healthy order is refunded");
    assert_eq!(get_order(&app, &healthy, &p.buyer.access_token).await["status"], "REFUNDING");
    let failed = full(&app, &broken, &p.buyer.access_token).await;
    assert_eq!(failed["status"], "FUNDED");
    let failures = |o: &Value| o["history"].as_array().unwrap().iter().filter(|e| e["event"] == "AutomaticActionFailed").count();
    assert_eq!(failures(&failed), 1, "the failure shows in the order");
    assert_eq!(sweep(&app).await, 0);
    assert_eq!(failures(&full(&app, &broken, &p.buyer.access_token).await), 1, "reported once, not on every sweep");
    let q = "{ myNotifications(first: 50) { edges { node { kind } } } }";
    let kinds = app.gql(q, json!({}), Some(&p.buyer.access_token)).await.ok();
    assert!(kinds.to_string().contains("ACTION_FAILED"), "the buyer is told: {kinds}");
}

for_both_backends!(
    a_deposit_after_funding_neither_freezes_the_payout_nor_is_kept,
    outputs_confirmed_in_different_blocks_are_reorged_each_on_its_own,
    a_spend_agora_did_not_prepare_settles_the_order_from_the_chain,
    a_release_the_buyer_never_signs_is_completed_by_the_marketplace_and_the_provider,
    arbitration_that_stalls_is_escalated_then_resolved_before_the_timelock,
    an_appeal_nobody_decides_leaves_the_first_decision_standing,
    the_timelock_covers_arbitration_and_follows_the_chains_pace,
    one_order_that_cannot_be_paid_out_does_not_block_the_others,
    payouts_take_the_chains_fee_estimate_within_the_configured_bounds,
    a_payout_stuck_while_fees_rise_is_replaced_at_the_new_rate,
    on_the_chain_a_buyer_who_releases_and_vanishes_cannot_take_the_funds_back,
    on_the_chain_a_dispute_nobody_decides_refunds_the_buyer_before_the_timelock,
);
