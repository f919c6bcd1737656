use anyhow::Context as _;
use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
async fn find_name(pool: &PgPool, id: i64) -> anyhow::Result<String> {
    let name = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .with_context(|| format!("loading user {id}"))?;
    anyhow::ensure!(!String::is_empty(&name), "user {id} has no name");
    Ok(name)
}

#[db_retry]
async fn count(pool: &PgPool) -> Result<i64, anyhow::Error> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await?)
}

fn main() {
    let _ = find_name;
    let _ = count;
}
