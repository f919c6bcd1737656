use db_retry::db_retry;
use sqlx::PgPool;

pub struct UserRepo {
    pool: PgPool,
}

#[db_retry]
impl UserRepo {
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await
    }
}

fn main() {}
