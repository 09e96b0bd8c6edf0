//! The `agora` command line: one binary, several roles.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(name = "agora", version, about = "Agora marketplace and arbitration backend")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// A TOML configuration file (applied after defaults, before AGORA__* variables).
    #[arg(long, global = true, env = "AGORA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long, global = true)]
    pub bind: Option<String>,
    /// Directory for the embedded database and development keys.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// postgres://… or sqlite://… (default: SQLite in the data directory).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

impl GlobalArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            bind: self.bind.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply, roll back or inspect database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Run only the local chains (Bitcoin regtest, XRPL devnet) for development.
    Devnet,
    /// A minimal development wallet (keys, PSBT and XRPL signing, XRP payments).
    Wallet {
        #[command(subcommand)]
        action: crate::devwallet::WalletAction,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Create the first admin, or make an existing account an admin. The password
    /// is read from AGORA_ADMIN_PASSWORD or, failing that, from standard input.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
    /// Generate secrets.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Benchmark: decoding a generated block against decoding and matching it
    /// with the watch index (see BENCHMARKS.md). Touches no database or chain.
    BenchWatcher(crate::watcher::bench::BenchWatcherArgs),
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back the last `steps` migrations.
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print a new marketplace Bitcoin extended private key (for
    /// `bitcoin.xprv_file`) and its xpub. The arbitrator key of each escrow is
    /// derived from it at m/7477'/0'/index'.
    Generate {
        /// bitcoin, testnet, signet or regtest.
        #[arg(long, default_value = "regtest")]
        network: String,
    },
    /// Print a new marketplace XRPL secret (hex, for `xrpl.secret_file`).
    Xrpl,
    /// Print a new Ed25519 private key (PKCS#8 PEM) for signing access tokens.
    Jwt,
}
