// Methods of an `#[async_trait]` impl: `#[async_trait]` expands first, so #[db_retry] sees a
// plain fn returning a boxed future and retries inside it. The trait stays object-safe and its
// futures `Send`.
use std::sync::Arc;

use async_trait::async_trait;
use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

#[async_trait]
pub trait UserRepo: Send + Sync {
    async fn count(&self) -> Result<i64, sqlx::Error>;
    async fn rename(&self, id: i64, name: String) -> Result<u64, sqlx::Error>;
    async fn bump(&mut self) -> Result<i64, sqlx::Error>;
    async fn owned(self: Arc<Self>, (a, b): (i64, i64)) -> Result<i64, sqlx::Error>;
    async fn find(&self, conn: &PgPool, id: i64) -> Result<String, sqlx::Error>;
    async fn move_funds(&self, tx: &PgPool, amount: i64) -> Result<(), sqlx::Error>;
    async fn typed_ref(self: &Self) -> Result<i64, sqlx::Error>;
    async fn typed_mut(self: &mut Self) -> Result<i64, sqlx::Error>;
    async fn pinned(self: std::pin::Pin<&mut Self>) -> Result<i64, sqlx::Error>;
}

pub struct PgUserRepo {
    pool: PgPool,
    calls: i64,
}

#[async_trait]
impl UserRepo for PgUserRepo {
    #[db_retry]
    async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await
    }

    #[db_retry(max = 2, base = 10ms)]
    async fn rename(&self, id: i64, mut name: String) -> Result<u64, sqlx::Error> {
        name.push('!');
        let done = sqlx::query("UPDATE users SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    #[db_retry]
    async fn bump(&mut self) -> Result<i64, sqlx::Error> {
        self.calls += 1;
        sqlx::query_scalar("SELECT $1")
            .bind(self.calls)
            .fetch_one(&self.pool)
            .await
    }

    #[db_retry]
    async fn owned(self: Arc<Self>, (a, b): (i64, i64)) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT $1 + $2")
            .bind(a)
            .bind(b)
            .fetch_one(&self.pool)
            .await
    }

    #[db_retry]
    async fn find(&self, #[acquire] conn: &mut PgConnection, id: i64) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await
    }

    #[db_retry(on = contention)]
    async fn move_funds(&self, #[transaction] tx: &mut PgConnection, amount: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE accounts SET balance = balance - $1 WHERE id = 1")
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    #[db_retry]
    async fn typed_ref(self: &Self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await
    }

    #[db_retry]
    async fn typed_mut(self: &mut Self) -> Result<i64, sqlx::Error> {
        self.calls += 1;
        sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await
    }

    #[db_retry]
    async fn pinned(self: std::pin::Pin<&mut Self>) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await
    }
}

fn assert_send<T: Send>(_: T) {}

async fn check(repo: Arc<PgUserRepo>, pool: PgPool) {
    let shared: &dyn UserRepo = &*repo;
    assert_send(shared.count());
    assert_send(shared.rename(1, "x".to_owned()));
    assert_send(shared.find(&pool, 1));
    assert_send(shared.move_funds(&pool, 5));
    assert_send(repo.clone().owned((1, 2)));
}

fn main() {
    let _ = check;
}
