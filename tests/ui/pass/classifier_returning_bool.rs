use db_retry::db_retry;
use sqlx::PgPool;

fn is_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolTimedOut)
}

mod policy {
    pub fn lock_timeout(error: &sqlx::Error) -> bool {
        error
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "55P03")
    }
}

#[db_retry(on = is_busy)]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

#[db_retry(on = policy::lock_timeout, max = 5)]
async fn lock_row(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE NOWAIT")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

fn main() {
    let _ = find_name;
    let _ = lock_row;
}
