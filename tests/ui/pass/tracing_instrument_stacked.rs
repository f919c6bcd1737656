use db_retry::db_retry;
use sqlx::PgPool;

// `#[instrument]` above expands first; `#[db_retry]` then retries the instrumented body, so each
// attempt gets its own span.
#[tracing::instrument(skip(pool), err)]
#[db_retry]
async fn instrument_above(pool: &PgPool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

// `#[db_retry]` above expands first and keeps `#[instrument]`, which then wraps the whole retry
// loop: one span per call.
#[db_retry(max = 2)]
#[tracing::instrument(skip(pool))]
async fn instrument_below(pool: &PgPool, id: i64, name: String) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

pub struct UserRepo {
    pool: PgPool,
}

impl UserRepo {
    #[tracing::instrument(skip(self))]
    #[db_retry]
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await
    }
}

fn main() {
    let _ = instrument_above;
    let _ = instrument_below;
    let _ = UserRepo::count;
}

// Inside an `#[async_trait]` impl, `#[instrument]` above wraps the boxed body in a block of its
// own; `#[db_retry]` still finds where `self` is taken and gives each attempt its own borrow.
#[async_trait::async_trait]
pub trait Counter {
    async fn bump(&mut self) -> Result<i64, sqlx::Error>;
}

pub struct PgCounter {
    pool: PgPool,
    calls: i64,
}

#[async_trait::async_trait]
impl Counter for PgCounter {
    #[tracing::instrument(skip(self), err)]
    #[db_retry]
    async fn bump(&mut self) -> Result<i64, sqlx::Error> {
        self.calls += 1;
        sqlx::query_scalar("SELECT $1")
            .bind(self.calls)
            .fetch_one(&self.pool)
            .await
    }
}
