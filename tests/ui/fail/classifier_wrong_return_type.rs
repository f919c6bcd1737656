use db_retry::db_retry;
use sqlx::PgPool;

fn retry_reason(error: &sqlx::Error) -> Option<&'static str> {
    matches!(error, sqlx::Error::PoolTimedOut).then_some("pool timed out")
}

#[db_retry(on = retry_reason)]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

fn main() {}
