//! XRP orders against the local XRPL devnet, watched by the real watcher over
//! rippled's WebSocket and JSON-RPC: the escrow account set up on the ledger
//! before funding, the deposit seen, the multisigned payout submitted and
//! validated, and a payout whose LastLedgerSequence passed rebuilt.

use agora_api::watcher::xrpl::{Step, XrplWatcher};
use agora_escrow::source::rippled::RippledSource;
use agora_escrow::source::XrplSource;
use agora_escrow::xrpl::transfer::{sign_xrp_payment, XrpPayment};
use agora_escrow::xrpl::{SigningKey, XrplAddress};
use agora_tests::xrpl::{self, BUYER_ADDRESS, BUYER_SEED, PROVIDER_ADDRESS, PROVIDER_SEED};
use agora_tests::{Backend, TestApp};
use serde_json::Value;

use crate::orders_xrpl::{action, parties, place, sign_all, submit, view, Parties};

pub async fn catch_up<S: XrplSource>(w: &XrplWatcher<S>) {
    while w.step().await.expect("watcher step") != Step::Idle {}
}

/// Closes a ledger, lets the watcher read it and send what is due.
pub async fn tick<S: XrplSource>(app: &TestApp, w: &XrplWatcher<S>) {
    app.chains().xrpl.close_ledger();
    catch_up(w).await;
    w.submit_pending().await.expect("submit");
}

pub async fn setup(backend: Backend) -> Option<(TestApp, XrplWatcher<RippledSource>, Parties, Value)> {
    setup_with(backend, |_| {}).await
}

/// The app on the local chains, the watcher, and the parties with funded XRPL
/// accounts; no order yet.
pub async fn start_with(
    backend: Backend,
    tweak: impl FnOnce(&mut agora_api::config::Settings),
) -> Option<(TestApp, XrplWatcher<RippledSource>, Parties)> {
    if !xrpl::available() {
        return None;
    }
    let app = TestApp::spawn_with_chains_and(backend, tweak).await;
    let chains = app.chains().clone();
    let source = RippledSource::connect(&chains.xrpl_ws_url, &chains.xrpl_rpc_url).await.unwrap();
    let watcher = XrplWatcher::new(app.state.clone(), source);
    chains.xrpl.faucet(BUYER_ADDRESS, 100_000_000).unwrap();
    chains.xrpl.faucet(PROVIDER_ADDRESS, 20_000_000).unwrap();
    chains.xrpl.close_ledger();
    catch_up(&watcher).await;
    let p = parties(&app).await;
    Some((app, watcher, p))
}

pub async fn setup_with(
    backend: Backend,
    tweak: impl FnOnce(&mut agora_api::config::Settings),
) -> Option<(TestApp, XrplWatcher<RippledSource>, Parties, Value)> {
    let (app, watcher, p) = start_with(backend, tweak).await?;
    let order = place(&app, &p).await;
    // The watcher sends the escrow account's creation, then its signer list and
    // master-key switch, each once the previous one is validated.
    watcher.submit_pending().await.unwrap();
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    Some((app, watcher, p, order))
}

pub async fn pay_deposit(app: &TestApp, escrow: &str, drops: u64) {
    let key = SigningKey::from_seed(BUYER_SEED).unwrap();
    let info = app.chains().xrpl.account(BUYER_ADDRESS).expect("buyer account");
    let signed = sign_xrp_payment(
        &key,
        &XrpPayment {
            destination: XrplAddress::parse(escrow).unwrap(),
            destination_tag: None,
            amount_drops: drops,
            fee_drops: 12,
            sequence: info.sequence,
            last_ledger_sequence: None,
        },
    )
    .unwrap();
    let outcome = app.chains().xrpl.submit(&signed.blob);
    assert!(outcome.accepted(), "{outcome:?}");
}

async fn an_xrp_order_is_set_up_funded_released_and_settled_on_the_ledger(backend: Backend) {
    let Some((app, watcher, p, order)) = setup(backend).await else { return };
    let ready = view(&app, &order, &p.buyer.access_token).await;
    let escrow = ready["xrplEscrow"]["account"].as_str().unwrap().to_owned();
    assert_eq!(ready["xrplEscrow"]["setupStatus"], "READY");
    // What the buyer verifies is what the ledger shows.
    let info = app.chains().xrpl.account(&escrow).expect("the escrow account exists");
    assert!(info.master_disabled);
    assert_eq!(info.signer_quorum, Some(2));
    let mut on_ledger: Vec<String> = info.signer_entries.iter().map(|(a, _)| a.clone()).collect();
    on_ledger.sort();
    let mut promised: Vec<String> = ready["xrplEscrow"]["verifyBeforeFunding"]["signerEntries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["account"].as_str().unwrap().to_owned())
        .collect();
    promised.sort();
    assert_eq!(on_ledger, promised);

    pay_deposit(&app, &escrow, 25_000_000).await;
    tick(&app, &watcher).await;
    assert_eq!(view(&app, &order, &p.buyer.access_token).await["status"], "FUNDED");

    action(&app, "markDelivered", &order, &p.provider.access_token).await;
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    submit(&app, &order, &sign_all(&releasing, BUYER_SEED), &p.buyer.access_token).await.ok();
    submit(&app, &order, &sign_all(&releasing, PROVIDER_SEED), &p.provider.access_token).await.ok();
    let provider_before = app.chains().xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops;
    watcher.submit_pending().await.unwrap();
    tick(&app, &watcher).await;
    let settled = view(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED", "{settled}");
    let provider_after = app.chains().xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops;
    let share: u64 = releasing["payout"]["breakdown"]["provider"].as_str().unwrap().parse().unwrap();
    assert_eq!(provider_after - provider_before, share);
}

async fn a_payout_whose_last_ledger_passed_is_rebuilt_and_signed_again(backend: Backend) {
    // A one-minute signing window: 20 ledgers at the fastest pace.
    let Some((app, watcher, p, order)) = setup_with(backend, |s| s.xrpl.signing_window_minutes = 1).await else { return };
    let escrow = view(&app, &order, &p.buyer.access_token).await["xrplEscrow"]["account"].as_str().unwrap().to_owned();
    pay_deposit(&app, &escrow, 25_000_000).await;
    tick(&app, &watcher).await;
    action(&app, "markDelivered", &order, &p.provider.access_token).await;
    // Ledgers pass between funding and release: the signing window counts
    // from the ledger validated when the payout is built, not from funding.
    for _ in 0..30 {
        app.chains().xrpl.close_ledger();
    }
    catch_up(&watcher).await;
    let validated_at_release = app.state.tips.xrpl();
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    let old_lls = releasing["payout"]["xrplTransactions"][0]["lastLedgerSequence"].as_u64().unwrap();
    assert_eq!(old_lls, validated_at_release + 20, "a payout is born with its whole signing window");
    // Only the buyer signs; the provider waits until the payout can no longer be validated.
    submit(&app, &order, &sign_all(&releasing, BUYER_SEED), &p.buyer.access_token).await.ok();
    for _ in 0..25 {
        app.chains().xrpl.close_ledger();
    }
    catch_up(&watcher).await;
    watcher.submit_pending().await.unwrap();
    let rebuilt = view(&app, &order, &p.buyer.access_token).await;
    let new_lls = rebuilt["payout"]["xrplTransactions"][0]["lastLedgerSequence"].as_u64().unwrap();
    assert!(new_lls > old_lls + 20, "{old_lls} -> {new_lls}");
    assert_eq!(rebuilt["payout"]["complete"], false);
    assert_eq!(rebuilt["payout"]["signedBy"], serde_json::json!([]), "old signatures do not carry over");
    let history = app
        .gql(
            "query($id: ID!) { order(id: $id) { history { event detail } } }",
            serde_json::json!({ "id": order["id"] }),
            Some(&p.buyer.access_token),
        )
        .await;
    let why = history.body["data"]["order"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"] == "PayoutRebuilt")
        .unwrap_or_else(|| panic!("the rebuild is in the history: {}", history.body))["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains(&format!("expired at ledger {old_lls}")), "{why}");
    assert!(why.contains("signed by buyer"), "{why}");
    assert!(why.contains("sign them again"), "{why}");
    submit(&app, &order, &sign_all(&rebuilt, BUYER_SEED), &p.buyer.access_token).await.ok();
    submit(&app, &order, &sign_all(&rebuilt, PROVIDER_SEED), &p.provider.access_token).await.ok();
    watcher.submit_pending().await.unwrap();
    tick(&app, &watcher).await;
    assert_eq!(view(&app, &order, &p.buyer.access_token).await["status"], "SETTLED");
}

chain_tests!(
    an_xrp_order_is_set_up_funded_released_and_settled_on_the_ledger,
    a_payout_whose_last_ledger_passed_is_rebuilt_and_signed_again,
);
