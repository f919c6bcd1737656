// Failing fast returns `CircuitOpen` in the function's own error type; `sqlx::Error` has no
// `From<CircuitOpen>`, so the error is on `fail_fast`.
use db_retry::{db_retry, CircuitBreaker};
use sqlx::PgPool;

static PRIMARY: CircuitBreaker = CircuitBreaker::new("primary");

#[db_retry(breaker = PRIMARY, fail_fast = true)]
async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await
}

fn main() {}
