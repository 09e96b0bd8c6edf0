//! Configuration: built-in defaults, then an optional TOML file, then `AGORA__*`
//! environment variables (`AGORA__DATABASE__URL` sets `database.url`), then
//! command-line flags. Secrets in here are never logged: `Debug` redacts them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Generates missing keys in the data directory, enables introspection.
    Development,
    /// Refuses to start without configured secrets.
    Production,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub mode: Mode,
    /// Where the embedded database and development keys live.
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub graphql: GraphqlSettings,
    pub orders: OrderSettings,
    pub bitcoin: BitcoinSettings,
    pub xrpl: XrplSettings,
    pub devnet: DevnetSettings,
    pub watchers: WatcherSettings,
    pub notifications: NotificationSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `ADDR:PORT`; port 0 picks a free port (tests use it).
    pub bind: String,
    /// Requests with a larger body get 413.
    pub body_limit_bytes: usize,
    /// Worker threads; defaults to the number of cores.
    pub workers: Option<usize>,
    /// Seconds given to in-flight requests on SIGTERM/Ctrl-C.
    pub shutdown_timeout_secs: u64,
}

/// What the HTTP layer trusts and serves to browsers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed; from anyone else the header is ignored and the peer address is
    /// the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Origins browsers may call the API from (exact `scheme://host[:port]`);
    /// empty: no cross-origin access.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    /// Serve GraphiQL on `GET /graphql`. Defaults to on in development, off in production.
    pub graphiql: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://…`; empty means `sqlite://<data_dir>/agora.db`.
    pub url: Option<Secret>,
    pub max_connections: u32,
    /// Apply pending migrations at start-up. Defaults to on in development and off
    /// in production, where `agora migrate up` runs as its own step (a Job).
    pub auto_migrate: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// PKCS#8 PEM of the Ed25519 key that signs access tokens.
    pub jwt_private_key_pem: Option<Secret>,
    /// Or a file holding that PEM (e.g. a mounted Kubernetes Secret).
    pub jwt_private_key_file: Option<PathBuf>,
    pub issuer: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// Login attempts per (e-mail address, client address) per window before
    /// RATE_LIMITED; a successful login clears them, and the owner logging in
    /// from another address is never held back by them.
    pub login_attempts_per_window: u32,
    /// Login attempts per client address (across e-mail addresses) per window.
    pub login_attempts_per_client_per_window: u32,
    pub login_window_secs: u64,
    /// Sign-ups per client address per window.
    pub signups_per_client_per_window: u32,
    pub signup_window_secs: u64,
    /// Password hashes computed at once; defaults to the number of cores.
    pub hashing_concurrency: Option<usize>,
    /// How long a login or sign-up waits for a hashing slot before RATE_LIMITED.
    pub hashing_queue_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlSettings {
    pub depth_limit: usize,
    pub complexity_limit: usize,
    /// Defaults to on in development, off in production.
    pub introspection: Option<bool>,
    /// "Did you mean …" in validation errors. Defaults to on in development,
    /// off in production (they reveal the schema).
    pub suggestions: Option<bool>,
    /// Subscriptions one WebSocket may hold at once.
    pub subscriptions_per_socket: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSettings {
    /// How long the buyer has to fund the escrow after placing an order.
    pub funding_window_secs: u64,
    /// How long the buyer has after delivery to dispute before funds auto-release.
    pub review_period_secs: u64,
    /// How long the other party has to answer a dispute.
    pub dispute_response_secs: u64,
    /// How long the arbitrator has to decide after the response deadline; an
    /// undecided case is then escalated to another arbitrator with as long again.
    pub decision_period_secs: u64,
    /// How long either party may appeal a first decision.
    pub appeal_window_secs: u64,
    /// How long the second arbitrator has to decide an appeal; then the first
    /// decision stands.
    pub appeal_decision_period_secs: u64,
    /// How long a buyer who released the funds has to sign the release before
    /// the marketplace key co-signs it with the provider.
    pub release_signing_grace_secs: u64,
    /// How often the deadline scheduler looks for passed deadlines.
    pub scheduler_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitcoinSettings {
    /// bitcoin, testnet, signet or regtest.
    pub network: String,
    /// The marketplace's extended private key (xprv/tprv) the arbitrator keys
    /// derive from. Generated into the data directory in development.
    pub xprv: Option<Secret>,
    pub xprv_file: Option<PathBuf>,
    /// Where commissions and arbitration fees are paid. Development default: an
    /// address of the marketplace key.
    pub marketplace_address: Option<String>,
    /// Fee rate for payouts while the chain's fee estimate is unknown.
    pub fee_rate_sat_vb: u64,
    /// Bounds for the chain's fee estimate (`estimatesmartfee`, Esplora's
    /// fee estimates): an estimate outside them is clamped.
    pub fee_rate_min_sat_vb: u64,
    pub fee_rate_max_sat_vb: u64,
    /// Confirmation target of the fee estimate, in blocks.
    pub fee_target_blocks: u16,
    /// The chain's average time between blocks; the timelock is sized as if
    /// blocks came 20 % faster. Unset: 600 s, or the local chain's interval
    /// when it mines on its own.
    pub block_interval_secs: Option<u64>,
    pub commission_bps: u16,
    pub arbitration_fee_fixed_sats: u64,
    pub arbitration_fee_bps: u16,
    /// Blocks before the buyer's refund path opens at which Agora raises an alert.
    pub timelock_margin_blocks: u32,
    /// `[max_amount_sats, confirmations]` pairs, ascending: an amount up to
    /// `max_amount_sats` needs that many confirmations; above the last, the last.
    pub confirmations: Vec<(u64, u32)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XrplSettings {
    /// The secret (hex, at least 32 bytes) every marketplace XRPL key derives
    /// from: escrow accounts, the arbitrator, the operating account. Generated
    /// into the data directory in development.
    pub secret_hex: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    /// Where commissions and arbitration fees are paid; by default the
    /// operating account.
    pub marketplace_address: Option<String>,
    pub marketplace_destination_tag: Option<u32>,
    pub base_fee_drops: u64,
    pub base_reserve_drops: u64,
    pub owner_reserve_drops: u64,
    /// Which XRP Ledger network the watchers read: `devnet` (the local chain
    /// or another development network), `testnet` or `mainnet`. Development
    /// keys are generated only on `devnet`.
    pub network: String,
    /// Ledgers an automatic set-up transaction (the escrow account's funding,
    /// signer list, master-key switch) stays valid (its LastLedgerSequence).
    pub ledger_window: u32,
    /// Minutes a payout Payment stays signable: its LastLedgerSequence is the
    /// validated ledger when it is built plus this many minutes of ledgers,
    /// counted at the fastest close pace (3 s a ledger).
    pub signing_window_minutes: u32,
    /// Seconds a metered order's payment channel stays open after the escrow
    /// asks to close it (its `SettleDelay`): the provider's time to redeem
    /// its latest claim. At least 600.
    pub channel_settle_delay_secs: u32,
    pub commission_bps: u16,
    pub arbitration_fee_fixed_drops: u64,
    pub arbitration_fee_bps: u16,
}

/// Local chains started in-process (development only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevnetSettings {
    /// Defaults to on in development, off (refused) in production.
    pub enabled: Option<bool>,
    pub bitcoin_rpc_bind: String,
    pub bitcoin_esplora_bind: String,
    pub xrpl_ws_bind: String,
    pub xrpl_rpc_bind: String,
    /// 0 disables automatic mining/closing (tests drive the chains).
    pub block_interval_secs: u64,
    pub ledger_interval_secs: u64,
}

/// The chain watchers and where they read the chains.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatcherSettings {
    pub enabled: bool,
    pub poll_interval_ms: u64,
    /// `rpc` (Bitcoin Core JSON-RPC) or `esplora`.
    pub bitcoin_source: String,
    /// Defaults to the devnet's when it runs.
    pub bitcoin_rpc_url: Option<String>,
    pub bitcoin_rpc_user: Option<String>,
    pub bitcoin_rpc_password: Option<Secret>,
    pub esplora_url: Option<String>,
    pub xrpl_ws_url: Option<String>,
    pub xrpl_rpc_url: Option<String>,
}

/// E-mail notifications: where they are sent and how the dispatcher retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// `smtp://user:pass@host:port` (plain), `smtp://…?tls=required` (STARTTLS)
    /// or `smtps://…`. Unset: e-mails are written as files into `<data_dir>/mail/`.
    pub smtp_url: Option<Secret>,
    /// The `From:` of every e-mail.
    pub from: String,
    /// How often the dispatcher looks for e-mails to send; 0 disables it.
    pub dispatcher_interval_ms: u64,
    /// E-mails sent per dispatcher run at most.
    pub batch_size: u64,
    /// Attempts before an e-mail is given up (`failed`).
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubles after each further one.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// How long a claimed e-mail stays hidden from other dispatchers; if the
    /// claiming one dies, the e-mail is sent again after this. Must exceed
    /// `send_timeout_secs`.
    pub claim_lease_secs: u64,
    pub send_timeout_secs: u64,
}

/// A configuration value that must not appear in logs.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Development,
            data_dir: PathBuf::from("data"),
            server: ServerSettings {
                bind: "127.0.0.1:8080".into(),
                body_limit_bytes: 256 * 1024,
                workers: None,
                shutdown_timeout_secs: 30,
            },
            http: HttpSettings {
                trusted_proxies: Vec::new(),
                cors_allowed_origins: Vec::new(),
                graphiql: None,
            },
            database: DatabaseSettings {
                url: None,
                max_connections: 10,
                auto_migrate: None,
            },
            auth: AuthSettings {
                jwt_private_key_pem: None,
                jwt_private_key_file: None,
                issuer: "agora".into(),
                access_token_ttl_secs: 15 * 60,
                refresh_token_ttl_secs: 30 * 24 * 3600,
                login_attempts_per_window: 10,
                login_attempts_per_client_per_window: 50,
                login_window_secs: 15 * 60,
                signups_per_client_per_window: 10,
                signup_window_secs: 3600,
                hashing_concurrency: None,
                hashing_queue_timeout_ms: 3_000,
            },
            graphql: GraphqlSettings {
                depth_limit: 12,
                complexity_limit: 2_000,
                introspection: None,
                suggestions: None,
                subscriptions_per_socket: 20,
            },
            orders: OrderSettings {
                funding_window_secs: 24 * 3600,
                review_period_secs: 72 * 3600,
                dispute_response_secs: 48 * 3600,
                decision_period_secs: 72 * 3600,
                appeal_window_secs: 72 * 3600,
                appeal_decision_period_secs: 72 * 3600,
                release_signing_grace_secs: 24 * 3600,
                scheduler_interval_secs: 30,
            },
            bitcoin: BitcoinSettings {
                network: "regtest".into(),
                xprv: None,
                xprv_file: None,
                marketplace_address: None,
                fee_rate_sat_vb: 2,
                fee_rate_min_sat_vb: 1,
                fee_rate_max_sat_vb: 500,
                fee_target_blocks: 6,
                block_interval_secs: None,
                commission_bps: 250,
                arbitration_fee_fixed_sats: 5_000,
                arbitration_fee_bps: 100,
                timelock_margin_blocks: 144,
                confirmations: vec![(1_000_000, 1), (10_000_000, 3), (100_000_000, 6)],
            },
            devnet: DevnetSettings {
                enabled: None,
                bitcoin_rpc_bind: "127.0.0.1:18443".into(),
                bitcoin_esplora_bind: "127.0.0.1:3002".into(),
                xrpl_ws_bind: "127.0.0.1:6006".into(),
                xrpl_rpc_bind: "127.0.0.1:5005".into(),
                block_interval_secs: 10,
                ledger_interval_secs: 4,
            },
            watchers: WatcherSettings {
                enabled: true,
                poll_interval_ms: 1_000,
                bitcoin_source: "rpc".into(),
                bitcoin_rpc_url: None,
                bitcoin_rpc_user: None,
                bitcoin_rpc_password: None,
                esplora_url: None,
                xrpl_ws_url: None,
                xrpl_rpc_url: None,
            },
            xrpl: XrplSettings {
                secret_hex: None,
                secret_file: None,
                marketplace_address: None,
                marketplace_destination_tag: None,
                base_fee_drops: 10,
                base_reserve_drops: 1_000_000,
                owner_reserve_drops: 200_000,
                network: "devnet".into(),
                ledger_window: 20,
                signing_window_minutes: 60,
                channel_settle_delay_secs: 3_600,
                commission_bps: 250,
                arbitration_fee_fixed_drops: 1_000_000,
                arbitration_fee_bps: 100,
            },
            notifications: NotificationSettings {
                smtp_url: None,
                from: "Agora <no-reply@agora.localhost>".into(),
                dispatcher_interval_ms: 2_000,
                batch_size: 50,
                max_attempts: 8,
                retry_base_secs: 30,
                retry_max_secs: 3_600,
                claim_lease_secs: 300,
                send_timeout_secs: 30,
            },
        }
    }
}

/// Flags that override every other source.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl Settings {
    /// Loads defaults → `file` (if given) → `AGORA__*` env vars → `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::Config::try_from(&Settings::default())?);
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("AGORA")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        if let Some(bind) = &overrides.bind {
            settings.server.bind = bind.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            settings.data_dir = dir.clone();
        }
        if let Some(url) = &overrides.database_url {
            settings.database.url = Some(Secret::new(url.clone()));
        }
        Ok(settings)
    }

    /// The database URL, defaulting to the embedded SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) if !url.expose().trim().is_empty() => url.expose().to_owned(),
            _ => format!("sqlite://{}?mode=rwc", self.data_dir.join("agora.db").display()),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    pub fn auto_migrate(&self) -> bool {
        self.database.auto_migrate.unwrap_or(self.mode == Mode::Development)
    }

    pub fn devnet_enabled(&self) -> bool {
        self.devnet.enabled.unwrap_or(self.mode == Mode::Development)
    }

    pub fn introspection(&self) -> bool {
        self.graphql.introspection.unwrap_or(self.mode == Mode::Development)
    }

    pub fn suggestions(&self) -> bool {
        self.graphql.suggestions.unwrap_or(self.mode == Mode::Development)
    }

    pub fn graphiql(&self) -> bool {
        self.http.graphiql.unwrap_or(self.mode == Mode::Development)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_locally_on_sqlite() {
        let s = Settings::default();
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert!(s.database_url().starts_with("sqlite://data"));
        assert!(s.auto_migrate());
    }

    #[test]
    fn file_then_overrides_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("agora-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agora.toml");
        std::fs::write(&file, "mode = \"production\"\n[server]\nbind = \"0.0.0.0:9000\"\n").unwrap();
        let s = Settings::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(s.mode, Mode::Production);
        assert_eq!(s.server.bind, "0.0.0.0:9000");
        assert!(!s.auto_migrate());
        let s = Settings::load(
            Some(&file),
            &Overrides {
                bind: Some("127.0.0.1:0".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:0");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let mut s = Settings::default();
        s.database.url = Some(Secret::new("postgres://u:hunter2@db/agora"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
