//! Conditions for the batch loaders ("these ids"), written so the SQL text
//! does not depend on how many ids a batch has.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbBackend};
use uuid::Uuid;

/// `column` is one of `ids`. On PostgreSQL `column = ANY($1)` with the ids
/// bound as one array: one statement text for every batch size, so the
/// server and the driver's prepared-statement cache see one statement instead
/// of one per size (`IN ($1, …, $n)`). SQLite has no array parameters and
/// keeps `IN (…)`. No ids is `1 = 2` on both.
pub(crate) fn one_of<C: ColumnTrait>(backend: DbBackend, column: C, ids: &[Uuid]) -> Expr {
    match backend {
        DbBackend::Postgres => column.eq_any(ids.iter().copied()),
        _ => column.is_in(ids.iter().copied()),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, QueryFilter, QueryTrait};

    use super::*;
    use crate::entities::users;

    fn sql(backend: DbBackend, ids: &[Uuid]) -> String {
        users::Entity::find()
            .filter(one_of(backend, users::Column::Id, ids))
            .build(backend)
            .sql
    }

    #[test]
    fn postgres_batches_of_any_size_share_one_statement() {
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let one = sql(DbBackend::Postgres, &ids[..1]);
        assert!(one.ends_with(r#"WHERE "users"."id" = ANY($1)"#), "{one}");
        assert_eq!(sql(DbBackend::Postgres, &ids), one);
    }

    #[test]
    fn sqlite_keeps_in_and_no_ids_match_nothing() {
        let ids: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
        assert!(sql(DbBackend::Sqlite, &ids).ends_with(r#"WHERE "users"."id" IN (?, ?)"#));
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            // With its values in place: a condition that is always false.
            let text = users::Entity::find()
                .filter(one_of(backend, users::Column::Id, &[]))
                .build(backend)
                .to_string();
            assert!(text.ends_with("WHERE 1 = 2"), "{text}");
        }
    }
}
