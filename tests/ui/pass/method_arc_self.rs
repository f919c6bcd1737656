use std::sync::Arc;

use db_retry::db_retry;
use sqlx::PgPool;

pub struct UserRepo {
    pool: PgPool,
}

impl UserRepo {
    #[db_retry]
    pub async fn find_name(self: Arc<Self>, id: i64) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
    }
}

fn main() {
    let _ = UserRepo::find_name;
}
