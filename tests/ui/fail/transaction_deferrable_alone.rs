// PostgreSQL accepts DEFERRABLE anywhere and ignores it outside a serializable read-only
// transaction; the attribute says so instead.
use db_retry::db_retry;
use sqlx::PgConnection;

#[db_retry]
async fn report(
    #[transaction(isolation = repeatable_read, deferrable)] tx: &mut PgConnection,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut *tx).await
}

fn main() {}
