use db_retry::db_retry;
use sqlx::PgConnection;

#[derive(Debug)]
pub struct RepoError(String);

impl std::fmt::Display for RepoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RepoError {}

#[db_retry]
async fn count_users(#[acquire] conn: &mut PgConnection) -> Result<i64, RepoError> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *conn)
        .await
        .map_err(|error| RepoError(error.to_string()))
}

fn main() {}
