// `breaker` names a `static CircuitBreaker`; anything else is a type error on the path.
use db_retry::{db_retry, RetryBudget};
use sqlx::PgPool;
use std::time::Duration;

static ORDERS: RetryBudget = RetryBudget::new(50, 20, Duration::from_secs(10));

#[db_retry(breaker = ORDERS)]
async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await
}

fn main() {}
