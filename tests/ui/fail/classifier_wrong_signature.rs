use db_retry::db_retry;
use sqlx::PgPool;

fn is_retryable(error: sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolTimedOut)
}

#[db_retry(on = is_retryable)]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

fn main() {}
