//! XRP orders that settle whoever acts first and whatever the ledger refuses,
//! on the local XRPL chain through HTTP and the real watcher: a deposit that
//! arrives before the escrow account is locked, orders placed at the same
//! moment, a payout share the ledger refuses.

use agora_domain::clock::Clock;
use agora_escrow::xrpl::sequence_of;
use agora_tests::xrpl::{self, BUYER_SEED, PROVIDER_ADDRESS, PROVIDER_SEED};
use agora_tests::{Backend, TestApp};
use serde_json::{json, Value};

use crate::chains_xrpl::{catch_up, pay_deposit, setup, start_with, tick};
use crate::orders_xrpl::{action, place, sign_all, submit, view, FIELDS};

async fn history(app: &TestApp, order: &Value, token: &str) -> Vec<(String, String)> {
    let h = app
        .gql("query($id: ID!) { order(id: $id) { history { event detail } } }", json!({ "id": order["id"] }), Some(token))
        .await;
    h.body["data"]["order"]["history"]
        .as_array()
        .unwrap_or_else(|| panic!("history: {}", h.body))
        .iter()
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["detail"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn balance(app: &TestApp, address: &str) -> u64 {
    app.chains().xrpl.account(address).map_or(0, |a| a.balance_drops)
}

/// Finding 1: the buyer pays the escrow address right after `placeOrder`, so
/// its deposit creates the account (master key on, no signer list). The order
/// is not funded until the lock is read back from the ledger; the set-up is
/// signed for the account's real Sequence and completes; the deposit then
/// counts, once, and is paid out to the drop.
async fn an_early_deposit_counts_only_once_the_lock_holds(backend: Backend) {
    let Some((app, watcher, p)) = start_with(backend, |_| {}).await else { return };
    let order = place(&app, &p).await;
    let escrow = order["xrplEscrow"]["account"].as_str().unwrap().to_owned();
    pay_deposit(&app, &escrow, 25_000_000).await;
    app.chains().xrpl.close_ledger();
    catch_up(&watcher).await;
    let early = app.chains().xrpl.account(&escrow).expect("the deposit created the account");
    assert!(!early.master_disabled, "nobody locked it yet");
    let waiting = view(&app, &order, &p.buyer.access_token).await;
    assert_eq!(waiting["status"], "AWAITING_FUNDING", "a deposit into an unlocked account does not fund: {waiting}");
    assert!(history(&app, &order, &p.buyer.access_token).await.iter().any(|(e, _)| e == "DepositBeforeLock"));

    // The watcher sends the reserve, reads the account back and locks it.
    watcher.submit_pending().await.unwrap();
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    let funded = view(&app, &order, &p.buyer.access_token).await;
    assert_eq!(funded["xrplEscrow"]["setupStatus"], "READY", "{funded}");
    assert_eq!(funded["status"], "FUNDED", "the early deposit counts once the lock holds: {funded}");
    assert_eq!(funded["xrplEscrow"]["depositDrops"], "25000000");
    let signer_list = funded["xrplEscrow"]["setupTransactions"]["signerListSet"]["blob"].as_str().unwrap();
    assert_eq!(sequence_of(signer_list), Some(early.sequence), "signed for the Sequence the ledger gave the account");
    let locked = app.chains().xrpl.account(&escrow).unwrap();
    assert!(locked.master_disabled);
    assert_eq!(locked.signer_quorum, Some(2));

    action(&app, "markDelivered", &order, &p.provider.access_token).await;
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    submit(&app, &order, &sign_all(&releasing, BUYER_SEED), &p.buyer.access_token).await.ok();
    submit(&app, &order, &sign_all(&releasing, PROVIDER_SEED), &p.provider.access_token).await.ok();
    let before = balance(&app, PROVIDER_ADDRESS);
    watcher.submit_pending().await.unwrap();
    tick(&app, &watcher).await;
    let settled = view(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED", "{settled}");
    let share: u64 = releasing["payout"]["breakdown"]["provider"].as_str().unwrap().parse().unwrap();
    assert_eq!(balance(&app, PROVIDER_ADDRESS) - before, share);
}

/// Finding 6: three orders placed at the same moment get their escrow
/// accounts in the same ledgers — each funding Payment on its own Sequence of
/// the operating account, none waiting for another's to expire.
async fn orders_placed_together_are_set_up_together(backend: Backend) {
    let Some((app, watcher, p)) = start_with(backend, |_| {}).await else { return };
    let orders = [place(&app, &p).await, place(&app, &p).await, place(&app, &p).await];
    assert_eq!(watcher.submit_pending().await.unwrap(), 3, "three funding Payments accepted at once");
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    let mut sequences = Vec::new();
    for order in &orders {
        let v = view(&app, order, &p.buyer.access_token).await;
        assert_eq!(v["xrplEscrow"]["setupStatus"], "READY", "{v}");
        sequences.push(sequence_of(v["xrplEscrow"]["setupTransactions"]["funding"]["blob"].as_str().unwrap()).unwrap());
    }
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(sequences.len(), 3, "each funding Payment has its own Sequence");
}

/// Finding 3: the provider's account requires a destination tag, so the
/// ledger applies the provider's Payment of a release with
/// `tecDST_TAG_NEEDED` (fee burned, Sequence consumed, nothing moved) while
/// the marketplace's Payment succeeds. The order does not loop: the provider
/// names a destination with a tag, the share less the burned fee goes there
/// in a new Payment on a fresh Sequence, and nothing is paid twice.
async fn a_refused_share_goes_to_the_destination_its_recipient_names(backend: Backend) {
    let Some((app, watcher, p, order)) = setup(backend).await else { return };
    let escrow = view(&app, &order, &p.buyer.access_token).await["xrplEscrow"]["account"].as_str().unwrap().to_owned();
    pay_deposit(&app, &escrow, 25_000_000).await;
    tick(&app, &watcher).await;
    let provider_seq = app.chains().xrpl.account(PROVIDER_ADDRESS).unwrap().sequence;
    let require_tag = json!({
        "TransactionType": "AccountSet", "Account": PROVIDER_ADDRESS, "SetFlag": 1,
        "Fee": "12", "Flags": 0, "Sequence": provider_seq,
    });
    let outcome = app.chains().xrpl.submit(&xrpl::sign_single(PROVIDER_SEED, &require_tag.to_string()));
    assert!(outcome.accepted(), "{outcome:?}");
    app.chains().xrpl.close_ledger();
    catch_up(&watcher).await;

    action(&app, "markDelivered", &order, &p.provider.access_token).await;
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    let marketplace = releasing["xrplEscrow"]["payoutDestinations"]["marketplace"]["address"].as_str().unwrap().to_owned();
    let share: u64 = releasing["payout"]["breakdown"]["provider"].as_str().unwrap().parse().unwrap();
    let commission: u64 = releasing["payout"]["breakdown"]["commission"].as_str().unwrap().parse().unwrap();
    submit(&app, &order, &sign_all(&releasing, BUYER_SEED), &p.buyer.access_token).await.ok();
    submit(&app, &order, &sign_all(&releasing, PROVIDER_SEED), &p.provider.access_token).await.ok();
    let (provider_before, marketplace_before) = (balance(&app, PROVIDER_ADDRESS), balance(&app, &marketplace));
    watcher.submit_pending().await.unwrap();
    tick(&app, &watcher).await;
    // More ledgers pass: a refused share is not retried in a loop.
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    let refused = view(&app, &order, &p.buyer.access_token).await;
    assert_eq!(refused["status"], "RELEASING", "still paying out");
    let txs = refused["payout"]["xrplTransactions"].as_array().unwrap();
    let provider_tx = txs.iter().find(|t| t["recipient"] == "provider").unwrap().clone();
    let marketplace_tx = txs.iter().find(|t| t["recipient"] == "marketplace").unwrap();
    assert_eq!(provider_tx["refusedWith"], "tecDST_TAG_NEEDED", "{refused}");
    assert_eq!(marketplace_tx["validated"], true);
    assert_eq!(balance(&app, PROVIDER_ADDRESS), provider_before, "nothing moved to the provider");
    assert_eq!(balance(&app, &marketplace) - marketplace_before, commission);
    let why = history(&app, &order, &p.provider.access_token).await;
    assert!(why.iter().any(|(e, d)| e == "PayoutShareRefused" && d.contains("tecDST_TAG_NEEDED")), "{why:?}");

    // Only the recipient names its destination, and only a real address.
    let set = format!("mutation($i: SetPayoutDestinationInput!) {{ setPayoutDestination(input: $i) {{ order {{ {FIELDS} }} }} }}");
    let by_buyer = app
        .gql(&set, json!({"i": {"orderId": order["id"], "account": PROVIDER_ADDRESS, "destinationTag": 7}}), Some(&p.buyer.access_token))
        .await;
    assert_eq!(by_buyer.error_code(), Some("CONFLICT"), "the buyer's share was not refused: {}", by_buyer.body);
    let malformed = app
        .gql(&set, json!({"i": {"orderId": order["id"], "account": "not-an-address"}}), Some(&p.provider.access_token))
        .await;
    assert_eq!(malformed.error_code(), Some("BAD_USER_INPUT"), "{}", malformed.body);
    let redirected = app
        .gql(&set, json!({"i": {"orderId": order["id"], "account": PROVIDER_ADDRESS, "destinationTag": 7}}), Some(&p.provider.access_token))
        .await
        .ok()["setPayoutDestination"]["order"]
        .clone();
    let txs = redirected["payout"]["xrplTransactions"].as_array().unwrap();
    let new_tx = txs.iter().find(|t| t["recipient"] == "provider").unwrap();
    let fee: u64 = provider_tx["fee"].as_str().unwrap().parse().unwrap();
    assert_eq!(new_tx["destinationTag"], 7);
    assert!(new_tx["refusedWith"].is_null());
    assert_eq!(new_tx["amount"].as_str().unwrap().parse::<u64>().unwrap(), share - fee, "the share less the burned fee");
    assert!(new_tx["sequence"].as_u64() > provider_tx["sequence"].as_u64(), "a fresh Sequence, never the consumed one");

    // Within the release's grace the parties sign again; the marketplace's
    // Payment, already validated, is not signed or sent again.
    submit(&app, &order, &sign_all(&redirected, BUYER_SEED), &p.buyer.access_token).await.ok();
    submit(&app, &order, &sign_all(&redirected, PROVIDER_SEED), &p.provider.access_token).await.ok();
    watcher.submit_pending().await.unwrap();
    tick(&app, &watcher).await;
    let settled = view(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED", "{settled}");
    assert_eq!(balance(&app, PROVIDER_ADDRESS) - provider_before, share - fee);
    assert_eq!(balance(&app, &marketplace) - marketplace_before, commission, "the commission is paid once");
}

chain_tests!(
    an_early_deposit_counts_only_once_the_lock_holds,
    orders_placed_together_are_set_up_together,
    a_refused_share_goes_to_the_destination_its_recipient_names,
    an_account_that_was_never_locked_is_refunded,
);

/// Deliver 1, last clause: the buyer pays before the account is locked and
/// the lock never comes (the watcher's submitter is down until the funding
/// deadline). The order expires; the deposit goes back to the buyer with the
/// escrow account's own master key — audited — and nothing more is set up.
async fn an_account_that_was_never_locked_is_refunded(backend: Backend) {
    let Some((app, watcher, p)) = start_with(backend, |_| {}).await else { return };
    let order = place(&app, &p).await;
    let escrow = order["xrplEscrow"]["account"].as_str().unwrap().to_owned();
    pay_deposit(&app, &escrow, 25_000_000).await;
    app.chains().xrpl.close_ledger();
    catch_up(&watcher).await;
    let buyer_before = balance(&app, agora_tests::xrpl::BUYER_ADDRESS);

    let by = app
        .gql("query($id: ID!) { order(id: $id) { deadlines { fundingBy } } }", json!({"id": order["id"]}), Some(&p.buyer.access_token))
        .await
        .ok()["order"]["deadlines"]["fundingBy"]
        .as_str()
        .unwrap()
        .to_owned();
    let by = chrono::DateTime::parse_from_rfc3339(&by).unwrap().with_timezone(&chrono::Utc);
    app.clock.advance(by - app.clock.now() + chrono::Duration::seconds(1));
    agora_api::orders::scheduler::sweep(&app.state, app.clock.now()).await.expect("sweep");
    assert_eq!(view(&app, &order, &p.buyer.access_token).await["status"], "EXPIRED");

    watcher.submit_pending().await.unwrap();
    for _ in 0..2 {
        tick(&app, &watcher).await;
    }
    let info = app.chains().xrpl.account(&escrow).unwrap();
    assert!(!info.master_disabled && info.signer_quorum.is_none(), "an expired order is not set up any more");
    // Everything above the base reserve the buyer's own deposit had to fund,
    // less the Payment's fee.
    let reserve = agora_api::devnet::xrpl::reserves().base_drops;
    assert_eq!(balance(&app, agora_tests::xrpl::BUYER_ADDRESS) - buyer_before, 25_000_000 - reserve - 10);
    let refunded = view(&app, &order, &p.buyer.access_token).await;
    let rules: Vec<&str> = refunded["arbitratorSignatures"].as_array().unwrap().iter().filter_map(|s| s["rule"].as_str()).collect();
    assert_eq!(rules.len(), 1, "the master-key signature is audited once: {refunded}");
    let events: Vec<String> = history(&app, &order, &p.buyer.access_token).await.into_iter().map(|(e, _)| e).collect();
    assert!(events.contains(&"DepositRefunded".to_owned()), "{events:?}");
    // Nothing is sent again.
    let after = balance(&app, agora_tests::xrpl::BUYER_ADDRESS);
    tick(&app, &watcher).await;
    assert_eq!(balance(&app, agora_tests::xrpl::BUYER_ADDRESS), after);
}
