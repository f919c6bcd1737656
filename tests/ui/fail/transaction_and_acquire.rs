use db_retry::db_retry;
use sqlx::PgConnection;

#[db_retry]
async fn move_user(
    #[transaction] tx: &mut PgConnection,
    #[acquire] audit: &mut PgConnection,
    id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET team = 2 WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO audit (user_id) VALUES ($1)")
        .bind(id)
        .execute(&mut *audit)
        .await?;
    Ok(())
}

fn main() {}
