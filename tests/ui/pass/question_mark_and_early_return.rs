use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
async fn name_or_default(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    if id < 0 {
        return Ok(String::new());
    }
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    let Some(name) = name else {
        return Ok("anonymous".into());
    };
    if name.is_empty() {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(name)
}

#[db_retry]
async fn nothing(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

#[db_retry]
async fn only_return(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let _ = pool;
    return Ok(1);
}

fn main() {
    let _ = name_or_default;
    let _ = nothing;
    let _ = only_return;
}
