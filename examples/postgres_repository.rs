//! A realistic repository on PostgreSQL: `&self` methods, owned and borrowed arguments, an error
//! type of your own, and a transfer that retries as a whole transaction.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example postgres_repository
//! ```

use std::time::Duration;

use db_retry::db_retry;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

/// The repository's error: callers see "not found" apart from database failures, and db-retry
/// classifies the wrapped `sqlx::Error` through `source()` with no code of ours.
#[derive(Debug, thiserror::Error)]
enum RepoError {
    #[error("user {0} not found")]
    NotFound(i64),
    #[error("insufficient funds in account {0}")]
    InsufficientFunds(i64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, sqlx::FromRow)]
struct User {
    id: i64,
    name: String,
    balance: i64,
}

struct UserRepo {
    pool: PgPool,
}

impl UserRepo {
    /// A borrowed argument: nothing is cloned per attempt.
    #[db_retry]
    async fn create(&self, name: &str) -> Result<i64, RepoError> {
        // ON CONFLICT makes the insert idempotent, so a retry after a lost connection cannot
        // create the user twice.
        let id = sqlx::query_scalar(
            "INSERT INTO repo_users (name, balance) VALUES ($1, 100)
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    #[db_retry(max = 5, deadline = 10s)]
    async fn find(&self, id: i64) -> Result<User, RepoError> {
        sqlx::query_as("SELECT id, name, balance FROM repo_users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RepoError::NotFound(id))
    }

    /// An owned argument: cloned for each attempt, as the attribute's docs explain. Setting a
    /// name to a given value twice leaves the same row, so it may be retried as it is.
    #[db_retry]
    async fn rename(&self, id: i64, new_name: String) -> Result<(), RepoError> {
        let updated = sqlx::query("UPDATE repo_users SET name = $1 WHERE id = $2")
            .bind(&new_name)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(RepoError::NotFound(id));
        }
        Ok(())
    }

    async fn transfer(&self, from: i64, to: i64, amount: i64) -> Result<(), RepoError> {
        transfer(&self.pool, from, to, amount).await
    }
}

/// Serialization failures and deadlocks retry the whole transaction.
#[db_retry(on = contention, max = 10, base = 10ms)]
async fn transfer(
    #[transaction] tx: &mut PgConnection,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), RepoError> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .execute(&mut *tx)
        .await?;
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM repo_users WHERE id = $1")
        .bind(from)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(RepoError::NotFound(from))?;
    if balance < amount {
        return Err(RepoError::InsufficientFunds(from));
    }
    sqlx::query("UPDATE repo_users SET balance = balance - $1 WHERE id = $2")
        .bind(amount)
        .bind(from)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE repo_users SET balance = balance + $1 WHERE id = $2")
        .bind(amount)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("db_retry=debug")
        .with_writer(std::io::stderr)
        .init();
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!(
            "This example needs a PostgreSQL server. Set DATABASE_URL, for example:\n\n    \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
             cargo run --example postgres_repository\n"
        );
        std::process::exit(2);
    };
    let options: PgConnectOptions = url.parse()?;
    db_retry::wait_until_ready(&options, Duration::from_secs(30)).await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS repo_users (
             id bigserial PRIMARY KEY, name text UNIQUE NOT NULL, balance bigint NOT NULL)",
    )
    .execute(&pool)
    .await?;

    let repo = UserRepo { pool };
    let alice = repo.create("alice").await?;
    let bob = repo.create("bob").await?;
    repo.rename(bob, "bob".to_owned()).await?;

    // Concurrent transfers in both directions: SERIALIZABLE makes some of them conflict, and
    // each conflict is retried as a whole transaction.
    let repo = std::sync::Arc::new(repo);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let repo = repo.clone();
        let (from, to) = if i % 2 == 0 {
            (alice, bob)
        } else {
            (bob, alice)
        };
        tasks.push(tokio::spawn(
            async move { repo.transfer(from, to, 1).await },
        ));
    }
    for task in tasks {
        task.await??;
    }
    let (a, b) = (repo.find(alice).await?, repo.find(bob).await?);
    println!(
        "{} (#{}): {}  {} (#{}): {}",
        a.name, a.id, a.balance, b.name, b.id, b.balance
    );
    println!(
        "total {} (transfers never create or destroy money)",
        a.balance + b.balance
    );
    match repo.find(-1).await {
        Err(RepoError::NotFound(id)) => println!("user {id}: not found, returned at once"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
