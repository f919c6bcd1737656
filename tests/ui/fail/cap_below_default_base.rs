use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry(cap = 50ms)]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

fn main() {}
