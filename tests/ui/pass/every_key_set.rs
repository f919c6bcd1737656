use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

#[db_retry(
    max = 5,
    on = contention,
    backoff = exponential,
    base = 50ms,
    cap = 2s,
    jitter = decorrelated,
    deadline = 1m,
    idempotent = false,
    crate = db_retry,
)]
async fn every_key(#[acquire] conn: &mut PgConnection, id: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET visits = visits + 1 WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

#[db_retry(max = 0, on = connection, backoff = fixed, base = 1s, cap = 1s, jitter = equal)]
async fn fixed(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[db_retry(max = 100, backoff = none, jitter = none, base = 0ms, deadline = 500ms)]
async fn immediate(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[db_retry(on = transient, backoff = exponential, base = 1s, cap = 1m, jitter = full, idempotent = true)]
async fn slow(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

fn main() {
    let _ = every_key;
    let _ = fixed;
    let _ = immediate;
    let _ = slow;
}
