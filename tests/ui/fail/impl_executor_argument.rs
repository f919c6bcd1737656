// An executor is used up by the query it runs; the error says what to take instead.
use db_retry::db_retry;
use sqlx::{Executor, Postgres};

#[db_retry]
async fn count<'e>(e: impl Executor<'e, Database = Postgres>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(e).await
}

#[db_retry]
async fn count_generic<'e, E>(e: E) -> Result<i64, sqlx::Error>
where
    E: Executor<'e, Database = Postgres>,
{
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(e).await
}

#[db_retry]
async fn count_pg<'e, E: sqlx::PgExecutor<'e>>(e: E) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(e).await
}

fn main() {}
