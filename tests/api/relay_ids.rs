//! Relay conventions beyond `node`: escrow keys have global ids (raw UUIDs are
//! refused where a key id is taken), and `orders` is a Relay connection with
//! `pageInfo`.

use agora_api::graphql::node::{decode, NodeType};
use agora_tests::{on_both_backends, TestApp};
use serde_json::json;

use crate::orders_btc::{parties, place, place_with};

async fn escrow_key_ids_are_global_ids_and_raw_uuids_are_refused(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let (kind, uuid) = decode(&p.buyer_key_id).expect("a global id");
    assert_eq!(kind, NodeType::EscrowKey);
    let me = app.gql("{ me { escrowKeys { id } } }", json!({}), Some(&p.buyer.access_token)).await.ok();
    let ids: Vec<&str> = me["me"]["escrowKeys"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&p.buyer_key_id.as_str()), "{ids:?}");

    let raw = place_with(&app, &p, json!({"buyerKeyId": uuid.to_string()}), &p.buyer.access_token).await;
    agora_tests::assert_bad_input(&raw, "input.buyerKeyId", "INVALID_FORMAT");
    let user_id = place_with(&app, &p, json!({"buyerKeyId": p.buyer.user_id}), &p.buyer.access_token).await;
    agora_tests::assert_bad_input(&user_id, "input.buyerKeyId", "WRONG_TYPE");
    assert_eq!(place(&app, &p).await["status"], "AWAITING_FUNDING");

    let remove = "mutation($i: RemoveEscrowKeyInput!) { removeEscrowKey(input: $i) { removedId } }";
    let refused = app.gql(remove, json!({"i": {"id": uuid.to_string()}}), Some(&p.buyer.access_token)).await;
    agora_tests::assert_bad_input(&refused, "input.id", "INVALID_FORMAT");
    let fresh = app
        .gql(
            "mutation($i: RegisterEscrowKeyInput!) { registerEscrowKey(input: $i) { escrowKey { id } } }",
            json!({"i": {"chain": "BITCOIN", "publicKey": agora_tests::wallet::Wallet::from_seed(9).public_hex()}}),
            Some(&p.buyer.access_token),
        )
        .await
        .ok();
    let fresh_id = fresh["registerEscrowKey"]["escrowKey"]["id"].clone();
    let removed = app.gql(remove, json!({"i": {"id": fresh_id}}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(removed["removeEscrowKey"]["removedId"], fresh_id);
}

async fn orders_is_a_relay_connection_with_page_info(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let older = place(&app, &p).await;
    let newer = place(&app, &p).await;
    let q = "query($after: String) { orders(first: 1, after: $after) {
        edges { cursor node { id } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let first = app.gql(q, json!({}), Some(&p.buyer.access_token)).await.ok();
    let page = &first["orders"];
    assert_eq!(page["edges"][0]["node"]["id"], newer["id"], "newest first");
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(page["pageInfo"]["startCursor"], page["edges"][0]["cursor"]);
    assert_eq!(page["pageInfo"]["endCursor"], page["edges"][0]["cursor"]);

    let second = app
        .gql(q, json!({"after": page["pageInfo"]["endCursor"]}), Some(&p.buyer.access_token))
        .await
        .ok();
    let page = &second["orders"];
    assert_eq!(page["edges"][0]["node"]["id"], older["id"]);
    assert_eq!(page["edges"].as_array().unwrap().len(), 1);
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    assert_eq!(page["pageInfo"]["hasPreviousPage"], true);
}

on_both_backends!(
    escrow_key_ids_are_global_ids_and_raw_uuids_are_refused,
    orders_is_a_relay_connection_with_page_info
);
