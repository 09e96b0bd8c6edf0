//! XRP orders end to end: the escrow account prepared before funding and what
//! the buyer verifies, funding as a chain event, multisigned payouts signed by
//! xrpl-py (an independent implementation) and verified by it again.

use agora_api::orders::chain::{deliver_xrpl_event, prepare_xrpl_account, XrplChainEvent};
use agora_api::orders::{act, Caller};
use agora_domain::escrow::EscrowEvent;
use agora_domain::money::BasisPoints;
use agora_tests::xrpl::{self, BUYER_ADDRESS, BUYER_PUBLIC_KEY, BUYER_SEED, OUTSIDER_SEED, PROVIDER_ADDRESS, PROVIDER_PUBLIC_KEY, PROVIDER_SEED};
use agora_tests::{on_both_backends, Session, TestApp};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

pub const FIELDS: &str = "id status version amountDue
    xrplEscrow { account setupStatus buyerAccount providerAccount arbitratorAccount depositDrops nextSequence
        verifyBeforeFunding { escrowAccount quorum masterDisabled regularKey expectedReserveDrops signerEntries { account weight role } }
        setupTransactions { funding { hash blob } signerListSet { hash blob } disableMaster { hash blob } }
        payoutDestinations { provider { address tag } buyer { address tag } marketplace { address tag } } }
    payout { outcome providerBps txid complete signedBy
        breakdown { provider buyer commission arbitrationFee networkFee }
        xrplTransactions { recipient destination destinationTag amount fee sequence lastLedgerSequence txJson finalBlob hash validated refusedWith } }
    settlement { outcome txid }
    arbitratorSignatures { rule outcome }";

const REGISTER_KEY: &str = "mutation($i: RegisterEscrowKeyInput!) { registerEscrowKey(input: $i) { escrowKey { id } } }";

pub struct Parties {
    pub buyer: Session,
    pub provider: Session,
    pub buyer_key_id: String,
    pub listing_id: String,
}

pub async fn parties(app: &TestApp) -> Parties {
    let (provider, _) = app.new_provider("xprov").await;
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
            json!({"asset": "XRP", "pricing": {"fixed": {"asset": "XRP", "amount": "25000000"}}}),
        )
        .await
        .ok();
    let buyer = app.new_user("xbuyer").await;
    let key = app
        .gql(
            REGISTER_KEY,
            json!({"i": {"chain": "XRPL", "publicKey": BUYER_PUBLIC_KEY, "address": BUYER_ADDRESS}}),
            Some(&buyer.access_token),
        )
        .await
        .ok();
    Parties {
        buyer_key_id: key["registerEscrowKey"]["escrowKey"]["id"].as_str().unwrap().to_owned(),
        listing_id: listing["createListing"]["listing"]["id"].as_str().unwrap().to_owned(),
        buyer,
        provider,
    }
}

pub async fn place(app: &TestApp, p: &Parties) -> Value {
    let q = format!("mutation($i: PlaceOrderInput!) {{ placeOrder(input: $i) {{ order {{ {FIELDS} }} }} }}");
    app.gql(&q, json!({"i": {"listingId": p.listing_id, "buyerKeyId": p.buyer_key_id}}), Some(&p.buyer.access_token))
        .await
        .ok()["placeOrder"]["order"]
        .clone()
}

pub fn uuid_of(order: &Value) -> uuid::Uuid {
    agora_api::graphql::node::decode(order["id"].as_str().unwrap()).unwrap().1
}

pub async fn view(app: &TestApp, order: &Value, token: &str) -> Value {
    let q = format!("query($id: ID!) {{ order(id: $id) {{ {FIELDS} }} }}");
    app.gql(&q, json!({"id": order["id"]}), Some(token)).await.ok()["order"].clone()
}

pub async fn action(app: &TestApp, name: &str, order: &Value, token: &str) -> Value {
    let q = format!("mutation($i: OrderActionInput!) {{ {name}(input: $i) {{ order {{ {FIELDS} }} }} }}");
    app.gql(&q, json!({"i": {"orderId": order["id"]}}), Some(token)).await.ok()[name]["order"].clone()
}

pub async fn submit(app: &TestApp, order: &Value, blobs: &[String], token: &str) -> agora_tests::GqlResponse {
    let q = format!(
        "mutation($i: SubmitPayoutSignatureInput!) {{ submitPayoutSignature(input: $i) {{ order {{ {FIELDS} }} }} }}"
    );
    app.gql(&q, json!({"i": {"orderId": order["id"], "signedTransactions": blobs}}), Some(token)).await
}

/// Signs every payout transaction of `order` with `seed` (via xrpl-py).
pub fn sign_all(order: &Value, seed: &str) -> Vec<String> {
    order["payout"]["xrplTransactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tx| xrpl::sign(seed, tx["txJson"].as_str().unwrap()))
        .collect()
}

/// Places an order and takes its escrow account through set-up and funding.
async fn funded_order(app: &TestApp, p: &Parties) -> Value {
    let order = place(app, p).await;
    let id = uuid_of(&order);
    prepare_xrpl_account(&app.state, id, 7, 1_000).await.expect("funding payment signed");
    deliver_xrpl_event(&app.state, id, XrplChainEvent::AccountCreated { ledger_index: 1_001 }).await.expect("account created");
    deliver_xrpl_event(&app.state, id, XrplChainEvent::ConfigurationDue { sequence: 1_001, validated: 1_001, signer_list_in_place: false })
        .await
        .expect("account created");
    deliver_xrpl_event(&app.state, id, XrplChainEvent::SetupValidated { ledger_index: 1_002, next_sequence: 1_003 }).await.expect("setup validated");
    deliver_xrpl_event(&app.state, id, XrplChainEvent::Funding { deposit_drops: 25_000_000, ledger_index: 1_003 })
        .await
        .expect("funding");
    order
}

pub fn drops(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

async fn an_xrp_order_shows_its_escrow_account_and_what_to_verify_before_paying(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let p = parties(&app).await;
    let order = place(&app, &p).await;
    let escrow = &order["xrplEscrow"];
    assert_eq!(order["status"], "AWAITING_FUNDING");
    assert_eq!(escrow["setupStatus"], "AWAITING_ACCOUNT");
    assert!(escrow["account"].as_str().unwrap().starts_with('r'));
    assert_ne!(escrow["account"], escrow["arbitratorAccount"]);
    // Nothing to verify until the account is configured: the buyer must not pay yet.
    assert!(escrow["verifyBeforeFunding"].is_null());

    let id = uuid_of(&order);
    prepare_xrpl_account(&app.state, id, 7, 1_000).await.unwrap();
    deliver_xrpl_event(&app.state, id, XrplChainEvent::AccountCreated { ledger_index: 1_001 }).await.unwrap();
    deliver_xrpl_event(&app.state, id, XrplChainEvent::ConfigurationDue { sequence: 1_001, validated: 1_001, signer_list_in_place: false })
        .await
        .unwrap();
    let configuring = view(&app, &order, &p.buyer.access_token).await;
    let e = &configuring["xrplEscrow"];
    assert_eq!(e["setupStatus"], "CONFIGURING");
    assert_eq!(e["nextSequence"], 1_003);
    let check = &e["verifyBeforeFunding"];
    assert_eq!(check["quorum"], 2);
    assert_eq!(check["masterDisabled"], true);
    assert!(check["regularKey"].is_null());
    let mut entries: Vec<(String, String, u64)> = check["signerEntries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["role"].as_str().unwrap().to_owned(), s["account"].as_str().unwrap().to_owned(), s["weight"].as_u64().unwrap()))
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        vec![
            ("arbitrator".into(), e["arbitratorAccount"].as_str().unwrap().to_owned(), 1),
            ("buyer".into(), BUYER_ADDRESS.into(), 1),
            ("provider".into(), PROVIDER_ADDRESS.into(), 1),
        ]
    );
    // xrpl-py checks the prepared transactions: funding payment, 2-of-3 signer list, master key off.
    let tx = &e["setupTransactions"];
    xrpl::verify_setup(
        e["account"].as_str().unwrap(),
        &[BUYER_ADDRESS, PROVIDER_ADDRESS, e["arbitratorAccount"].as_str().unwrap()],
        tx["funding"]["blob"].as_str().unwrap(),
        tx["signerListSet"]["blob"].as_str().unwrap(),
        tx["disableMaster"]["blob"].as_str().unwrap(),
    )
    .expect("xrpl-py accepts the setup transactions");
    deliver_xrpl_event(&app.state, id, XrplChainEvent::SetupValidated { ledger_index: 1_002, next_sequence: 1_003 }).await.unwrap();
    assert_eq!(view(&app, &order, &p.buyer.access_token).await["xrplEscrow"]["setupStatus"], "READY");
}

async fn an_xrp_order_is_funded_released_with_multisigned_payments_and_settled(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let p = parties(&app).await;
    let order = funded_order(&app, &p).await;
    assert_eq!(view(&app, &order, &p.buyer.access_token).await["status"], "FUNDED");
    action(&app, "markDelivered", &order, &p.provider.access_token).await;
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    assert_eq!(releasing["status"], "RELEASING");
    let payout = &releasing["payout"];
    let b = &payout["breakdown"];
    assert_eq!(
        drops(&b["provider"]) + drops(&b["buyer"]) + drops(&b["commission"]) + drops(&b["networkFee"]),
        25_000_000
    );
    let txs = payout["xrplTransactions"].as_array().unwrap();
    // Provider and marketplace are paid; the buyer's share is zero and has no Payment.
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0]["recipient"], "provider");
    assert_eq!(txs[0]["destination"], PROVIDER_ADDRESS);
    assert_eq!(drops(&txs[0]["amount"]), drops(&b["provider"]));
    // base fee × (1 + 2 signers), consecutive sequences after the set-up.
    assert_eq!(drops(&txs[0]["fee"]), 30);
    assert_eq!(txs[0]["sequence"], 1_003);
    assert_eq!(txs[1]["sequence"], 1_004);
    assert!(txs[0]["lastLedgerSequence"].as_u64().unwrap() > 1_003);

    let after_buyer = submit(&app, &order, &sign_all(&releasing, BUYER_SEED), &p.buyer.access_token).await.ok();
    let o = &after_buyer["submitPayoutSignature"]["order"];
    assert_eq!(o["payout"]["complete"], false);
    assert_eq!(o["payout"]["signedBy"], json!(["BUYER"]));
    let done = submit(&app, &order, &sign_all(&releasing, PROVIDER_SEED), &p.provider.access_token).await.ok();
    let o = &done["submitPayoutSignature"]["order"];
    assert_eq!(o["payout"]["complete"], true);
    let finals: Vec<String> = o["payout"]["xrplTransactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["finalBlob"].as_str().unwrap().to_owned())
        .collect();
    let escrow = o["xrplEscrow"]["account"].as_str().unwrap();
    let arbitrator = o["xrplEscrow"]["arbitratorAccount"].as_str().unwrap();
    let decoded = xrpl::verify(escrow, &[BUYER_ADDRESS, PROVIDER_ADDRESS, arbitrator], &finals)
        .expect("xrpl-py verifies every signature of the final blobs");
    assert_eq!(decoded[0]["destination"], PROVIDER_ADDRESS);
    assert_eq!(decoded[0]["amount"], b["provider"]);
    assert_eq!(decoded[0]["hash"], o["payout"]["xrplTransactions"][0]["hash"]);
    let mut signers: Vec<&str> = decoded[0]["signers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    signers.sort_unstable();
    let mut expected = vec![BUYER_ADDRESS, PROVIDER_ADDRESS];
    expected.sort_unstable();
    assert_eq!(signers, expected);

    let id = uuid_of(&order);
    for (i, tx) in o["payout"]["xrplTransactions"].as_array().unwrap().iter().enumerate() {
        let settled = deliver_xrpl_event(
            &app.state,
            id,
            XrplChainEvent::PayoutValidated { hash: tx["hash"].as_str().unwrap().to_owned(), ledger_index: 1_010 + i as u32 },
        )
        .await
        .unwrap();
        let last = i + 1 == finals.len();
        assert_eq!(settled.state.name() == "Settled", last);
    }
    let settled = view(&app, &order, &p.buyer.access_token).await;
    assert_eq!(settled["status"], "SETTLED");
    assert_eq!(settled["settlement"]["outcome"], "RELEASE");
}

async fn an_xrp_refund_after_the_delivery_deadline_is_cosigned_by_the_marketplace(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let p = parties(&app).await;
    let order = funded_order(&app, &p).await;
    app.clock.advance(chrono::Duration::hours(24 + 48 + 1));
    let refunding = action(&app, "requestRefund", &order, &p.buyer.access_token).await;
    assert_eq!(refunding["status"], "REFUNDING");
    assert_eq!(refunding["payout"]["signedBy"], json!(["MARKETPLACE"]));
    assert_eq!(refunding["arbitratorSignatures"][0]["rule"], "delivery_deadline_passed");
    let txs = refunding["payout"]["xrplTransactions"].as_array().unwrap();
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0]["destination"], BUYER_ADDRESS);
    assert_eq!(drops(&txs[0]["amount"]), 25_000_000 - 30);
    let done = submit(&app, &order, &sign_all(&refunding, BUYER_SEED), &p.buyer.access_token).await.ok();
    let o = &done["submitPayoutSignature"]["order"];
    assert_eq!(o["payout"]["complete"], true);
    let final_blob = o["payout"]["xrplTransactions"][0]["finalBlob"].as_str().unwrap().to_owned();
    let arbitrator = o["xrplEscrow"]["arbitratorAccount"].as_str().unwrap();
    xrpl::verify(o["xrplEscrow"]["account"].as_str().unwrap(), &[BUYER_ADDRESS, PROVIDER_ADDRESS, arbitrator], &[final_blob])
        .expect("xrpl-py verifies the refund");
}

async fn an_arbitrated_xrp_split_pays_both_parties_and_the_fee(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let p = parties(&app).await;
    let order = funded_order(&app, &p).await;
    let id = uuid_of(&order);
    // Disputes and arbitrator assignment come with the disputes issue; here the
    // arbitrator is assigned directly and the events go to the order service.
    let arbitrator = app.new_user("arbiter").await;
    let arbitrator_id = agora_api::graphql::node::decode(&arbitrator.user_id).unwrap().1;
    let db = sea_orm::Database::connect(app.database_url()).await.unwrap();
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE orders SET arbitrator_id = $1 WHERE id = $2",
        [arbitrator_id.into(), id.into()],
    ))
    .await
    .unwrap();
    let buyer_id = agora_api::graphql::node::decode(&p.buyer.user_id).unwrap().1;
    act(&app.state, id, Caller::User(buyer_id), EscrowEvent::OpenDispute).await.unwrap();
    act(
        &app.state,
        id,
        Caller::User(arbitrator_id),
        EscrowEvent::Decide { provider_bps: BasisPoints::new(6_000).unwrap() },
    )
    .await
    .unwrap();
    let settling = view(&app, &order, &p.provider.access_token).await;
    assert_eq!(settling["status"], "SETTLING");
    assert_eq!(settling["payout"]["providerBps"], 6_000);
    let b = &settling["payout"]["breakdown"];
    // Arbitration fee: 1 XRP fixed + 1 % of 25 XRP.
    assert_eq!(drops(&b["arbitrationFee"]), 1_250_000);
    let txs = settling["payout"]["xrplTransactions"].as_array().unwrap();
    assert_eq!(txs.len(), 3);
    let done = submit(&app, &order, &sign_all(&settling, PROVIDER_SEED), &p.provider.access_token).await.ok();
    let o = &done["submitPayoutSignature"]["order"];
    assert_eq!(o["payout"]["complete"], true);
    let finals: Vec<String> = o["payout"]["xrplTransactions"].as_array().unwrap().iter().map(|t| t["finalBlob"].as_str().unwrap().to_owned()).collect();
    let arbitrator_account = o["xrplEscrow"]["arbitratorAccount"].as_str().unwrap();
    let decoded = xrpl::verify(o["xrplEscrow"]["account"].as_str().unwrap(), &[BUYER_ADDRESS, PROVIDER_ADDRESS, arbitrator_account], &finals)
        .expect("xrpl-py verifies the split");
    let paid: u64 = decoded.iter().map(|d| d["amount"].as_str().unwrap().parse::<u64>().unwrap()).sum();
    let fees: u64 = decoded.iter().map(|d| d["fee"].as_str().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(paid + fees, 25_000_000);
}

async fn xrpl_signatures_that_do_not_fit_the_payout_are_refused(app: TestApp) {
    if !xrpl::available() {
        return;
    }
    let p = parties(&app).await;
    let order = funded_order(&app, &p).await;
    action(&app, "markDelivered", &order, &p.provider.access_token).await;
    let releasing = action(&app, "releaseFunds", &order, &p.buyer.access_token).await;
    let version = releasing["version"].clone();
    let reason = |r: &agora_tests::GqlResponse| r.error()["extensions"]["reason"].as_str().unwrap_or_default().to_owned();

    // A signer outside the signer list.
    let outsider = submit(&app, &order, &sign_all(&releasing, OUTSIDER_SEED), &p.buyer.access_token).await;
    assert_eq!(outsider.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(reason(&outsider), "UNEXPECTED_SIGNER");
    // A signature over a different amount.
    let mut tampered: Value = serde_json::from_str(releasing["payout"]["xrplTransactions"][0]["txJson"].as_str().unwrap()).unwrap();
    tampered["Amount"] = json!("1");
    let mut blobs = sign_all(&releasing, BUYER_SEED);
    blobs[0] = xrpl::sign(BUYER_SEED, &tampered.to_string());
    let wrong_amount = submit(&app, &order, &blobs, &p.buyer.access_token).await;
    assert_eq!(reason(&wrong_amount), "TRANSACTION_MISMATCH");
    // A different destination.
    let mut redirected: Value = serde_json::from_str(releasing["payout"]["xrplTransactions"][0]["txJson"].as_str().unwrap()).unwrap();
    redirected["Destination"] = json!(BUYER_ADDRESS);
    let mut blobs = sign_all(&releasing, BUYER_SEED);
    blobs[0] = xrpl::sign(BUYER_SEED, &redirected.to_string());
    assert_eq!(reason(&submit(&app, &order, &blobs, &p.buyer.access_token).await), "TRANSACTION_MISMATCH");
    // Malformed blobs and the wrong number of them.
    let malformed = submit(&app, &order, &["ZZ".to_owned(), "12".to_owned()], &p.buyer.access_token).await;
    assert_eq!(reason(&malformed), "MALFORMED_BLOB");
    let one = submit(&app, &order, &sign_all(&releasing, BUYER_SEED)[..1], &p.buyer.access_token).await;
    assert_eq!(reason(&one), "WRONG_COUNT");
    // The provider's signature sent with the buyer's token is not the buyer's.
    let impostor = submit(&app, &order, &sign_all(&releasing, PROVIDER_SEED), &p.buyer.access_token).await;
    assert_eq!(reason(&impostor), "UNEXPECTED_SIGNER", "{:?}", impostor.body);
    // Nothing was written by any refusal.
    let unchanged = view(&app, &order, &p.buyer.access_token).await;
    assert_eq!(unchanged["version"], version);
    assert_eq!(unchanged["payout"]["signedBy"], json!([]));
    // One signer is not a quorum; the same signer twice is refused.
    let buyer_blobs = sign_all(&releasing, BUYER_SEED);
    let once = submit(&app, &order, &buyer_blobs, &p.buyer.access_token).await.ok();
    assert_eq!(once["submitPayoutSignature"]["order"]["payout"]["complete"], false);
    let twice = submit(&app, &order, &buyer_blobs, &p.buyer.access_token).await;
    assert_eq!(reason(&twice), "DUPLICATE_SIGNER");
    // A Bitcoin PSBT is no signature for an XRPL payout.
    let q = "mutation($i: SubmitPayoutSignatureInput!) { submitPayoutSignature(input: $i) { order { id } } }";
    let psbt = app.gql(q, json!({"i": {"orderId": order["id"], "psbt": "cHNidP8="}}), Some(&p.buyer.access_token)).await;
    assert_eq!(psbt.error_code(), Some("BAD_USER_INPUT"));
}

async fn an_xrp_order_needs_xrpl_keys(app: TestApp) {
    let (provider, _) = app.new_provider("keyless").await;
    let listing = app
        .create_listing(&provider.access_token, json!({"asset": "XRP", "pricing": {"fixed": {"asset": "XRP", "amount": "25000000"}}}))
        .await
        .ok();
    let listing_id = listing["createListing"]["listing"]["id"].clone();
    let buyer = app.new_user("xb2").await;
    let key = app
        .gql(REGISTER_KEY, json!({"i": {"chain": "XRPL", "publicKey": BUYER_PUBLIC_KEY, "address": BUYER_ADDRESS}}), Some(&buyer.access_token))
        .await
        .ok();
    let key_id = key["registerEscrowKey"]["escrowKey"]["id"].clone();
    let q = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id } } }";
    let no_provider_key = app.gql(q, json!({"i": {"listingId": listing_id, "buyerKeyId": key_id}}), Some(&buyer.access_token)).await;
    assert_eq!(no_provider_key.error_code(), Some("CONFLICT"));
    assert_eq!(no_provider_key.error()["extensions"]["reason"], "PROVIDER_HAS_NO_KEY");
    let orders = app.gql("{ orders { edges { node { id } } } }", json!({}), Some(&buyer.access_token)).await.ok();
    assert_eq!(orders["orders"]["edges"], json!([]));
}

on_both_backends!(
    an_xrp_order_shows_its_escrow_account_and_what_to_verify_before_paying,
    an_xrp_order_is_funded_released_with_multisigned_payments_and_settled,
    an_xrp_refund_after_the_delivery_deadline_is_cosigned_by_the_marketplace,
    an_arbitrated_xrp_split_pays_both_parties_and_the_fee,
    xrpl_signatures_that_do_not_fit_the_payout_are_refused,
    an_xrp_order_needs_xrpl_keys,
);
