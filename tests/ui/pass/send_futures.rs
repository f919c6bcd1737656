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

/// An error that is not `Send`: the future still is, since no error lives across an `.await`.
#[derive(Debug)]
pub struct LocalError(std::rc::Rc<sqlx::Error>);

impl std::fmt::Display for LocalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for LocalError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

#[db_retry]
async fn local_error(pool: &PgPool, id: i64) -> Result<i64, LocalError> {
    sqlx::query_scalar("SELECT $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(|error| LocalError(std::rc::Rc::new(error)))
}

#[db_retry]
async fn local_error_in_transaction(
    #[transaction] tx: &mut PgConnection,
) -> Result<i64, LocalError> {
    let wrap = |error| LocalError(std::rc::Rc::new(error));
    let n: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *tx)
        .await
        .map_err(wrap)?;
    Ok(n)
}

impl From<sqlx::Error> for LocalError {
    fn from(error: sqlx::Error) -> Self {
        LocalError(std::rc::Rc::new(error))
    }
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
    assert_send(local_error(&pool, 1));
    assert_send(local_error_in_transaction(&pool));
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
