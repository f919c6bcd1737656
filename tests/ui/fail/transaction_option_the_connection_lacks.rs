// Each option is checked against the connection type, at the option.
use db_retry::db_retry;
use sqlx::{MySqlConnection, PgConnection, SqliteConnection};

#[db_retry]
async fn bump_pg(#[transaction(immediate)] tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE counters SET n = n + 1").execute(&mut *tx).await?;
    Ok(())
}

#[db_retry]
async fn bump_sqlite(
    #[transaction(verify_commit)] tx: &mut SqliteConnection,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE counters SET n = n + 1").execute(&mut *tx).await?;
    Ok(())
}

#[db_retry]
async fn bump_mysql(
    #[transaction(isolation = serializable, read_only, deferrable)] tx: &mut MySqlConnection,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM counters").fetch_one(&mut *tx).await
}

#[db_retry]
async fn bump_sqlite_read_only(
    #[transaction(read_only)] tx: &mut SqliteConnection,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM counters").fetch_one(&mut *tx).await
}

fn main() {}
