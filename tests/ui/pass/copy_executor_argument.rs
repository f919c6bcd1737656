// An executor that is `Copy` (such as `&PgPool`) can be handed to every attempt.
use db_retry::db_retry;
use sqlx::{Executor, PgPool, Postgres};

#[db_retry]
async fn count<'e>(e: impl Executor<'e, Database = Postgres> + Copy) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(e).await
}

async fn check(pool: &PgPool) -> Result<i64, sqlx::Error> {
    count(pool).await
}

fn main() {
    let _ = check;
}
