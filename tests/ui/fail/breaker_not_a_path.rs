use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry(breaker = "primary")]
async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await
}

fn main() {}
