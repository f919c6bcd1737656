// The rewritten futures are `Send` whenever the bodies' are, so they can be spawned.
use std::error::Error;

use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};

#[db_retry]
async fn free_fn(pool: &PgPool, id: i64, name: String) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT $2 || name FROM users WHERE id = $1")
        .bind(id)
        .bind(name)
        .fetch_one(pool)
        .await
}

#[db_retry]
async fn boxed_error(pool: &PgPool) -> Result<i64, Box<dyn Error + Send + Sync>> {
    let n: i64 = sqlx::query_scalar("SELECT 1").fetch_one(pool).await?;
    if n < 0 {
        return Err("negative".into());
    }
    Ok(n)
}

#[db_retry]
async fn in_transaction(#[transaction] tx: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(&mut *tx).await
}

#[db_retry]
async fn acquired(#[acquire] conn: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await?)
}

pub struct Repo {
    pool: PgPool,
    calls: u64,
}

impl Repo {
    #[db_retry]
    async fn by_ref(&self, id: i64) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
    }

    #[db_retry]
    async fn by_mut(&mut self, id: i64) -> Result<String, sqlx::Error> {
        self.calls += 1;
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
    }
}

fn assert_send<T: Send>(_: T) {}

async fn check(pool: PgPool, mut repo: Repo) {
    assert_send(free_fn(&pool, 1, String::new()));
    assert_send(boxed_error(&pool));
    assert_send(in_transaction(&pool));
    assert_send(acquired(&pool));
    assert_send(repo.by_ref(1));
    assert_send(repo.by_mut(1));

    let spawned = tokio::spawn(async move {
        free_fn(&pool, 1, "x".to_owned()).await?;
        repo.by_mut(2).await
    });
    let _ = spawned.await;
}

fn main() {
    let _ = check;
}
