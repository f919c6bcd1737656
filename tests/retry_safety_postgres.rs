//! `idempotent = false` judges the attempt, not the failed statement, against a real
//! PostgreSQL: an `#[acquire]` body that inserted and then hit a (real-server) 40P01 is not run
//! again, a `#[transaction]` body is retried whole because the server rolled it back, and a
//! failure while getting the connection is still retried.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db_retry::db_retry;
use db_retry_test_kit::pg::PgServer;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

async fn events_table(server: &PgServer) {
    server
        .exec_admin("CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL)")
        .await;
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Inserts, then fails with a deadlock SQLSTATE raised by the server on the first attempt.
#[db_retry(idempotent = false, max = 3, base = 1ms)]
async fn insert_then_conflict(
    #[acquire] conn: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO events (kind) VALUES ('signup')")
        .execute(&mut *conn)
        .await?;
    if attempt == 0 {
        sqlx::query("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_body_that_may_have_applied_a_write_is_not_run_again() {
    let server = PgServer::start();
    events_table(&server).await;
    let pool: PgPool = server.pool(2).await;
    let attempts = AtomicU32::new(0);

    let error = insert_then_conflict(&pool, &attempts)
        .await
        .expect_err("the contention error goes to the caller");

    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("40P01")
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(count(&pool).await, 1, "the first statement's row, once");
}

#[db_retry(idempotent = false, max = 3, base = 1ms)]
async fn insert_then_conflict_in_transaction(
    #[transaction] tx: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO events (kind) VALUES ('signup')")
        .execute(&mut *tx)
        .await?;
    if attempt == 0 {
        sqlx::query("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_body_is_retried_whole_because_the_server_rolled_it_back() {
    let server = PgServer::start();
    events_table(&server).await;
    let pool: PgPool = server.pool(2).await;
    let attempts = AtomicU32::new(0);

    insert_then_conflict_in_transaction(&pool, &attempts)
        .await
        .expect("the retry commits");

    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(
        count(&pool).await,
        1,
        "the first attempt's row was rolled back"
    );
}

#[db_retry(idempotent = false, max = 5, base = 100ms, jitter = none, backoff = fixed)]
async fn insert_once(
    #[acquire] conn: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO events (kind) VALUES ('signup')")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_while_getting_the_connection_is_still_retried() {
    let server = PgServer::start();
    events_table(&server).await;
    // One connection, held elsewhere for a while: the first acquires time out.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(100))
        .connect(&server.url())
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let holder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(350)).await;
        drop(held);
    });
    let attempts = AtomicU32::new(0);
    let started = std::time::Instant::now();

    insert_once(&pool, &attempts)
        .await
        .expect("a later acquire succeeds");
    holder.await.unwrap();

    // One acquire gives up after 100 ms; getting through took retries.
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "the call outlasted the holder: {:?}",
        started.elapsed()
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the body ran once: the failed acquires never reached it"
    );
    assert_eq!(count(&pool).await, 1);
}
