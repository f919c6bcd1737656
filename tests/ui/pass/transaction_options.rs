// Every option on a connection type that has it; callers still pass a pool.
use db_retry::db_retry;
use sqlx::{MySqlConnection, MySqlPool, PgConnection, PgPool, SqliteConnection, SqlitePool};

#[db_retry(on = contention)]
async fn transfer(
    #[transaction(isolation = serializable, verify_commit)] tx: &mut PgConnection,
    from: i64,
    to: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET balance = balance - 1 WHERE id = $1")
        .bind(from)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + 1 WHERE id = $1")
        .bind(to)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[db_retry]
async fn report(
    #[transaction(isolation = serializable, read_only, deferrable)] tx: &mut PgConnection,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT sum(balance) FROM accounts")
        .fetch_one(&mut *tx)
        .await
}

#[db_retry]
async fn mysql_report(
    #[transaction(isolation = read_committed, read_only)] tx: &mut MySqlConnection,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
        .fetch_one(&mut *tx)
        .await
}

#[db_retry(on = contention)]
async fn sqlite_bump(#[transaction(immediate)] tx: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE counters SET n = n + 1")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn assert_send<T: Send>(_: T) {}

pub async fn callers(pg: &PgPool, my: &MySqlPool, lite: &SqlitePool) -> Result<(), sqlx::Error> {
    assert_send(transfer(pg, 1, 2));
    assert_send(report(pg));
    transfer(pg, 1, 2).await?;
    report(pg).await?;
    mysql_report(my).await?;
    sqlite_bump(lite).await
}

fn main() {}
