//! The fault suite on MariaDB: a server of the test's own, with real deadlocks (1213), real lock
//! wait time-outs (1205) and killed connections, each retried by `#[db_retry]`.

use db_retry_test_kit as support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_retry::{db_retry, Classify, ErrorClass};
use sqlx::{MySqlConnection, MySqlPool};
use support::mariadb::{mysql_error_number, MariaDbServer};

static NUMBERS: Mutex<Option<HashMap<u16, u32>>> = Mutex::new(None);

/// Records the MySQL error number of every failure, then classifies as usual.
fn record_number(error: &sqlx::Error) -> ErrorClass {
    if let Some(number) = mysql_error_number(error) {
        let mut numbers = NUMBERS.lock().unwrap();
        *numbers
            .get_or_insert_with(HashMap::new)
            .entry(number)
            .or_default() += 1;
    }
    error.classify()
}

fn seen(number: u16) -> u32 {
    NUMBERS
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|n| n.get(&number).copied())
        .unwrap_or(0)
}

/// Locks `first`, waits so the crossing call can lock `second`, then wants `second`: two of
/// these in opposite directions deadlock, and InnoDB rolls one back with 1213.
#[db_retry(on = record_number, max = 20, base = 5ms, cap = 50ms)]
async fn crossing_update(
    #[transaction] tx: &mut MySqlConnection,
    first: i64,
    second: i64,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("UPDATE accounts SET balance = balance - 1 WHERE id = ?")
        .bind(first)
        .execute(&mut *tx)
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sqlx::query("UPDATE accounts SET balance = balance + 1 WHERE id = ?")
        .bind(second)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn accounts(server: &MariaDbServer) -> MySqlPool {
    server
        .exec_admin(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
             INSERT INTO accounts VALUES (1, 100), (2, 100);",
        )
        .await;
    server.pool(4).await
}

// 11a. Deadlock (1213) retried as a whole transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_is_retried_as_a_whole_transaction() {
    let server = MariaDbServer::start();
    let pool = accounts(&server).await;
    let attempts = AtomicU32::new(0);
    let started = Instant::now();

    let (a, b) = tokio::join!(
        crossing_update(&pool, 1, 2, &attempts),
        crossing_update(&pool, 2, 1, &attempts)
    );

    let total: i64 = sqlx::query_scalar("SELECT CAST(SUM(balance) AS SIGNED) FROM accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    let retries = attempts.load(Ordering::SeqCst) - 2;
    println!(
        "mariadb_deadlock: calls=2 retries={retries} failures={} elapsed={:.2}s",
        u32::from(a.is_err()) + u32::from(b.is_err()),
        started.elapsed().as_secs_f64()
    );
    a.expect("first transfer commits");
    b.expect("second transfer commits");
    assert!(seen(1213) > 0, "InnoDB reported a deadlock");
    assert!(retries > 0, "the deadlock victim was retried");
    assert_eq!(total, 200, "both transfers applied exactly once");
}

#[db_retry(on = record_number, max = 10, base = 10ms, cap = 100ms)]
async fn bump_locked_row(
    #[transaction] tx: &mut MySqlConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("SET SESSION innodb_lock_wait_timeout = 1")
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + 10 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

// 11b. Lock wait timeout (1205): only the statement was rolled back, so the whole transaction
// is retried, and succeeds once the lock holder commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_wait_timeout_is_retried_until_the_lock_is_released() {
    let server = MariaDbServer::start();
    let pool = accounts(&server).await;
    let mut holder = server.admin().await;
    sqlx::raw_sql("BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;")
        .execute(&mut holder)
        .await
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let started = Instant::now();

    let call = tokio::spawn({
        let (pool, attempts) = (pool.clone(), attempts.clone());
        async move { bump_locked_row(&pool, &attempts).await }
    });
    // Hold the lock past one lock wait timeout (1 s), then commit.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let outcome = call.await.unwrap();

    let balance: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let retries = attempts.load(Ordering::SeqCst) - 1;
    println!(
        "mariadb_lock_wait: calls=1 retries={retries} failures={} elapsed={:.2}s",
        u32::from(outcome.is_err()),
        started.elapsed().as_secs_f64()
    );
    outcome.expect("succeeds once the lock is released");
    assert!(seen(1205) > 0, "InnoDB reported a lock wait timeout");
    assert!(retries > 0);
    assert_eq!(
        balance, 100,
        "-10 by the holder, +10 by the retried call, exactly once"
    );
}

#[db_retry(max = 3, base = 5ms)]
async fn read_on_killed_connection(
    #[acquire] conn: &mut MySqlConnection,
    server: &MariaDbServer,
    attempts: &AtomicU32,
) -> Result<i64, sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    if attempt == 0 {
        let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
            .fetch_one(&mut *conn)
            .await?;
        server.exec_admin(&format!("KILL {id}")).await;
    }
    sqlx::query_scalar("SELECT 42").fetch_one(&mut *conn).await
}

// 12. A killed connection (KILL <id>) is retried on a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_is_retried() {
    let server = MariaDbServer::start();
    let pool = server.pool(2).await;
    let attempts = AtomicU32::new(0);
    let started = Instant::now();

    let outcome = read_on_killed_connection(&pool, &server, &attempts).await;

    let retries = attempts.load(Ordering::SeqCst) - 1;
    println!(
        "mariadb_kill: calls=1 retries={retries} failures={} elapsed={:.2}s",
        u32::from(outcome.is_err()),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(outcome.expect("retried on a new connection"), 42);
    assert_eq!(retries, 1, "one killed attempt, one retry");
}

#[db_retry(max = 3, base = 1ms)]
async fn export(pool: &MySqlPool, attempts: &AtomicU32) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("SELECT 1 INTO OUTFILE '/tmp/db-retry-not-allowed.txt'")
        .execute(pool)
        .await?;
    Ok(())
}

// 1290 also means "--secure-file-priv forbids this": configuration, not a read-only replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_prevents_statement_is_permanent_unless_read_only() {
    let allowed = tempfile::tempdir().unwrap();
    let server = MariaDbServer::builder()
        .option(&format!("--secure-file-priv={}", allowed.path().display()))
        .start();
    let pool = server.pool(2).await;
    let attempts = AtomicU32::new(0);

    let error = export(&pool, &attempts)
        .await
        .expect_err("outside secure_file_priv");

    assert_eq!(mysql_error_number(&error), Some(1290), "{error}");
    assert_eq!(error.classify(), ErrorClass::Permanent, "{error}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "runs exactly once");
}
