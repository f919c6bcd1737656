//! SQLite under real write contention: several connections on one file with a zero busy
//! timeout, so SQLite answers SQLITE_BUSY (5) whenever two writers collide.
//!
//! The contention scenarios retry far more than the default retry budget allows, on purpose:
//! they say `budget = none`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use db_retry::{db_retry, Classify, ErrorClass};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{SqliteConnection, SqlitePool};

const WRITERS: u32 = 8;
const WRITES_PER_WRITER: u32 = 50;

async fn contended_pool(dir: &tempfile::TempDir) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("contended.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::ZERO);
    let pool = SqlitePoolOptions::new()
        .max_connections(WRITERS)
        .connect_with(options)
        .await
        .expect("sqlite pool");
    sqlx::raw_sql(
        "CREATE TABLE events (writer INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (writer, n));
         CREATE TABLE totals (writer INTEGER PRIMARY KEY, count INTEGER NOT NULL);",
    )
    .execute(&pool)
    .await
    .expect("schema");
    for writer in 0..WRITERS {
        sqlx::query("INSERT INTO totals VALUES (?, 0)")
            .bind(writer)
            .execute(&pool)
            .await
            .expect("seed");
    }
    pool
}

/// One event and its running total, in the caller's transaction.
async fn write_event(tx: &mut SqliteConnection, writer: u32, n: u32) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO events (writer, n) VALUES (?, ?)")
        .bind(writer)
        .bind(n)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE totals SET count = count + 1 WHERE writer = ?")
        .bind(writer)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[db_retry(on = contention, max = 100, base = 1ms, cap = 20ms, budget = none)]
async fn record(
    #[transaction] tx: &mut SqliteConnection,
    writer: u32,
    n: u32,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    write_event(tx, writer, n).await
}

#[db_retry(max = 0)]
async fn record_once(
    #[transaction] tx: &mut SqliteConnection,
    writer: u32,
    n: u32,
) -> Result<(), sqlx::Error> {
    write_event(tx, writer, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_land_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let pool = contended_pool(&dir).await;
    let attempts = Arc::new(AtomicU32::new(0));
    let started = Instant::now();

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (pool, attempts) = (pool.clone(), attempts.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for n in 0..WRITES_PER_WRITER {
                if record(&pool, writer, n, &attempts).await.is_err() {
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

    let calls = WRITERS * WRITES_PER_WRITER;
    let retries = attempts.load(Ordering::Relaxed) - calls;
    println!(
        "sqlite_busy: calls={calls} retries={retries} failures={failures} elapsed={:?}",
        started.elapsed()
    );
    let (events, total): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM events), (SELECT sum(count) FROM totals)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(failures, 0);
    assert_eq!(events, calls as i64, "every write landed exactly once");
    assert_eq!(
        total, calls as i64,
        "each write's two statements committed together"
    );
    assert!(
        retries > 0,
        "writers collided (SQLITE_BUSY) and were retried"
    );
}

/// The control: the same load without retries really fails with SQLITE_BUSY, classified as
/// contention — so the test above proves the retries, not a lucky schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_load_without_retries_hits_sqlite_busy() {
    let dir = tempfile::tempdir().unwrap();
    let pool = contended_pool(&dir).await;

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut busy = 0u32;
            for n in 0..WRITES_PER_WRITER {
                if let Err(error) = record_once(&pool, writer, n).await {
                    let code = error.as_database_error().and_then(|e| e.code());
                    assert_eq!(
                        error.classify(),
                        ErrorClass::Contention,
                        "only contention is expected here, got {error} (code {code:?})"
                    );
                    busy += 1;
                }
            }
            busy
        }));
    }
    let mut busy = 0;
    for task in tasks {
        busy += task.await.unwrap();
    }
    println!(
        "sqlite_busy_control: calls={} busy={busy}",
        WRITERS * WRITES_PER_WRITER
    );
    assert!(
        busy > 0,
        "with a zero busy timeout, concurrent writers must collide"
    );
}

/// With a transaction open on `tx` that has read but not written: whether another connection
/// can take the write lock.
async fn other_writer_gets_the_lock(
    tx: &mut SqliteConnection,
    pool: &SqlitePool,
) -> Result<bool, sqlx::Error> {
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await?;
    let mut other = pool.acquire().await?;
    let got_it = sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *other)
        .await
        .is_ok();
    if got_it {
        sqlx::query("ROLLBACK").execute(&mut *other).await?;
    }
    Ok(got_it)
}

/// Begins with `BEGIN IMMEDIATE`.
#[db_retry(max = 0)]
async fn immediate_then_probe(
    #[transaction(immediate)] tx: &mut SqliteConnection,
    pool: &SqlitePool,
) -> Result<bool, sqlx::Error> {
    other_writer_gets_the_lock(tx, pool).await
}

/// The same with a plain (deferred) `BEGIN`.
#[db_retry(max = 0)]
async fn deferred_then_probe(
    #[transaction] tx: &mut SqliteConnection,
    pool: &SqlitePool,
) -> Result<bool, sqlx::Error> {
    other_writer_gets_the_lock(tx, pool).await
}

// `#[transaction(immediate)]` takes SQLite's write lock when the transaction begins, so writers
// queue at BEGIN instead of failing midway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_transaction_holds_the_write_lock_from_its_begin() {
    let dir = tempfile::tempdir().unwrap();
    let pool = contended_pool(&dir).await;

    assert!(
        !immediate_then_probe(&pool, &pool).await.unwrap(),
        "no other writer while BEGIN IMMEDIATE is open"
    );
    assert!(
        deferred_then_probe(&pool, &pool).await.unwrap(),
        "the control: a deferred BEGIN takes no write lock until it writes"
    );
}
