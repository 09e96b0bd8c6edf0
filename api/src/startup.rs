//! Building and running the application: database, migrations, keys, schema and
//! the HTTP server. Tests build it with port 0 and read the port back.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, Service as _};
use actix_web::{web, App, HttpServer};
use agora_migrations::{Migrator, MigratorTrait};
use anyhow::Context as _;

use agora_domain::clock::{Clock, SystemClock};
use agora_escrow::btc::{generate_master, MarketplaceKeyStore};

use crate::auth::jwt::create_private_once;
use crate::auth::password::HashingPool;
use crate::auth::rate_limit::Throttle;
use crate::config::Mode;
use crate::orders::bitcoin::{p2wpkh, parse_address, parse_network, BitcoinContext};
use crate::orders::xrpl::XrplContext;
use agora_escrow::xrpl::{PayoutDestination, Reserves, XrplAddress, XrplKeyring};
use crate::auth::JwtKeys;
use crate::config::Settings;
use crate::graphql::context::AppState;
use crate::http;

pub struct Application {
    port: u16,
    server: Server,
    state: Arc<AppState>,
    devnets: Option<crate::chains::Devnets>,
}

impl Application {
    /// Connects, migrates (when configured), loads keys and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As `build`, with the clock deadlines are judged by.
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        private_dir(&settings.data_dir)
            .with_context(|| format!("cannot create the data directory {}", settings.data_dir.display()))?;
        if let Some(path) = sqlite_path(&settings.database_url()) {
            private_file(&path).with_context(|| format!("cannot create the database file {}", path.display()))?;
        }
        let jwt = JwtKeys::load(&settings.auth, settings.mode, &settings.data_dir)?;
        let db = agora_persistence::db::connect(&settings.database_url(), settings.database.max_connections)
            .await
            .context("cannot connect to the database")?;
        if settings.auto_migrate() {
            Migrator::up(&db, None).await.context("cannot apply migrations")?;
        }
        let bitcoin = bitcoin_context(&settings)?;
        let xrpl = xrpl_context(&settings)?;
        let state = Arc::new(AppState {
            db,
            jwt,
            clock,
            bitcoin,
            bitcoin_settings: settings.bitcoin.clone(),
            xrpl,
            xrpl_settings: settings.xrpl.clone(),
            tips: Default::default(),
            // Enough for every operation of a client or two; see `graphql::documents`.
            documents: crate::graphql::documents::DocumentCache::new(512),
            order_updates: tokio::sync::broadcast::channel(1024).0,
            order_settings: settings.orders.clone(),
            notifications: crate::notifications::Notifications::from_settings(&settings)?,
            refresh_ttl: chrono::Duration::seconds(
                i64::try_from(settings.auth.refresh_token_ttl_secs).unwrap_or(i64::MAX / 2),
            ),
            throttle: Throttle::from_settings(&settings.auth),
            hashing: HashingPool::from_settings(&settings.auth),
            document_limits: crate::graphql::guard::DocumentLimits::from_settings(&settings.graphql),
            subscriptions_per_socket: settings.graphql.subscriptions_per_socket.max(1),
            graphiql: settings.graphiql(),
            trusted_proxies: crate::http::client::TrustedProxies::parse(&settings.http.trusted_proxies)
                .map_err(|bad| anyhow::anyhow!("http.trusted_proxies: {bad} is neither an IP address nor a CIDR range"))?,
            metrics: Arc::new(crate::metrics::Metrics::new(settings.database.max_connections)?),
        });
        let devnets = if settings.devnet_enabled() {
            if state.xrpl.network != XrplNetwork::Devnet {
                anyhow::bail!(
                    "the local chains run only with xrpl.network = devnet (it is {}); disable devnet.enabled to watch a real network",
                    settings.xrpl.network
                );
            }
            Some(crate::chains::start_devnets(&settings, state.xrpl.operating.address.as_str()).await?)
        } else {
            None
        };
        crate::chains::start_watchers(state.clone(), &settings, devnets.as_ref()).await?;
        crate::orders::scheduler::spawn(
            state.clone(),
            Duration::from_secs(settings.orders.scheduler_interval_secs.max(1)),
        );
        crate::notifications::dispatcher::spawn(state.clone());
        spawn_rate_limit_sweep(state.clone());
        let schema = crate::graphql::build(state.clone(), &settings.graphql, settings.introspection(), settings.suggestions());
        let listener = TcpListener::bind(&settings.server.bind)
            .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
        let port = listener.local_addr()?.port();
        let body_limit = settings.server.body_limit_bytes;
        let app_state = state.clone();
        let cors = http::headers::CorsOrigins(Arc::new(settings.http.cors_allowed_origins.clone()));
        let mut server = HttpServer::new(move || {
            let metrics = app_state.metrics.clone();
            App::new()
                .wrap(actix_web::middleware::from_fn(http::headers::apply))
                .app_data(web::Data::new(cors.clone()))
                .wrap_fn(move |req, srv| {
                    let path = req.path().to_owned();
                    let metrics = metrics.clone();
                    let response = srv.call(req);
                    async move {
                        let response = response.await?;
                        metrics.http_response(&path, response.status().as_u16());
                        Ok(response)
                    }
                })
                .app_data(web::Data::new(http::graphql::BodyLimit(body_limit)))
                .app_data(web::Data::new(schema.clone()))
                .app_data(web::Data::new(app_state.clone()))
                .route("/graphql", web::post().to(http::graphql::post))
                .route("/graphql", web::get().to(http::graphql::get))
                .route("/graphql/ws", web::get().to(http::graphql::subscriptions))
                .route("/graphql", web::route().to(http::graphql::method_not_allowed))
                .route("/healthz", web::get().to(http::health::healthz))
                .route("/readyz", web::get().to(http::health::readyz))
                .route("/metrics", web::get().to(crate::metrics::endpoint))
        })
        .listen(listener)?
        .shutdown_timeout(settings.server.shutdown_timeout_secs);
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers.max(1));
        }
        Ok(Self {
            port,
            server: server.run(),
            state,
            devnets,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// The in-process devnets, when they run.
    pub fn devnets(&self) -> Option<&crate::chains::Devnets> {
        self.devnets.as_ref()
    }

    /// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // The devnets live as long as the server.
        let _devnets = self.devnets;
        self.server.await
    }
}

/// Forgets ended login and sign-up windows once an hour, so the table stays
/// as small as the current traffic.
fn spawn_rate_limit_sweep(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let now = chrono::Utc::now().timestamp();
            if let Err(e) = state.throttle.sweep(&state.db, now).await {
                tracing::warn!(error.cause = %e, "cannot sweep the rate-limit windows; retrying in an hour");
            }
        }
    });
}

/// Creates `dir` (and its parents) if needed and makes it owner-only (0700).
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes an existing file owner-only (0600).
pub fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates `path` empty and owner-only if it does not exist, and makes it
/// owner-only if it does. SQLite gives its `-wal` and `-shm` files the
/// database file's permissions, so they are owner-only too.
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?;
    make_private(path)
}

/// The file of a `sqlite://` URL (`None` for in-memory databases and other backends).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::PathBuf::from(path))
}

const DEV_BITCOIN_KEY_FILE: &str = "bitcoin-marketplace.xprv";

/// The marketplace's Bitcoin key store and payout settings. In development a
/// key is generated once into the data directory (test networks only); in
/// production the key must come from configuration.
fn bitcoin_context(settings: &Settings) -> anyhow::Result<BitcoinContext> {
    let cfg = &settings.bitcoin;
    let network = parse_network(&cfg.network)
        .ok_or_else(|| anyhow::anyhow!("bitcoin.network must be bitcoin, testnet, signet or regtest"))?;
    let keystore = if let Some(xprv) = &cfg.xprv {
        MarketplaceKeyStore::from_xprv_str(xprv.expose())?
    } else if let Some(path) = &cfg.xprv_file {
        MarketplaceKeyStore::from_file(path)?
    } else if settings.mode == Mode::Production || network == bitcoin::Network::Bitcoin {
        anyhow::bail!(
            "the marketplace's Bitcoin key is missing: set bitcoin.xprv_file (AGORA__BITCOIN__XPRV_FILE); `agora keys generate --network {}` makes one",
            cfg.network
        );
    } else {
        let path = settings.data_dir.join(DEV_BITCOIN_KEY_FILE);
        if !path.exists() {
            let (xprv, _) = generate_master(network)?;
            create_private_once(&path, &xprv).with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(key.path = %path.display(), "generated a development Bitcoin marketplace key");
        }
        MarketplaceKeyStore::from_file(&path)?
    };
    // A key of another network would derive escrow keys whose addresses and
    // signatures the configured chain treats as someone else's.
    let expected_kind = bitcoin::NetworkKind::from(network);
    if keystore.network_kind() != expected_kind {
        anyhow::bail!(
            "the marketplace's Bitcoin key is for {}, but bitcoin.network is {}: use an {} key",
            if keystore.network_kind() == bitcoin::NetworkKind::Main { "mainnet (xprv)" } else { "a test network (tprv)" },
            cfg.network,
            if expected_kind == bitcoin::NetworkKind::Main { "xprv" } else { "tprv" },
        );
    }
    if cfg.fee_rate_min_sat_vb == 0 || cfg.fee_rate_min_sat_vb > cfg.fee_rate_max_sat_vb {
        anyhow::bail!("bitcoin.fee_rate_min_sat_vb must be positive and at most bitcoin.fee_rate_max_sat_vb");
    }
    let marketplace_address = match &cfg.marketplace_address {
        Some(a) => parse_address("bitcoin.marketplace_address", a, network)
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?,
        None if settings.mode == Mode::Production => {
            anyhow::bail!("set bitcoin.marketplace_address: where commissions and fees are paid")
        }
        None => p2wpkh(&keystore.fee_pubkey()?, network).map_err(|e| anyhow::anyhow!("{}", e.message()))?,
    };
    let block_interval_secs = match cfg.block_interval_secs {
        Some(secs) if secs > 0 => secs,
        Some(_) => anyhow::bail!("bitcoin.block_interval_secs must be positive"),
        None if settings.devnet_enabled() && settings.devnet.block_interval_secs > 0 => settings.devnet.block_interval_secs,
        None => 600,
    };
    Ok(BitcoinContext {
        network,
        gate: crate::orders::signing::SigningGate::new(keystore),
        marketplace_address,
        fees: crate::orders::bitcoin::FeeRates::new(cfg.fee_rate_sat_vb, cfg.fee_rate_min_sat_vb, cfg.fee_rate_max_sat_vb),
        fee_target_blocks: cfg.fee_target_blocks.max(1),
        block_interval: std::time::Duration::from_secs(block_interval_secs),
    })
}

const DEV_XRPL_SECRET_FILE: &str = "xrpl-marketplace.secret";

/// The marketplace's XRPL keyring and payout settings. In development the
/// secret is generated once into the data directory.
pub fn xrpl_context(settings: &Settings) -> anyhow::Result<XrplContext> {
    let cfg = &settings.xrpl;
    let network = XrplNetwork::parse(&cfg.network)
        .ok_or_else(|| anyhow::anyhow!("xrpl.network must be devnet, testnet or mainnet (it is {:?})", cfg.network))?;
    let secret_hex = if let Some(secret) = &cfg.secret_hex {
        secret.expose().to_owned()
    } else if let Some(path) = &cfg.secret_file {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    } else if settings.mode == Mode::Production || network != XrplNetwork::Devnet {
        // A generated secret is for throw-away development ledgers only: on a
        // real network it would hold escrows nobody has a backup of.
        anyhow::bail!(
            "the marketplace's XRPL secret is missing: set xrpl.secret_file (AGORA__XRPL__SECRET_FILE); development secrets are generated only when xrpl.network is devnet (it is {})",
            cfg.network
        );
    } else {
        let path = settings.data_dir.join(DEV_XRPL_SECRET_FILE);
        if !path.exists() {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            create_private_once(&path, &hex::encode(bytes)).with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(key.path = %path.display(), "generated a development XRPL marketplace secret");
        }
        std::fs::read_to_string(&path)?
    };
    let secret = hex::decode(secret_hex.trim()).map_err(|_| anyhow::anyhow!("the XRPL secret must be hex"))?;
    let keyring = XrplKeyring::from_secret(&secret)?;
    let operating = keyring.operating_key()?.account();
    let marketplace = PayoutDestination {
        address: match &cfg.marketplace_address {
            Some(a) => XrplAddress::parse(a)?,
            None => operating.address.clone(),
        },
        tag: cfg.marketplace_destination_tag,
    };
    Ok(XrplContext {
        keyring,
        operating,
        marketplace,
        base_fee_drops: cfg.base_fee_drops,
        reserves: Reserves {
            base_drops: cfg.base_reserve_drops,
            owner_drops: cfg.owner_reserve_drops,
        },
        network,
        setup_ledger_window: cfg.ledger_window.max(1),
        signing_window_ledgers: signing_window_ledgers(cfg.signing_window_minutes)?,
        channel_settle_delay_secs: channel_settle_delay(cfg.channel_settle_delay_secs)?,
    })
}

/// The shortest `SettleDelay` a metered order's channel may have: the
/// provider's time to redeem its latest claim once the escrow asks to close.
pub const MIN_CHANNEL_SETTLE_DELAY_SECS: u32 = 600;

fn channel_settle_delay(secs: u32) -> anyhow::Result<u32> {
    if secs < MIN_CHANNEL_SETTLE_DELAY_SECS {
        anyhow::bail!("xrpl.channel_settle_delay_secs must be at least {MIN_CHANNEL_SETTLE_DELAY_SECS}");
    }
    Ok(secs)
}

/// The XRP Ledger network the marketplace works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrplNetwork {
    Devnet,
    Testnet,
    Mainnet,
}

impl XrplNetwork {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "devnet" => Some(Self::Devnet),
            "testnet" => Some(Self::Testnet),
            "mainnet" => Some(Self::Mainnet),
            _ => None,
        }
    }
}

/// Fastest pace at which rippled closes ledgers: counting the signing window
/// at this pace means a payout stays signable at least as many minutes as
/// configured.
const FASTEST_LEDGER_CLOSE_SECS: u32 = 3;

/// Ledgers in a signing window of `minutes` (at least one minute).
pub fn signing_window_ledgers(minutes: u32) -> anyhow::Result<u32> {
    if minutes == 0 {
        anyhow::bail!("xrpl.signing_window_minutes must be at least 1");
    }
    minutes
        .checked_mul(60 / FASTEST_LEDGER_CLOSE_SECS)
        .ok_or_else(|| anyhow::anyhow!("xrpl.signing_window_minutes is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_escrow::btc::generate_master;

    fn settings(network: &str, xprv: Option<String>) -> Settings {
        let mut s = Settings::default();
        s.data_dir = std::env::temp_dir().join(format!("agora-keys-{}", uuid::Uuid::new_v4()));
        s.bitcoin.network = network.into();
        s.bitcoin.xprv = xprv.map(crate::config::Secret::new);
        s.bitcoin.marketplace_address = None;
        s
    }

    fn error_of(s: &Settings) -> String {
        match bitcoin_context(s) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_key_of_another_network_is_refused_at_start_up() {
        let (tprv, _) = generate_master(bitcoin::Network::Regtest).unwrap();
        let (xprv, _) = generate_master(bitcoin::Network::Bitcoin).unwrap();
        let test_key_on_mainnet = error_of(&settings("bitcoin", Some(tprv.clone())));
        assert!(test_key_on_mainnet.contains("bitcoin.network is bitcoin"), "{test_key_on_mainnet}");
        let main_key_on_regtest = error_of(&settings("regtest", Some(xprv)));
        assert!(main_key_on_regtest.contains("mainnet (xprv)"), "{main_key_on_regtest}");
        assert!(bitcoin_context(&settings("regtest", Some(tprv))).is_ok());
    }

    fn xrpl_error_of(network: &str) -> String {
        let mut s = settings("regtest", None);
        s.xrpl.network = network.into();
        s.xrpl.secret_hex = None;
        s.xrpl.secret_file = None;
        std::fs::create_dir_all(&s.data_dir).unwrap();
        match xrpl_context(&s) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_development_xrpl_secret_is_generated_only_on_the_devnet() {
        assert_eq!(xrpl_error_of("devnet"), "");
        for real in ["testnet", "mainnet"] {
            let refused = xrpl_error_of(real);
            assert!(refused.contains("xrpl.secret_file"), "{real}: {refused}");
            assert!(refused.contains("only when xrpl.network is devnet"), "{real}: {refused}");
        }
        let unknown = xrpl_error_of("livenet");
        assert!(unknown.contains("xrpl.network must be devnet, testnet or mainnet"), "{unknown}");
    }

    #[test]
    fn the_signing_window_is_counted_in_minutes_at_the_fastest_pace() {
        assert_eq!(signing_window_ledgers(60).unwrap(), 1_200);
        assert_eq!(signing_window_ledgers(1).unwrap(), 20);
        assert!(signing_window_ledgers(0).is_err());
        assert!(signing_window_ledgers(u32::MAX).is_err());
    }

    #[test]
    fn a_missing_mainnet_key_names_the_command_that_makes_one() {
        let missing = error_of(&settings("bitcoin", None));
        assert!(missing.contains("agora keys generate --network bitcoin"), "{missing}");
    }
}
