//! The committed `schema.graphql` must match the schema the code builds.

#[test]
fn committed_schema_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let current = agora_api::graphql::sdl();
    assert!(
        committed == current,
        "schema.graphql is out of date; regenerate it with `cargo run -- schema > schema.graphql`"
    );
}

/// Every migration can be rolled back and applied again, on both backends,
/// and `status` sees them all applied afterwards.
async fn migrations_roll_back_and_apply_again(backend: agora_tests::Backend) {
    use agora_migrations::{Migrator, MigratorTrait};
    let dir = tempfile::tempdir().unwrap();
    let database = agora_tests::db::TestDatabase::create(backend, dir.path()).await;
    let db = agora_persistence::db::connect(&database.url(), 2).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    let all = agora_migrations::migration_names().len();
    assert_eq!(Migrator::get_applied_migrations(&db).await.unwrap().len(), all);
    Migrator::down(&db, None).await.unwrap();
    assert_eq!(Migrator::get_applied_migrations(&db).await.unwrap().len(), 0);
    assert_eq!(Migrator::get_pending_migrations(&db).await.unwrap().len(), all);
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(Migrator::get_pending_migrations(&db).await.unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_roll_back_and_apply_again_on_postgres() {
    migrations_roll_back_and_apply_again(agora_tests::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_roll_back_and_apply_again_on_sqlite() {
    migrations_roll_back_and_apply_again(agora_tests::Backend::Sqlite).await;
}
