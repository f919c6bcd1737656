use db_retry::db_retry;
use sqlx::PgConnection;

#[db_retry]
async fn transfer(
    #[transaction] from: &mut PgConnection,
    #[transaction] to: &mut PgConnection,
    amount: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET balance = balance - $1 WHERE id = 1")
        .bind(amount)
        .execute(&mut *from)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = 2")
        .bind(amount)
        .execute(&mut *to)
        .await?;
    Ok(())
}

fn main() {}
