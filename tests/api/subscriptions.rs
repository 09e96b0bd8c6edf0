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

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
}

async fn subscribe_notifications(socket: &mut Socket, id: &str) {
    let query = "subscription { myNotifications { kind } }";
    send(socket, json!({"id": id, "type": "subscribe", "payload": {"query": query}})).await;
}

/// Reads until the subscription `id` ends; returns the error it ended with.
async fn ended_with(socket: &mut Socket, id: &str) -> Value {
    let mut error = Value::Null;
    loop {
        let message = next(socket).await;
        if message["id"] != id {
            continue;
        }
        match message["type"].as_str() {
            Some("next") if message["payload"]["errors"].is_array() => error = message["payload"]["errors"][0].clone(),
            Some("complete") => return error,
            Some("error") => return message["payload"][0].clone(),
            _ => {}
        }
    }
}

/// An access token of `session` that expires in about two seconds.
fn short_lived(app: &TestApp, session: &agora_tests::Session) -> String {
    let claims = app.state.jwt.verify(&session.access_token).unwrap();
    let ttl = claims.exp - claims.iat;
    let issued = chrono::Utc::now() - chrono::Duration::seconds(ttl - 2);
    app.state.jwt.issue(claims.sub, claims.sid, issued).0
}

async fn a_subscription_ends_when_its_session_is_logged_out(app: TestApp) {
    let user = app.new_user("leaver").await;
    let mut socket = connect(&app, Some(&user.access_token)).await;
    subscribe_notifications(&mut socket, "n").await;
    app.gql("mutation { logout(input: {}) { ok } }", json!({}), Some(&user.access_token)).await.ok();
    // Whether the logout lands before the subscription starts or after, it ends.
    let error = ended_with(&mut socket, "n").await;
    assert_eq!(error["extensions"]["code"], "UNAUTHENTICATED", "{error}");
    assert_eq!(error["message"], "the session has ended; log in again", "{error}");
}

async fn a_subscription_ends_when_its_token_expires_unless_renewed_over_the_socket(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let mut expiring = connect(&app, Some(&short_lived(&app, &p.provider))).await;
    subscribe_notifications(&mut expiring, "n").await;
    let mut renewed = connect(&app, Some(&short_lived(&app, &p.provider))).await;
    subscribe_notifications(&mut renewed, "n").await;
    send(&mut renewed, json!({"type": "ping", "payload": {"Authorization": format!("Bearer {}", p.provider.access_token)}})).await;
    let error = ended_with(&mut expiring, "n").await;
    assert_eq!(error["extensions"]["reason"], "TOKEN_EXPIRED", "{error}");
    // The renewed socket still hears about a new order after the first token expired.
    tokio::time::sleep(Duration::from_secs(2)).await;
    place(&app, &p).await;
    loop {
        let message = next(&mut renewed).await;
        if message["type"] == "next" {
            assert!(message["payload"]["errors"].is_null(), "{message}");
            assert!(message["payload"]["data"]["myNotifications"]["kind"].is_string(), "{message}");
            break;
        }
    }
}

async fn a_subscription_ends_when_the_subscriber_loses_a_role(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    let admin = app.new_user("boss").await;
    app.make_admin(&admin.email).await;
    let grant = "mutation($i: GrantRoleInput!) { grantRole(input: $i) { user { id } } }";
    app.gql(grant, json!({"i": {"userId": p.buyer.user_id, "role": "ARBITRATOR"}}), Some(&admin.access_token)).await.ok();
    let mut socket = connect(&app, Some(&p.buyer.access_token)).await;
    subscribe(&mut socket, &order["id"]).await;
    // The first item shows the subscription runs, with the roles it started with.
    assert_eq!(next(&mut socket).await["payload"]["data"]["orderUpdated"]["status"], "AWAITING_FUNDING");
    let revoke = "mutation($i: RevokeRoleInput!) { revokeRole(input: $i) { revoked } }";
    app.gql(revoke, json!({"i": {"userId": p.buyer.user_id, "role": "ARBITRATOR"}}), Some(&admin.access_token)).await.ok();
    let error = ended_with(&mut socket, "1").await;
    assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{error}");
    assert_eq!(error["extensions"]["reason"], "ROLE_REMOVED", "{error}");
}

async fn a_socket_holds_a_bounded_number_of_subscriptions(backend: agora_tests::Backend) {
    let app = TestApp::spawn_with(backend, |s| s.graphql.subscriptions_per_socket = 2).await;
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    let mut socket = connect(&app, Some(&p.buyer.access_token)).await;
    let query = "subscription($id: ID!) { orderUpdated(id: $id) { status } }";
    let sub = |id: &str| json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": {"id": order["id"]}}});
    for id in ["1", "2"] {
        send(&mut socket, sub(id)).await;
        assert_eq!(next(&mut socket).await["payload"]["data"]["orderUpdated"]["status"], "AWAITING_FUNDING");
    }
    send(&mut socket, sub("3")).await;
    let error = ended_with(&mut socket, "3").await;
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{error}");
    assert_eq!(error["extensions"]["reason"], "TOO_MANY_SUBSCRIPTIONS", "{error}");
    // Completing one frees its place.
    send(&mut socket, json!({"id": "1", "type": "complete"})).await;
    send(&mut socket, sub("4")).await;
    loop {
        let message = next(&mut socket).await;
        if message["id"] == "4" {
            assert_eq!(message["payload"]["data"]["orderUpdated"]["status"], "AWAITING_FUNDING", "{message}");
            break;
        }
    }
}

async fn fragment_fan_out_is_refused_over_the_socket(app: TestApp) {
    let user = app.new_user("fan").await;
    let mut socket = connect(&app, Some(&user.access_token)).await;
    let query = crate::hardening::doubling_query("Subscription", 24, "myNotifications { kind }");
    send(&mut socket, json!({"id": "f", "type": "subscribe", "payload": {"query": query}})).await;
    let error = ended_with(&mut socket, "f").await;
    assert_eq!(error["extensions"]["reason"], "TOO_COMPLEX", "{error}");
}

mod bounded {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_socket_holds_a_bounded_number_of_subscriptions(agora_tests::Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_socket_holds_a_bounded_number_of_subscriptions(agora_tests::Backend::Sqlite).await
    }
}

on_both_backends!(
    a_subscription_ends_when_its_session_is_logged_out,
    a_subscription_ends_when_its_token_expires_unless_renewed_over_the_socket,
    a_subscription_ends_when_the_subscriber_loses_a_role,
    fragment_fan_out_is_refused_over_the_socket,
    a_dispute_is_followed_by_its_parties,
    a_party_is_pushed_every_change_of_its_order,
    outsiders_and_anonymous_clients_cannot_follow_an_order,
);
