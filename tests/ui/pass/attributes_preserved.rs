#![deny(missing_docs, unused_must_use)]
//! Doc comments and other attributes survive the rewrite.

use db_retry::db_retry;
use sqlx::PgPool;

/// Finds a user's name.
///
/// Retried on transient errors.
#[must_use = "the name is the point of the call"]
#[db_retry]
#[allow(clippy::needless_question_mark)]
pub async fn find_name(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    Ok(sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await?)
}

#[db_retry]
#[doc = "Counts users."]
#[inline]
pub async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await
}

/// Runs the examples.
fn main() {
    let _ = find_name;
    let _ = count;
}
