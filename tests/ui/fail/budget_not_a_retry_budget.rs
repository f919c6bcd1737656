// `budget` names a `static RetryBudget`; anything else is a type error on the path.
use db_retry::db_retry;
use sqlx::PgPool;

static ORDERS_PER_SECOND: u32 = 20;

#[db_retry(budget = ORDERS_PER_SECOND)]
async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await
}

fn main() {}
