// A breaker by path, alone or failing fast with an error type that takes `CircuitOpen`.
use std::time::Duration;

use db_retry::{db_retry, CircuitBreaker, CircuitOpen};
use sqlx::PgPool;

mod db {
    use super::*;
    pub static PRIMARY: CircuitBreaker = CircuitBreaker::new("primary")
        .consecutive_failures(5)
        .open_for(Duration::from_secs(10));
}

#[derive(Debug, thiserror::Error)]
enum RepoError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Open(#[from] CircuitOpen),
}

#[db_retry(breaker = db::PRIMARY)]
async fn retries_while_closed(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[db_retry(breaker = db::PRIMARY, fail_fast = true)]
async fn fails_fast(pool: &PgPool) -> Result<i64, RepoError> {
    Ok(sqlx::query_scalar("SELECT 1").fetch_one(pool).await?)
}

#[db_retry(breaker = db::PRIMARY, fail_fast = false, budget = none)]
async fn runs_once_while_open(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

fn assert_send<T: Send>(_: T) {}

pub async fn callers(pool: &PgPool) -> Result<i64, RepoError> {
    assert_send(fails_fast(pool));
    Ok(retries_while_closed(pool).await? + fails_fast(pool).await? + runs_once_while_open(pool).await?)
}

fn main() {}
