use db_retry::db_retry;
use sqlx::PgPool;

#[db_retry]
pub struct UserRepo {
    pool: PgPool,
}

fn main() {}
