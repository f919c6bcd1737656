// The function keeps its rewritten signature next to the error, so callers that pass a pool get
// no errors of their own.
use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

#[db_retry(retries = 3)]
async fn count_users(#[acquire] conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *conn)
        .await
}

pub async fn report(pool: &PgPool) -> Result<i64, sqlx::Error> {
    count_users(pool).await
}

fn main() {}
