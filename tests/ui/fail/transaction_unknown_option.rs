use db_retry::db_retry;
use sqlx::PgConnection;

#[db_retry]
async fn rename(#[transaction(serializable)] tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET name = 'ada'").execute(&mut *tx).await?;
    Ok(())
}

fn main() {}
