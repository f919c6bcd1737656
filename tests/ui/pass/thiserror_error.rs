use db_retry::db_retry;
use sqlx::PgPool;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("user {0} not found")]
    NotFound(i64),
}

#[db_retry]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, RepoError> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(RepoError::NotFound(id))
}

fn main() {
    let _ = find_name;
}
