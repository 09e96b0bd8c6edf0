//! Bitcoin orders end to end: place → funded → delivered → released, refunds,
//! mutual cancel, automatic release, and every refusal, with payouts signed by
//! keys only the test holds and checked by Bitcoin Core's script interpreter.

use std::str::FromStr;

use agora_api::orders::chain::{deliver_bitcoin_event, BitcoinChainEvent};
use agora_escrow::btc::verify_spends;
use agora_tests::wallet::{spent_outputs, transaction, Wallet};
use agora_tests::{on_both_backends, Session, TestApp};
use bitcoin::{OutPoint, Txid};
use serde_json::{json, Value};
use uuid::Uuid;

pub const ORDER_FIELDS: &str = "id status version amountDue requiredConfirmations
    deadlines { fundingBy deliveryBy reviewEndsAt }
    bitcoinEscrow { network address descriptor timelockBlocks buyerPublicKey buyerRefundPublicKey
        providerPublicKey arbitratorPublicKey arbitratorKeyIndex payoutAddresses { provider buyer marketplace } }
    payout { outcome psbt txid signedBy complete transactionHex
        breakdown { provider buyer commission arbitrationFee networkFee } outputs { role amount } }
    settlement { outcome txid byTimelock }
    arbitratorSignatures { rule outcome txid }";

const REGISTER_KEY: &str = "mutation($i: RegisterEscrowKeyInput!) { registerEscrowKey(input: $i) { escrowKey { id } } }";

pub struct Parties {
    pub buyer: Session,
    pub provider: Session,
    pub buyer_wallet: Wallet,
    pub provider_wallet: Wallet,
    pub listing_id: String,
    pub buyer_key_id: String,
    pub buyer_refund_key_id: String,
}

async fn register_key(app: &TestApp, s: &Session, wallet: &Wallet) -> String {
    let data = app
        .gql(REGISTER_KEY, json!({"i": {"chain": "BITCOIN", "publicKey": wallet.public_hex()}}), Some(&s.access_token))
        .await
        .ok();
    data["registerEscrowKey"]["escrowKey"]["id"].as_str().unwrap().to_owned()
}

/// A provider with a Bitcoin key and an active listing, and a buyer with two keys.
pub async fn parties(app: &TestApp, listing: Value) -> Parties {
    let (provider, _) = app.new_provider("prov").await;
    let provider_wallet = Wallet::from_seed(2);
    register_key(app, &provider, &provider_wallet).await;
    let created = app.create_listing(&provider.access_token, listing).await.ok();
    let listing_id = created["createListing"]["listing"]["id"].as_str().unwrap().to_owned();
    let buyer = app.new_user("buyer").await;
    let buyer_wallet = Wallet::from_seed(1);
    let buyer_key_id = register_key(app, &buyer, &buyer_wallet).await;
    let buyer_refund_key_id = register_key(app, &buyer, &Wallet::from_seed(3)).await;
    Parties {
        buyer,
        provider,
        buyer_wallet,
        provider_wallet,
        listing_id,
        buyer_key_id,
        buyer_refund_key_id,
    }
}

pub async fn place(app: &TestApp, p: &Parties) -> Value {
    let q = format!("mutation($i: PlaceOrderInput!) {{ placeOrder(input: $i) {{ order {{ {ORDER_FIELDS} }} }} }}");
    let data = app
        .gql(
            &q,
            json!({"i": {"listingId": p.listing_id, "buyerKeyId": p.buyer_key_id, "buyerRefundKeyId": p.buyer_refund_key_id}}),
            Some(&p.buyer.access_token),
        )
        .await
        .ok();
    data["placeOrder"]["order"].clone()
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

pub async fn action(app: &TestApp, name: &str, order: &Value, token: &str) -> super::GqlResponse {
    let q = format!("mutation($i: OrderActionInput!) {{ {name}(input: $i) {{ order {{ {ORDER_FIELDS} }} }} }}");
    app.gql(&q, json!({"i": {"orderId": order["id"]}}), Some(token)).await
}

pub async fn get_order(app: &TestApp, order: &Value, token: &str) -> Value {
    let q = format!("query($id: ID!) {{ order(id: $id) {{ {ORDER_FIELDS} }} }}");
    app.gql(&q, json!({"id": order["id"]}), Some(token)).await.ok()["order"].clone()
}

pub async fn submit(app: &TestApp, order: &Value, psbt: &str, token: &str) -> super::GqlResponse {
    let q = format!(
        "mutation($i: SubmitPayoutSignatureInput!) {{ submitPayoutSignature(input: $i) {{ order {{ {ORDER_FIELDS} }} payout {{ complete signedBy }} }} }}"
    );
    app.gql(&q, json!({"i": {"orderId": order["id"], "psbt": psbt}}), Some(token)).await
}

fn amount(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

/// Checks the final transaction with bitcoinconsensus, independently of the service.
pub fn assert_valid_spend(order: &Value, funded: u64) -> bitcoin::Transaction {
    let tx = transaction(order["payout"]["transactionHex"].as_str().expect("final transaction"));
    let spent = spent_outputs(&order["bitcoinEscrow"], &tx, &[funded]);
    verify_spends(&tx, &spent).expect("every input passes bitcoinconsensus");
    tx
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
