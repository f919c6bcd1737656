//! What db-retry does with the connection of a failed attempt, against a real PostgreSQL: a
//! transaction the body opened itself is rolled back before the connection goes back to the
//! pool (retried or not), an aborted one (25P02) is thrown away, a connection whose cached plan no
//! longer fits the table is replaced and the call retried.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db_retry::db_retry;
use db_retry_test_kit::pg::{backend_pid, PgServer};
use sqlx::{PgConnection, PgPool};

async fn counter_table(server: &PgServer) {
    server
        .exec_admin(
            "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO counters VALUES (1, 0);",
        )
        .await;
}

/// Opens a transaction with a raw `BEGIN`; on the first attempt another session changes the row
/// between this one's read and its write, so the write fails with a real 40001.
#[db_retry(max = 3, base = 1ms)]
async fn raw_transaction_with_conflict(
    #[acquire] conn: &mut PgConnection,
    server: &PgServer,
    attempts: &AtomicU32,
) -> Result<i32, sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await?;
    let n: i32 = sqlx::query_scalar("SELECT n FROM counters WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    if attempt == 0 {
        server
            .exec_admin("UPDATE counters SET n = n + 100 WHERE id = 1")
            .await;
    }
    sqlx::query("UPDATE counters SET n = $1 WHERE id = 1")
        .bind(n + 1)
        .execute(&mut *conn)
        .await?;
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(n + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_by_a_failed_acquire_body_is_rolled_back_before_the_retry() {
    let server = PgServer::start();
    counter_table(&server).await;
    // One connection: the retry gets the very connection the failed attempt used.
    let pool: PgPool = server.pool(1).await;
    let attempts = AtomicU32::new(0);

    let value = raw_transaction_with_conflict(&pool, &server, &attempts)
        .await
        .expect("the retry starts on a clean connection");

    assert_eq!(attempts.load(Ordering::SeqCst), 2, "one 40001, one retry");
    assert_eq!(value, 101, "the retry read the other session's write");
    let mut conn = pool.acquire().await.unwrap();
    let in_transaction: Option<String> =
        sqlx::query_scalar("SELECT pg_current_xact_id_if_assigned()::text")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(
        in_transaction, None,
        "nothing left open on the pooled connection"
    );
}

/// Opens a transaction with a raw `BEGIN` and fails inside it with a permanent error, so the
/// server aborts the transaction and the error goes straight to the caller.
#[db_retry(max = 3, base = 1ms)]
async fn raw_transaction_with_permanent_error(
    #[acquire] conn: &mut PgConnection,
) -> Result<(), sqlx::Error> {
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT 1 / 0").execute(&mut *conn).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_never_reaches_the_next_user_of_the_pool() {
    let server = PgServer::start();
    counter_table(&server).await;
    let pool: PgPool = server.pool(1).await;
    let first_pid = backend_pid(&mut *pool.acquire().await.unwrap()).await;

    let error = raw_transaction_with_permanent_error(&pool)
        .await
        .expect_err("division by zero");
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("22012")
    );

    // The next user of the one pooled connection runs normally, outside any transaction.
    let mut conn = tokio::time::timeout(Duration::from_secs(10), pool.acquire())
        .await
        .expect("the connection comes back to the pool")
        .unwrap();
    let n: i32 = sqlx::query_scalar("SELECT n FROM counters WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .expect("not inside the aborted transaction (25P02)");
    assert_eq!(n, 0, "the aborted transaction's write is gone");
    let in_transaction: Option<String> =
        sqlx::query_scalar("SELECT pg_current_xact_id_if_assigned()::text")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(in_transaction, None);
    // 25P02 discards the connection: the aborted one was closed, this one is new.
    assert_ne!(backend_pid(&mut *conn).await, first_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_plan_that_no_longer_fits_is_retried_on_a_fresh_connection() {
    let server = PgServer::start();
    server
        .exec_admin(
            "CREATE TABLE wide (id int PRIMARY KEY, a int NOT NULL);
             INSERT INTO wide VALUES (1, 7);",
        )
        .await;
    let pool: PgPool = server.pool(1).await;
    let warm = AtomicU32::new(0);
    assert_eq!(
        wide_read(&pool, &warm).await.expect("prepares and caches"),
        2
    );
    let warm_pid = backend_pid(&mut *pool.acquire().await.unwrap()).await;

    // The table changes shape under the cached `SELECT *`.
    server
        .exec_admin("ALTER TABLE wide ADD COLUMN b int NOT NULL DEFAULT 0")
        .await;
    let attempts = AtomicU32::new(0);
    let outcome = wide_read(&pool, &attempts).await;

    let columns = outcome.expect("retried on a connection without the stale plan");
    assert_eq!(columns, 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "one 0A000, one retry");
    let pid = backend_pid(&mut *pool.acquire().await.unwrap()).await;
    assert_ne!(
        pid, warm_pid,
        "the connection with the stale plan was closed"
    );
}

/// A `SELECT *` through a prepared statement, which sqlx caches on the connection; counts the
/// columns it gets.
#[db_retry(max = 3, base = 1ms)]
async fn wide_read(
    #[acquire] conn: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<usize, sqlx::Error> {
    use sqlx::Row;
    attempts.fetch_add(1, Ordering::SeqCst);
    let row = sqlx::query("SELECT * FROM wide WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.len())
}

/// Runs a prepared (cached) statement, has the server forget every prepared statement (as a
/// pooler in transaction mode does when the next transaction lands on another server
/// connection), and runs it again: 26000.
#[db_retry(max = 3, base = 1ms)]
async fn statement_forgotten(
    #[acquire] conn: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    let read = || sqlx::query_scalar::<_, i32>("SELECT n FROM counters WHERE id = 1");
    read().fetch_one(&mut *conn).await?;
    sqlx::raw_sql("DEALLOCATE ALL").execute(&mut *conn).await?;
    read().fetch_one(&mut *conn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_prepared_statements_are_gone_is_not_reused() {
    let server = PgServer::start();
    counter_table(&server).await;
    let pool: PgPool = server.pool(1).await;
    let first_pid = backend_pid(&mut *pool.acquire().await.unwrap()).await;
    let attempts = AtomicU32::new(0);

    let error = statement_forgotten(&pool, &attempts)
        .await
        .expect_err("the statement is gone");

    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("26000"),
        "{error}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "not retried");
    let mut conn = tokio::time::timeout(Duration::from_secs(10), pool.acquire())
        .await
        .expect("the pool has its slot back")
        .unwrap();
    assert_ne!(
        backend_pid(&mut *conn).await,
        first_pid,
        "the connection with the lost statements was closed"
    );
}
