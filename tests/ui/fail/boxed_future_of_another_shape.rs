// A hand-written function returning a boxed future, whose body is not the one `#[async_trait]`
// writes: the attribute says what it expects instead of guessing.
use std::future::Future;
use std::pin::Pin;

use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
fn count(pool: PgPool) -> Pin<Box<dyn Future<Output = Result<i64, sqlx::Error>> + Send>> {
    let query = async move {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
    };
    Box::pin(query)
}

fn main() {}
