//! The `agora` binary: parse the command line, load configuration, dispatch.

use std::io::BufRead;

use agora_api::cli::{Cli, Command, KeysAction, MigrateAction};
use agora_api::config::Settings;
use agora_api::startup::Application;
use agora_migrations::{Migrator, MigratorTrait};
use anyhow::Context;
use clap::Parser;

/// mimalloc instead of glibc's malloc: a request allocates and frees many small
/// objects across worker threads, where glibc's allocator showed up as about a
/// fifth of the CPU profile of a listing page.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    agora_api::telemetry::init();
    let settings = Settings::load(cli.global.config.as_deref(), &cli.global.overrides())
        .context("invalid configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate { action } => migrate(&settings, action).await,
        Command::Devnet => devnet(settings).await,
        Command::Wallet { action } => agora_api::devwallet::run(action, &settings).await,
        Command::Schema => {
            print!("{}", agora_api::graphql::sdl());
            Ok(())
        }
        Command::CreateAdmin { email } => create_admin(&settings, &email).await,
        Command::Keys { action } => keys(action),
        Command::BenchWatcher(args) => bench_watcher(&args),
    }
}

fn bench_watcher(args: &agora_api::watcher::bench::BenchWatcherArgs) -> anyhow::Result<()> {
    let r = agora_api::watcher::bench::run(args)?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!("block: {} transactions, {} bytes; index: {} watched scripts and outpoints, built in {:.0} ms", args.txs, r.block_bytes, args.scripts, ms(r.index_build));
    if let Some(bytes) = r.index_resident_bytes {
        println!("index memory: {:.0} MiB resident ({:.0} bytes per watched escrow)", bytes as f64 / 1048576.0, bytes as f64 / args.scripts.max(1) as f64);
    }
    println!("matched: {} outputs, {} spends", r.matched_outputs, r.matched_spends);
    println!("decode only (median of {}):    {:.3} ms", args.rounds, ms(r.decode));
    println!("decode + match (median of {}): {:.3} ms", args.rounds, ms(r.decode_and_match));
    println!("ratio: {:.2} (target at most 1.5)", r.ratio());
    Ok(())
}

fn keys(action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Generate { network } => {
            let network = agora_api::orders::bitcoin::parse_network(&network)
                .ok_or_else(|| anyhow::anyhow!("--network must be bitcoin, testnet, signet or regtest"))?;
            let (xprv, xpub) = agora_escrow::btc::generate_master(network)?;
            println!("# Marketplace Bitcoin key ({network}). Keep the first line secret (bitcoin.xprv_file);");
            println!("# the second identifies the key and may be published.");
            println!("{xprv}");
            println!("{xpub}");
        }
        KeysAction::Xrpl => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            println!("{}", hex::encode(bytes));
        }
        KeysAction::Jwt => print!("{}", agora_api::auth::JwtKeys::generate_pem()?),
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let host = settings.server.bind.rsplit_once(':').map(|(h, _)| h.to_owned()).unwrap_or_default();
    let app = Application::build(settings).await?;
    let shown_host = if host == "0.0.0.0" || host.is_empty() { "127.0.0.1".to_owned() } else { host };
    let url = format!("http://{shown_host}:{}/graphql", app.port());
    tracing::info!(url = %url, "Agora is serving");
    println!("Agora is running. GraphiQL: {url}");
    if let Some(d) = app.devnets() {
        println!(
            "Local chains: Bitcoin regtest RPC {} / Esplora {}, XRPL devnet {} (see `agora devnet`)",
            d.bitcoin_servers.rpc_url, d.bitcoin_servers.esplora_url, d.xrpl_servers.ws_url
        );
    }
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn devnet(mut settings: Settings) -> anyhow::Result<()> {
    settings.devnet.enabled = Some(true);
    let xrpl = agora_api::startup::xrpl_context(&settings)?;
    let d = agora_api::chains::start_devnets(&settings, xrpl.operating.address.as_str()).await?;
    println!("Bitcoin regtest  JSON-RPC {} (user {}, password {})", d.bitcoin_servers.rpc_url, agora_api::chains::DEVNET_RPC_USER, agora_api::chains::DEVNET_RPC_PASSWORD);
    println!("                 Esplora  {}", d.bitcoin_servers.esplora_url);
    println!("XRPL devnet      WebSocket {}", d.xrpl_servers.ws_url);
    println!("                 JSON-RPC  {}", d.xrpl_servers.rpc_url);
    println!("Faucets: JSON-RPC `agora_faucet` on either chain. Ctrl-C stops.");
    tokio::signal::ctrl_c().await?;
    drop(d);
    Ok(())
}

async fn connect(settings: &Settings) -> anyhow::Result<sea_orm::DatabaseConnection> {
    std::fs::create_dir_all(&settings.data_dir)?;
    agora_persistence::db::connect(&settings.database_url(), 2)
        .await
        .context("cannot connect to the database")
}

async fn migrate(settings: &Settings, action: MigrateAction) -> anyhow::Result<()> {
    let db = connect(settings).await?;
    match action {
        MigrateAction::Up => {
            Migrator::up(&db, None).await?;
            println!("all migrations applied");
        }
        MigrateAction::Down { steps } => {
            Migrator::down(&db, Some(steps)).await?;
            println!("rolled back {steps} migration(s)");
        }
        MigrateAction::Status => {
            let applied: Vec<String> = Migrator::get_applied_migrations(&db)
                .await?
                .iter()
                .map(|m| m.name().to_owned())
                .collect();
            for name in agora_migrations::migration_names() {
                let state = if applied.contains(&name) { "applied" } else { "pending" };
                println!("{state:8} {name}");
            }
        }
    }
    Ok(())
}

async fn create_admin(settings: &Settings, email: &str) -> anyhow::Result<()> {
    let password = match std::env::var("AGORA_ADMIN_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprintln!("password (at least 12 characters), then Enter:");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let db = connect(settings).await?;
    Migrator::up(&db, None).await?;
    let outcome = agora_api::admin::create_admin(&db, email, &password).await?;
    println!("{}", outcome.describe(email));
    Ok(())
}
