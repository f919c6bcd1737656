// The generated code names std and the runtime by absolute paths, so nothing the user declares or
// imports can capture them.
#![allow(dead_code)]

mod core {}
mod std {}
mod __private {}

struct Option;
struct Result;
struct Duration;
struct Retrier;
struct RetryPolicy;
fn sleep() {}
fn as_attempt() {}
struct ArgOf;
struct Checkout;
struct ErrorOf;
trait CloneForAttempt {}
fn acquire() {}
fn begin() {}

mod with_sqlx {
    use db_retry::db_retry;
    use sqlx::{PgConnection, PgPool};

    #[db_retry(deadline = 10s)]
    pub async fn find_name(pool: &PgPool, id: i64, tag: String) -> Result<String, sqlx::Error> {
        let _ = tag;
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
    }

    #[db_retry]
    pub async fn count(#[transaction] tx: &mut PgConnection) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&mut *tx)
            .await
    }
}

#[db_retry::db_retry]
async fn at_root(
    pool: &sqlx::PgPool,
    tags: Vec<String>,
) -> ::std::result::Result<usize, sqlx::Error> {
    let _ = pool;
    ::std::result::Result::Ok(tags.len())
}

#[db_retry::db_retry]
async fn acquire_at_root(#[acquire] conn: &mut sqlx::PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await
}

// An import named like the facade does not capture `::db_retry` in the generated code.
mod renamed {
    use std as db_retry;

    #[::db_retry::db_retry]
    pub async fn count(pool: &sqlx::PgPool) -> sqlx::Result<i64> {
        let _ = db_retry::mem::size_of::<i64>();
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(pool)
            .await
    }
}

fn main() {
    let _ = renamed::count;
    let _ = with_sqlx::find_name;
    let _ = with_sqlx::count;
    let _ = at_root;
    let _ = acquire_at_root;
}
