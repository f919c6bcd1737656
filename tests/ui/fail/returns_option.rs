use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
async fn find_name(pool: &PgPool, id: i64) -> Option<String> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

fn main() {}
