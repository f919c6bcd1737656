// Inner attributes at the top of the body stay there and keep applying to it.
#![deny(unused_variables)]

use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

#[db_retry]
async fn count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    #![allow(unused_variables)]
    let unused = 1;
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn count_acquired(#[acquire] conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    #![allow(unused_variables)]
    let unused = 1;
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *conn)
        .await
}

fn main() {
    let _ = (count, count_acquired);
}
