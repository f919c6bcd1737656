use db_retry::db_retry;
use sqlx::PgPool;

pub struct CachedRepo {
    pool: PgPool,
    lookups: u64,
}

impl CachedRepo {
    #[db_retry]
    pub async fn find_name(&mut self, id: i64) -> Result<String, sqlx::Error> {
        self.lookups += 1;
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
    }
}

fn main() {
    let _ = CachedRepo::find_name;
}
