//! Notifications end to end: the outbox written with each order change, e-mail
//! through a real SMTP server (aiosmtpd, `tests/scripts/smtp_sink.py`) with
//! retries and crash recovery, preferences, `myNotifications` and its
//! subscription.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agora_api::config::Secret;
use agora_api::notifications::{dispatch_once, dispatch_once_then_crash, message_id};
use agora_domain::clock::Clock;
use agora_persistence::notifications::{self as store, EmailState, NotificationRecord};
use agora_tests::{for_both_backends, on_both_backends, Backend, Session, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::orders_btc::{action, fund, order_uuid, parties, place};

/// Whether aiosmtpd is importable. Without it the e-mail tests are skipped
/// locally, and fail in CI (which installs it).
fn smtp_server_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "aiosmtpd is required in CI (pip install -r escrow/tests/requirements.txt)"
        );
        println!("SKIPPED: aiosmtpd is not installed (pip install -r escrow/tests/requirements.txt)");
    }
    ok
}

/// A real SMTP server recording every message it accepts. Killed on drop.
struct SmtpSink {
    port: u16,
    log: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts the server on `port` (0: a free one).
    async fn start(port: u16) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.jsonl");
        let mut child = tokio::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/smtp_sink.py"))
            .arg(&log)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(Duration::from_secs(20), BufReader::new(stdout).lines().next_line())
            .await
            .expect("the SMTP server starts within 20 s")
            .unwrap()
            .expect("the SMTP server reports its port");
        let port = line.strip_prefix("READY ").expect("READY <port>").trim().parse().unwrap();
        SmtpSink {
            port,
            log,
            _child: child,
            _dir: dir,
        }
    }

    /// Every message received so far: `{to, from, subject, message_id}`.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The app e-mailing through `smtp://127.0.0.1:port`, with the dispatcher
/// driven by the test (`dispatch_once`) instead of the background worker.
async fn mail_app(backend: Backend, port: u16) -> TestApp {
    TestApp::spawn_with(backend, |s| {
        s.notifications.smtp_url = Some(Secret::new(format!("smtp://127.0.0.1:{port}")));
        s.notifications.dispatcher_interval_ms = 0;
    })
    .await
}

async fn dispatch(app: &TestApp) -> usize {
    dispatch_once(&app.state).await.expect("dispatch")
}

async fn notifications_of(app: &TestApp, s: &Session) -> Vec<NotificationRecord> {
    let (_, user) = agora_api::graphql::node::decode(&s.user_id).unwrap();
    store::notifications_of(&app.state.db, user, None, 100).await.unwrap()
}

/// The FUNDED notification of `s`.
async fn funded_of(app: &TestApp, s: &Session) -> NotificationRecord {
    let all = notifications_of(app, s).await;
    let funded: Vec<_> = all.into_iter().filter(|n| n.kind == "FUNDED").collect();
    assert_eq!(funded.len(), 1, "one FUNDED notification for {}", s.email);
    funded.into_iter().next().unwrap()
}

/// Received messages with these Message-IDs, as `message_id -> [recipients]`.
fn received_with(sink: &SmtpSink, ids: &[&str]) -> Vec<(String, String, String)> {
    sink.received()
        .into_iter()
        .filter(|m| ids.contains(&m["message_id"].as_str().unwrap()))
        .map(|m| {
            let to = m["to"].as_array().unwrap();
            assert_eq!(to.len(), 1, "one recipient per e-mail: {m}");
            (
                m["message_id"].as_str().unwrap().to_owned(),
                to[0].as_str().unwrap().to_owned(),
                m["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// An order of the usual parties, placed; e-mails about the placement (if
/// any) already sent, so the test sees only what funding causes.
async fn placed_order(app: &TestApp) -> (crate::orders_btc::Parties, Value) {
    let p = parties(app, json!({})).await;
    let order = place(app, &p).await;
    dispatch(app).await;
    (p, order)
}

async fn a_funded_order_emails_the_buyer_and_the_provider(backend: Backend) {
    if !smtp_server_available() {
        return;
    }
    let sink = SmtpSink::start(0).await;
    let app = mail_app(backend, sink.port).await;
    let (p, order) = placed_order(&app).await;
    fund(&app, &order, 50_000, 1).await;
    assert_eq!(dispatch(&app).await, 2);
    let buyer = funded_of(&app, &p.buyer).await;
    let provider = funded_of(&app, &p.provider).await;
    let short = &order_uuid(&order).simple().to_string()[..8];
    let mut got = received_with(&sink, &[&message_id(buyer.id), &message_id(provider.id)]);
    got.sort();
    let mut want = vec![
        (
            message_id(buyer.id),
            "buyer@example.org".to_owned(),
            format!("Order {short} funded: your payment is in escrow"),
        ),
        (
            message_id(provider.id),
            "prov@example.org".to_owned(),
            format!("Order {short} funded: you can start"),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    for n in [&buyer, &provider] {
        let n = store::find_notification(&app.state.db, n.id).await.unwrap().unwrap();
        assert_eq!((n.email_state, n.attempts), (EmailState::Sent, 1));
        assert!(n.sent_at.is_some());
        assert_eq!(n.order_id, Some(order_uuid(&order)));
    }
}

async fn a_kind_switched_off_is_listed_but_not_emailed(backend: Backend) {
    if !smtp_server_available() {
        return;
    }
    let sink = SmtpSink::start(0).await;
    let app = mail_app(backend, sink.port).await;
    let (p, order) = placed_order(&app).await;
    let updated = app
        .gql(
            "mutation($i: UpdateNotificationPreferencesInput!) { updateNotificationPreferences(input: $i) { preferences { kind email } } }",
            json!({"i": {"preferences": [{"kind": "FUNDED", "email": false}]}}),
            Some(&p.buyer.access_token),
        )
        .await
        .ok();
    let prefs = updated["updateNotificationPreferences"]["preferences"].as_array().unwrap();
    assert_eq!(prefs.len(), 16, "every kind is listed");
    for pref in prefs {
        assert_eq!(pref["email"], pref["kind"] != "FUNDED", "{pref}");
    }
    // The provider's own preferences are untouched.
    let theirs = app.gql("{ notificationPreferences { kind email } }", json!({}), Some(&p.provider.access_token)).await.ok();
    assert!(theirs["notificationPreferences"].as_array().unwrap().iter().all(|p| p["email"] == true));

    fund(&app, &order, 50_000, 1).await;
    assert_eq!(dispatch(&app).await, 1);
    let buyer = funded_of(&app, &p.buyer).await;
    let provider = funded_of(&app, &p.provider).await;
    assert_eq!((buyer.email_state, buyer.attempts), (EmailState::Skipped, 0));
    let got = received_with(&sink, &[&message_id(buyer.id), &message_id(provider.id)]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, "prov@example.org");
    assert!(sink.received().iter().all(|m| m["to"][0] != "buyer@example.org" || !m["subject"].as_str().unwrap().contains("funded")));

    let listed = app
        .gql("{ myNotifications { edges { node { kind emailState subject } } } }", json!({}), Some(&p.buyer.access_token))
        .await
        .ok();
    let funded: Vec<&Value> = listed["myNotifications"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["kind"] == "FUNDED")
        .collect();
    assert_eq!(funded.len(), 1);
    assert_eq!(funded[0]["node"]["emailState"], "SKIPPED");
}

async fn a_crash_between_sending_and_marking_resends_with_the_same_message_id(backend: Backend) {
    if !smtp_server_available() {
        return;
    }
    let sink = SmtpSink::start(0).await;
    let app = mail_app(backend, sink.port).await;
    let (p, order) = placed_order(&app).await;
    fund(&app, &order, 50_000, 1).await;
    let ids = [
        message_id(funded_of(&app, &p.buyer).await.id),
        message_id(funded_of(&app, &p.provider).await.id),
    ];
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    // The dispatcher sends both e-mails, then dies before recording them.
    assert_eq!(dispatch_once_then_crash(&app.state).await.unwrap(), 2);
    assert_eq!(received_with(&sink, &ids).len(), 2);
    for n in [funded_of(&app, &p.buyer).await, funded_of(&app, &p.provider).await] {
        assert_eq!(n.email_state, EmailState::Pending, "not recorded as sent");
    }
    // While the dead dispatcher's claim lasts, nobody sends them.
    assert_eq!(dispatch(&app).await, 0);
    assert_eq!(received_with(&sink, &ids).len(), 2);
    // Once it ends, the next run sends them again, with the same Message-IDs.
    let lease = app.state.notifications.settings().claim_lease_secs as i64;
    app.clock.advance(chrono::Duration::seconds(lease + 1));
    assert_eq!(dispatch(&app).await, 2);
    let got = received_with(&sink, &ids);
    assert_eq!(got.len(), 4);
    let mut per_id: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (id, to, subject) in got {
        per_id.entry(id).or_default().push((to, subject));
    }
    assert_eq!(per_id.len(), 2);
    for copies in per_id.values() {
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0], copies[1], "the resent copy is the same e-mail");
    }
    // And never again.
    app.clock.advance(chrono::Duration::seconds(lease + 1));
    assert_eq!(dispatch(&app).await, 0);
    assert_eq!(received_with(&sink, &ids).len(), 4);
    let buyer = funded_of(&app, &p.buyer).await;
    assert_eq!((buyer.email_state, buyer.attempts), (EmailState::Sent, 2));
}

async fn a_normal_run_never_sends_a_notification_twice(backend: Backend) {
    if !smtp_server_available() {
        return;
    }
    let sink = SmtpSink::start(0).await;
    let app = mail_app(backend, sink.port).await;
    let (_, order) = placed_order(&app).await;
    let before = sink.received().len();
    fund(&app, &order, 50_000, 1).await;
    // Two dispatchers at once (two replicas): each e-mail goes out once.
    let (a, b) = tokio::join!(dispatch_once(&app.state), dispatch_once(&app.state));
    assert_eq!(a.unwrap() + b.unwrap(), 2);
    assert_eq!(dispatch(&app).await, 0);
    app.clock.advance(chrono::Duration::hours(2));
    assert_eq!(dispatch(&app).await, 0);
    let received = sink.received();
    assert_eq!(received.len() - before, 2);
    let ids: HashSet<&str> = received.iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), received.len(), "every Message-ID once");
}

async fn an_unreachable_smtp_server_is_retried_with_backoff(backend: Backend) {
    if !smtp_server_available() {
        return;
    }
    let port = free_port();
    let app = mail_app(backend, port).await;
    let base = app.state.notifications.settings().retry_base_secs as i64;
    let (p, order) = placed_order(&app).await;
    fund(&app, &order, 50_000, 1).await;

    assert_eq!(dispatch(&app).await, 0);
    let n = funded_of(&app, &p.buyer).await;
    assert_eq!((n.email_state, n.attempts), (EmailState::Pending, 1));
    let wait = (n.next_attempt_at.unwrap() - app.clock.now()).num_seconds();
    assert!((base - 5..=base).contains(&wait), "first retry after {base} s, got {wait} s");
    assert!(n.last_error.is_some());

    // Not due yet: nothing is attempted.
    assert_eq!(dispatch(&app).await, 0);
    assert_eq!(funded_of(&app, &p.buyer).await.attempts, 1);

    app.clock.advance(chrono::Duration::seconds(base + 1));
    assert_eq!(dispatch(&app).await, 0);
    let n = funded_of(&app, &p.buyer).await;
    assert_eq!((n.email_state, n.attempts), (EmailState::Pending, 2));
    let wait = (n.next_attempt_at.unwrap() - app.clock.now()).num_seconds();
    assert!((2 * base - 5..=2 * base).contains(&wait), "the wait doubles, got {wait} s");

    // The server comes up; the e-mails go out at their next attempt.
    let sink = SmtpSink::start(port).await;
    assert_eq!(dispatch(&app).await, 0);
    app.clock.advance(chrono::Duration::seconds(2 * base + 1));
    assert!(dispatch(&app).await >= 2);
    let buyer = funded_of(&app, &p.buyer).await;
    let provider = funded_of(&app, &p.provider).await;
    let got = received_with(&sink, &[&message_id(buyer.id), &message_id(provider.id)]);
    assert_eq!(got.len(), 2);
    assert_eq!((buyer.email_state, buyer.attempts), (EmailState::Sent, 3));
    assert_eq!(buyer.last_error, None);
}

async fn an_email_is_given_up_after_the_last_attempt(backend: Backend) {
    let port = free_port();
    let app = TestApp::spawn_with(backend, |s| {
        s.notifications.smtp_url = Some(Secret::new(format!("smtp://127.0.0.1:{port}")));
        s.notifications.dispatcher_interval_ms = 0;
        s.notifications.max_attempts = 2;
    })
    .await;
    let (p, order) = placed_order(&app).await;
    fund(&app, &order, 50_000, 1).await;
    dispatch(&app).await;
    assert_eq!(funded_of(&app, &p.buyer).await.email_state, EmailState::Pending);
    app.clock.advance(chrono::Duration::hours(1));
    dispatch(&app).await;
    let n = funded_of(&app, &p.buyer).await;
    assert_eq!((n.email_state, n.attempts, n.next_attempt_at), (EmailState::Failed, 2, None));
    app.clock.advance(chrono::Duration::days(1));
    dispatch(&app).await;
    assert_eq!(funded_of(&app, &p.buyer).await.attempts, 2, "no attempt after giving up");
    let listed = app
        .gql("{ myNotifications { edges { node { kind emailState } } } }", json!({}), Some(&p.buyer.access_token))
        .await
        .ok();
    assert!(listed["myNotifications"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["node"] == json!({"kind": "FUNDED", "emailState": "FAILED"})));
}

for_both_backends!(
    a_funded_order_emails_the_buyer_and_the_provider,
    an_email_is_given_up_after_the_last_attempt,
    a_kind_switched_off_is_listed_but_not_emailed,
    a_crash_between_sending_and_marking_resends_with_the_same_message_id,
    a_normal_run_never_sends_a_notification_twice,
    an_unreachable_smtp_server_is_retried_with_backoff,
);

const MY_NOTIFICATIONS: &str = "query($first: Int, $after: String) {
    myNotifications(first: $first, after: $after) {
        edges { cursor node { id kind subject body orderId emailState readAt } }
        hasNextPage endCursor unreadCount } }";

async fn my_notifications(app: &TestApp, token: Option<&str>, first: i64, after: Option<&str>) -> agora_tests::GqlResponse {
    app.gql(MY_NOTIFICATIONS, json!({"first": first, "after": after}), token).await
}

async fn my_notifications_lists_them_for_their_owner_only(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    fund(&app, &order, 50_000, 1).await;
    action(&app, "markDelivered", &order, &p.provider.access_token).await.ok();

    let all = my_notifications(&app, Some(&p.buyer.access_token), 100, None).await.ok()["myNotifications"].clone();
    let kinds: Vec<&str> = all["edges"].as_array().unwrap().iter().map(|e| e["node"]["kind"].as_str().unwrap()).collect();
    let delivered = kinds.iter().position(|k| *k == "DELIVERED").expect("DELIVERED listed");
    let funded = kinds.iter().position(|k| *k == "FUNDED").expect("FUNDED listed");
    assert!(delivered < funded, "newest first: {kinds:?}");
    let node = &all["edges"][delivered]["node"];
    assert_eq!(node["orderId"], order["id"]);
    assert!(node["body"].as_str().unwrap().contains(&order_uuid(&order).to_string()));
    assert_eq!(all["unreadCount"], kinds.len());

    // Pages of one follow the same order.
    let page = my_notifications(&app, Some(&p.buyer.access_token), 1, None).await.ok()["myNotifications"].clone();
    assert_eq!(page["edges"][0]["node"]["id"], all["edges"][0]["node"]["id"]);
    assert_eq!(page["hasNextPage"], true);
    let next = my_notifications(&app, Some(&p.buyer.access_token), 1, page["endCursor"].as_str()).await.ok()["myNotifications"].clone();
    assert_eq!(next["edges"][0]["node"]["id"], all["edges"][1]["node"]["id"]);

    // The provider sees its own, never the buyer's.
    let theirs = my_notifications(&app, Some(&p.provider.access_token), 100, None).await.ok()["myNotifications"].clone();
    let buyer_ids: HashSet<&Value> = all["edges"].as_array().unwrap().iter().map(|e| &e["node"]["id"]).collect();
    assert!(theirs["edges"].as_array().unwrap().iter().any(|e| e["node"]["kind"] == "FUNDED"));
    assert!(theirs["edges"].as_array().unwrap().iter().all(|e| !buyer_ids.contains(&e["node"]["id"])));
    let outsider = app.new_user("nosy").await;
    let none = my_notifications(&app, Some(&outsider.access_token), 100, None).await.ok();
    assert_eq!(none["myNotifications"]["edges"], json!([]));
    let anonymous = my_notifications(&app, None, 100, None).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));

    // Marking read: someone else's ids change nothing; the owner's do.
    let first_id = all["edges"][0]["node"]["id"].clone();
    let mark = "mutation($i: MarkNotificationsReadInput!) { markNotificationsRead(input: $i) { markedCount unreadCount } }";
    let foreign = app.gql(mark, json!({"i": {"ids": [first_id]}}), Some(&outsider.access_token)).await.ok();
    assert_eq!(foreign["markNotificationsRead"]["markedCount"], 0);
    let marked = app.gql(mark, json!({"i": {"ids": [first_id]}}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(marked["markNotificationsRead"], json!({"markedCount": 1, "unreadCount": kinds.len() - 1}));
    let rest = app.gql(mark, json!({"i": {}}), Some(&p.buyer.access_token)).await.ok();
    assert_eq!(rest["markNotificationsRead"], json!({"markedCount": kinds.len() - 1, "unreadCount": 0}));
    let provider_unread = my_notifications(&app, Some(&p.provider.access_token), 1, None).await.ok();
    assert!(provider_unread["myNotifications"]["unreadCount"].as_u64().unwrap() > 0);
    let bad = my_notifications(&app, Some(&p.buyer.access_token), 1, Some("nope")).await;
    agora_tests::assert_bad_input(&bad, "after", "INVALID_CURSOR");
}

async fn without_an_smtp_server_e_mails_are_written_to_the_data_directory(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.notifications.dispatcher_interval_ms = 0).await;
    let (p, order) = placed_order(&app).await;
    fund(&app, &order, 50_000, 1).await;
    assert_eq!(dispatch(&app).await, 2);
    let id = message_id(funded_of(&app, &p.buyer).await.id);
    let files: Vec<String> = std::fs::read_dir(app.data_dir.join("mail"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    let mail = files
        .iter()
        .find(|f| f.contains(&format!("Message-ID: {id}")))
        .expect("the buyer's e-mail is a file");
    assert!(mail.contains("To: buyer@example.org"), "{mail}");
    assert!(mail.contains("funded: your payment is in escrow"), "{mail}");
}

for_both_backends!(without_an_smtp_server_e_mails_are_written_to_the_data_directory);

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
    assert_eq!(next(&mut socket, 10).await.unwrap()["type"], "connection_ack");
    socket
        .send(Message::Text(
            json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { myNotifications { kind subject orderId } }"}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    socket
}

/// The next protocol message within `secs` (pings skipped), or `None`.
async fn next(socket: &mut Socket, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.ok()?;
        if let Message::Text(text) = message.expect("the socket is open").unwrap() {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] != "ping" {
                return Some(value);
            }
        }
    }
}

async fn new_notifications_are_pushed_to_their_owner(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    let outsider = app.new_user("nosy").await;
    let mut buyer = connect(&app, Some(&p.buyer.access_token)).await;
    let mut nosy = connect(&app, Some(&outsider.access_token)).await;
    let mut anonymous = connect(&app, None).await;
    let refused = next(&mut anonymous, 10).await.unwrap();
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{refused}");
    // Let the subscriptions take their first look before anything happens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fund(&app, &order, 50_000, 1).await;
    let pushed = next(&mut buyer, 10).await.expect("a push within 10 s");
    assert_eq!(pushed["type"], "next", "{pushed}");
    let n = &pushed["payload"]["data"]["myNotifications"];
    assert_eq!(n["kind"], "FUNDED", "{pushed}");
    assert_eq!(n["orderId"], order["id"]);
    assert!(next(&mut nosy, 2).await.is_none(), "an outsider is told nothing");
}

async fn a_placed_order_tells_the_buyer_how_to_fund_it_and_the_provider_to_wait(app: TestApp) {
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    let placed = |all: Vec<NotificationRecord>| all.into_iter().filter(|n| n.kind == "ORDER_PLACED").collect::<Vec<_>>();
    // Written by `placeOrder` in the order's own transaction.
    let buyer = placed(notifications_of(&app, &p.buyer).await);
    assert_eq!(buyer.len(), 1);
    assert!(buyer[0].subject.ends_with("placed: fund the escrow"), "{}", buyer[0].subject);
    let address = order["bitcoinEscrow"]["address"].as_str().unwrap();
    assert!(buyer[0].body.contains(address), "{}", buyer[0].body);
    assert!(buyer[0].body.contains(&order_uuid(&order).to_string()));
    let provider = placed(notifications_of(&app, &p.provider).await);
    assert_eq!(provider.len(), 1);
    assert!(provider[0].subject.starts_with("New order"), "{}", provider[0].subject);
}

on_both_backends!(
    my_notifications_lists_them_for_their_owner_only,
    a_placed_order_tells_the_buyer_how_to_fund_it_and_the_provider_to_wait,
    new_notifications_are_pushed_to_their_owner,
);
