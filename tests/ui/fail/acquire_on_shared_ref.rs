use db_retry::db_retry;
use sqlx::PgConnection;

#[db_retry]
async fn count_users(#[acquire] conn: &PgConnection) -> Result<i64, sqlx::Error> {
    let _ = conn;
    Ok(0)
}

fn main() {}
