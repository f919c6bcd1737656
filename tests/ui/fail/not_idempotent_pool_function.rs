// `idempotent = false` on a function that takes a pool: the attribute cannot see what an attempt
// has applied, so it says where to take the connection instead.
use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry(idempotent = false)]
async fn append_event(pool: &PgPool, kind: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO events (kind) VALUES ($1)")
        .bind(kind)
        .execute(pool)
        .await?;
    Ok(())
}

async fn caller(pool: &PgPool) -> Result<(), sqlx::Error> {
    append_event(pool, "signup").await
}

fn main() {
    let _ = caller;
}
