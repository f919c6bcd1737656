use db_retry::db_retry;
use sqlx::PgConnection;

#[db_retry]
async fn count_users(#[acquire] mut conn: PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut conn)
        .await
}

fn main() {}
