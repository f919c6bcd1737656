// A cancelled attempt needs an error of the function's own type.
use db_retry::db_retry;

#[derive(Debug, thiserror::Error)]
#[error("lookup failed")]
struct LookupError;

#[db_retry(attempt_timeout = 2s)]
async fn lookup() -> Result<i64, LookupError> {
    Ok(1)
}

fn main() {}
