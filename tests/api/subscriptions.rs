//! GraphQL subscriptions over WebSocket (graphql-transport-ws): a party follows
//! its order as it changes; outsiders and anonymous clients get nothing.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::orders_btc::{fund, parties, place};
use agora_tests::{on_both_backends, TestApp};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, token: Option<&str>) -> Socket {
    let url = format!("{}/graphql/ws", app.address.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let payload = token.map_or(json!({}), |t| json!({"Authorization": format!("Bearer {t}")}));
    socket
        .send(Message::Text(json!({"type": "connection_init", "payload": payload}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    socket
}

/// The next protocol message (pings are skipped).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] != "ping" {
                return value;
            }
        }
    }
}

async fn subscribe(socket: &mut Socket, order_id: &Value) {
    let query = "subscription($id: ID!) { orderUpdated(id: $id) { status version } }";
    socket
        .send(Message::Text(
            json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"id": order_id}}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
}

async fn a_party_is_pushed_every_change_of_its_order(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    let mut socket = connect(&app, Some(&p.buyer.access_token)).await;
    subscribe(&mut socket, &order["id"]).await;
    let first = next(&mut socket).await;
    assert_eq!(first["type"], "next");
    assert_eq!(first["payload"]["data"]["orderUpdated"]["status"], "AWAITING_FUNDING");
    fund(&app, &order, 50_000, 1).await;
    let second = next(&mut socket).await;
    assert_eq!(second["payload"]["data"]["orderUpdated"]["status"], "FUNDED");
    assert!(
        second["payload"]["data"]["orderUpdated"]["version"].as_i64() > first["payload"]["data"]["orderUpdated"]["version"].as_i64()
    );
}

async fn outsiders_and_anonymous_clients_cannot_follow_an_order(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    let outsider = app.new_user("nosy").await;
    let mut socket = connect(&app, Some(&outsider.access_token)).await;
    subscribe(&mut socket, &order["id"]).await;
    // An execution error: a `next` message with errors and no data.
    let refused = next(&mut socket).await;
    assert!(refused["payload"]["data"].is_null(), "{refused}");
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND", "{refused}");
    let mut anonymous = connect(&app, None).await;
    subscribe(&mut anonymous, &order["id"]).await;
    let refused = next(&mut anonymous).await;
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{refused}");
}

async fn a_dispute_is_followed_by_its_parties(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 50_000, 1).await;
    let q = "mutation($i: OpenDisputeInput!) { openDispute(input: $i) { dispute { id } } }";
    let d = app
        .gql(q, json!({"i": {"orderId": order["id"], "statement": "Late."}}), Some(&p.buyer.access_token))
        .await
        .ok()["openDispute"]["dispute"]["id"]
        .clone();
    let mut socket = connect(&app, Some(&p.provider.access_token)).await;
    let sub = "subscription($id: ID!) { disputeUpdated(id: $id) { status respondedAt version } }";
    socket
        .send(Message::Text(json!({"id": "1", "type": "subscribe", "payload": {"query": sub, "variables": {"id": d}}}).to_string().into()))
        .await
        .unwrap();
    let first = next(&mut socket).await;
    assert!(first["payload"]["data"]["disputeUpdated"]["respondedAt"].is_null(), "{first}");
    let q = "mutation($i: AddStatementInput!) { addDisputeStatement(input: $i) { dispute { id } } }";
    app.gql(q, json!({"i": {"disputeId": d, "statement": "It arrived."}}), Some(&p.provider.access_token)).await.ok();
    let second = next(&mut socket).await;
    assert!(second["payload"]["data"]["disputeUpdated"]["respondedAt"].is_string(), "{second}");
}

on_both_backends!(
    a_dispute_is_followed_by_its_parties,
    a_party_is_pushed_every_change_of_its_order,
    outsiders_and_anonymous_clients_cannot_follow_an_order,
);
