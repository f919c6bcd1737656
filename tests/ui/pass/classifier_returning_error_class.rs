use db_retry::{db_retry, Classify as _, ErrorClass};
use sqlx::PgPool;

#[derive(Debug)]
pub enum RepoError {
    Db(sqlx::Error),
    Invalid(&'static str),
}

impl From<sqlx::Error> for RepoError {
    fn from(error: sqlx::Error) -> Self {
        RepoError::Db(error)
    }
}

impl std::fmt::Display for RepoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoError::Db(error) => write!(f, "database: {error}"),
            RepoError::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

// Not a std::error::Error: its classifier says how to treat it.
fn classify(error: &RepoError) -> ErrorClass {
    match error {
        RepoError::Db(error) => error.classify(),
        RepoError::Invalid(_) => ErrorClass::Permanent,
    }
}

#[db_retry(on = classify)]
async fn find_name(pool: &PgPool, id: i64) -> Result<String, RepoError> {
    if id <= 0 {
        return Err(RepoError::Invalid("id must be positive"));
    }
    Ok(sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?)
}

fn main() {
    let _ = find_name;
}
