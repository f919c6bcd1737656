use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
fn pool_size(pool: &PgPool) -> Result<u32, sqlx::Error> {
    Ok(pool.size())
}

fn main() {}
