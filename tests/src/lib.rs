#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed set-up should stop the test loudly

//! Test harness: the real server on port 0 against a fresh database per test.
//!
//! PostgreSQL databases are cloned from a migrated template (one per set of
//! migrations) and dropped when the test ends; databases left by crashed runs
//! are swept when a template is first used. `TEST_DATABASE_URL` points at the
//! server (default `postgres://postgres@127.0.0.1:5432/postgres`).

pub mod db;
pub mod introspect;
pub mod wallet;
pub mod ws;
pub mod xrpl;

use std::path::PathBuf;

use std::sync::Arc;

use agora_api::clock::AdjustableClock;
use agora_api::config::{Mode, Secret, Settings};
use agora_api::graphql::context::AppState;
use agora_api::startup::Application;
use serde_json::{json, Value};

pub use db::Backend;

pub const PASSWORD: &str = "correct horse battery staple";

/// The local chains of a test started with `spawn_with_chains`.
#[derive(Clone)]
pub struct Chains {
    pub bitcoin: agora_api::devnet::bitcoin::BitcoinDevnet,
    pub xrpl: agora_api::devnet::xrpl::XrplDevnet,
    pub bitcoin_rpc_url: String,
    pub esplora_url: String,
    pub xrpl_ws_url: String,
    pub xrpl_rpc_url: String,
}

pub struct TestApp {
    pub address: String,
    /// Present when the test asked for local chains.
    pub chains: Option<Chains>,
    /// The server's state, for delivering chain events the way the watcher will.
    pub state: Arc<AppState>,
    /// The clock deadlines are judged by; tests advance it.
    pub clock: Arc<AdjustableClock>,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub data_dir: PathBuf,
    database: db::TestDatabase,
    _dir: tempfile::TempDir,
}

/// A response from `/graphql`: HTTP status, content type and JSON body.
#[derive(Debug)]
pub struct GqlResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl GqlResponse {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The `extensions.code` of the first error, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    pub fn error(&self) -> &Value {
        &self.body["errors"][0]
    }

    /// Panics with the body when the response has errors.
    pub fn ok(self) -> Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            serde_json::to_string_pretty(&self.body).unwrap_or_default()
        );
        self.body["data"].clone()
    }
}

/// An account logged in for a test.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with settings adjusted by `tweak` (e.g. smaller limits).
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = db::TestDatabase::create(backend, dir.path()).await;
        let mut settings = Settings::default();
        settings.mode = Mode::Development;
        settings.data_dir = dir.path().join("data");
        settings.server.bind = "127.0.0.1:0".into();
        settings.server.workers = Some(1);
        settings.database.url = Some(Secret::new(database.url()));
        settings.database.max_connections = 5;
        // The template is migrated already; SQLite files are migrated at start-up.
        settings.database.auto_migrate = Some(true);
        // Chains are opt-in per test (`spawn_with_chains`); the scheduler runs
        // only when a test sweeps, so tests decide when deadlines pass.
        settings.devnet.enabled = Some(false);
        settings.watchers.enabled = false;
        settings.orders.scheduler_interval_secs = 24 * 3600;
        // Tests dispatch e-mail themselves (`notifications::dispatch_once`).
        settings.notifications.dispatcher_interval_ms = 0;
        tweak(&mut settings);
        let data_dir = settings.data_dir.clone();
        let clock = Arc::new(AdjustableClock::default());
        let app = Application::build_with_clock(settings, clock.clone())
            .await
            .expect("the application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        let chains = app.devnets().map(|d| Chains {
            bitcoin: d.bitcoin.clone(),
            xrpl: d.xrpl.clone(),
            bitcoin_rpc_url: d.bitcoin_servers.rpc_url.clone(),
            esplora_url: d.bitcoin_servers.esplora_url.clone(),
            xrpl_ws_url: d.xrpl_servers.ws_url.clone(),
            xrpl_rpc_url: d.xrpl_servers.rpc_url.clone(),
        });
        tokio::spawn(app.run_until_stopped());
        TestApp {
            address,
            chains,
            state,
            clock,
            client: reqwest::Client::new(),
            backend,
            data_dir,
            database,
            _dir: dir,
        }
    }

    /// Spawns with in-process devnets on free ports, mining and closing only
    /// when the test says so; watchers are built by the test and stepped by hand.
    pub async fn spawn_with_chains(backend: Backend) -> TestApp {
        Self::spawn_with_chains_and(backend, |_| {}).await
    }

    pub async fn spawn_with_chains_and(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_with(backend, |s| {
            tweak(s);
            s.devnet.enabled = Some(true);
            s.devnet.bitcoin_rpc_bind = "127.0.0.1:0".into();
            s.devnet.bitcoin_esplora_bind = "127.0.0.1:0".into();
            s.devnet.xrpl_ws_bind = "127.0.0.1:0".into();
            s.devnet.xrpl_rpc_bind = "127.0.0.1:0".into();
            s.devnet.block_interval_secs = 0;
            s.devnet.ledger_interval_secs = 0;
        })
        .await
    }

    pub fn chains(&self) -> &Chains {
        self.chains.as_ref().expect("spawned with chains")
    }

    pub fn database_url(&self) -> String {
        self.database.url()
    }

    /// POSTs a GraphQL request with `Accept: application/graphql-response+json`.
    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> GqlResponse {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.address))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("request sent");
        Self::read(resp).await
    }

    pub async fn read(resp: reqwest::Response) -> GqlResponse {
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        GqlResponse {
            status,
            content_type,
            body,
        }
    }

    pub async fn register(&self, email: &str) -> Value {
        self.gql(
            "mutation($i: RegisterInput!) { register(input: $i) { user { id email roles } } }",
            json!({ "i": { "email": email, "password": PASSWORD } }),
            None,
        )
        .await
        .ok()
    }

    pub async fn login(&self, email: &str) -> Session {
        let data = self
            .gql(
                "mutation($i: LoginInput!) { login(input: $i) { accessToken refreshToken user { id email } } }",
                json!({ "i": { "email": email, "password": PASSWORD } }),
                None,
            )
            .await
            .ok();
        Session {
            user_id: data["login"]["user"]["id"].as_str().unwrap_or_default().to_owned(),
            email: email.to_owned(),
            access_token: data["login"]["accessToken"].as_str().unwrap_or_default().to_owned(),
            refresh_token: data["login"]["refreshToken"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Registers and logs in a fresh account.
    pub async fn new_user(&self, name: &str) -> Session {
        let email = format!("{name}@example.org");
        self.register(&email).await;
        self.login(&email).await
    }

    /// Registers a user who is a provider and returns its session and provider id.
    pub async fn new_provider(&self, name: &str) -> (Session, String) {
        let s = self.new_user(name).await;
        let data = self
            .gql(
                "mutation($i: ProviderProfileInput!) { becomeProvider(input: $i) { provider { id } } }",
                json!({ "i": { "displayName": name, "bio": "", "region": "eu", "languages": ["en"] } }),
                Some(&s.access_token),
            )
            .await
            .ok();
        let id = data["becomeProvider"]["provider"]["id"].as_str().unwrap_or_default().to_owned();
        (s, id)
    }

    /// Makes `email` an admin the way an operator would (the CLI's code path).
    pub async fn make_admin(&self, email: &str) {
        let db = agora_persistence::db::connect(&self.database_url(), 1).await.expect("connect");
        agora_api::admin::create_admin(&db, email, "").await.expect("admin");
    }

    /// Creates a listing; `overrides` are merged into a valid input.
    pub async fn create_listing(&self, token: &str, overrides: Value) -> GqlResponse {
        let mut input = valid_listing_input();
        if let (Some(obj), Some(extra)) = (input.as_object_mut(), overrides.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        self.gql(
            "mutation($i: CreateListingInput!) { createListing(input: $i) { listing { id title status version price: pricing { ... on FixedPricing { amount } ... on MeteredPricing { pricePerUnit } } } } }",
            json!({ "i": input }),
            Some(token),
        )
        .await
    }
}

/// A listing input that passes every validation.
pub fn valid_listing_input() -> Value {
    json!({
        "title": "Rust code review",
        "description": "An hour with an experienced reviewer.",
        "category": "expert-session",
        "tags": ["rust", "review"],
        "region": "eu",
        "asset": "BTC",
        "pricing": { "fixed": { "asset": "BTC", "amount": "50000" } },
        "deliveryWindowHours": 48,
        "publish": true
    })
}

/// Runs an `async fn(TestApp)` test once against PostgreSQL and once against SQLite.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::TestApp::spawn($crate::Backend::Postgres).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::TestApp::spawn($crate::Backend::Sqlite).await).await
                }
            }
        )+
    };
}

impl TestApp {
    /// Creates a listing (`overrides` merged into a valid input) and returns its id.
    pub async fn new_listing(&self, token: &str, overrides: Value) -> String {
        let data = self.create_listing(token, overrides).await.ok();
        data["createListing"]["listing"]["id"].as_str().expect("a listing id").to_owned()
    }
}

/// Asserts that `resp` failed with `BAD_USER_INPUT` naming `field` for `reason`.
#[track_caller]
pub fn assert_bad_input(resp: &GqlResponse, field: &str, reason: &str) {
    let ext = &resp.error()["extensions"];
    assert_eq!(
        (resp.error_code(), ext["field"].as_str(), ext["reason"].as_str()),
        (Some("BAD_USER_INPUT"), Some(field), Some(reason)),
        "{}",
        serde_json::to_string_pretty(&resp.body).unwrap_or_default()
    );
}

/// Like [`on_both_backends!`] for tests that spawn the app themselves (e.g. with
/// smaller limits): runs each `async fn(Backend)` once per backend.
#[macro_export]
macro_rules! for_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }
            }
        )+
    };
}
