use std::time::Duration;

use db_retry::db_retry;
use sqlx::PgPool;

const BASE_DELAY: Duration = Duration::from_millis(250);

#[db_retry(base = BASE_DELAY)]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

fn main() {}
