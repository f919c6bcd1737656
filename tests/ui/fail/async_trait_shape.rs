// What a method of an `#[async_trait]` impl looks like by the time an attribute below
// `#[async_trait]` sees it.
use std::future::Future;
use std::pin::Pin;

use db_retry::db_retry;
use sqlx::PgPool;

pub trait UserRepo {
    fn count<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = Result<i64, sqlx::Error>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait;
}

pub struct PgUserRepo {
    pool: PgPool,
}

impl UserRepo for PgUserRepo {
    #[db_retry]
    fn count<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = Result<i64, sqlx::Error>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            sqlx::query_scalar("SELECT count(*) FROM users")
                .fetch_one(&self.pool)
                .await
        })
    }
}

fn main() {}
