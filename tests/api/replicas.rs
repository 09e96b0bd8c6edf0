//! Two replicas on one PostgreSQL database. A change written by one reaches the
//! subscriptions held by the other: PostgreSQL delivers the writer's
//! `pg_notify` to the other replica's listener once the transaction commits.
//! No subscription polls, so each message below can only have come that way.
//! Killing the listeners' connections loses nothing: a change made while
//! they are down still arrives, and so do the ones after they listen again.
//!
//! The two applications run in this test process but share nothing in memory:
//! each has its own pool, listener and HTTP server.

use std::time::{Duration, Instant};

use agora_tests::ws::{self, Socket};
use agora_tests::{Backend, TestApp};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{json, Value};

use agora_api::notifications::{enqueue, NewNotification, NotificationKind};
use agora_domain::clock::Clock;

use crate::orders_btc::{action, fund, parties, place};

const ORDER: &str = "subscription($id: ID!) { orderUpdated(id: $id) { status version } }";
const NOTIFICATIONS: &str = "subscription { myNotifications { kind } }";

/// The next `next` message of subscription `id` (others on the socket are skipped).
async fn next_of(socket: &mut Socket, id: &str) -> Value {
    loop {
        let message = ws::next(socket).await.expect("the server pushes the change");
        if message["id"] == id {
            assert_eq!(message["type"], "next", "{message}");
            assert!(message["payload"]["errors"].is_null(), "{message}");
            return message["payload"]["data"].clone();
        }
    }
}

/// Terminates every change listener on the test database; returns their pids.
async fn kill_listeners(app: &TestApp) -> Vec<i32> {
    let db = Database::connect(app.database_url()).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                // In the select list, so it runs only for the rows the filter keeps.
                "SELECT pid, pg_terminate_backend(pid) AS killed FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = '{}'",
                agora_api::changes::LISTENER_APPLICATION_NAME
            ),
        ))
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.try_get::<bool>("", "killed").unwrap()), "every listener was terminated");
    rows.iter().map(|r| r.try_get::<i32>("", "pid").unwrap()).collect()
}

/// The pids of the change listeners connected to the test database and listening.
async fn listeners(app: &TestApp) -> Vec<i32> {
    let db = Database::connect(app.database_url()).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{}' \
                 AND query LIKE 'LISTEN%'",
                agora_api::changes::LISTENER_APPLICATION_NAME
            ),
        ))
        .await
        .unwrap();
    rows.iter().map(|r| r.try_get::<i32>("", "pid").unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_written_by_one_replica_reaches_subscribers_on_another() {
    let writer = TestApp::spawn(Backend::Postgres).await;
    let reader = writer.spawn_replica().await;
    let p = parties(&writer, json!({})).await;
    let order = place(&writer, &p).await;

    let mut buyer = ws::connect_to(&reader.address, Some(&p.buyer.access_token)).await;
    ws::subscribe(&mut buyer, "order", ORDER, json!({"id": order["id"]})).await;
    // The first message comes after the subscription's watch was made.
    let first = next_of(&mut buyer, "order").await["orderUpdated"].clone();
    assert_eq!(first["status"], "AWAITING_FUNDING");
    // Funding is written by the writer's process (its chain-event path).
    fund(&writer, &order, 50_000, 1).await;
    let funded = next_of(&mut buyer, "order").await["orderUpdated"].clone();
    assert_eq!(funded["status"], "FUNDED", "{funded}");
    assert!(funded["version"].as_i64() > first["version"].as_i64(), "{funded}");

    // A dispute written through the writer's API reaches its party on the reader.
    let q = "mutation($i: OpenDisputeInput!) { openDispute(input: $i) { dispute { id } } }";
    let d = writer
        .gql(q, json!({"i": {"orderId": order["id"], "statement": "Late."}}), Some(&p.buyer.access_token))
        .await
        .ok()["openDispute"]["dispute"]["id"]
        .clone();
    let mut provider = ws::connect_to(&reader.address, Some(&p.provider.access_token)).await;
    let sub = "subscription($id: ID!) { disputeUpdated(id: $id) { respondedAt version } }";
    ws::subscribe(&mut provider, "d", sub, json!({"id": d})).await;
    assert!(next_of(&mut provider, "d").await["disputeUpdated"]["respondedAt"].is_null());
    let q = "mutation($i: AddStatementInput!) { addDisputeStatement(input: $i) { dispute { id } } }";
    writer
        .gql(q, json!({"i": {"disputeId": d, "statement": "It arrived."}}), Some(&p.provider.access_token))
        .await
        .ok();
    assert!(next_of(&mut provider, "d").await["disputeUpdated"]["respondedAt"].is_string());

    // A notification the writer writes reaches the user's stream on the
    // reader. The stream sends nothing when it starts, so nothing tells when
    // it is ready: write one, wait a moment, write another, until one arrives.
    let (_, buyer_id) = agora_api::graphql::node::decode(&p.buyer.user_id).unwrap();
    ws::subscribe(&mut buyer, "news", NOTIFICATIONS, json!({})).await;
    let mut pushed = None;
    for _ in 0..100 {
        enqueue(
            &writer.state.db,
            &writer.state.changes,
            NewNotification {
                user_id: buyer_id,
                kind: NotificationKind::Delivered,
                subject: "Across replicas".into(),
                body: "Written by the other replica.".into(),
                order_id: None,
                dispute_id: None,
            },
            writer.clock.now(),
        )
        .await
        .unwrap();
        // The order's own stream has news too (DISPUTED): skip it.
        while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(200), ws::next(&mut buyer)).await {
            if message["id"] == "news" {
                pushed = Some(message);
                break;
            }
        }
        if pushed.is_some() {
            break;
        }
    }
    let pushed = pushed.expect("the reader pushed a notification the writer wrote");
    assert_eq!(pushed["payload"]["data"]["myNotifications"]["kind"], "DELIVERED", "{pushed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_still_arrive_after_the_listeners_connections_are_killed() {
    let writer = TestApp::spawn(Backend::Postgres).await;
    let reader = writer.spawn_replica().await;
    let p = parties(&writer, json!({})).await;
    let order = place(&writer, &p).await;
    let mut socket = ws::connect_to(&reader.address, Some(&p.buyer.access_token)).await;
    ws::subscribe(&mut socket, "order", ORDER, json!({"id": order["id"]})).await;
    let first = next_of(&mut socket, "order").await["orderUpdated"].clone();
    assert_eq!(first["status"], "AWAITING_FUNDING");

    let killed = kill_listeners(&writer).await;
    assert_eq!(killed.len(), 2, "one listener per replica: {killed:?}");
    // Written while the listeners may still be away: the reconnect wakes the
    // subscription, which reads the order again.
    fund(&writer, &order, 50_000, 1).await;
    let funded = next_of(&mut socket, "order").await["orderUpdated"].clone();
    assert_eq!(funded["status"], "FUNDED", "{funded}");

    // Both listen again on new connections (a bound, not a timing: it fails
    // only if they never come back) ...
    let start = Instant::now();
    loop {
        let now = listeners(&writer).await;
        if now.len() == 2 && now.iter().all(|pid| !killed.contains(pid)) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the listeners did not come back: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and a change after that is pushed through the new connection.
    action(&writer, "markDelivered", &order, &p.provider.access_token).await.ok();
    let delivered = next_of(&mut socket, "order").await["orderUpdated"].clone();
    assert_eq!(delivered["status"], "DELIVERED", "{delivered}");
    assert!(delivered["version"].as_i64() > funded["version"].as_i64());
}
