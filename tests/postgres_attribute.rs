//! `#[db_retry]` against a real PostgreSQL that each test starts for itself: terminated backends
//! are retried on a fresh connection, permanent errors run once, and `#[transaction]` under real
//! SERIALIZABLE conflicts commits every logical operation exactly once.

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};
use support::pg::{backend_pid, PgServer};

/// Each of the first `kill_first` attempts has its own backend terminated before its query runs.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn read_while_killed(
    #[acquire] conn: &mut PgConnection,
    server: &PgServer,
    attempts: &AtomicU32,
    kill_first: u32,
) -> Result<i32, sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    if attempt < kill_first {
        let pid = backend_pid(conn).await;
        server.terminate_backend(pid).await;
    }
    sqlx::query_scalar("SELECT 42").fetch_one(&mut *conn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_is_retried_on_a_fresh_connection() {
    let server = PgServer::start();
    let pool = server.pool(4).await;
    let attempts = AtomicU32::new(0);

    let answer = read_while_killed(&pool, &server, &attempts, 2).await;

    assert_eq!(answer.expect("third attempt succeeds"), 42);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "two failed attempts, then one that worked"
    );
    println!("terminated_backend: calls=1 retries=2 failures=0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_gives_up_after_max_retries() {
    let server = PgServer::start();
    let pool = server.pool(4).await;
    let attempts = AtomicU32::new(0);

    let error = read_while_killed(&pool, &server, &attempts, 10)
        .await
        .expect_err("every attempt has its backend killed");

    assert_eq!(
        attempts.load(Ordering::SeqCst),
        4,
        "max = 3 means four attempts"
    );
    assert!(
        db_retry::Classify::classify(&error).is_transient(),
        "the last, transient error is returned: {error}"
    );
}

/// With `test_before_acquire(false)` the pool hands out the dead connection; the attempt fails
/// and the broken connection must be closed, not returned, so the retry gets a live one.
#[db_retry(max = 2, base = 1ms)]
async fn select_through_pool(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query_scalar("SELECT 7").fetch_one(pool).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_without_ping_recovers_from_terminated_backends() {
    let server = PgServer::start();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&server.url())
        .await
        .expect("pool");
    let attempts = AtomicU32::new(0);
    assert_eq!(select_through_pool(&pool, &attempts).await.unwrap(), 7);
    assert_eq!(server.terminate_backends_except(&[]).await, 1);

    let value = select_through_pool(&pool, &attempts).await;

    assert_eq!(value.expect("retried on a new connection"), 7);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "one call before the kill, then one failed attempt and one retry"
    );
}

#[db_retry(max = 3, base = 1ms)]
async fn insert_user(pool: &PgPool, email: &str, attempts: &AtomicU32) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO users (email) VALUES ($1)")
        .bind(email)
        .execute(pool)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violation_runs_once() {
    let server = PgServer::start();
    let pool = server.pool(2).await;
    sqlx::query("CREATE TABLE users (email text PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let attempts = AtomicU32::new(0);
    insert_user(&pool, "a@example.com", &attempts)
        .await
        .unwrap();

    let error = insert_user(&pool, "a@example.com", &attempts)
        .await
        .expect_err("duplicate key");

    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23505"));
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one attempt per call: never retried"
    );
}

/// Moves `amount` and records the transfer in a ledger whose primary key is the transfer id, so
/// a transfer committed twice would fail and one never committed would be missing.
#[db_retry(on = contention, max = 50, base = 1ms, cap = 20ms)]
async fn transfer(
    #[transaction] tx: &mut PgConnection,
    id: i64,
    from: i64,
    to: i64,
    amount: i64,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .execute(&mut *tx)
        .await?;
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = $1")
        .bind(from)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = $1 WHERE id = $2")
        .bind(balance - amount)
        .bind(from)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
        .bind(amount)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO ledger (id, from_account, to_account, amount) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(amount)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_transfers_commit_exactly_once() {
    const ACCOUNTS: i64 = 4;
    const TRANSFERS: i64 = 200;
    const WORKERS: i64 = 12;
    // Crossed transfers deadlock (40P01) as well as failing serialization (40001); detect the
    // deadlocks in 50 ms instead of the default second.
    let server = PgServer::builder()
        .setting("deadlock_timeout", "50ms")
        .start();
    let pool = server.pool(8).await;
    sqlx::raw_sql(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
         CREATE TABLE ledger (id bigint PRIMARY KEY, from_account bigint, to_account bigint,
                              amount bigint);
         INSERT INTO accounts SELECT g, 1000 FROM generate_series(0, 3) g;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let started = std::time::Instant::now();

    // More workers than pool connections, each running its share of transfers one after the
    // other: the conflicts come from the data, not from starving the pool.
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let (pool, attempts) = (pool.clone(), attempts.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for id in (worker..TRANSFERS).step_by(WORKERS as usize) {
                let from = id % ACCOUNTS;
                let to = (from + 1 + id % (ACCOUNTS - 1)) % ACCOUNTS;
                if let Err(error) = transfer(&pool, id, from, to, 1 + id % 5, &attempts).await {
                    eprintln!("transfer {id} failed: {error}");
                    failures += 1;
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await.unwrap();
    }

    let (ledger, total): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ledger), (SELECT sum(balance)::bigint FROM accounts)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let expected_sum: i64 = (0..TRANSFERS).map(|id| 1 + id % 5).sum();
    let moved: i64 = sqlx::query_scalar("SELECT sum(amount)::bigint FROM ledger")
        .fetch_one(&pool)
        .await
        .unwrap();
    let retries = attempts.load(Ordering::SeqCst) as i64 - TRANSFERS;
    println!(
        "serializable_transfers: calls={TRANSFERS} retries={retries} failures={failures} elapsed={:?}",
        started.elapsed()
    );
    assert_eq!(failures, 0, "every transfer commits");
    assert_eq!(
        ledger, TRANSFERS,
        "every transfer is in the ledger exactly once"
    );
    assert_eq!(moved, expected_sum);
    assert_eq!(
        total,
        ACCOUNTS * 1000,
        "money is neither created nor destroyed"
    );
    assert!(
        retries > 0,
        "the transfers really conflicted (40001) and were retried"
    );
}
