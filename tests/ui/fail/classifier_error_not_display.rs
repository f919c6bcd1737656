use db_retry::db_retry;
use sqlx::PgPool;

#[derive(Debug)]
pub enum RepoError {
    Db(sqlx::Error),
    NotFound,
}

impl From<sqlx::Error> for RepoError {
    fn from(error: sqlx::Error) -> Self {
        RepoError::Db(error)
    }
}

fn is_retryable(error: &RepoError) -> bool {
    matches!(error, RepoError::Db(sqlx::Error::PoolTimedOut))
}

#[db_retry(on = is_retryable)]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, RepoError> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(RepoError::NotFound)
}

fn main() {}
