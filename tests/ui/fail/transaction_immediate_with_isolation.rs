use db_retry::db_retry;
use sqlx::SqliteConnection;

#[db_retry]
async fn bump(
    #[transaction(immediate, isolation = serializable)] tx: &mut SqliteConnection,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE counters SET n = n + 1").execute(&mut *tx).await?;
    Ok(())
}

fn main() {}
