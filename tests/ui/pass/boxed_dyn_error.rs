use std::error::Error;

use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, Box<dyn Error + Send + Sync>> {
    let name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?;
    if name.is_empty() {
        return Err("empty name".into());
    }
    Ok(name)
}

#[db_retry]
async fn count(pool: &PgPool) -> Result<i64, Box<dyn Error>> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await?)
}

fn main() {
    let _ = find_name;
    let _ = count;
}
