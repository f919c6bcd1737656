use db_retry::db_retry;
use sqlx::PgConnection;

#[db_retry]
async fn report(#[transaction(read_only, read_only)] tx: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut *tx).await
}

fn main() {}
