//! Per-test databases. PostgreSQL: `CREATE DATABASE … TEMPLATE` from a template
//! migrated once per set of migrations, under an advisory lock so parallel test
//! processes (nextest runs one per test) agree; dropped when the test ends.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use agora_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

const LOCK_KEY: i64 = 0x4147_4f52_4154; // "AGORAT"
const TEST_PREFIX: &str = "agora_test_";
/// Databases of crashed runs older than this are dropped.
const SWEEP_AFTER_SECS: u64 = 2 * 3600;

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `server_url` with its database name replaced.
fn url_for(database: &str) -> String {
    let base = server_url();
    let (prefix, rest) = base.rsplit_once('/').unwrap_or((&base, ""));
    let query = rest.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{prefix}/{database}{query}")
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn template_name() -> String {
    let mut hash = Sha256::new();
    for name in agora_migrations::migration_names() {
        hash.update(name.as_bytes());
        hash.update(b"\n");
    }
    format!("agora_tpl_{}", &hex::encode(hash.finalize())[..16])
}

pub struct TestDatabase {
    backend: Backend,
    url: String,
    pg_name: Option<String>,
}

impl TestDatabase {
    pub async fn create(backend: Backend, dir: &Path) -> TestDatabase {
        match backend {
            Backend::Sqlite => TestDatabase {
                backend,
                url: format!("sqlite://{}?mode=rwc", dir.join("agora-test.db").display()),
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!("{TEST_PREFIX}{}_{}", now_secs(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
                let admin = Database::connect(server_url())
                    .await
                    .expect("PostgreSQL is reachable at TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))
                    .await
                    .expect("advisory lock");
                let template = ensure_template(&admin).await;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
                    .await
                    .expect("create test database");
                admin
                    .execute_unprepared(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))
                    .await
                    .expect("advisory unlock");
                let _ = admin.close().await;
                TestDatabase {
                    backend,
                    url: url_for(&name),
                    pg_name: Some(name),
                }
            }
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

/// Creates the migrated template if missing and sweeps old test databases.
/// Called with the advisory lock held.
async fn ensure_template(admin: &DatabaseConnection) -> String {
    let template = template_name();
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT 1 FROM pg_database WHERE datname = '{template}'"),
        ))
        .await
        .expect("query pg_database")
        .is_some();
    if exists {
        return template;
    }
    sweep(admin).await;
    // Build under another name and rename, so a crash never leaves a half-migrated template.
    let building = format!("{template}_building");
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"))
        .await
        .expect("drop stale template");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{building}\""))
        .await
        .expect("create template");
    {
        let db = Database::connect(url_for(&building)).await.expect("connect template");
        Migrator::up(&db, None).await.expect("migrate template");
        let _ = db.close().await;
    }
    admin
        .execute_unprepared(&format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\""))
        .await
        .expect("rename template");
    template
}

async fn sweep(admin: &DatabaseConnection) {
    let rows = admin
        .query_all_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT datname FROM pg_database WHERE datname LIKE '{TEST_PREFIX}%' OR datname LIKE 'agora_tpl_%'"),
        ))
        .await
        .unwrap_or_default();
    let current = template_name();
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else { continue };
        let stale = match name.strip_prefix(TEST_PREFIX) {
            Some(rest) => rest
                .split('_')
                .next()
                .and_then(|ts| ts.parse::<u64>().ok())
                .is_some_and(|ts| now_secs().saturating_sub(ts) > SWEEP_AFTER_SECS),
            // Templates of older migration sets.
            None => !name.starts_with(&current),
        };
        if stale {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = Database::connect(server_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
