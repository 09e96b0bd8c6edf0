//! Building and running the application: database, migrations, keys, schema and
//! the HTTP server. Tests build it with port 0 and read the port back.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use agora_migrations::{Migrator, MigratorTrait};
use anyhow::Context as _;

use crate::auth::rate_limit::LoginThrottle;
use crate::auth::JwtKeys;
use crate::config::Settings;
use crate::graphql::context::AppState;
use crate::http;

pub struct Application {
    port: u16,
    server: Server,
    state: Arc<AppState>,
}

impl Application {
    /// Connects, migrates (when configured), loads keys and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create the data directory {}", settings.data_dir.display()))?;
        let jwt = JwtKeys::load(&settings.auth, settings.mode, &settings.data_dir)?;
        let db = agora_persistence::db::connect(&settings.database_url(), settings.database.max_connections)
            .await
            .context("cannot connect to the database")?;
        if settings.auto_migrate() {
            Migrator::up(&db, None).await.context("cannot apply migrations")?;
        }
        let state = Arc::new(AppState {
            db,
            jwt,
            refresh_ttl: chrono::Duration::seconds(
                i64::try_from(settings.auth.refresh_token_ttl_secs).unwrap_or(i64::MAX / 2),
            ),
            login_throttle: LoginThrottle::new(
                settings.auth.login_attempts_per_window,
                Duration::from_secs(settings.auth.login_window_secs),
            ),
        });
        let schema = crate::graphql::build(state.clone(), &settings.graphql, settings.introspection());
        let listener = TcpListener::bind(&settings.server.bind)
            .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
        let port = listener.local_addr()?.port();
        let body_limit = settings.server.body_limit_bytes;
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(web::PayloadConfig::new(body_limit))
                .app_data(web::Data::new(schema.clone()))
                .app_data(web::Data::new(app_state.clone()))
                .route("/graphql", web::post().to(http::graphql::post))
                .route("/graphql", web::get().to(http::graphql::get))
                .route("/healthz", web::get().to(http::health::healthz))
                .route("/readyz", web::get().to(http::health::readyz))
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
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
