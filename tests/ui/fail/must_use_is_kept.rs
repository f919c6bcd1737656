// The rewrite keeps the function's attributes: ignoring the name is still reported.
#![deny(unused_must_use)]

use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
#[must_use = "the name is the point of the call"]
pub async fn find_name(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

pub async fn greet(pool: &PgPool) {
    find_name(pool, 1).await;
}

fn main() {}
