use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry(max = 3, on = transient)]
pub async fn find_name(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn count_mysql(pool: &sqlx::Pool<sqlx::MySql>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn count_sqlite(pool: &sqlx::SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await
}

fn main() {
    let _ = find_name;
    let _ = count_mysql;
    let _ = count_sqlite;
}
