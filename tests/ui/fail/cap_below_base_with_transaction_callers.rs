// The function keeps its rewritten signature next to the error, so callers that pass a pool get
// no errors of their own.
use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

#[db_retry(on = contention, base = 1s, cap = 500ms)]
async fn rename_user(
    #[transaction] tx: &mut PgConnection,
    id: i64,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn rename_all(pool: &PgPool) -> Result<(), sqlx::Error> {
    rename_user(pool, 1, "ada").await?;
    rename_user(pool, 2, "grace").await
}

fn main() {}
