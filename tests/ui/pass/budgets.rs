// The process-wide budget by default, one of the application's by path, or none.
use std::time::Duration;

use db_retry::{db_retry, RetryBudget};
use sqlx::PgPool;

mod budgets {
    use super::*;
    pub static ORDERS: RetryBudget = RetryBudget::new(50, 20, Duration::from_secs(10));
}

#[db_retry]
async fn default_budget(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[db_retry(budget = budgets::ORDERS)]
async fn orders_budget(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[db_retry(budget = none)]
async fn no_budget(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

fn assert_send<T: Send>(_: T) {}

pub async fn callers(pool: &PgPool) -> Result<i64, sqlx::Error> {
    assert_send(orders_budget(pool));
    Ok(default_budget(pool).await? + orders_budget(pool).await? + no_budget(pool).await?)
}

fn main() {}
