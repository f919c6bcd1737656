//! The fault suite on MariaDB: a server of the test's own, with real deadlocks (1213), real lock
//! wait time-outs (1205) and killed connections, each retried by `#[db_retry]`.
//!
//! The contention scenarios retry far more than the default retry budget allows, on purpose:
//! they say `budget = none`.

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
#[db_retry(on = record_number, max = 20, base = 5ms, cap = 50ms, budget = none)]
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

#[db_retry(on = record_number, max = 10, base = 10ms, cap = 100ms, budget = none)]
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

/// Holds row 2, then wants row 1, which the test's other session holds for a while. Every
/// attempt after the first records how many transactions other than its own and the holder's
/// are open: the failed attempt's, if its ROLLBACK has not run yet.
#[db_retry(on = record_number, max = 5, backoff = none)]
async fn lock_two_rows(
    #[transaction] tx: &mut MySqlConnection,
    holder: u64,
    attempts: &AtomicU32,
    leftover: &AtomicU32,
) -> Result<(), sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    if attempt > 0 {
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX \
             WHERE trx_mysql_thread_id NOT IN (CONNECTION_ID(), ?)",
        )
        .bind(holder)
        .fetch_one(&mut *tx)
        .await?;
        leftover.fetch_add(others as u32, Ordering::SeqCst);
    }
    sqlx::query("SET SESSION innodb_lock_wait_timeout = 1")
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + 1 WHERE id = 2")
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

// A 1205 leaves the transaction open with its locks (only the statement was rolled back): the
// retry must not start, even with no backoff at all, until that transaction is rolled back.
// The pool takes its time over a returned connection (an `after_release` hook, as an
// application may have one), so a ROLLBACK left for the pool to send would come late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_waits_on_its_own_previous_attempts_locks() {
    let server = MariaDbServer::start();
    let _ = accounts(&server).await;
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .after_release(|_, _| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(true)
            })
        })
        .connect(&server.url())
        .await
        .unwrap();
    let mut holder = server.admin().await;
    let holder_thread: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1;")
        .execute(&mut holder)
        .await
        .unwrap();
    let (attempts, leftover) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));

    let call = tokio::spawn({
        let (pool, attempts, leftover) = (pool.clone(), attempts.clone(), leftover.clone());
        async move { lock_two_rows(&pool, holder_thread, &attempts, &leftover).await }
    });
    // Past one lock wait timeout (1 s), then let the retry through.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    call.await
        .unwrap()
        .expect("succeeds once the holder commits");

    assert!(seen(1205) > 0, "InnoDB reported a lock wait timeout");
    assert!(attempts.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        leftover.load(Ordering::SeqCst),
        0,
        "a retry found its previous attempt's transaction still open"
    );
    let balances: Vec<i64> = sqlx::query_scalar("SELECT balance FROM accounts ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        balances,
        [91, 101],
        "the retried transaction applied exactly once"
    );
}

/// Reads a row, then (on the first attempt) another session changes it, then writes it: under
/// snapshot isolation MariaDB refuses the write with 1020 and rolls the transaction back.
#[db_retry(on = record_number, max = 3, base = 1ms)]
async fn read_then_write(
    #[transaction] tx: &mut MySqlConnection,
    server: &MariaDbServer,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    let _: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    if attempt == 0 {
        server
            .exec_admin("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
            .await;
    }
    sqlx::query("UPDATE accounts SET balance = balance + 10 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

// MariaDB's snapshot isolation (on by default since 11.6) reports a lost update as 1020.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_by_snapshot_isolation_is_retried() {
    let server = MariaDbServer::builder()
        .option("--innodb-snapshot-isolation=ON")
        .start();
    let pool = accounts(&server).await;
    let attempts = AtomicU32::new(0);

    read_then_write(&pool, &server, &attempts)
        .await
        .expect("retried in a new snapshot");

    assert!(seen(1020) > 0, "MariaDB reported ER_CHECKREAD");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        balance, 111,
        "the other session's write and ours, each once"
    );
}

/// Reads a row twice, with another session's committed change in between.
#[db_retry(max = 0)]
async fn read_twice_read_committed(
    #[transaction(isolation = read_committed)] tx: &mut MySqlConnection,
    server: &MariaDbServer,
) -> Result<(i64, i64), sqlx::Error> {
    read_twice(tx, server).await
}

#[db_retry(max = 0)]
async fn read_twice_default(
    #[transaction] tx: &mut MySqlConnection,
    server: &MariaDbServer,
) -> Result<(i64, i64), sqlx::Error> {
    read_twice(tx, server).await
}

async fn read_twice(
    tx: &mut MySqlConnection,
    server: &MariaDbServer,
) -> Result<(i64, i64), sqlx::Error> {
    let first: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    server
        .exec_admin("UPDATE accounts SET balance = balance + 5 WHERE id = 1")
        .await;
    let second: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    Ok((first, second))
}

#[db_retry(max = 3, base = 1ms)]
async fn write_in_read_only(
    #[transaction(read_only)] tx: &mut MySqlConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("UPDATE accounts SET balance = 0 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

// The isolation level is set before START TRANSACTION (MariaDB's default is REPEATABLE READ);
// a read-only transaction refuses writes with 1792, which is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_options_reach_mariadb() {
    let server = MariaDbServer::start();
    let pool = accounts(&server).await;

    assert_eq!(
        read_twice_read_committed(&pool, &server).await.unwrap(),
        (100, 105),
        "read committed sees the other session's commit"
    );
    assert_eq!(
        read_twice_default(&pool, &server).await.unwrap(),
        (105, 105),
        "the control: repeatable read keeps its snapshot"
    );

    let attempts = AtomicU32::new(0);
    let error = write_in_read_only(&pool, &attempts).await.unwrap_err();
    assert_eq!(mysql_error_number(&error), Some(1792), "{error}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}
