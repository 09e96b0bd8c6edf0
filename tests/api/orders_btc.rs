//! Bitcoin orders end to end: place → funded → delivered → released, refunds,
//! mutual cancel, automatic release, and every refusal, with payouts signed by
//! keys only the test holds and checked by Bitcoin Core's script interpreter.

use std::str::FromStr;

use agora_api::graphql::errors::ApiError;
use agora_api::orders::chain::{deliver_bitcoin_event, BitcoinChainEvent};
use agora_api::orders::scheduler;
use agora_domain::clock::Clock;
use agora_escrow::btc::verify_spends;
use agora_tests::wallet::{spent_outputs, transaction, Wallet};
use agora_tests::{assert_bad_input, for_both_backends, on_both_backends, Backend, GqlResponse, Session, TestApp};
use bitcoin::base64::engine::general_purpose::STANDARD as BASE64;
use bitcoin::base64::Engine;
use bitcoin::psbt::Psbt;
use bitcoin::{OutPoint, Txid};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

pub const ORDER_FIELDS: &str = "id status version amountDue fundedAmount requiredConfirmations cancelProposedBy
    deadlines { fundingBy deliveryBy reviewEndsAt }
    bitcoinEscrow { network address descriptor timelockBlocks buyerPublicKey buyerRefundPublicKey
        providerPublicKey arbitratorPublicKey arbitratorKeyIndex payoutAddresses { provider buyer marketplace } }
    payout { outcome psbt txid signedBy complete transactionHex
        breakdown { provider buyer commission arbitrationFee networkFee } outputs { role amount } }
    settlement { outcome txid byTimelock }
    arbitratorSignatures { rule outcome txid publicKey }";

const REGISTER_KEY: &str = "mutation($i: RegisterEscrowKeyInput!) { registerEscrowKey(input: $i) { escrowKey { id } } }";

/// Every mutation that takes an `OrderActionInput`.
const ACTIONS: [&str; 6] = [
    "markDelivered",
    "releaseFunds",
    "requestRefund",
    "proposeCancel",
    "acceptCancel",
    "declineCancel",
];

pub struct Parties {
    pub buyer: Session,
    pub provider: Session,
    pub buyer_wallet: Wallet,
    /// Holds the buyer's key for the time-locked refund path only.
    pub buyer_refund_wallet: Wallet,
    pub provider_wallet: Wallet,
    pub listing_id: String,
    pub buyer_key_id: String,
    pub buyer_refund_key_id: String,
    pub provider_key_id: String,
}

/// Registers a Bitcoin escrow key (compressed public key or xpub) and returns its id.
async fn register_key(app: &TestApp, s: &Session, public_key: &str) -> String {
    let data = app
        .gql(REGISTER_KEY, json!({"i": {"chain": "BITCOIN", "publicKey": public_key}}), Some(&s.access_token))
        .await
        .ok();
    data["registerEscrowKey"]["escrowKey"]["id"].as_str().unwrap().to_owned()
}

/// A provider with a Bitcoin key and an active listing, and a buyer with two keys.
pub async fn parties(app: &TestApp, listing: Value) -> Parties {
    let (provider, _) = app.new_provider("prov").await;
    let provider_wallet = Wallet::from_seed(2);
    let provider_key_id = register_key(app, &provider, &provider_wallet.public_hex()).await;
    let created = app.create_listing(&provider.access_token, listing).await.ok();
    let listing_id = created["createListing"]["listing"]["id"].as_str().unwrap().to_owned();
    let buyer = app.new_user("buyer").await;
    let buyer_wallet = Wallet::from_seed(1);
    let buyer_refund_wallet = Wallet::from_seed(3);
    let buyer_key_id = register_key(app, &buyer, &buyer_wallet.public_hex()).await;
    let buyer_refund_key_id = register_key(app, &buyer, &buyer_refund_wallet.public_hex()).await;
    Parties {
        buyer,
        provider,
        buyer_wallet,
        buyer_refund_wallet,
        provider_wallet,
        listing_id,
        buyer_key_id,
        buyer_refund_key_id,
        provider_key_id,
    }
}

/// `placeOrder` as `token`, with `overrides` merged into the buyer's usual input.
pub async fn place_with(app: &TestApp, p: &Parties, overrides: Value, token: &str) -> GqlResponse {
    let mut input = json!({"listingId": p.listing_id, "buyerKeyId": p.buyer_key_id, "buyerRefundKeyId": p.buyer_refund_key_id});
    for (k, v) in overrides.as_object().unwrap() {
        input[k] = v.clone();
    }
    let q = format!("mutation($i: PlaceOrderInput!) {{ placeOrder(input: $i) {{ order {{ {ORDER_FIELDS} }} }} }}");
    app.gql(&q, json!({"i": input}), Some(token)).await
}

pub async fn place(app: &TestApp, p: &Parties) -> Value {
    place_with(app, p, json!({}), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone()
}

pub fn order_uuid(order: &Value) -> Uuid {
    let id = order["id"].as_str().unwrap();
    let (_, uuid) = agora_api::graphql::node::decode(id).unwrap();
    uuid
}

pub fn fake_txid(n: u8) -> Txid {
    Txid::from_str(&format!("{:02x}", n).repeat(32)).unwrap()
}

/// Delivers funding of `value` sats in one UTXO with `confirmations`.
pub async fn fund(app: &TestApp, order: &Value, value: u64, confirmations: u32) {
    deliver_bitcoin_event(
        &app.state,
        order_uuid(order),
        BitcoinChainEvent::Funding {
            utxos: vec![(OutPoint::new(fake_txid(7), 0), value)],
            confirmations,
            height: 100,
        },
    )
    .await
    .expect("funding event applied");
}

/// Places the usual 50 000 sat order and funds it exactly.
async fn funded_order(app: &TestApp, p: &Parties) -> Value {
    let order = place(app, p).await;
    fund(app, &order, 50_000, 1).await;
    order
}

pub async fn action(app: &TestApp, name: &str, order: &Value, token: &str) -> GqlResponse {
    let q = format!("mutation($i: OrderActionInput!) {{ {name}(input: $i) {{ order {{ {ORDER_FIELDS} }} }} }}");
    app.gql(&q, json!({"i": {"orderId": order["id"]}}), Some(token)).await
}

/// Runs an action that must succeed and returns the order it answers with.
async fn act(app: &TestApp, name: &str, order: &Value, token: &str) -> Value {
    action(app, name, order, token).await.ok()[name]["order"].clone()
}

pub async fn get_order(app: &TestApp, order: &Value, token: &str) -> Value {
    let q = format!("query($id: ID!) {{ order(id: $id) {{ {ORDER_FIELDS} }} }}");
    app.gql(&q, json!({"id": order["id"]}), Some(token)).await.ok()["order"].clone()
}

async fn payout_query(app: &TestApp, order: &Value, token: &str) -> GqlResponse {
    app.gql(
        "query($id: ID!) { payout(orderId: $id) { outcome signedBy } }",
        json!({"id": order["id"]}),
        Some(token),
    )
    .await
}

/// The ids of the orders `token`'s account sees.
async fn order_ids(app: &TestApp, token: &str) -> Vec<Value> {
    let data = app.gql("{ orders { edges { node { id } } } }", json!({}), Some(token)).await.ok();
    data["orders"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].clone()).collect()
}

pub async fn submit(app: &TestApp, order: &Value, psbt: &str, token: &str) -> GqlResponse {
    let q = format!(
        "mutation($i: SubmitPayoutSignatureInput!) {{ submitPayoutSignature(input: $i) {{ order {{ {ORDER_FIELDS} }} payout {{ complete signedBy }} }} }}"
    );
    app.gql(&q, json!({"i": {"orderId": order["id"], "psbt": psbt}}), Some(token)).await
}

/// Signs the payout of `order` (an order object from the API) with `wallet`
/// and submits it as `token`; returns the order after the import.
async fn sign_and_submit(app: &TestApp, order: &Value, wallet: &Wallet, token: &str) -> Value {
    let signed = wallet.sign(&order["bitcoinEscrow"], order["payout"]["psbt"].as_str().unwrap());
    submit(app, order, &signed, token).await.ok()["submitPayoutSignature"]["order"].clone()
}

/// Reports the payout of `tx` confirmed, as the chain watcher will.
async fn confirm_payout(app: &TestApp, order: &Value, tx: &bitcoin::Transaction) {
    deliver_bitcoin_event(&app.state, order_uuid(order), BitcoinChainEvent::PayoutConfirmed { txid: tx.compute_txid() })
        .await
        .expect("confirmation applied");
}

fn amount(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

/// Sats `tx` pays to `address` (an address string from the API).
fn paid_to(tx: &bitcoin::Transaction, address: &Value) -> u64 {
    let script = bitcoin::Address::from_str(address.as_str().unwrap())
        .unwrap()
        .assume_checked()
        .script_pubkey();
    tx.output.iter().filter(|o| o.script_pubkey == script).map(|o| o.value.to_sat()).sum()
}

/// Checks the final transaction with bitcoinconsensus, independently of the service.
pub fn assert_valid_spend(order: &Value, funded: u64) -> bitcoin::Transaction {
    let tx = transaction(order["payout"]["transactionHex"].as_str().expect("final transaction"));
    let spent = spent_outputs(&order["bitcoinEscrow"], &tx, &[funded]);
    verify_spends(&tx, &spent).expect("every input passes bitcoinconsensus");
    tx
}

/// Asserts that `resp` failed with `code` and, when given, `extensions.reason`.
#[track_caller]
fn assert_refused(resp: &GqlResponse, code: &str, reason: Option<&str>) {
    assert_eq!(
        (resp.error_code(), resp.error()["extensions"]["reason"].as_str()),
        (Some(code), reason),
        "{}",
        serde_json::to_string_pretty(&resp.body).unwrap_or_default()
    );
}

/// The app with its background deadline scheduler idle (it sweeps once at
/// start-up, then daily), so tests that move the clock decide when to sweep.
async fn app_without_scheduler(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |s| s.orders.scheduler_interval_secs = 24 * 3600).await
}

fn deadline(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a deadline")).unwrap().with_timezone(&Utc)
}

/// Moves the server's clock one second past `at` (a time from the API).
fn advance_past(app: &TestApp, at: &Value) {
    app.clock.advance(deadline(at) - app.clock.now() + Duration::seconds(1));
}

/// Moves the server's clock to a minute before `at`.
fn advance_to_just_before(app: &TestApp, at: &Value) {
    app.clock.advance(deadline(at) - app.clock.now() - Duration::minutes(1));
}

/// Runs the deadline scheduler once at the server's time; returns how many orders changed.
async fn sweep(app: &TestApp) -> usize {
    scheduler::sweep(&app.state, app.clock.now()).await.expect("sweep")
}

fn decode_psbt(b64: &Value) -> Psbt {
    Psbt::deserialize(&BASE64.decode(b64.as_str().unwrap()).unwrap()).unwrap()
}

fn encode_psbt(psbt: &Psbt) -> String {
    BASE64.encode(psbt.serialize())
}

/// The arbitrator signatures of `order` as (rule, outcome) pairs.
fn arbitrator_rules(order: &Value) -> Vec<(String, String)> {
    order["arbitratorSignatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["rule"].as_str().unwrap().to_owned(), s["outcome"].as_str().unwrap().to_owned()))
        .collect()
}

/// Asserts that a refund payout pays the buyer everything but the network fee.
#[track_caller]
fn assert_refund_breakdown(payout: &Value, funded: u64) {
    let b = &payout["breakdown"];
    assert_eq!(payout["outcome"], "REFUND");
    assert_eq!((amount(&b["provider"]), amount(&b["commission"]), amount(&b["arbitrationFee"])), (0, 0, 0));
    assert_eq!(amount(&b["buyer"]), funded - amount(&b["networkFee"]));
}

/// Asserts that the final transaction of a refund is valid and pays the buyer
/// exactly the funded amount minus the network fee, in its only output.
#[track_caller]
fn assert_refund_transaction(order: &Value, funded: u64) -> bitcoin::Transaction {
    let tx = assert_valid_spend(order, funded);
    let fee = amount(&order["payout"]["breakdown"]["networkFee"]);
    assert_eq!(tx.output.len(), 1, "a refund has one output");
    assert_eq!(paid_to(&tx, &order["bitcoinEscrow"]["payoutAddresses"]["buyer"]), funded - fee);
    assert_eq!(tx.compute_txid().to_string(), order["payout"]["txid"]);
    tx
}

/// Places, funds, releases, signs and confirms an order: it ends SETTLED.
async fn settled_order(app: &TestApp, p: &Parties) -> Value {
    let order = funded_order(app, p).await;
    let releasing = act(app, "releaseFunds", &order, &p.buyer.access_token).await;
    sign_and_submit(app, &releasing, &p.buyer_wallet, &p.buyer.access_token).await;
    let done = sign_and_submit(app, &releasing, &p.provider_wallet, &p.provider.access_token).await;
    let tx = assert_valid_spend(&done, 50_000);
    confirm_payout(app, &order, &tx).await;
    let settled = get_order(app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    settled
}

async fn a_bitcoin_order_is_placed_funded_delivered_released_and_settled(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    assert_eq!(order["status"], "AWAITING_FUNDING");
    assert_eq!(order["amountDue"], "50000");
    assert!(order["bitcoinEscrow"]["address"].as_str().unwrap().starts_with("bcrt1q"));
    assert_eq!(order["bitcoinEscrow"]["buyerPublicKey"], p.buyer_wallet.public_hex());
    assert!(order["deadlines"]["fundingBy"].is_string());

    fund(&app, &order, 50_000, 1).await;
    let funded = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(funded["status"], "FUNDED");

    let delivered = action(&app, "markDelivered", &order, &p.provider.access_token).await.ok();
    assert_eq!(delivered["markDelivered"]["order"]["status"], "DELIVERED");
    let released = action(&app, "releaseFunds", &order, &p.buyer.access_token).await.ok();
    let releasing = &released["releaseFunds"]["order"];
    assert_eq!(releasing["status"], "RELEASING");
    // A buyer's release needs no marketplace signature.
    assert_eq!(releasing["arbitratorSignatures"], json!([]));
    let payout = &releasing["payout"];
    assert_eq!(payout["outcome"], "RELEASE");
    let b = &payout["breakdown"];
    assert_eq!(
        amount(&b["provider"]) + amount(&b["buyer"]) + amount(&b["commission"]) + amount(&b["networkFee"]),
        50_000
    );

    let signed = p.buyer_wallet.sign(&releasing["bitcoinEscrow"], payout["psbt"].as_str().unwrap());
    let after_buyer = submit(&app, &order, &signed, &p.buyer.access_token).await.ok();
    assert_eq!(after_buyer["submitPayoutSignature"]["payout"]["complete"], false);
    assert_eq!(after_buyer["submitPayoutSignature"]["payout"]["signedBy"], json!(["BUYER"]));
    let signed = p.provider_wallet.sign(&releasing["bitcoinEscrow"], payout["psbt"].as_str().unwrap());
    let complete = submit(&app, &order, &signed, &p.provider.access_token).await.ok();
    let done = &complete["submitPayoutSignature"]["order"];
    assert_eq!(done["payout"]["complete"], true);
    let tx = assert_valid_spend(done, 50_000);
    // The provider's output is exactly the breakdown's provider share.
    let provider_script = bitcoin::Address::from_str(done["bitcoinEscrow"]["payoutAddresses"]["provider"].as_str().unwrap())
        .unwrap()
        .assume_checked()
        .script_pubkey();
    let paid: u64 = tx.output.iter().filter(|o| o.script_pubkey == provider_script).map(|o| o.value.to_sat()).sum();
    assert_eq!(paid, amount(&b["provider"]));

    let settled = deliver_bitcoin_event(
        &app.state,
        order_uuid(&order),
        BitcoinChainEvent::PayoutConfirmed { txid: tx.compute_txid() },
    )
    .await
    .expect("confirmation applied");
    assert_eq!(settled.state.name(), "Settled");
    let view = get_order(&app, &order, &p.provider.access_token).await;
    assert_eq!(view["status"], "SETTLED");
    assert_eq!(view["settlement"]["outcome"], "RELEASE");
    assert_eq!(view["settlement"]["txid"], tx.compute_txid().to_string());
}

on_both_backends!(a_bitcoin_order_is_placed_funded_delivered_released_and_settled);

async fn a_buyer_is_refunded_after_the_delivery_deadline_with_the_marketplace_co_signing(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    advance_past(&app, &order["deadlines"]["deliveryBy"]);

    let refunding = act(&app, "requestRefund", &order, &p.buyer.access_token).await;
    assert_eq!(refunding["status"], "REFUNDING");
    let payout = &refunding["payout"];
    assert_eq!(payout["signedBy"], json!(["MARKETPLACE"]));
    assert_eq!(payout["complete"], false);
    assert_refund_breakdown(payout, 50_000);
    assert_eq!(
        arbitrator_rules(&refunding),
        [("delivery_deadline_passed".to_owned(), "refund".to_owned())]
    );
    let audit = &refunding["arbitratorSignatures"][0];
    assert_eq!(audit["txid"], payout["txid"]);
    assert_eq!(audit["publicKey"], refunding["bitcoinEscrow"]["arbitratorPublicKey"]);

    let done = sign_and_submit(&app, &refunding, &p.buyer_wallet, &p.buyer.access_token).await;
    assert_eq!(done["payout"]["complete"], true);
    assert_eq!(done["payout"]["signedBy"], json!(["BUYER", "MARKETPLACE"]));
    let tx = assert_refund_transaction(&done, 50_000);

    confirm_payout(&app, &order, &tx).await;
    let settled = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    assert_eq!(settled["settlement"]["outcome"], "REFUND");
    assert_eq!(settled["settlement"]["txid"], tx.compute_txid().to_string());
    assert_eq!(settled["settlement"]["byTimelock"], false);
}

async fn a_refund_before_the_delivery_deadline_and_a_delivery_after_it_are_refused(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;

    advance_to_just_before(&app, &order["deadlines"]["deliveryBy"]);
    let early = action(&app, "requestRefund", &order, &p.buyer.access_token).await;
    assert_refused(&early, "CONFLICT", Some("DEADLINE_NOT_REACHED"));
    assert_eq!(sweep(&app).await, 0, "nothing is due before the deadline");
    let before = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(before["status"], "FUNDED");

    advance_past(&app, &order["deadlines"]["deliveryBy"]);
    let late = action(&app, "markDelivered", &order, &p.provider.access_token).await;
    assert_refused(&late, "CONFLICT", Some("DEADLINE_PASSED"));
    let after = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!((&after["status"], &after["version"]), (&before["status"], &before["version"]));
}

async fn the_scheduler_refunds_a_funded_undelivered_order_after_the_delivery_deadline(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    advance_past(&app, &order["deadlines"]["deliveryBy"]);

    assert_eq!(sweep(&app).await, 1);
    let refunding = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(refunding["status"], "REFUNDING");
    assert_eq!(refunding["payout"]["signedBy"], json!(["MARKETPLACE"]));
    assert_refund_breakdown(&refunding["payout"], 50_000);
    assert_eq!(
        arbitrator_rules(&refunding),
        [("delivery_deadline_passed".to_owned(), "refund".to_owned())]
    );
    // A second sweep finds nothing due and signs nothing again.
    assert_eq!(sweep(&app).await, 0);
    let again = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(again["version"], refunding["version"]);
    assert_eq!(again["arbitratorSignatures"].as_array().unwrap().len(), 1);

    let done = sign_and_submit(&app, &refunding, &p.buyer_wallet, &p.buyer.access_token).await;
    assert_refund_transaction(&done, 50_000);
}

async fn a_mutual_cancel_refunds_the_buyer_with_the_marketplace_co_signing(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;

    let cancelling = act(&app, "proposeCancel", &order, &p.provider.access_token).await;
    assert_eq!(cancelling["status"], "CANCELLING");
    assert_eq!(cancelling["cancelProposedBy"], "PROVIDER");
    assert_eq!(cancelling["payout"], Value::Null);
    // The proposer cannot also be the one who accepts.
    let own = action(&app, "acceptCancel", &order, &p.provider.access_token).await;
    assert_refused(&own, "FORBIDDEN", Some("WRONG_ROLE"));
    let unchanged = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!((&unchanged["status"], &unchanged["version"]), (&cancelling["status"], &cancelling["version"]));

    let refunding = act(&app, "acceptCancel", &order, &p.buyer.access_token).await;
    assert_eq!(refunding["status"], "REFUNDING");
    assert_eq!(refunding["payout"]["signedBy"], json!(["MARKETPLACE"]));
    assert_refund_breakdown(&refunding["payout"], 50_000);
    assert_eq!(arbitrator_rules(&refunding), [("mutual_cancel".to_owned(), "refund".to_owned())]);

    let done = sign_and_submit(&app, &refunding, &p.provider_wallet, &p.provider.access_token).await;
    assert_eq!(done["payout"]["complete"], true);
    assert_eq!(done["payout"]["signedBy"], json!(["PROVIDER", "MARKETPLACE"]));
    assert_refund_transaction(&done, 50_000);
}

async fn a_declined_or_withdrawn_cancel_returns_the_order_to_where_it_was(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;

    let proposed = act(&app, "proposeCancel", &order, &p.provider.access_token).await;
    assert_eq!(proposed["cancelProposedBy"], "PROVIDER");
    let declined = act(&app, "declineCancel", &order, &p.buyer.access_token).await;
    assert_eq!(declined["status"], "FUNDED");
    assert_eq!(declined["cancelProposedBy"], Value::Null);

    // The proposer may withdraw its own proposal.
    let proposed = act(&app, "proposeCancel", &order, &p.buyer.access_token).await;
    assert_eq!(proposed["cancelProposedBy"], "BUYER");
    let withdrawn = act(&app, "declineCancel", &order, &p.buyer.access_token).await;
    assert_eq!(withdrawn["status"], "FUNDED");

    // After a delivery, a declined cancel goes back to DELIVERED with the same review window.
    let delivered = act(&app, "markDelivered", &order, &p.provider.access_token).await;
    act(&app, "proposeCancel", &order, &p.buyer.access_token).await;
    let back = act(&app, "declineCancel", &order, &p.provider.access_token).await;
    assert_eq!(back["status"], "DELIVERED");
    assert_eq!(back["deadlines"]["reviewEndsAt"], delivered["deadlines"]["reviewEndsAt"]);
    assert_eq!(back["payout"], Value::Null);
    assert_eq!(back["arbitratorSignatures"], json!([]));
}

async fn funds_are_released_automatically_once_the_review_window_passes(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    let delivered = act(&app, "markDelivered", &order, &p.provider.access_token).await;
    let review_ends = &delivered["deadlines"]["reviewEndsAt"];

    advance_to_just_before(&app, review_ends);
    assert_eq!(sweep(&app).await, 0, "the buyer may still dispute");
    advance_past(&app, review_ends);
    assert_eq!(sweep(&app).await, 1);

    let releasing = get_order(&app, &order, &p.provider.access_token).await;
    assert_eq!(releasing["status"], "RELEASING");
    let payout = &releasing["payout"];
    assert_eq!(payout["outcome"], "RELEASE");
    assert_eq!(payout["signedBy"], json!(["MARKETPLACE"]));
    assert_eq!(arbitrator_rules(&releasing), [("review_window_passed".to_owned(), "release".to_owned())]);
    let b = &payout["breakdown"];
    let fee = amount(&b["networkFee"]);
    // 2.5 % commission on the provider's share, rounded down.
    assert_eq!(amount(&b["commission"]), (50_000 - fee) * 250 / 10_000);
    assert_eq!(amount(&b["provider"]), 50_000 - fee - amount(&b["commission"]));
    assert_eq!(amount(&b["buyer"]), 0);

    // The provider alone completes it: the marketplace already signed.
    let done = sign_and_submit(&app, &releasing, &p.provider_wallet, &p.provider.access_token).await;
    assert_eq!(done["payout"]["complete"], true);
    let tx = assert_valid_spend(&done, 50_000);
    let to = &done["bitcoinEscrow"]["payoutAddresses"];
    assert_eq!(paid_to(&tx, &to["provider"]), amount(&b["provider"]));
    assert_eq!(paid_to(&tx, &to["marketplace"]), amount(&b["commission"]));
    assert_eq!(paid_to(&tx, &to["buyer"]), 0);
    assert_eq!(tx.output.len(), 2);
}

async fn each_action_is_refused_to_the_party_it_does_not_belong_to(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    let before = get_order(&app, &order, &p.buyer.access_token).await;

    for (name, wrong) in [
        ("markDelivered", &p.buyer),
        ("releaseFunds", &p.provider),
        ("requestRefund", &p.provider),
    ] {
        let resp = action(&app, name, &order, &wrong.access_token).await;
        assert_refused(&resp, "FORBIDDEN", Some("WRONG_ROLE"));
    }
    let after = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!((&after["status"], &after["version"]), (&before["status"], &before["version"]));
}

async fn an_outsider_can_neither_see_nor_touch_an_order(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    let outsider = app.new_user("outsider").await;
    register_key(&app, &outsider, &Wallet::from_seed(9).public_hex()).await;

    let q = "query($id: ID!) { order(id: $id) { id } }";
    let seen = app.gql(q, json!({"id": order["id"]}), Some(&outsider.access_token)).await.ok();
    assert_eq!(seen["order"], Value::Null);
    assert_eq!(order_ids(&app, &outsider.access_token).await, Vec::<Value>::new());
    for name in ACTIONS {
        let resp = action(&app, name, &order, &outsider.access_token).await;
        assert_refused(&resp, "NOT_FOUND", None);
    }

    // Even with a correctly signed PSBT in hand, an outsider cannot submit it.
    let releasing = act(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    assert_refused(&payout_query(&app, &order, &outsider.access_token).await, "NOT_FOUND", None);
    let signed = p.provider_wallet.sign(&releasing["bitcoinEscrow"], releasing["payout"]["psbt"].as_str().unwrap());
    assert_refused(&submit(&app, &order, &signed, &outsider.access_token).await, "NOT_FOUND", None);

    let after = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(after["version"], releasing["version"]);
    assert_eq!(after["payout"]["signedBy"], json!([]));
}

async fn an_anonymous_caller_must_authenticate_for_every_order_operation(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;

    let q = "query($id: ID!) { order(id: $id) { id } }";
    let reads = [
        app.gql(q, json!({"id": order["id"]}), None).await,
        app.gql("{ orders { edges { node { id } } } }", json!({}), None).await,
        payout_query(&app, &order, "").await,
    ];
    for resp in &reads {
        assert_eq!(resp.error_code(), Some("UNAUTHENTICATED"), "{:?}", resp.body);
    }
    assert_eq!(place_with(&app, &p, json!({}), "").await.error_code(), Some("UNAUTHENTICATED"));
    for name in ACTIONS {
        assert_eq!(action(&app, name, &order, "").await.error_code(), Some("UNAUTHENTICATED"), "{name}");
    }
    assert_eq!(submit(&app, &order, "cHNidP8=", "").await.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(get_order(&app, &order, &p.buyer.access_token).await["status"], "FUNDED");
}

async fn actions_that_do_not_fit_the_order_state_are_refused(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;

    // Not funded yet.
    for (name, who) in [
        ("markDelivered", &p.provider),
        ("releaseFunds", &p.buyer),
        ("requestRefund", &p.buyer),
        ("proposeCancel", &p.buyer),
    ] {
        assert_refused(&action(&app, name, &order, &who.access_token).await, "CONFLICT", Some("WRONG_STATE"));
    }
    assert_refused(&payout_query(&app, &order, &p.buyer.access_token).await, "CONFLICT", Some("NO_PAYOUT"));
    let signed = submit(&app, &order, "cHNidP8=", &p.buyer.access_token).await;
    assert_refused(&signed, "CONFLICT", Some("WRONG_STATE"));
    let after = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!((&after["status"], &after["version"]), (&order["status"], &order["version"]));

    // Funded, but nothing to accept or decline, and still no payout.
    fund(&app, &order, 50_000, 1).await;
    for name in ["acceptCancel", "declineCancel"] {
        assert_refused(&action(&app, name, &order, &p.buyer.access_token).await, "CONFLICT", Some("WRONG_STATE"));
    }
    assert_refused(&payout_query(&app, &order, &p.provider.access_token).await, "CONFLICT", Some("NO_PAYOUT"));
}

async fn a_settled_order_refuses_every_action(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let settled = settled_order(&app, &p).await;

    for (name, who) in [
        ("markDelivered", &p.provider),
        ("releaseFunds", &p.buyer),
        ("requestRefund", &p.buyer),
        ("proposeCancel", &p.buyer),
        ("proposeCancel", &p.provider),
        ("acceptCancel", &p.buyer),
        ("declineCancel", &p.provider),
    ] {
        let resp = action(&app, name, &settled, &who.access_token).await;
        assert_refused(&resp, "CONFLICT", Some("ALREADY_SETTLED"));
    }
    assert_refused(&payout_query(&app, &settled, &p.buyer.access_token).await, "CONFLICT", Some("NO_PAYOUT"));
    let resubmitted = submit(&app, &settled, "cHNidP8=", &p.buyer.access_token).await;
    assert_eq!(resubmitted.error_code(), Some("CONFLICT"), "{:?}", resubmitted.body);

    // The chain cannot reopen it either: not the same payout again.
    let paid = Txid::from_str(settled["settlement"]["txid"].as_str().unwrap()).unwrap();
    let refused = deliver_bitcoin_event(&app.state, order_uuid(&settled), BitcoinChainEvent::PayoutConfirmed { txid: paid }).await;
    assert!(
        matches!(refused, Err(ApiError::Rejected { reason: "ALREADY_SETTLED", .. })),
        "{refused:?}"
    );
    let after = get_order(&app, &settled, &p.buyer.access_token).await;
    assert_eq!(after["version"], settled["version"]);
    // New funds do not reopen it: they are a stray deposit, kept apart from
    // the settled payout and returned to the buyer.
    let stray = deliver_bitcoin_event(
        &app.state,
        order_uuid(&settled),
        BitcoinChainEvent::Funding {
            utxos: vec![(OutPoint::new(fake_txid(8), 0), 70_000)],
            confirmations: 6,
            height: 120,
        },
    )
    .await
    .expect("a stray deposit is recorded");
    assert!(stray.state.is_settled());
    let q = "query($id: ID!) { order(id: $id) { status settlement { txid paid { role amount } } chainStatus { strayDeposits { amount status } } } }";
    let shown = app.gql(q, json!({"id": settled["id"]}), Some(&p.buyer.access_token)).await.ok()["order"].clone();
    assert_eq!(shown["status"], "SETTLED");
    assert_eq!(shown["settlement"]["txid"], paid.to_string(), "the settlement is unchanged");
    assert_eq!(shown["chainStatus"]["strayDeposits"], json!([{"amount": "70000", "status": "PENDING"}]));
    assert_eq!(after["settlement"], settled["settlement"]);
}

async fn underfunded_or_unconfirmed_funding_does_not_fund_the_order(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 49_999, 6).await;
    let short = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(short["status"], "AWAITING_FUNDING");
    assert_eq!(short["fundedAmount"], Value::Null);
    fund(&app, &order, 50_000, 1).await;
    assert_eq!(get_order(&app, &order, &p.buyer.access_token).await["status"], "FUNDED");

    // 2 000 000 sats need three confirmations under the default table.
    let pricing = json!({"fixed": {"asset": "BTC", "amount": "2000000"}});
    let big_listing = app.new_listing(&p.provider.access_token, json!({"title": "A long audit", "pricing": pricing})).await;
    let big = place_with(&app, &p, json!({"listingId": big_listing}), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    assert_eq!(big["amountDue"], "2000000");
    assert_eq!(big["requiredConfirmations"], 3);
    for confirmations in [0, 2] {
        fund(&app, &big, 2_000_000, confirmations).await;
        assert_eq!(get_order(&app, &big, &p.buyer.access_token).await["status"], "AWAITING_FUNDING", "{confirmations}");
    }
    fund(&app, &big, 2_000_000, 3).await;
    let funded = get_order(&app, &big, &p.buyer.access_token).await;
    assert_eq!(funded["status"], "FUNDED");
    assert_eq!(funded["fundedAmount"], "2000000");
}

async fn over_funding_is_returned_to_the_buyer_when_the_funds_are_released(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 60_000, 1).await;
    let funded = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(funded["status"], "FUNDED");
    assert_eq!(funded["fundedAmount"], "60000");

    act(&app, "markDelivered", &order, &p.provider.access_token).await;
    let releasing = act(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    let b = &releasing["payout"]["breakdown"];
    let fee = amount(&b["networkFee"]);
    assert_eq!(amount(&b["buyer"]), 10_000, "the excess goes back");
    assert_eq!(amount(&b["commission"]), (50_000 - fee) * 250 / 10_000);
    assert_eq!(amount(&b["provider"]) + amount(&b["commission"]) + fee, 50_000);

    sign_and_submit(&app, &releasing, &p.buyer_wallet, &p.buyer.access_token).await;
    let done = sign_and_submit(&app, &releasing, &p.provider_wallet, &p.provider.access_token).await;
    let tx = assert_valid_spend(&done, 60_000);
    let to = &done["bitcoinEscrow"]["payoutAddresses"];
    assert_eq!(paid_to(&tx, &to["buyer"]), 10_000);
    assert_eq!(paid_to(&tx, &to["provider"]), amount(&b["provider"]));
    assert_eq!(paid_to(&tx, &to["marketplace"]), amount(&b["commission"]));
    let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    assert_eq!(60_000 - outputs, fee);
}

async fn refused_payout_signatures_leave_the_order_unchanged(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    let releasing = act(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    sign_and_submit(&app, &releasing, &p.buyer_wallet, &p.buyer.access_token).await;
    let before = get_order(&app, &order, &p.provider.access_token).await;
    assert_eq!(before["payout"]["signedBy"], json!(["BUYER"]));
    let escrow = &before["bitcoinEscrow"];
    let psbt = before["payout"]["psbt"].as_str().unwrap();

    let mut altered = decode_psbt(&before["payout"]["psbt"]);
    altered.unsigned_tx.output[0].value -= bitcoin::Amount::from_sat(1_000);
    let altered_signed = p.provider_wallet.sign(escrow, &encode_psbt(&altered));

    // A valid signature, but over the altered transaction.
    let mut misplaced = decode_psbt(&before["payout"]["psbt"]);
    let provider_key = p.provider_wallet.public_key();
    let wrong_sig = decode_psbt(&json!(altered_signed)).inputs[0].partial_sigs[&provider_key];
    misplaced.inputs[0].partial_sigs.insert(provider_key, wrong_sig);

    let mut unsigned = decode_psbt(&before["payout"]["psbt"]);
    unsigned.inputs.iter_mut().for_each(|i| i.partial_sigs.clear());

    let mut finalized = decode_psbt(&json!(p.provider_wallet.sign(escrow, psbt)));
    finalized.inputs[0].final_script_witness = Some(bitcoin::Witness::from_slice(&[vec![1u8]]));

    let refusals = [
        ("not base64 at all!".to_owned(), "MALFORMED_BASE64"),
        (BASE64.encode(b"certainly not a PSBT"), "MALFORMED_PSBT"),
        (altered_signed.clone(), "PSBT_MISMATCH"),
        (Wallet::from_seed(9).sign_regardless(escrow, psbt), "UNEXPECTED_SIGNER"),
        // The refund-path key is in the escrow, but never signs a payout.
        (p.buyer_refund_wallet.sign(escrow, psbt), "UNEXPECTED_SIGNER"),
        (encode_psbt(&unsigned), "NO_SIGNATURES"),
        (encode_psbt(&misplaced), "INVALID_SIGNATURE"),
        (encode_psbt(&finalized), "ALREADY_FINALIZED"),
    ];
    for (submitted, reason) in refusals {
        let resp = submit(&app, &order, &submitted, &p.provider.access_token).await;
        assert_bad_input(&resp, "input.psbt", reason);
        let after = get_order(&app, &order, &p.provider.access_token).await;
        assert_eq!(
            (&after["version"], &after["payout"]["signedBy"], &after["payout"]["psbt"]),
            (&before["version"], &before["payout"]["signedBy"], &before["payout"]["psbt"]),
            "{reason}"
        );
    }

    let done = sign_and_submit(&app, &before, &p.provider_wallet, &p.provider.access_token).await;
    assert_eq!(done["payout"]["complete"], true);
    assert_valid_spend(&done, 50_000);
    let late = submit(&app, &order, &p.buyer_wallet.sign(escrow, psbt), &p.buyer.access_token).await;
    assert_refused(&late, "CONFLICT", Some("ALREADY_COMPLETE"));
    assert_eq!(get_order(&app, &order, &p.buyer.access_token).await["version"], done["version"]);
}

/// Finalizes the payout PSBT with BDK (bdkpython), an implementation that
/// shares no code with agora-escrow, and compares the transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_transaction_matches_an_independent_bdk_finalization() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    act(&app, "markDelivered", &order, &p.provider.access_token).await;
    let releasing = act(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    sign_and_submit(&app, &releasing, &p.buyer_wallet, &p.buyer.access_token).await;
    let done = sign_and_submit(&app, &releasing, &p.provider_wallet, &p.provider.access_token).await;
    assert_valid_spend(&done, 50_000);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payout.psbt");
    std::fs::write(&file, done["payout"]["psbt"].as_str().unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../escrow/tests/btc_cross_check.py");
    let out = std::process::Command::new("python3").arg(script).arg(&file).output().expect("python3 runs");
    if out.status.code() == Some(3) {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "bdkpython must be installed in CI");
        println!("SKIPPED: bdkpython is not installed (pip install bdkpython)");
        return;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_owned()
    };
    assert_eq!(field("tx_hex"), done["payout"]["transactionHex"].as_str().unwrap());
    assert_eq!(field("txid"), done["payout"]["txid"].as_str().unwrap());
    assert_eq!(field("fee"), done["payout"]["breakdown"]["networkFee"].as_str().unwrap());
}

async fn the_marketplace_signature_audit_log_cannot_be_altered_or_deleted(app: TestApp) {
    use sea_orm::{ConnectionTrait, Database};

    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    act(&app, "proposeCancel", &order, &p.buyer.access_token).await;
    let refunding = act(&app, "acceptCancel", &order, &p.provider.access_token).await;
    let logged = refunding["arbitratorSignatures"].clone();
    assert_eq!(logged.as_array().unwrap().len(), 1);

    let db = Database::connect(app.database_url()).await.unwrap();
    for sql in ["UPDATE arbitrator_signatures SET rule = 'x'", "DELETE FROM arbitrator_signatures"] {
        let result = db.execute_unprepared(sql).await;
        assert!(result.is_err(), "{sql} must fail: {result:?}");
        assert!(format!("{result:?}").contains("append-only"), "{result:?}");
    }
    db.close().await.unwrap();
    assert_eq!(get_order(&app, &order, &p.buyer.access_token).await["arbitratorSignatures"], logged);
}

async fn orders_that_cannot_be_placed_are_refused_and_write_nothing(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let buyer = &p.buyer.access_token;

    let unknown = place_with(&app, &p, json!({"buyerKeyId": agora_api::graphql::node::global_id(agora_api::graphql::node::NodeType::EscrowKey, Uuid::from_u128(42)).0}), buyer).await;
    assert_bad_input(&unknown, "input.buyerKeyId", "UNKNOWN_KEY");
    // Another account's key is as unknown as a made-up one.
    let foreign = place_with(&app, &p, json!({"buyerKeyId": p.provider_key_id}), buyer).await;
    assert_bad_input(&foreign, "input.buyerKeyId", "UNKNOWN_KEY");
    let same = place_with(&app, &p, json!({"buyerRefundKeyId": p.buyer_key_id}), buyer).await;
    assert_bad_input(&same, "input", "DUPLICATE_KEY");
    let no_refund_key = place_with(&app, &p, json!({"buyerRefundKeyId": null}), buyer).await;
    assert_bad_input(&no_refund_key, "input.buyerRefundKeyId", "MISSING_KEY");
    let deposit = place_with(&app, &p, json!({"deposit": "1000"}), buyer).await;
    assert_bad_input(&deposit, "input", "DEPOSIT_NOT_ALLOWED");

    // The provider buying its own listing: refused for that reason, whatever keys it offers.
    let refund_key = register_key(&app, &p.provider, &Wallet::from_seed(4).public_hex()).await;
    let own_keys = json!({"buyerKeyId": p.provider_key_id, "buyerRefundKeyId": refund_key});
    let own = place_with(&app, &p, own_keys.clone(), &p.provider.access_token).await;
    assert_bad_input(&own, "input.listingId", "OWN_LISTING");
    register_key(&app, &p.provider, &Wallet::from_seed(5).public_hex()).await;
    let own = place_with(&app, &p, own_keys, &p.provider.access_token).await;
    assert_bad_input(&own, "input.listingId", "OWN_LISTING");

    let (keyless, _) = app.new_provider("keyless").await;
    let keyless_listing = app.new_listing(&keyless.access_token, json!({})).await;
    let resp = place_with(&app, &p, json!({"listingId": keyless_listing}), buyer).await;
    assert_refused(&resp, "CONFLICT", Some("PROVIDER_HAS_NO_KEY"));

    app.gql(
        "mutation($i: ChangeListingStatusInput!) { pauseListing(input: $i) { listing { status } } }",
        json!({"i": {"id": p.listing_id}}),
        Some(&p.provider.access_token),
    )
    .await
    .ok();
    assert_refused(&place_with(&app, &p, json!({}), buyer).await, "NOT_FOUND", None);

    assert_eq!(order_ids(&app, buyer).await, Vec::<Value>::new());
    assert_eq!(order_ids(&app, &p.provider.access_token).await, Vec::<Value>::new());
}

async fn a_buyer_with_an_xpub_gets_fresh_derived_keys_for_every_order(app: TestApp) {
    use bitcoin::bip32::{ChildNumber, Xpriv, Xpub};
    use bitcoin::secp256k1::Secp256k1;

    let p = parties(&app, json!({})).await;
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(bitcoin::Network::Regtest, &[1u8; 32]).unwrap();
    let xpub_id = register_key(&app, &p.buyer, &Xpub::from_priv(&secp, &master).to_string()).await;
    let child = |branch: u32, index: u64| {
        let path = [
            ChildNumber::from_normal_idx(branch).unwrap(),
            ChildNumber::from_normal_idx(u32::try_from(index).unwrap()).unwrap(),
        ];
        master.derive_priv(&secp, &path).unwrap().private_key
    };
    let public = |secret: bitcoin::secp256k1::SecretKey| bitcoin::PublicKey::new(secret.public_key(&secp)).to_string();

    let xpub_order = json!({"buyerKeyId": xpub_id, "buyerRefundKeyId": null});
    let first = place_with(&app, &p, xpub_order.clone(), &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    let second = place_with(&app, &p, xpub_order, &p.buyer.access_token).await.ok()["placeOrder"]["order"].clone();
    for order in [&first, &second] {
        let escrow = &order["bitcoinEscrow"];
        let index = escrow["arbitratorKeyIndex"].as_u64().unwrap();
        assert_eq!(escrow["buyerPublicKey"], public(child(0, index)));
        assert_eq!(escrow["buyerRefundPublicKey"], public(child(1, index)));
    }
    let (a, b) = (&first["bitcoinEscrow"], &second["bitcoinEscrow"]);
    assert_ne!(a["arbitratorKeyIndex"], b["arbitratorKeyIndex"]);
    assert_ne!(a["buyerPublicKey"], b["buyerPublicKey"]);
    assert_ne!(a["buyerRefundPublicKey"], b["buyerRefundPublicKey"]);
    assert_ne!(a["address"], b["address"]);

    // The wallet signs with the derived child key, and the service accepts it.
    fund(&app, &first, 50_000, 1).await;
    let releasing = act(&app, "releaseFunds", &first, &p.buyer.access_token).await;
    let index = a["arbitratorKeyIndex"].as_u64().unwrap();
    let child_wallet = Wallet::from_secret(child(0, index));
    let signed = sign_and_submit(&app, &releasing, &child_wallet, &p.buyer.access_token).await;
    assert_eq!(signed["payout"]["signedBy"], json!(["BUYER"]));
    let done = sign_and_submit(&app, &releasing, &p.provider_wallet, &p.provider.access_token).await;
    assert_valid_spend(&done, 50_000);
}

async fn a_pending_cancel_does_not_stop_the_automatic_release_after_the_review_window(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    act(&app, "markDelivered", &order, &p.provider.access_token).await;
    // The buyer proposes a cancel after the delivery, and the provider never answers.
    let cancelling = act(&app, "proposeCancel", &order, &p.buyer.access_token).await;
    assert_eq!(cancelling["status"], "CANCELLING");

    advance_past(&app, &cancelling["deadlines"]["reviewEndsAt"]);
    assert_eq!(sweep(&app).await, 1, "the review window passed without a dispute");
    let releasing = get_order(&app, &order, &p.provider.access_token).await;
    assert_eq!(releasing["status"], "RELEASING");
    assert_eq!(arbitrator_rules(&releasing), [("review_window_passed".to_owned(), "release".to_owned())]);
}

async fn a_pending_cancel_does_not_stop_the_refund_after_the_delivery_deadline(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let p = parties(&app, json!({})).await;
    let order = funded_order(&app, &p).await;
    // The provider proposes a cancel instead of delivering, and the buyer never answers.
    act(&app, "proposeCancel", &order, &p.provider.access_token).await;

    advance_past(&app, &order["deadlines"]["deliveryBy"]);
    assert_eq!(sweep(&app).await, 1, "the delivery deadline passed without a delivery");
    let refunding = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(refunding["status"], "REFUNDING");
    assert_eq!(
        arbitrator_rules(&refunding),
        [("delivery_deadline_passed".to_owned(), "refund".to_owned())]
    );
}

async fn late_funds_of_an_expired_order_are_refunded_with_the_marketplace_co_signing(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let p = parties(&app, json!({})).await;
    let unfunded = place(&app, &p).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 40_000, 1).await; // confirmed, but short of the 50 000 due

    advance_past(&app, &order["deadlines"]["fundingBy"]);
    assert_eq!(sweep(&app).await, 2);
    assert_eq!(get_order(&app, &unfunded, &p.buyer.access_token).await["status"], "EXPIRED");
    let refunding = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(refunding["status"], "REFUNDING");
    assert_refund_breakdown(&refunding["payout"], 40_000);
    // Before the delivery deadline the policy does not let the marketplace sign.
    assert_eq!(refunding["payout"]["signedBy"], json!([]));
    assert_eq!(refunding["arbitratorSignatures"], json!([]));

    advance_past(&app, &order["deadlines"]["deliveryBy"]);
    assert_eq!(sweep(&app).await, 1, "the late-funds refund can now be co-signed");
    let cosigned = get_order(&app, &order, &p.buyer.access_token).await;
    assert_eq!(cosigned["payout"]["signedBy"], json!(["MARKETPLACE"]));
    assert_eq!(
        arbitrator_rules(&cosigned),
        [("delivery_deadline_passed".to_owned(), "refund".to_owned())]
    );
    let done = sign_and_submit(&app, &cosigned, &p.buyer_wallet, &p.buyer.access_token).await;
    assert_refund_transaction(&done, 40_000);
}

on_both_backends!(
    a_mutual_cancel_refunds_the_buyer_with_the_marketplace_co_signing,
    a_declined_or_withdrawn_cancel_returns_the_order_to_where_it_was,
    each_action_is_refused_to_the_party_it_does_not_belong_to,
    an_outsider_can_neither_see_nor_touch_an_order,
    an_anonymous_caller_must_authenticate_for_every_order_operation,
    actions_that_do_not_fit_the_order_state_are_refused,
    a_settled_order_refuses_every_action,
    underfunded_or_unconfirmed_funding_does_not_fund_the_order,
    over_funding_is_returned_to_the_buyer_when_the_funds_are_released,
    refused_payout_signatures_leave_the_order_unchanged,
    the_marketplace_signature_audit_log_cannot_be_altered_or_deleted,
    orders_that_cannot_be_placed_are_refused_and_write_nothing,
    a_buyer_with_an_xpub_gets_fresh_derived_keys_for_every_order,
);

// These move the clock, so they run without the background scheduler.
for_both_backends!(
    a_buyer_is_refunded_after_the_delivery_deadline_with_the_marketplace_co_signing,
    a_refund_before_the_delivery_deadline_and_a_delivery_after_it_are_refused,
    the_scheduler_refunds_a_funded_undelivered_order_after_the_delivery_deadline,
    funds_are_released_automatically_once_the_review_window_passes,
    a_pending_cancel_does_not_stop_the_automatic_release_after_the_review_window,
    a_pending_cancel_does_not_stop_the_refund_after_the_delivery_deadline,
    late_funds_of_an_expired_order_are_refunded_with_the_marketplace_co_signing,
);
