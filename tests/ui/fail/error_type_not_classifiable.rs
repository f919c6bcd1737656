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

#[db_retry]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, RepoError> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(RepoError::NotFound)
}

fn main() {}
