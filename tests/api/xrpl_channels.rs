//! Metered XRPL sessions on a native payment channel, end to end: the
//! escrow's create co-signed by the buyer, claims signed by xrpl-py (an
//! implementation independent of Agora's) over (channel, drops), the provider
//! redeeming alone, and the escrow closing the channel and paying the rest
//! when the provider vanished. Every multisigned blob is checked by xrpl-py.

use agora_api::orders::chain::{deliver_xrpl_event, prepare_xrpl_account, XrplChainEvent};
use agora_api::watcher::xrpl::XrplWatcher;
use agora_escrow::source::rippled::RippledSource;
use agora_tests::xrpl::{self, BUYER_ADDRESS, BUYER_PUBLIC_KEY, BUYER_SEED, OUTSIDER_SEED, PROVIDER_ADDRESS, PROVIDER_PUBLIC_KEY, PROVIDER_SEED};
use agora_tests::{on_both_backends, Backend, GqlResponse, Session, TestApp};
use agora_domain::clock::Clock;
use chrono::Duration;
use serde_json::{json, Value};

use crate::chains_xrpl::{catch_up, pay_deposit, tick};
use crate::metered::assert_refused;
use crate::orders_xrpl::uuid_of;

const REGISTER_KEY: &str = "mutation($i: RegisterEscrowKeyInput!) { registerEscrowKey(input: $i) { escrowKey { id } } }";
const FIELDS: &str = "id status
    xrplEscrow { account arbitratorAccount depositDrops nextSequence
        channel { id status amount balance settleDelaySecs expiration destination publicKey providerCloseHash
            transactions { kind sequence balance txJson unsignedBlob signedBy awaitingSignature finalBlob hash result } } }
    payout { complete signedBy breakdown { provider buyer commission networkFee }
        xrplTransactions { recipient destination amount txJson finalBlob hash validated } }
    arbitratorSignatures { rule outcome }
    history { event detail }";
const CLAIM: &str = "cumulative providerAmount commission buyerAmount networkFee txid channel { channelId amount message }";
pub(crate) const PRICE_PER_MINUTE: u64 = 100_000;
pub(crate) const DEPOSIT: u64 = 10_000_000;

pub(crate) fn drops(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an amount: {v}"))
}


/// A 0.1 XRP/minute expert consultation ordered with a 10 XRP deposit.
pub(crate) async fn place_consultation(app: &TestApp) -> (Session, Session, Value) {
    let (provider, _) = app.new_provider("expert").await;
    app.gql(
        REGISTER_KEY,
        json!({"i": {"chain": "XRPL", "publicKey": PROVIDER_PUBLIC_KEY, "address": PROVIDER_ADDRESS}}),
        Some(&provider.access_token),
    )
    .await
    .ok();
    let listing = app
        .create_listing(
            &provider.access_token,
            json!({"asset": "XRP", "category": "expert-session",
                "pricing": {"metered": {"asset": "XRP", "unit": "minute", "pricePerUnit": PRICE_PER_MINUTE.to_string(), "minDeposit": "5000000"}}}),
        )
        .await
        .ok();
    let buyer = app.new_user("client").await;
    let key = app
        .gql(REGISTER_KEY, json!({"i": {"chain": "XRPL", "publicKey": BUYER_PUBLIC_KEY, "address": BUYER_ADDRESS}}), Some(&buyer.access_token))
        .await
        .ok();
    let q = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id } } }";
    let order = app
        .gql(
            q,
            json!({"i": {"listingId": listing["createListing"]["listing"]["id"],
                "buyerKeyId": key["registerEscrowKey"]["escrowKey"]["id"], "deposit": DEPOSIT.to_string()}}),
            Some(&buyer.access_token),
        )
        .await
        .ok()["placeOrder"]["order"]
        .clone();
    (provider, buyer, order)
}

pub(crate) async fn order_of(app: &TestApp, who: &Session, order: &Value) -> Value {
    let q = format!("query($id: ID!) {{ order(id: $id) {{ {FIELDS} }} }}");
    app.gql(&q, json!({"id": order["id"]}), Some(&who.access_token)).await.ok()["order"].clone()
}

pub(crate) fn channel(o: &Value) -> &Value {
    &o["xrplEscrow"]["channel"]
}

/// Multisigns every channel transaction waiting for a signature with `seed`.
pub(crate) fn sign_awaiting(o: &Value, seed: &str) -> Vec<String> {
    channel(o)["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["awaitingSignature"] == true)
        .map(|t| xrpl::sign(seed, t["txJson"].as_str().unwrap()))
        .collect()
}

pub(crate) async fn sign_channel(app: &TestApp, who: &Session, order: &Value, blobs: &[String]) -> GqlResponse {
    let q = "mutation($i: SignXrplChannelInput!) { signXrplChannel(input: $i) { order { id } } }";
    app.gql(q, json!({"i": {"orderId": order["id"], "signedTransactions": blobs}}), Some(&who.access_token)).await
}

pub(crate) async fn minutes(app: &TestApp, provider: &Session, order: &Value, n: u64) {
    let q = "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { record { amount } } }";
    let at = app.state.clock.now();
    app.gql(q, json!({"i": {"orderId": order["id"], "quantity": n.to_string(), "at": at}}), Some(&provider.access_token))
        .await
        .ok();
}

pub(crate) async fn next_claim(app: &TestApp, buyer: &Session, order: &Value) -> GqlResponse {
    let q = format!("query($id: ID!) {{ nextClaim(orderId: $id) {{ {CLAIM} }} }}");
    app.gql(&q, json!({"id": order["id"]}), Some(&buyer.access_token)).await
}

pub(crate) async fn submit_claim(app: &TestApp, buyer: &Session, order: &Value, channel: &str, amount: u64, signature: &str) -> GqlResponse {
    let q = "mutation($i: SubmitClaimInput!) { submitClaim(input: $i) { session { latestClaim latestClaimTxid latestChannelClaim { channelId amount signature publicKey } } } }";
    let claim = json!({"channel": channel, "amount": amount.to_string(), "signature": signature});
    app.gql(q, json!({"i": {"orderId": order["id"], "channelClaim": claim}}), Some(&buyer.access_token)).await
}

/// The buyer signs `nextClaim` with xrpl-py and submits it; returns the claim.
pub(crate) async fn claim_everything(app: &TestApp, buyer: &Session, order: &Value) -> Value {
    let c = next_claim(app, buyer, order).await.ok()["nextClaim"].clone();
    let ch = &c["channel"];
    let (id, amount) = (ch["channelId"].as_str().unwrap(), drops(&ch["amount"]));
    let signature = xrpl::sign_claim(BUYER_SEED, id, amount);
    submit_claim(app, buyer, order, id, amount, &signature).await.ok();
    c
}

pub(crate) async fn close_session(app: &TestApp, provider: &Session, order: &Value, blobs: Option<Vec<String>>) -> GqlResponse {
    let q = "mutation($i: CloseSessionInput!) { closeSession(input: $i) { session { closed } order { status } } }";
    let mut input = json!({"orderId": order["id"]});
    if let Some(b) = blobs {
        input["signedTransactions"] = json!(b);
    }
    app.gql(q, json!({"i": input}), Some(&provider.access_token)).await
}

/// The provider's own PaymentChannelClaim (single-signed by `seed`) redeeming
/// `balance` with the buyer's `signature`, closing the channel when `close`.
pub(crate) fn destination_claim(seed: &str, channel: &str, balance: u64, signature: &str, close: bool, sequence: u32) -> String {
    let tx = json!({
        "TransactionType": "PaymentChannelClaim",
        "Account": PROVIDER_ADDRESS,
        "Channel": channel,
        "Balance": balance.to_string(),
        "Amount": balance.to_string(),
        "Signature": signature,
        "PublicKey": BUYER_PUBLIC_KEY,
        "Flags": if close { 0x0002_0000u32 } else { 0 },
        "Fee": "12",
        "Sequence": sequence,
    });
    xrpl::sign_single(seed, &tx.to_string())
}

/// The consultation on the local XRP Ledger with the real watcher: the escrow
/// account set up and the deposit paid (the order is FUNDED, its channel
/// proposed). Returns (app, watcher, provider, buyer, order, escrow account).
pub(crate) async fn funded_on_the_ledger(backend: Backend) -> (TestApp, XrplWatcher<RippledSource>, Session, Session, Value, String) {
    let app = TestApp::spawn_with_chains(backend).await;
    let chains = app.chains().clone();
    let source = RippledSource::connect(&chains.xrpl_ws_url, &chains.xrpl_rpc_url).await.unwrap();
    let watcher = XrplWatcher::new(app.state.clone(), source);
    chains.xrpl.faucet(BUYER_ADDRESS, 100_000_000).unwrap();
    chains.xrpl.faucet(PROVIDER_ADDRESS, 20_000_000).unwrap();
    chains.xrpl.close_ledger();
    catch_up(&watcher).await;
    let (provider, buyer, order) = place_consultation(&app).await;
    watcher.submit_pending().await.unwrap();
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    let escrow = order_of(&app, &buyer, &order).await["xrplEscrow"]["account"].as_str().unwrap().to_owned();
    pay_deposit(&app, &escrow, DEPOSIT).await;
    tick(&app, &watcher).await;
    (app, watcher, provider, buyer, order, escrow)
}

/// The consultation funded through chain events (no ledger): the channel is
/// proposed, signed by the marketplace.
async fn funded_offline(app: &TestApp) -> (Session, Session, Value) {
    let (provider, buyer, order) = place_consultation(app).await;
    let id = uuid_of(&order);
    prepare_xrpl_account(&app.state, id, 7, 1_000).await.expect("funding payment signed");
    deliver_xrpl_event(&app.state, id, XrplChainEvent::AccountCreated { ledger_index: 1_001 }).await.expect("created");
    let due = XrplChainEvent::ConfigurationDue { sequence: 1_001, validated: 1_001, signer_list_in_place: false };
    deliver_xrpl_event(&app.state, id, due).await.expect("configuration signed");
    deliver_xrpl_event(&app.state, id, XrplChainEvent::SetupValidated { ledger_index: 1_002, next_sequence: 1_003 }).await.expect("set up");
    deliver_xrpl_event(&app.state, id, XrplChainEvent::Funding { deposit_drops: DEPOSIT, ledger_index: 1_003 }).await.expect("funded");
    (provider, buyer, order)
}

/// Funded offline, the buyer co-signs the create and a ledger validates it.
async fn open_offline(app: &TestApp) -> (Session, Session, Value, String) {
    let (provider, buyer, order) = funded_offline(app).await;
    let o = order_of(app, &buyer, &order).await;
    sign_channel(app, &buyer, &order, &sign_awaiting(&o, BUYER_SEED)).await.ok();
    let o = order_of(app, &buyer, &order).await;
    let hash = channel(&o)["transactions"][0]["hash"].as_str().expect("the create is complete").to_owned();
    let applied = XrplChainEvent::ChannelCreateApplied { hash, result: "tesSUCCESS".into(), ledger_index: 1_004 };
    deliver_xrpl_event(&app.state, uuid_of(&order), applied).await.expect("opened");
    deliver_xrpl_event(&app.state, uuid_of(&order), XrplChainEvent::SequenceConsumed { sequence: 1_003, ledger_index: 1_004 })
        .await
        .expect("consumed");
    let id = channel(&order_of(app, &buyer, &order).await)["id"].as_str().unwrap().to_owned();
    (provider, buyer, order, id)
}

/// Funding opens a channel proposal the marketplace signed under its own
/// rule; it waits for the buyer's or the provider's signature, and nobody else's.
async fn a_funded_metered_order_proposes_a_channel_to_the_provider_claimed_by_the_buyer(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let (provider, buyer, order) = funded_offline(&app).await;
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(o["status"], "FUNDED");
    let ch = channel(&o);
    assert_eq!(ch["status"], "PROPOSED");
    assert_eq!(ch["destination"], PROVIDER_ADDRESS);
    assert_eq!(ch["publicKey"], BUYER_PUBLIC_KEY);
    assert!(drops(&ch["amount"]) < DEPOSIT && drops(&ch["amount"]) > DEPOSIT - 500_000, "{ch}");
    assert!(ch["settleDelaySecs"].as_u64().unwrap() >= 600);
    let create = &ch["transactions"][0];
    assert_eq!(create["kind"], "CREATE");
    assert_eq!(create["signedBy"], json!(["arbitrator"]));
    assert_eq!(create["awaitingSignature"], true);
    assert!(o["arbitratorSignatures"][0]["rule"].as_str().unwrap().starts_with("channel_open:"), "{o}");
    let tx: Value = serde_json::from_str(create["txJson"].as_str().unwrap()).unwrap();
    assert_eq!(tx["TransactionType"], "PaymentChannelCreate");
    assert!(tx.get("CancelAfter").is_none() && tx.get("LastLedgerSequence").is_none(), "claims must never expire: {tx}");

    // No claim before the channel is open.
    assert_refused(&next_claim(&app, &buyer, &order).await, "CONFLICT", "CHANNEL_NOT_OPEN");
    // The provider's signature sent with the buyer's token, a wrong count, a stranger.
    let by_provider = sign_awaiting(&o, PROVIDER_SEED);
    assert_refused(&sign_channel(&app, &buyer, &order, &by_provider).await, "BAD_USER_INPUT", "UNEXPECTED_SIGNER");
    let twice = [by_provider[0].clone(), by_provider[0].clone()];
    assert_refused(&sign_channel(&app, &provider, &order, &twice).await, "BAD_USER_INPUT", "WRONG_COUNT");
    let stranger = app.new_user("stranger").await;
    let refused = sign_channel(&app, &stranger, &order, &sign_awaiting(&o, OUTSIDER_SEED)).await;
    assert!(matches!(refused.error_code(), Some("NOT_FOUND") | Some("FORBIDDEN")), "{}", refused.body);

    // The provider may be the second signer as well; xrpl-py verifies the result.
    sign_channel(&app, &provider, &order, &by_provider).await.ok();
    let o = order_of(&app, &buyer, &order).await;
    let create = &channel(&o)["transactions"][0];
    assert_eq!(create["awaitingSignature"], false);
    let arbitrator = o["xrplEscrow"]["arbitratorAccount"].as_str().unwrap();
    let decoded = xrpl::verify(o["xrplEscrow"]["account"].as_str().unwrap(), &[BUYER_ADDRESS, PROVIDER_ADDRESS, arbitrator], &[create["finalBlob"].as_str().unwrap().to_owned()])
        .expect("xrpl-py verifies the create");
    assert_eq!(decoded[0]["type"], "PaymentChannelCreate");
    assert_eq!(decoded[0]["public_key"], BUYER_PUBLIC_KEY);
    assert_eq!(decoded[0]["destination"], PROVIDER_ADDRESS);
    assert_refused(&sign_channel(&app, &buyer, &order, &sign_awaiting(&o, BUYER_SEED)).await, "CONFLICT", "NOTHING_TO_SIGN");
}

/// A claim is one buyer signature over (channel, provider drops): xrpl-py's
/// signature is accepted; anything else is refused with a stable reason.
async fn channel_claims_are_one_buyer_signature_and_only_grow(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let (provider, buyer, order, id) = open_offline(&app).await;
    minutes(&app, &provider, &order, 10).await;
    let c = next_claim(&app, &buyer, &order).await.ok()["nextClaim"].clone();
    assert_eq!(drops(&c["cumulative"]), 10 * PRICE_PER_MINUTE);
    let amount = drops(&c["channel"]["amount"]);
    assert_eq!(amount, drops(&c["providerAmount"]));
    assert_eq!(amount + drops(&c["commission"]), 10 * PRICE_PER_MINUTE, "the channel pays the provider's share; the commission stays");
    assert_eq!(c["channel"]["channelId"], id);
    // The message is rippled's claim layout: what xrpl-py signs for (channel, amount).
    let message = c["channel"]["message"].as_str().unwrap();
    assert_eq!(message, format!("434C4D00{id}{amount:016X}"));

    let good = xrpl::sign_claim(BUYER_SEED, &id, amount);
    assert!(xrpl::verify_claim(BUYER_PUBLIC_KEY, &id, amount, &good));
    let by_provider = xrpl::sign_claim(PROVIDER_SEED, &id, amount);
    assert_refused(&submit_claim(&app, &buyer, &order, &id, amount, &by_provider).await, "BAD_USER_INPUT", "INVALID_SIGNATURE");
    // The buyer's signature of another amount, another channel, more than the usage.
    assert_refused(&submit_claim(&app, &buyer, &order, &id, amount - 1, &good).await, "BAD_USER_INPUT", "INVALID_SIGNATURE");
    let other = "AB".repeat(32);
    let on_other = xrpl::sign_claim(BUYER_SEED, &other, amount);
    assert_refused(&submit_claim(&app, &buyer, &order, &other, amount, &on_other).await, "BAD_USER_INPUT", "CHANNEL_MISMATCH");
    let too_much = amount + 2 * PRICE_PER_MINUTE;
    let above = xrpl::sign_claim(BUYER_SEED, &id, too_much);
    assert_refused(&submit_claim(&app, &buyer, &order, &id, too_much, &above).await, "BAD_USER_INPUT", "CLAIM_ABOVE_USAGE");
    assert_refused(&submit_claim(&app, &buyer, &order, &id, amount, "zz").await, "BAD_USER_INPUT", "MALFORMED_SIGNATURE");
    // The provider cannot submit claims.
    assert_refused(&submit_claim(&app, &provider, &order, &id, amount, &good).await, "FORBIDDEN", "WRONG_ROLE");

    let s = submit_claim(&app, &buyer, &order, &id, amount, &good).await.ok()["submitClaim"]["session"].clone();
    assert_eq!(drops(&s["latestClaim"]), 10 * PRICE_PER_MINUTE);
    assert_eq!(s["latestChannelClaim"]["signature"], good.to_uppercase());
    assert_eq!(s["latestChannelClaim"]["publicKey"], BUYER_PUBLIC_KEY);
    assert_refused(&submit_claim(&app, &buyer, &order, &id, amount, &good).await, "CONFLICT", "CLAIM_NOT_INCREASING");
    assert_refused(&next_claim(&app, &buyer, &order).await, "CONFLICT", "NOTHING_TO_CLAIM");

    // Long after (a claim never expires), one more minute: only a larger claim is taken.
    app.clock.advance(Duration::days(5));
    minutes(&app, &provider, &order, 1).await;
    let later = claim_everything(&app, &buyer, &order).await;
    assert_eq!(drops(&later["cumulative"]), 11 * PRICE_PER_MINUTE);
    assert_refused(&submit_claim(&app, &buyer, &order, &id, amount, &good).await, "CONFLICT", "CLAIM_NOT_INCREASING");
}

/// The provider closes the session with its own claim: checked before it is
/// submitted; once the ledger shows the channel closed, the commission and
/// the buyer's rest are built from what the account holds and co-signed by
/// the marketplace.
async fn the_provider_closes_the_channel_with_its_own_claim(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let (provider, buyer, order, id) = open_offline(&app).await;
    minutes(&app, &provider, &order, 4).await;
    let first = claim_everything(&app, &buyer, &order).await;
    minutes(&app, &provider, &order, 6).await;
    let latest = claim_everything(&app, &buyer, &order).await;
    let (older, amount) = (drops(&first["channel"]["amount"]), drops(&latest["channel"]["amount"]));
    let older_sig = xrpl::sign_claim(BUYER_SEED, &id, older);
    let sig = xrpl::sign_claim(BUYER_SEED, &id, amount);

    let wrong = close_session(&app, &provider, &order, Some(vec![destination_claim(PROVIDER_SEED, &id, older, &older_sig, true, 5)])).await;
    assert_refused(&wrong, "CONFLICT", "CLAIM_NOT_LATEST");
    let open = close_session(&app, &provider, &order, Some(vec![destination_claim(PROVIDER_SEED, &id, amount, &sig, false, 5)])).await;
    assert_refused(&open, "BAD_USER_INPUT", "TRANSACTION_MISMATCH");
    let foreign = close_session(&app, &provider, &order, Some(vec![destination_claim(OUTSIDER_SEED, &id, amount, &sig, true, 5)])).await;
    assert_refused(&foreign, "BAD_USER_INPUT", "UNEXPECTED_SIGNER");
    let psbt = app
        .gql(
            "mutation($i: CloseSessionInput!) { closeSession(input: $i) { order { status } } }",
            json!({"i": {"orderId": order["id"], "psbt": "cHNidP8="}}),
            Some(&provider.access_token),
        )
        .await;
    assert_refused(&psbt, "BAD_USER_INPUT", "WRONG_CHAIN");

    let blob = destination_claim(PROVIDER_SEED, &id, amount, &sig, true, 5);
    let closed = close_session(&app, &provider, &order, Some(vec![blob])).await.ok();
    assert_eq!(closed["closeSession"]["session"]["closed"], true);
    let o = order_of(&app, &buyer, &order).await;
    let hash = channel(&o)["providerCloseHash"].as_str().expect("the provider's close is kept for the watcher").to_owned();
    assert!(o["payout"].is_null(), "nothing is paid from the escrow before the channel is closed: {o}");

    // The ledger applies it and no longer holds the channel.
    let applied = XrplChainEvent::ChannelClaimApplied {
        hash,
        result: "tesSUCCESS".into(),
        balance_drops: Some(amount),
        destination_closed: true,
        ledger_index: 1_010,
    };
    let oid = uuid_of(&order);
    deliver_xrpl_event(&app.state, oid, applied).await.unwrap();
    let spendable = DEPOSIT - 30 - amount;
    deliver_xrpl_event(&app.state, oid, XrplChainEvent::ChannelRead { channel: None, spendable_drops: spendable, ledger_index: 1_010 })
        .await
        .unwrap();
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(channel(&o)["status"], "CLOSED");
    assert_eq!(drops(&channel(&o)["balance"]), amount);
    let txs = o["payout"]["xrplTransactions"].as_array().unwrap();
    let paid: Vec<(&str, u64)> = txs.iter().map(|t| (t["recipient"].as_str().unwrap(), drops(&t["amount"]))).collect();
    let commission = drops(&latest["commission"]);
    let fees = 2 * 30;
    assert_eq!(paid, [("buyer", spendable - commission - fees), ("marketplace", commission)], "{o}");
    assert!(o["arbitratorSignatures"].as_array().unwrap().iter().any(|s| s["rule"].as_str().unwrap().starts_with("latest_claim")), "{o}");
    assert_eq!(o["payout"]["signedBy"], json!(["MARKETPLACE"]));
    // Either party adds the second signature.
    let blobs: Vec<String> = txs.iter().map(|t| xrpl::sign(PROVIDER_SEED, t["txJson"].as_str().unwrap())).collect();
    let q = "mutation($i: SubmitPayoutSignatureInput!) { submitPayoutSignature(input: $i) { payout { complete } } }";
    let done = app.gql(q, json!({"i": {"orderId": order["id"], "signedTransactions": blobs}}), Some(&provider.access_token)).await.ok();
    assert_eq!(done["submitPayoutSignature"]["payout"]["complete"], true);
}

/// The metered consultation on the local XRP Ledger: per-minute pricing, a
/// claim every minute, the provider vanishes after the last claim, the review
/// window passes. The escrow closes the channel delivering the latest claim,
/// and pays the commission and the buyer's rest once it is closed: the
/// provider gets exactly the claimed amount on the ledger, the buyer the rest,
/// and the escrow account keeps only its reserve.
async fn a_consultation_paid_per_minute_settles_on_the_ledger_after_the_provider_vanishes(backend: Backend) {
    if !xrpl::available() {
        return;
    }
    // A long scenario: its future lives on the heap, not the test thread's stack.
    Box::pin(consultation_on_the_ledger(backend)).await
}

async fn consultation_on_the_ledger(backend: Backend) {
    let (app, watcher, provider, buyer, order, escrow) = funded_on_the_ledger(backend).await;
    let chains = app.chains().clone();
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(o["status"], "FUNDED");
    sign_channel(&app, &buyer, &order, &sign_awaiting(&o, BUYER_SEED)).await.ok();
    tick(&app, &watcher).await;
    tick(&app, &watcher).await;
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(channel(&o)["status"], "OPEN", "{o}");

    // Ten minutes, a claim after each.
    let mut last = Value::Null;
    for _ in 0..10 {
        app.clock.advance(Duration::minutes(1));
        minutes(&app, &provider, &order, 1).await;
        last = claim_everything(&app, &buyer, &order).await;
        tick(&app, &watcher).await;
    }
    assert_eq!(drops(&last["cumulative"]), 10 * PRICE_PER_MINUTE);
    let claimed = drops(&last["channel"]["amount"]);
    let commission = drops(&last["commission"]);
    app.gql(
        "mutation($i: OrderActionInput!) { markDelivered(input: $i) { order { status } } }",
        json!({"i": {"orderId": order["id"]}}),
        Some(&provider.access_token),
    )
    .await
    .ok();

    // The provider is gone. Nothing happens before the review window ends.
    assert_eq!(agora_api::metered::settle_abandoned(&app.state, app.clock.now()).await.unwrap(), 0);
    app.clock.advance(Duration::hours(73));
    assert_eq!(agora_api::metered::settle_abandoned(&app.state, app.clock.now()).await.unwrap(), 1);
    let o = order_of(&app, &buyer, &order).await;
    let txs = channel(&o)["transactions"].as_array().unwrap().clone();
    let kinds: Vec<&str> = txs.iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["CREATE", "REQUEST_CLOSE", "CLOSE"]);
    assert_eq!(drops(&txs[1]["balance"]), claimed, "the escrow's close delivers the latest claim");
    assert_eq!(txs[1]["signedBy"], json!(["arbitrator"]));
    sign_channel(&app, &buyer, &order, &sign_awaiting(&o, BUYER_SEED)).await.ok();
    let o = order_of(&app, &buyer, &order).await;
    let arbitrator = o["xrplEscrow"]["arbitratorAccount"].as_str().unwrap().to_owned();
    let finals: Vec<String> = channel(&o)["transactions"].as_array().unwrap()[1..].iter().map(|t| t["finalBlob"].as_str().unwrap().to_owned()).collect();
    let decoded = xrpl::verify(&escrow, &[BUYER_ADDRESS, PROVIDER_ADDRESS, &arbitrator], &finals).expect("xrpl-py verifies the closing transactions");
    assert_eq!(decoded[0]["balance"], claimed.to_string());
    assert_eq!(decoded[0]["flags"], 0x0002_0000);

    let provider_before = chains.xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops;
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    let provider_after = chains.xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops;
    assert_eq!(provider_after - provider_before, claimed, "the provider received exactly the latest claim, without acting");
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(channel(&o)["status"], "OPEN", "the channel stays open for its settle delay");
    assert!(channel(&o)["expiration"].as_u64().is_some(), "{o}");

    // The settle delay passes on the ledger: the second close applies.
    chains.xrpl.advance_time(channel(&o)["settleDelaySecs"].as_u64().unwrap() as u32 + 30);
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(channel(&o)["status"], "CLOSED", "{o}");
    let payments = o["payout"]["xrplTransactions"].as_array().unwrap().clone();
    let blobs: Vec<String> = payments.iter().map(|t| xrpl::sign(BUYER_SEED, t["txJson"].as_str().unwrap())).collect();
    let q = "mutation($i: SubmitPayoutSignatureInput!) { submitPayoutSignature(input: $i) { payout { complete } } }";
    app.gql(q, json!({"i": {"orderId": order["id"], "signedTransactions": blobs}}), Some(&buyer.access_token)).await.ok();
    let buyer_before = chains.xrpl.account(BUYER_ADDRESS).unwrap().balance_drops;
    for _ in 0..2 {
        tick(&app, &watcher).await;
    }
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(o["status"], "SETTLED", "{o}");
    // Every marketplace signature is in the audit log: the create, the two
    // closes (one row), the remainder.
    let rules: Vec<&str> = o["arbitratorSignatures"].as_array().unwrap().iter().map(|s| s["rule"].as_str().unwrap()).collect();
    assert_eq!(rules.len(), 3, "{rules:?}");
    assert!(rules[0].starts_with("channel_open:") && rules[1].starts_with("latest_claim:") && rules[2].starts_with("latest_claim:"), "{rules:?}");
    let buyer_after = chains.xrpl.account(BUYER_ADDRESS).unwrap().balance_drops;
    let to_marketplace: u64 = payments.iter().filter(|t| t["recipient"] == "marketplace").map(|t| drops(&t["amount"])).sum();
    assert_eq!(to_marketplace, commission);
    // Five multisigned transactions (create, two closes, two Payments) at 30 drops each.
    let fees = 5 * 30;
    assert_eq!(buyer_after - buyer_before, DEPOSIT - claimed - commission - fees, "the buyer gets the rest, to the drop");
    let left = chains.xrpl.account(&escrow).unwrap();
    assert_eq!(left.balance_drops, 1_000_000 + 200_000 * u64::from(left.owner_count), "only the reserve stays in the escrow");
    assert_eq!(left.owner_count, 1, "the channel is gone; the signer list remains");
}

/// The provider redeems alone on the ledger, at any time, with its own
/// claim and `tfClose`: the watcher sees the channel closed and settles the
/// session; the provider got exactly its claim.
async fn the_provider_redeems_alone_on_the_ledger(backend: Backend) {
    if !xrpl::available() {
        return;
    }
    let (app, watcher, provider, buyer, order, _) = funded_on_the_ledger(backend).await;
    let chains = app.chains().clone();
    // The provider co-signs the create this time.
    let o = order_of(&app, &provider, &order).await;
    sign_channel(&app, &provider, &order, &sign_awaiting(&o, PROVIDER_SEED)).await.ok();
    tick(&app, &watcher).await;
    tick(&app, &watcher).await;
    let id = channel(&order_of(&app, &buyer, &order).await)["id"].as_str().unwrap().to_owned();
    minutes(&app, &provider, &order, 7).await;
    let claim = claim_everything(&app, &buyer, &order).await;
    let amount = drops(&claim["channel"]["amount"]);
    let session = app
        .gql(
            "query($id: ID!) { session(orderId: $id) { latestChannelClaim { channelId amount signature publicKey } } }",
            json!({"id": order["id"]}),
            Some(&provider.access_token),
        )
        .await
        .ok()["session"]["latestChannelClaim"]
        .clone();
    let sequence = chains.xrpl.account(PROVIDER_ADDRESS).unwrap().sequence;
    let provider_before = chains.xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops;
    let blob = destination_claim(PROVIDER_SEED, &id, amount, session["signature"].as_str().unwrap(), true, sequence);
    assert!(chains.xrpl.submit(&blob).accepted(), "the provider submits its own claim to the ledger");
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    let provider_after = chains.xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops;
    assert_eq!(provider_after + 12 - provider_before, amount, "exactly the claim, less its own fee");
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(channel(&o)["status"], "CLOSED", "{o}");
    assert!(o["history"].as_array().unwrap().iter().any(|e| e["event"] == "ChannelClosedByProvider"), "{o}");
    let txs = o["payout"]["xrplTransactions"].as_array().unwrap();
    let commission = drops(&claim["commission"]);
    assert!(txs.iter().any(|t| t["recipient"] == "marketplace" && drops(&t["amount"]) == commission), "{o}");
    assert!(txs.iter().all(|t| t["recipient"] != "provider"), "the provider was paid by the channel: {o}");
}

/// A dispute on an open channel: the arbitrator's split is paid by closing
/// the channel with the provider's decided share, then the buyer's rest and
/// the marketplace's fees once it is closed; the marketplace signs each step
/// under the decision, the provider adds its signature.
async fn a_decision_on_an_open_channel_closes_it_with_the_decided_share(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let arb = crate::disputes::arbitrator(&app, "channel-arbitrator").await;
    let (provider, buyer, order, _) = open_offline(&app).await;
    minutes(&app, &provider, &order, 10).await;
    let claim = claim_everything(&app, &buyer, &order).await;
    let opened = crate::disputes::open(&app, &order, &buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    crate::disputes::decide(&app, &opened, 5_000, &arb.access_token, None).await.ok();
    app.clock.advance(Duration::hours(73));
    agora_api::disputes::sweep(&app.state, app.clock.now()).await.unwrap();
    let o = order_of(&app, &buyer, &order).await;
    assert!(o["payout"].is_null(), "{o}");
    let txs = channel(&o)["transactions"].as_array().unwrap().clone();
    assert_eq!(txs.len(), 3, "{o}");
    let delivered = drops(&txs[1]["balance"]);
    assert!(delivered > drops(&claim["channel"]["amount"]), "half of the pool is more than the claim: {o}");
    assert!(o["arbitratorSignatures"].as_array().unwrap().iter().any(|s| s["rule"] == "arbitration_decision:5000"), "{o}");
    sign_channel(&app, &provider, &order, &sign_awaiting(&o, PROVIDER_SEED)).await.ok();
    let o = order_of(&app, &provider, &order).await;
    let hashes: Vec<String> = channel(&o)["transactions"].as_array().unwrap()[1..].iter().map(|t| t["hash"].as_str().unwrap().to_owned()).collect();

    let oid = uuid_of(&order);
    let info = |expiration| agora_escrow::source::ChannelInfo {
        account: o["xrplEscrow"]["account"].as_str().unwrap().to_owned(),
        destination: PROVIDER_ADDRESS.into(),
        amount_drops: drops(&channel(&o)["amount"]),
        balance_drops: delivered,
        settle_delay: 3_600,
        public_key: BUYER_PUBLIC_KEY.into(),
        expiration,
        cancel_after: None,
    };
    let events = [
        XrplChainEvent::SequenceConsumed { sequence: 1_004, ledger_index: 1_020 },
        XrplChainEvent::ChannelClaimApplied { hash: hashes[0].clone(), result: "tesSUCCESS".into(), balance_drops: Some(delivered), destination_closed: false, ledger_index: 1_020 },
        XrplChainEvent::ChannelRead { channel: Some(info(Some(900_000_000))), spendable_drops: 60, ledger_index: 1_020 },
        XrplChainEvent::SequenceConsumed { sequence: 1_005, ledger_index: 1_030 },
        XrplChainEvent::ChannelClaimApplied { hash: hashes[1].clone(), result: "tesSUCCESS".into(), balance_drops: None, destination_closed: false, ledger_index: 1_030 },
    ];
    for e in events {
        deliver_xrpl_event(&app.state, oid, e).await.unwrap();
    }
    assert_eq!(channel(&order_of(&app, &buyer, &order).await)["expiration"], 900_000_000);
    let amount = drops(&channel(&o)["amount"]);
    let spendable = DEPOSIT - amount - 30 - 2 * 30 + (amount - delivered);
    deliver_xrpl_event(&app.state, oid, XrplChainEvent::ChannelRead { channel: None, spendable_drops: spendable, ledger_index: 1_031 })
        .await
        .unwrap();
    let o = order_of(&app, &buyer, &order).await;
    assert_eq!(channel(&o)["status"], "CLOSED");
    let paid: Vec<(&str, u64)> = o["payout"]["xrplTransactions"].as_array().unwrap().iter().map(|t| (t["recipient"].as_str().unwrap(), drops(&t["amount"]))).collect();
    assert!(paid.iter().all(|(r, _)| *r != "provider"), "the channel paid the provider's share: {paid:?}");
    let b = &o["payout"]["breakdown"];
    assert_eq!(paid.iter().map(|(_, a)| a).sum::<u64>() + drops(&b["networkFee"]), spendable, "nothing stays behind: {o}");
    assert!(drops(&b["commission"]) > 0);
    assert_eq!(o["payout"]["signedBy"], json!(["MARKETPLACE"]), "co-signed under the decision again once built");
}

/// The provider hands in its closing claim, then spends that Sequence on
/// another transaction before it is sent: the ledger refuses the claim for
/// good, and the escrow closes the channel itself, delivering the latest
/// claim, so the buyer's rest is not held hostage.
async fn a_closing_claim_the_provider_voids_gives_way_to_the_escrows_close(backend: Backend) {
    if !xrpl::available() {
        return;
    }
    let (app, watcher, provider, buyer, order, _) = funded_on_the_ledger(backend).await;
    let chains = app.chains().clone();
    let o = order_of(&app, &buyer, &order).await;
    sign_channel(&app, &buyer, &order, &sign_awaiting(&o, BUYER_SEED)).await.ok();
    tick(&app, &watcher).await;
    tick(&app, &watcher).await;
    let id = channel(&order_of(&app, &buyer, &order).await)["id"].as_str().unwrap().to_owned();
    minutes(&app, &provider, &order, 5).await;
    let claim = claim_everything(&app, &buyer, &order).await;
    let amount = drops(&claim["channel"]["amount"]);
    let signature = xrpl::sign_claim(BUYER_SEED, &id, amount);
    let sequence = chains.xrpl.account(PROVIDER_ADDRESS).unwrap().sequence;
    close_session(&app, &provider, &order, Some(vec![destination_claim(PROVIDER_SEED, &id, amount, &signature, true, sequence)])).await.ok();
    // The provider's account uses that Sequence first.
    let other = json!({"TransactionType": "AccountSet", "Account": PROVIDER_ADDRESS, "Fee": "12", "Flags": 0, "Sequence": sequence});
    assert!(chains.xrpl.submit(&xrpl::sign_single(PROVIDER_SEED, &other.to_string())).accepted());
    chains.xrpl.close_ledger();
    for _ in 0..2 {
        tick(&app, &watcher).await;
    }
    let o = order_of(&app, &buyer, &order).await;
    assert!(o["history"].as_array().unwrap().iter().any(|e| e["event"] == "ProviderCloseRefused"), "{o}");
    let ch = channel(&o);
    assert!(ch["providerCloseHash"].is_null());
    let kinds: Vec<&str> = ch["transactions"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["CREATE", "REQUEST_CLOSE", "CLOSE"], "{o}");
    assert_eq!(drops(&ch["transactions"][1]["balance"]), amount);
    assert_eq!(ch["transactions"][1]["signedBy"], json!(["arbitrator"]));
    // The buyer completes the close; the provider gets its claim anyway.
    let before = chains.xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops;
    sign_channel(&app, &buyer, &order, &sign_awaiting(&o, BUYER_SEED)).await.ok();
    for _ in 0..3 {
        tick(&app, &watcher).await;
    }
    assert_eq!(chains.xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops - before, amount);
}

on_both_backends!(
    a_decision_on_an_open_channel_closes_it_with_the_decided_share,
    a_funded_metered_order_proposes_a_channel_to_the_provider_claimed_by_the_buyer,
    channel_claims_are_one_buyer_signature_and_only_grow,
    the_provider_closes_the_channel_with_its_own_claim,
);

chain_tests!(
    a_closing_claim_the_provider_voids_gives_way_to_the_escrows_close,
    a_consultation_paid_per_minute_settles_on_the_ledger_after_the_provider_vanishes,
    the_provider_redeems_alone_on_the_ledger,
);
