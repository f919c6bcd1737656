use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
async fn find_by_ref(pool: &PgPool, name: &impl AsRef<str>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(name.as_ref())
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn find_by_value(pool: &PgPool, name: impl AsRef<str> + Clone) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(name.as_ref())
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn insert_all(
    pool: &PgPool,
    names: impl IntoIterator<Item = String> + Clone,
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for name in names {
        inserted += sqlx::query("INSERT INTO users (name) VALUES ($1)")
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected();
    }
    Ok(inserted)
}

#[db_retry]
async fn ids(pool: &PgPool) -> Result<impl Iterator<Item = i64>, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM users")
        .fetch_all(pool)
        .await?;
    Ok(ids.into_iter())
}

async fn callers(pool: &PgPool) -> Result<(), sqlx::Error> {
    find_by_ref(pool, &"ada").await?;
    find_by_ref(pool, &String::from("ada")).await?;
    find_by_value(pool, "ada").await?;
    insert_all(pool, vec!["ada".to_owned()]).await?;
    let _total: i64 = ids(pool).await?.sum();
    Ok(())
}

fn main() {
    let _ = callers;
}
