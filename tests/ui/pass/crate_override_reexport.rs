// A crate that re-exports db-retry points the generated code at its re-export.
mod reexport {
    pub use db_retry;
}

mod repo {
    use crate::reexport::db_retry::db_retry;
    use sqlx::PgPool;

    #[db_retry(crate = crate::reexport::db_retry, max = 2)]
    pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(pool)
            .await
    }
}

use reexport::db_retry::db_retry;

#[db_retry(crate = reexport::db_retry)]
async fn find_name(pool: &sqlx::PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

fn main() {
    let _ = repo::count;
    let _ = find_name;
}
