// Included by `tests/postgres_attribute.rs` once per sqlx version, with `sqlx` bound to it.

use std::sync::atomic::{AtomicU32, Ordering};

use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};
use crate::support::pg::{backend_pid, PgServer};

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
    let pool: PgPool = server.pool(4).await;
    let attempts = AtomicU32::new(0);

    let answer = read_while_killed(&pool, &server, &attempts, 2).await;

    assert_eq!(answer.expect("third attempt succeeds"), 42);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "two failed attempts, then one that worked"
    );
    println!(
        "terminated_backend: calls=1 retries={} failures=0",
        attempts.load(Ordering::SeqCst) - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_gives_up_after_max_retries() {
    let server = PgServer::start();
    let pool: PgPool = server.pool(4).await;
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
    // sqlx pings a connection as it goes back to the pool, in a task of its own: kill the
    // backend only once that is done, or the ping finds it dead and no query ever sees it.
    for _ in 0..100 {
        if pool.num_idle() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(pool.num_idle(), 1, "the connection went back to the pool");
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
    let pool: PgPool = server.pool(2).await;
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
