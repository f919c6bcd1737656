use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
async fn touch_user(pool: &PgPool, id: i64) {
    let _ = sqlx::query("UPDATE users SET seen_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await;
}

fn main() {}
