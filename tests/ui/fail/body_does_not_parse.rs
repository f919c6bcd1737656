// A body that does not parse, as while someone is typing: rustc's parse error and syn's, both on
// the typo, and nothing else. The signature is still rewritten, so the caller passing a pool is
// not an error too.
use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

#[db_retry]
async fn count(#[acquire] conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *conn)
        .await?
    Ok(n)
}

async fn caller(pool: &PgPool) -> Result<i64, sqlx::Error> {
    count(pool).await
}

fn main() {
    let _ = caller;
}
