#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed set-up should stop the test loudly

//! The authorization matrix: every Query, Mutation and Subscription field of
//! the running server × every role, against the expected outcome committed in
//! `docs/authorization.md`.
//!
//! The operations come from introspection, so a field added to the schema
//! without its row fails the test, and so does a row naming a field that is
//! gone. Each cell is a real request (HTTP for queries and mutations, the
//! WebSocket for subscriptions) against one fixture set: an order between a
//! buyer and a provider under a dispute assigned to one arbitrator, a second
//! disputed order, a funded metered session. Cells run row by row, top to
//! bottom, left to right, so a mutation that succeeds changes what the cells
//! after it see; the table is ordered so that the owner of a record acts last.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_api::notifications::{NewNotification, NotificationKind};
use agora_domain::clock::Clock;
use agora_tests::introspect::{Field, Root, SchemaModel};
use agora_tests::wallet::Wallet;
use agora_tests::{ws, Backend, GqlResponse, Session, TestApp, PASSWORD};
use serde_json::{json, Map, Value};

use crate::disputes::open;
use crate::orders_btc::{fund, order_uuid, parties, place, place_with, Parties};

const TABLE: &str = include_str!("../../docs/authorization.md");
const START: &str = "<!-- matrix:start -->";
const END: &str = "<!-- matrix:end -->";

/// The columns, in the order the cells of a row are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Anonymous,
    Stranger,
    Admin,
    OtherArbitrator,
    Provider,
    Buyer,
    AssignedArbitrator,
}

const ROLES: [Role; 7] = [
    Role::Anonymous,
    Role::Stranger,
    Role::Admin,
    Role::OtherArbitrator,
    Role::Provider,
    Role::Buyer,
    Role::AssignedArbitrator,
];

impl Role {
    fn header(self) -> &'static str {
        match self {
            Role::Anonymous => "anonymous",
            Role::Stranger => "unrelated user",
            Role::Admin => "admin",
            Role::OtherArbitrator => "unassigned arbitrator",
            Role::Provider => "provider",
            Role::Buyer => "buyer",
            Role::AssignedArbitrator => "assigned arbitrator",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Role::Anonymous => "anonymous",
            Role::Stranger => "stranger",
            Role::Admin => "admin",
            Role::OtherArbitrator => "other-arbitrator",
            Role::Provider => "provider",
            Role::Buyer => "buyer",
            Role::AssignedArbitrator => "arbitrator",
        }
    }
}

/// One row of the committed table.
struct Row {
    root: Root,
    name: String,
    expected: Vec<String>,
}

fn parse_table(text: &str) -> Vec<Row> {
    let body = text
        .split_once(START)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(body, _)| body)
        .expect("docs/authorization.md has the matrix between its markers");
    let mut lines = body.lines().map(str::trim).filter(|l| l.starts_with('|'));
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|').split('|').map(|c| c.trim().trim_matches('`').to_owned()).collect()
    };
    let header = cells(lines.next().expect("a header row"));
    let wanted: Vec<&str> = std::iter::once("operation").chain(ROLES.iter().map(|r| r.header())).collect();
    assert_eq!(header, wanted, "the matrix's columns");
    let mut rows = Vec::new();
    for line in lines {
        let cells = cells(line);
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            continue; // the separator row
        }
        assert_eq!(cells.len(), ROLES.len() + 1, "row `{line}` has {} cells", cells.len());
        let (root, name) = cells[0].split_once('.').unwrap_or_else(|| panic!("`{}` is not Root.field", cells[0]));
        let root = Root::ALL
            .into_iter()
            .find(|r| r.type_name() == root)
            .unwrap_or_else(|| panic!("`{root}` is not Query, Mutation or Subscription"));
        rows.push(Row {
            root,
            name: name.to_owned(),
            expected: cells[1..].to_vec(),
        });
    }
    rows
}

/// Everything the cells refer to.
struct Fixture {
    sessions: BTreeMap<&'static str, Session>,
    p: Parties,
    login_email: String,
    target_id: String,
    spare_key_id: String,
    provider_id: String,
    buyer_id: String,
    arbitrator_id: String,
    other_arbitrator_id: String,
    fixed_listing: String,
    metered_listing: String,
    status_listing: String,
    order: Value,
    metered_order: Value,
    dispute: Value,
    second_dispute: Value,
}

async fn grant(app: &TestApp, admin: &Session, user_id: &str, role: &str) {
    let q = "mutation($i: GrantRoleInput!) { grantRole(input: $i) { user { roles } } }";
    app.gql(q, json!({"i": {"userId": user_id, "role": role}}), Some(&admin.access_token)).await.ok();
}

async fn fixture(app: &TestApp) -> Fixture {
    let admin = app.new_user("matrix-admin").await;
    app.make_admin(&admin.email).await;
    let arbitrator = app.new_user("matrix-arbiter").await;
    grant(app, &admin, &arbitrator.user_id, "ARBITRATOR").await;
    let p = parties(app, json!({})).await;
    let metered_listing = app
        .new_listing(
            &p.provider.access_token,
            json!({"title": "Bandwidth", "category": "bandwidth",
                   "pricing": {"metered": {"asset": "BTC", "unit": "megabyte", "pricePerUnit": "10", "minDeposit": "20000"}}}),
        )
        .await;
    let status_listing = app.new_listing(&p.provider.access_token, json!({"title": "Status changes"})).await;
    let order = place(app, &p).await;
    fund(app, &order, 50_000, 1).await;
    let dispute = open(app, &order, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    assert_eq!(dispute["arbitratorId"], json!(arbitrator.user_id), "assigned to the only arbitrator");
    let second = place(app, &p).await;
    fund(app, &second, 50_000, 1).await;
    let second_dispute = open(app, &second, &p.buyer.access_token).await.ok()["openDispute"]["dispute"].clone();
    let metered_order = place_with(app, &p, json!({"listingId": metered_listing, "deposit": "100000"}), &p.buyer.access_token)
        .await
        .ok()["placeOrder"]["order"]
        .clone();
    fund(app, &metered_order, 100_000, 6).await;
    // Granted after the disputes were opened, so it is assigned none of them.
    let other = app.new_user("matrix-other-arbiter").await;
    grant(app, &admin, &other.user_id, "ARBITRATOR").await;
    let stranger = app.new_user("matrix-stranger").await;
    let target = app.new_user("matrix-target").await;
    let login = app.new_user("matrix-login").await;
    let q = "mutation($i: RegisterEscrowKeyInput!) { registerEscrowKey(input: $i) { escrowKey { id } } }";
    let spare = app
        .gql(q, json!({"i": {"chain": "BITCOIN", "publicKey": Wallet::from_seed(9).public_hex()}}), Some(&p.buyer.access_token))
        .await
        .ok();
    let me = app.gql("{ me { provider { id } } }", json!({}), Some(&p.provider.access_token)).await.ok();
    let mut sessions = BTreeMap::new();
    sessions.insert(Role::Stranger.slug(), stranger);
    sessions.insert(Role::Admin.slug(), admin);
    sessions.insert(Role::OtherArbitrator.slug(), other.clone());
    sessions.insert(Role::Provider.slug(), p.provider.clone());
    sessions.insert(Role::Buyer.slug(), p.buyer.clone());
    sessions.insert(Role::AssignedArbitrator.slug(), arbitrator.clone());
    Fixture {
        sessions,
        login_email: login.email,
        target_id: target.user_id,
        spare_key_id: spare["registerEscrowKey"]["escrowKey"]["id"].as_str().unwrap().to_owned(),
        provider_id: me["me"]["provider"]["id"].as_str().unwrap().to_owned(),
        buyer_id: p.buyer.user_id.clone(),
        arbitrator_id: arbitrator.user_id,
        other_arbitrator_id: other.user_id,
        fixed_listing: p.listing_id.clone(),
        metered_listing,
        status_listing,
        order,
        metered_order,
        dispute,
        second_dispute,
        p,
    }
}

impl Fixture {
    fn session(&self, role: Role) -> Option<&Session> {
        self.sessions.get(role.slug())
    }

    fn email(&self, role: Role) -> String {
        self.session(role).map_or_else(|| self.login_email.clone(), |s| s.email.clone())
    }

    /// The arguments a cell passes, by operation.
    fn args(&self, root: Root, name: &str, role: Role) -> Value {
        let order = &self.order["id"];
        let metered = &self.metered_order["id"];
        let dispute = &self.dispute["id"];
        match (root, name) {
            (Root::Query, "node") => json!({"id": order}),
            (Root::Query, "nodes") => json!({"ids": [order, dispute]}),
            (Root::Query, "provider") => json!({"id": self.provider_id}),
            (Root::Query, "listing") => json!({"id": self.fixed_listing}),
            (Root::Query, "order") | (Root::Subscription, "orderUpdated") => json!({"id": order}),
            (Root::Query, "payout" | "orderReviews") => json!({"orderId": order}),
            (Root::Query, "dispute") | (Root::Subscription, "disputeUpdated") => json!({"id": dispute}),
            (Root::Query, "arbitratorRecord") => json!({"userId": self.arbitrator_id}),
            (Root::Query, "buyerRecord") => json!({"userId": self.buyer_id}),
            (Root::Query, "session" | "nextClaim") => json!({"orderId": metered}),
            (Root::Subscription, "sessionUpdated") => json!({"id": metered}),
            (Root::Query, "peakWindows") => json!({"listingId": self.metered_listing}),
            (Root::Query, _) | (Root::Subscription, _) => json!({}),
            (Root::Mutation, name) => json!({ "input": self.input(name, role) }),
        }
    }

    fn input(&self, name: &str, role: Role) -> Value {
        let order = &self.order["id"];
        let metered = &self.metered_order["id"];
        let dispute = &self.dispute["id"];
        let psbt = "cHNidP8BAAoCAAAAAAAAAAAAAA==";
        let profile = json!({"displayName": "Matrix", "region": "eu", "languages": ["en"]});
        match name {
            "register" => json!({"email": format!("matrix-new-{}@example.org", role.slug()), "password": PASSWORD}),
            "login" => json!({"email": self.login_email, "password": PASSWORD}),
            // The refresh token is filled in per cell (a fresh session).
            "refreshSession" | "logout" => json!({}),
            "grantRole" | "revokeRole" => json!({"userId": self.target_id, "role": "ARBITRATOR"}),
            "registerEscrowKey" => {
                let seed = 40 + ROLES.iter().position(|r| *r == role).unwrap_or(0) as u8;
                json!({"chain": "BITCOIN", "publicKey": Wallet::from_seed(seed).public_hex()})
            }
            "removeEscrowKey" => json!({"id": self.spare_key_id}),
            "becomeProvider" | "updateProviderProfile" => profile,
            "createListing" => agora_tests::valid_listing_input(),
            "updateListing" => json!({"id": self.fixed_listing, "title": "Rust code review, renamed"}),
            "publishListing" | "pauseListing" | "archiveListing" => json!({"id": self.status_listing}),
            "setPeakWindows" => json!({"listingId": self.metered_listing, "windows": []}),
            "placeOrder" => json!({"listingId": self.fixed_listing, "buyerKeyId": self.p.buyer_key_id,
                                   "buyerRefundKeyId": self.p.buyer_refund_key_id}),
            "markDelivered" | "releaseFunds" | "requestRefund" | "proposeCancel" | "acceptCancel" | "declineCancel" => {
                json!({"orderId": order})
            }
            "submitPayoutSignature" => json!({"orderId": order, "psbt": psbt}),
            "submitStrayRefundSignature" => json!({"orderId": order, "index": 0, "psbt": psbt}),
            "setPayoutDestination" => json!({"orderId": order, "account": "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"}),
            "signXrplChannel" => json!({"orderId": order, "signedTransactions": ["00"]}),
            "openDispute" => json!({"orderId": order, "statement": "A second case."}),
            "addDisputeStatement" => json!({"disputeId": dispute, "statement": "More detail."}),
            "decideDispute" => json!({"disputeId": dispute, "providerBps": 5000, "rationale": "Half was delivered."}),
            "appealDecision" => json!({"disputeId": dispute, "statement": "The logs were missed."}),
            "reassignDispute" => json!({"disputeId": self.second_dispute["id"], "arbitratorId": self.other_arbitrator_id}),
            "submitReview" => json!({"orderId": order, "rating": 5}),
            "updateReview" => json!({"reviewId": agora_api::graphql::reputation::review_id(uuid::Uuid::new_v4()).0, "rating": 4}),
            "recordUsage" => json!({"orderId": metered, "quantity": "1"}),
            "submitClaim" => json!({"orderId": metered, "psbt": psbt}),
            "capSession" | "closeSession" => json!({"orderId": metered}),
            "topUpSession" => json!({"orderId": metered, "deposit": "50000", "buyerKeyId": self.p.buyer_key_id,
                                     "buyerRefundKeyId": self.p.buyer_refund_key_id}),
            "updateNotificationPreferences" => json!({"preferences": [{"kind": "DISPUTE_OPENED", "email": false}]}),
            "markNotificationsRead" => json!({}),
            "setUsageAlertThresholds" => json!({"thresholdsBps": [5000, 8000]}),
            _ => json!({}),
        }
    }
}

/// The document for `field` with variables for every argument in `args`.
fn document(model: &SchemaModel, root: Root, field: &Field, args: &Map<String, Value>) -> String {
    let mut defs = Vec::new();
    let mut uses = Vec::new();
    for arg in &field.args {
        if args.contains_key(&arg.name) {
            defs.push(format!("${}: {}", arg.name, arg.ty.sdl()));
            uses.push(format!("{0}: ${0}", arg.name));
        }
    }
    let defs = if defs.is_empty() { String::new() } else { format!("({})", defs.join(", ")) };
    let uses = if uses.is_empty() { String::new() } else { format!("({})", uses.join(", ")) };
    let selection = if model.is_composite(&field.ty) { " { __typename }" } else { "" };
    format!("{}{defs} {{ {}{uses}{selection} }}", root.keyword(), field.name)
}

/// `ok`, `null` (a null field), `empty` (an empty list, or only nulls), or
/// the first error's `extensions.code`.
fn outcome(body: &Value, field: &str) -> String {
    if let Some(errors) = body["errors"].as_array().filter(|e| !e.is_empty()) {
        return errors[0]["extensions"]["code"].as_str().unwrap_or("NO_CODE").to_owned();
    }
    match &body["data"][field] {
        Value::Null => "null".into(),
        Value::Array(items) if items.iter().all(Value::is_null) => "empty".into(),
        _ => "ok".into(),
    }
}

async fn fresh_login(app: &TestApp, email: &str) -> Session {
    app.login(email).await
}

async fn run_cell(app: &TestApp, fx: &Fixture, model: &SchemaModel, root: Root, field: &Field, role: Role) -> (String, Value) {
    let mut args = fx.args(root, &field.name, role);
    let mut token = fx.session(role).map(|s| s.access_token.clone());
    if root == Root::Mutation && matches!(field.name.as_str(), "refreshSession" | "logout") {
        // A session of its own, so the role's main session survives the cell.
        let fresh = fresh_login(app, &fx.email(role)).await;
        args["input"]["refreshToken"] = json!(fresh.refresh_token);
        if field.name == "logout" && role != Role::Anonymous {
            token = Some(fresh.access_token);
        }
    }
    let args = args.as_object().cloned().unwrap_or_default();
    let query = document(model, root, field, &args);
    let variables = Value::Object(args);
    let body = match root {
        Root::Query | Root::Mutation => {
            let r: GqlResponse = app.gql(&query, variables, token.as_deref()).await;
            assert!(r.status < 500, "{query} as {role:?}: HTTP {}", r.status);
            r.body
        }
        Root::Subscription => subscription_cell(app, fx, &query, variables, token.as_deref(), role).await,
    };
    (outcome(&body, &field.name), body)
}

/// Subscribes and returns the first result as a GraphQL response body. The
/// subscriptions that send the record first answer at once; `myNotifications`
/// answers when a notification is written for the subscriber, so one is
/// written (again) until it arrives.
async fn subscription_cell(app: &TestApp, fx: &Fixture, query: &str, variables: Value, token: Option<&str>, role: Role) -> Value {
    let mut socket = ws::connect(app, token).await;
    ws::subscribe(&mut socket, "1", query, variables).await;
    let user = fx.session(role).map(|s| s.user_id.clone());
    let needs_news = query.contains("myNotifications") && user.is_some();
    let message = if needs_news {
        let (_, user_id) = agora_api::graphql::node::decode(user.as_deref().unwrap_or_default()).expect("a user id");
        let mut got = None;
        for _ in 0..100 {
            agora_api::notifications::enqueue(
                &app.state.db,
                NewNotification {
                    user_id,
                    kind: NotificationKind::DisputeOpened,
                    subject: "Matrix".into(),
                    body: "A notification for the matrix.".into(),
                    order_id: Some(order_uuid(&fx.order)),
                    dispute_id: None,
                },
                app.clock.now(),
            )
            .await
            .expect("notification written");
            app.state.notifications.hint(user_id);
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), ws::next(&mut socket)).await {
                got = Some(m);
                break;
            }
        }
        got.expect("the subscription answered")
    } else {
        ws::next(&mut socket).await.expect("the subscription answered")
    };
    match message["type"].as_str() {
        Some("next") => message["payload"].clone(),
        Some("error") => json!({"errors": message["payload"]}),
        _ => json!({"errors": [{"message": message.to_string(), "extensions": {"code": "UNEXPECTED_MESSAGE"}}]}),
    }
}

fn row_text(root: Root, name: &str, cells: &[String]) -> String {
    format!("| `{}.{name}` | {} |", root.type_name(), cells.join(" | "))
}

async fn every_operation_answers_every_role_as_the_matrix_says(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.auth.signups_per_client_per_window = 1000;
        s.auth.login_attempts_per_client_per_window = 1000;
        s.auth.login_attempts_per_window = 1000;
    })
    .await;
    let model = SchemaModel::fetch(&app).await;
    let rows = parse_table(TABLE);

    let in_schema: BTreeSet<(Root, String)> = Root::ALL
        .into_iter()
        .flat_map(|root| model.root_fields(root).iter().map(move |f| (root, f.name.clone())))
        .collect();
    let mut in_table = BTreeSet::new();
    for row in &rows {
        assert!(in_table.insert((row.root, row.name.clone())), "{}.{} has two rows", row.root.type_name(), row.name);
    }
    let missing: Vec<String> = in_schema.difference(&in_table).map(|(r, n)| format!("{}.{n}", r.type_name())).collect();
    let stale: Vec<String> = in_table.difference(&in_schema).map(|(r, n)| format!("{}.{n}", r.type_name())).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/authorization.md is out of step with the schema: operations without a row: {missing:?}; rows without an operation: {stale:?}"
    );

    let fx = fixture(&app).await;
    let mut mismatches = Vec::new();
    let mut observed = Vec::new();
    for row in &rows {
        let field = model
            .root_fields(row.root)
            .iter()
            .find(|f| f.name == row.name)
            .expect("checked above");
        let mut cells = Vec::new();
        for (role, expected) in ROLES.iter().zip(&row.expected) {
            let (got, body) = run_cell(&app, &fx, &model, row.root, field, *role).await;
            assert_ne!(got, "INTERNAL", "{}.{} as {role:?}: {body}", row.root.type_name(), row.name);
            if &got != expected {
                mismatches.push(format!(
                    "{}.{} as {}: expected {expected}, got {got}: {}",
                    row.root.type_name(),
                    row.name,
                    role.header(),
                    body.to_string().chars().take(300).collect::<String>()
                ));
            }
            cells.push(got);
        }
        observed.push(row_text(row.root, &row.name, &cells));
    }
    assert!(
        mismatches.is_empty(),
        "{} cells differ from docs/authorization.md:\n{}\n\nObserved rows:\n{}",
        mismatches.len(),
        mismatches.join("\n"),
        observed.join("\n")
    );
}

agora_tests::for_both_backends!(every_operation_answers_every_role_as_the_matrix_says);
