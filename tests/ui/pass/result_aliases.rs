use db_retry::db_retry;
use sqlx::PgPool;

#[derive(Debug)]
pub struct MyError(sqlx::Error);

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("repository failed")
    }
}

impl std::error::Error for MyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<sqlx::Error> for MyError {
    fn from(error: sqlx::Error) -> Self {
        MyError(error)
    }
}

type Result<T> = std::result::Result<T, MyError>;

#[db_retry]
async fn with_sqlx_alias(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn with_local_alias(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await?)
}

#[db_retry]
async fn with_full_path(pool: &PgPool) -> std::result::Result<i64, MyError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await?)
}

fn main() {
    let _ = with_sqlx_alias;
    let _ = with_local_alias;
    let _ = with_full_path;
}
