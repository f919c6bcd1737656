use db_retry::db_retry;
use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

#[db_retry(on = connection)]
async fn pg_count(#[acquire] conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query("SET LOCAL statement_timeout = 1000")
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *conn)
        .await
}

#[db_retry]
async fn sqlite_name(
    id: i64,
    #[acquire] conn: &mut SqliteConnection,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = ?")
        .bind(id)
        .fetch_one(&mut *conn)
        .await
}

// Callers pass a pool where the function declared a connection.
async fn callers(pg: &PgPool, sqlite: &SqlitePool) -> Result<(), sqlx::Error> {
    pg_count(pg).await?;
    sqlite_name(1, sqlite).await?;
    Ok(())
}

fn main() {
    let _ = callers;
}
