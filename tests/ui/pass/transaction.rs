use db_retry::db_retry;
use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

#[db_retry(on = contention, max = 10)]
async fn transfer(
    #[transaction] tx: &mut PgConnection,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET balance = balance - $1 WHERE id = $2")
        .bind(amount)
        .bind(from)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
        .bind(amount)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[db_retry(idempotent = false)]
async fn next_id(#[transaction] tx: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    let id: i64 = sqlx::query_scalar("SELECT value FROM counters")
        .fetch_one(&mut *tx)
        .await?;
    if id < 0 {
        return Ok(0);
    }
    sqlx::query("UPDATE counters SET value = value + 1")
        .execute(&mut *tx)
        .await?;
    Ok(id)
}

async fn callers(pg: &PgPool, sqlite: &SqlitePool) -> Result<(), sqlx::Error> {
    transfer(pg, 1, 2, 100).await?;
    next_id(sqlite).await?;
    Ok(())
}

fn main() {
    let _ = callers;
}
