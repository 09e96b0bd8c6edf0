//! Bitcoin orders against the local regtest chain, watched by the real
//! watcher through Bitcoin Core JSON-RPC and through Esplora: funding seen and
//! confirmed, payouts broadcast and confirmed, the buyer's time-locked refund,
//! reorgs, under- and over-funding, crash safety, one watcher at a time.

use std::str::FromStr;

use agora_api::chains::{DEVNET_RPC_PASSWORD, DEVNET_RPC_USER};
use agora_api::watcher::bitcoin::{BitcoinWatcher, Step};
use agora_api::watcher::lock::WatcherLock;
use agora_escrow::btc::{build_refund, finalize_refund, sign_escrow_input, FundingUtxo};
use agora_escrow::source::bitcoin_rpc::BitcoinCoreRpc;
use agora_escrow::source::esplora::Esplora;
use agora_escrow::source::BitcoinSource;
use agora_tests::wallet::descriptor_of;
use agora_tests::{Backend, TestApp};
use bitcoin::{Address, OutPoint};
use serde_json::{json, Value};

use crate::orders_btc::{action, get_order, parties, place, submit, Parties};

/// Short windows so the timelock is a few dozen blocks: 9 h of deadlines at 8
/// minutes a block plus a 6-block margin.
pub async fn app(backend: Backend) -> TestApp {
    TestApp::spawn_with_chains_and(backend, |s| {
        s.orders.funding_window_secs = 3600;
        s.orders.review_period_secs = 3600;
        s.orders.dispute_response_secs = 3600;
        s.orders.decision_period_secs = 3600;
        s.orders.appeal_window_secs = 3600;
        s.orders.appeal_decision_period_secs = 3600;
        s.orders.release_signing_grace_secs = 3600;
        s.bitcoin.timelock_margin_blocks = 6;
    })
    .await
}

pub fn rpc(app: &TestApp) -> BitcoinCoreRpc {
    BitcoinCoreRpc::new(
        &app.chains().bitcoin_rpc_url,
        Some((DEVNET_RPC_USER.to_owned(), DEVNET_RPC_PASSWORD.to_owned())),
    )
}

fn esplora(app: &TestApp) -> Esplora {
    Esplora::new(&app.chains().esplora_url)
}

/// Steps the watcher until it has nothing left to do; returns the steps.
pub async fn catch_up<S: BitcoinSource>(w: &BitcoinWatcher<S>) -> Vec<Step> {
    let mut steps = Vec::new();
    loop {
        let step = w.step().await.expect("watcher step");
        if step == Step::Idle {
            return steps;
        }
        steps.push(step);
    }
}

pub async fn listing_parties(app: &TestApp) -> Parties {
    parties(app, json!({"deliveryWindowHours": 1})).await
}

pub fn escrow_address(order: &Value) -> Address {
    Address::from_str(order["bitcoinEscrow"]["address"].as_str().unwrap()).unwrap().assume_checked()
}

pub async fn status(app: &TestApp, order: &Value, p: &Parties) -> String {
    get_order(app, order, &p.buyer.access_token).await["status"].as_str().unwrap().to_owned()
}

pub async fn history(app: &TestApp, order: &Value, p: &Parties) -> String {
    let q = "query($id: ID!) { order(id: $id) { history { event detail } } }";
    app.gql(q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok()["order"]["history"].to_string()
}

/// The whole lifecycle on the chain through `source`.
async fn lifecycle<S: BitcoinSource>(app: &TestApp, source: S) {
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), source);
    catch_up(&watcher).await;
    let p = listing_parties(app).await;
    let order = place(app, &p).await;

    let funding_txid = chains.bitcoin.faucet(&escrow_address(&order), 50_000).unwrap();
    catch_up(&watcher).await;
    assert_eq!(status(app, &order, &p).await, "AWAITING_FUNDING", "unconfirmed funds do not count");
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    assert_eq!(status(app, &order, &p).await, "FUNDED");
    let q = "query($id: ID!) { order(id: $id) { bitcoinEscrow { confirmations fundingUtxos { amount } } } }";
    let escrow = app.gql(q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(escrow["order"]["bitcoinEscrow"]["confirmations"], 1);
    assert_eq!(escrow["order"]["bitcoinEscrow"]["fundingUtxos"][0]["amount"], "50000");

    action(app, "markDelivered", &order, &p.provider.access_token).await.ok();
    let releasing = action(app, "releaseFunds", &order, &p.buyer.access_token).await.ok()["releaseFunds"]["order"].clone();
    let psbt = releasing["payout"]["psbt"].as_str().unwrap().to_owned();
    submit(app, &order, &p.buyer_wallet.sign(&releasing["bitcoinEscrow"], &psbt), &p.buyer.access_token).await.ok();
    let done = submit(app, &order, &p.provider_wallet.sign(&releasing["bitcoinEscrow"], &psbt), &p.provider.access_token)
        .await
        .ok();
    let txid = done["submitPayoutSignature"]["order"]["payout"]["txid"].as_str().unwrap().to_owned();

    assert_eq!(watcher.broadcast_pending().await.unwrap(), 1);
    // Sent once; not again while it waits for a block.
    assert_eq!(watcher.broadcast_pending().await.unwrap(), 0);
    let txid = bitcoin::Txid::from_str(&txid).unwrap();
    assert!(chains.bitcoin.transaction(&txid).is_some(), "the payout is in the node's mempool");
    assert_eq!(status(app, &order, &p).await, "RELEASING");
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = get_order(app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    assert_eq!(settled["settlement"]["txid"], txid.to_string());
    let q = "query($id: ID!) { order(id: $id) { chainStatus { chain tip fundingConfirmations fundingTransactions payoutTransactions payoutBroadcast payoutConfirmations } } }";
    let cs = app.gql(q, json!({"id": order["id"]}), Some(&p.buyer.access_token)).await.ok()["order"]["chainStatus"].clone();
    assert_eq!(cs["chain"], "bitcoin");
    assert_eq!(cs["tip"], json!(chains.bitcoin.tip().height));
    assert_eq!(cs["fundingTransactions"], json!([funding_txid.to_string()]));
    assert_eq!(cs["payoutTransactions"], json!([txid.to_string()]));
    assert_eq!(cs["payoutBroadcast"], true);
    assert_eq!(cs["payoutConfirmations"], 1);
}

async fn an_order_settles_on_the_local_chain_watched_through_bitcoin_core_rpc(backend: Backend) {
    let app = app(backend).await;
    lifecycle(&app, rpc(&app)).await;
}

async fn an_order_settles_on_the_local_chain_watched_through_esplora(backend: Backend) {
    let app = app(backend).await;
    lifecycle(&app, esplora(&app)).await;
}

async fn the_buyers_timelocked_refund_is_refused_early_then_detected_and_settles_the_order(backend: Backend) {
    let app = app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    let order = place(&app, &p).await;
    let funding_txid = chains.bitcoin.faucet(&escrow_address(&order), 50_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let funded = get_order(&app, &order, &p.buyer.access_token).await;
    let escrow = descriptor_of(&funded["bitcoinEscrow"]);
    let funding_tx = chains.bitcoin.transaction(&funding_txid).unwrap();
    let vout = funding_tx.output.iter().position(|o| o.script_pubkey == escrow.script_pubkey()).unwrap();
    let utxo = FundingUtxo {
        outpoint: OutPoint::new(funding_txid, vout as u32),
        value: funding_tx.output[vout].value,
    };
    let to = p.buyer_wallet.address();
    let refund = build_refund(&escrow, &[utxo], &to, 2).unwrap();
    let mut psbt = refund.psbt.clone();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    for i in 0..psbt.inputs.len() {
        sign_escrow_input(&secp, &mut psbt, i, &escrow, &p.buyer_refund_wallet.secret()).unwrap();
    }
    let tx = finalize_refund(&escrow, &refund.expected, &psbt).unwrap();
    assert!(chains.bitcoin.submit(&tx).is_err(), "the refund path is closed before T blocks");
    let t = funded["bitcoinEscrow"]["timelockBlocks"].as_u64().unwrap() as u32;
    chains.bitcoin.mine(t);
    chains.bitcoin.submit(&tx).expect("the refund path opens after T blocks");
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    let settled = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    assert_eq!(settled["settlement"]["byTimelock"], true);
    assert_eq!(settled["settlement"]["outcome"], "REFUND");
    // The margin alert fired before the path opened.
    assert!(history(&app, &order, &p).await.contains("TimelockMarginReached"));
}

async fn a_reorg_that_removes_the_funding_reverts_the_order_until_it_is_mined_again(backend: Backend) {
    let app = app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), esplora(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    let order = place(&app, &p).await;
    let funding = chains.bitcoin.faucet(&escrow_address(&order), 50_000).unwrap();
    let funding_tx = chains.bitcoin.transaction(&funding).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    assert_eq!(status(&app, &order, &p).await, "FUNDED");

    chains.bitcoin.reorg(1, &[funding]).unwrap();
    let steps = catch_up(&watcher).await;
    assert!(steps.iter().any(|s| matches!(s, Step::Reorged { .. })), "{steps:?}");
    assert_eq!(status(&app, &order, &p).await, "AWAITING_FUNDING");
    assert!(history(&app, &order, &p).await.contains("FundingReorged"));

    chains.bitcoin.submit(&funding_tx).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    assert_eq!(status(&app, &order, &p).await, "FUNDED");
}

async fn under_and_over_funding_are_reported(backend: Backend) {
    let app = app(backend).await;
    let chains = app.chains();
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;
    let p = listing_parties(&app).await;
    let under = place(&app, &p).await;
    chains.bitcoin.faucet(&escrow_address(&under), 30_000).unwrap();
    let over = place(&app, &p).await;
    chains.bitcoin.faucet(&escrow_address(&over), 60_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    assert_eq!(status(&app, &under, &p).await, "AWAITING_FUNDING");
    assert!(history(&app, &under, &p).await.contains("Underfunded"));
    let o = get_order(&app, &over, &p.buyer.access_token).await;
    assert_eq!(o["status"], "FUNDED");
    assert_eq!(o["fundedAmount"], "60000");
    assert!(history(&app, &over, &p).await.contains("excess: 10000"));
    // Topping up the under-funded escrow funds it.
    chains.bitcoin.faucet(&escrow_address(&under), 20_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&watcher).await;
    assert_eq!(status(&app, &under, &p).await, "FUNDED");
}

async fn a_crash_mid_block_applies_nothing_and_the_restart_applies_everything_once(backend: Backend) {
    let app = app(backend).await;
    let chains = app.chains();
    catch_up(&BitcoinWatcher::new(app.state.clone(), rpc(&app))).await;
    let p = listing_parties(&app).await;
    let first = place(&app, &p).await;
    let second = place(&app, &p).await;
    chains.bitcoin.faucet(&escrow_address(&first), 50_000).unwrap();
    chains.bitcoin.faucet(&escrow_address(&second), 50_000).unwrap();
    chains.bitcoin.mine(1);
    // The first watcher dies after one of the block's two order events.
    let crashing = BitcoinWatcher::new(app.state.clone(), rpc(&app)).fail_after_events(Some(1));
    assert!(crashing.step().await.is_err());
    assert_eq!(status(&app, &first, &p).await, "AWAITING_FUNDING");
    assert_eq!(status(&app, &second, &p).await, "AWAITING_FUNDING");
    // A new watcher (the restart) applies the block exactly once.
    let restarted = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&restarted).await;
    catch_up(&restarted).await;
    for order in [&first, &second] {
        assert_eq!(status(&app, order, &p).await, "FUNDED");
        let h = history(&app, order, &p).await;
        assert_eq!(h.matches("\"FundingSeen\"").count(), 1, "{h}");
    }
    // Killed between blocks: nothing to redo.
    chains.bitcoin.mine(1);
    catch_up(&BitcoinWatcher::new(app.state.clone(), rpc(&app))).await;
    assert_eq!(history(&app, &first, &p).await.matches("\"FundingSeen\"").count(), 1);
}

/// The watcher keeps its watch index in memory between blocks. An order placed
/// after the index was built must be matched in the next block, and a watcher
/// that leads again after another one moved the chain must not trust what it
/// remembered: here the other leader recorded the funding outputs, which the
/// first needs to see the payout spend them.
async fn orders_placed_while_watching_and_a_change_of_leader_keep_the_watch_index_right(backend: Backend) {
    let app = app(backend).await;
    let chains = app.chains();
    let first_leader = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&first_leader).await;
    let p = listing_parties(&app).await;
    let early = place(&app, &p).await;
    chains.bitcoin.mine(1);
    catch_up(&first_leader).await;
    // Placed after the first leader indexed every order there was.
    let late = place(&app, &p).await;
    chains.bitcoin.faucet(&escrow_address(&late), 50_000).unwrap();
    chains.bitcoin.mine(1);
    catch_up(&first_leader).await;
    assert_eq!(status(&app, &late, &p).await, "FUNDED", "an order placed while the watcher runs is seen in the next block");

    // Another process leads for a block and sees the early order funded.
    chains.bitcoin.faucet(&escrow_address(&early), 50_000).unwrap();
    chains.bitcoin.mine(1);
    let second_leader = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    assert_eq!(catch_up(&second_leader).await.len(), 1);
    assert_eq!(status(&app, &early, &p).await, "FUNDED");

    // The first leads again: the payout spends outputs only the second saw.
    action(&app, "markDelivered", &early, &p.provider.access_token).await.ok();
    let releasing = action(&app, "releaseFunds", &early, &p.buyer.access_token).await.ok()["releaseFunds"]["order"].clone();
    let psbt = releasing["payout"]["psbt"].as_str().unwrap().to_owned();
    submit(&app, &early, &p.buyer_wallet.sign(&releasing["bitcoinEscrow"], &psbt), &p.buyer.access_token).await.ok();
    submit(&app, &early, &p.provider_wallet.sign(&releasing["bitcoinEscrow"], &psbt), &p.provider.access_token).await.ok();
    assert_eq!(first_leader.broadcast_pending().await.unwrap(), 1);
    chains.bitcoin.mine(1);
    catch_up(&first_leader).await;
    assert_eq!(status(&app, &early, &p).await, "SETTLED");
    assert_eq!(status(&app, &late, &p).await, "FUNDED");
}

async fn only_one_watcher_per_chain_holds_the_lock(backend: Backend) {
    let app = app(backend).await;
    let state = &app.state;
    let first = WatcherLock::try_acquire(&state.db, &app.data_dir, "bitcoin").await.unwrap();
    assert!(first.is_some());
    // A second process (another pool connection or another lock file handle).
    let db2 = agora_persistence::db::connect(&app.database_url(), 2).await.unwrap();
    let second = WatcherLock::try_acquire(&db2, &app.data_dir, "bitcoin").await.unwrap();
    assert!(second.is_none(), "two watchers for one chain");
    let other_chain = WatcherLock::try_acquire(&db2, &app.data_dir, "xrpl").await.unwrap();
    assert!(other_chain.is_some(), "chains are elected independently");
    drop(first);
    // Postgres releases the lock with the session; give the pool a moment.
    let mut taken = None;
    for _ in 0..20 {
        taken = WatcherLock::try_acquire(&db2, &app.data_dir, "bitcoin").await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(taken.is_some(), "the lock is free once its holder is gone");
}

chain_tests!(
    an_order_settles_on_the_local_chain_watched_through_bitcoin_core_rpc,
    an_order_settles_on_the_local_chain_watched_through_esplora,
    the_buyers_timelocked_refund_is_refused_early_then_detected_and_settles_the_order,
    a_reorg_that_removes_the_funding_reverts_the_order_until_it_is_mined_again,
    under_and_over_funding_are_reported,
    a_crash_mid_block_applies_nothing_and_the_restart_applies_everything_once,
    orders_placed_while_watching_and_a_change_of_leader_keep_the_watch_index_right,
    only_one_watcher_per_chain_holds_the_lock,
);
