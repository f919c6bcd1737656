use db_retry::db_retry;
use sqlx::PgPool;

pub struct Page {
    pub offset: i64,
    pub limit: i64,
}

#[db_retry]
async fn between(pool: &PgPool, (low, high): (i64, i64)) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE id BETWEEN $1 AND $2")
        .bind(low)
        .bind(high)
        .fetch_all(pool)
        .await
}

#[db_retry]
async fn page(pool: &PgPool, &Page { offset, limit }: &Page) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users ORDER BY id OFFSET $1 LIMIT $2")
        .bind(offset)
        .bind(limit)
        .fetch_all(pool)
        .await
}

#[db_retry]
async fn ignored(pool: &PgPool, _: u8, [first, ..]: [i64; 3]) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT $1::bigint")
        .bind(first)
        .fetch_one(pool)
        .await
}

fn main() {
    let _ = between;
    let _ = page;
    let _ = ignored;
}
