//! db-retry behind a real PgBouncer (Debian's package) in front of a throwaway PostgreSQL:
//! a server restart under load in session and in transaction mode loses no idempotent call,
//! every message PgBouncer sends meanwhile is classified as transient, and a PgBouncer without
//! `ignore_startup_parameters` fails at once, without retries, with a hint that names the fix.
//! (Transaction mode and sqlx's prepared statements: `pgbouncer_transaction_mode_postgres.rs`.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_retry::{configuration_hint, db_retry, Classify, ErrorClass};
use db_retry_test_kit::pg::PgServer;
use db_retry_test_kit::pgbouncer::{PgBouncer, PoolMode};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

/// Every error a retried call judged, by class and message: what PgBouncer said.
static SEEN: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

fn recording(error: &sqlx::Error) -> ErrorClass {
    let class = error.classify();
    let message = match error {
        sqlx::Error::Database(db) => {
            format!(
                "{class}: {} {}",
                db.code().unwrap_or_default(),
                db.message()
            )
        }
        other => format!("{class}: {other}"),
    };
    *SEEN.lock().unwrap().entry(message).or_default() += 1;
    class
}

#[db_retry(max = 30, deadline = 20s, base = 20ms, cap = 500ms, on = recording, budget = none)]
async fn read(pool: &PgPool, n: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT $1::bigint")
        .bind(n)
        .fetch_one(pool)
        .await
}

/// In transaction mode, the one shape of a parameterised query that works: inside a
/// transaction, with an unnamed statement.
#[db_retry(max = 30, deadline = 20s, base = 20ms, cap = 500ms, on = recording, budget = none)]
async fn read_in_transaction(
    #[transaction] tx: &mut PgConnection,
    n: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT $1::bigint")
        .bind(n)
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
}

#[derive(Clone, Copy)]
enum Shape {
    Plain,
    InTransaction,
}

/// Eight callers for `run_for`; the server is crashed (immediate shutdown) after `restart_at`
/// and started again `down_for` later. Returns (calls, failures).
async fn restart_under_load(
    server: &PgServer,
    pool: &PgPool,
    shape: Shape,
    restart_at: Duration,
    down_for: Duration,
    run_for: Duration,
) -> (u32, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut callers = Vec::new();
    for caller in 0..8i64 {
        let (pool, stop, calls, failures) =
            (pool.clone(), stop.clone(), calls.clone(), failures.clone());
        callers.push(tokio::spawn(async move {
            let mut n = caller * 1_000_000;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let result = match shape {
                    Shape::Plain => read(&pool, n).await,
                    Shape::InTransaction => read_in_transaction(&pool, n).await,
                };
                calls.fetch_add(1, Ordering::SeqCst);
                match result {
                    Ok(value) if value == n => {}
                    Ok(other) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{n} read back {other}")),
                    Err(error) => failures.lock().unwrap().push(error.to_string()),
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(restart_at).await;
    server.stop_immediate();
    tokio::time::sleep(down_for).await;
    server.start_again();
    tokio::time::sleep(run_for.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    (calls.load(Ordering::SeqCst), failures)
}

fn pool(bouncer: &PgBouncer) -> PgPool {
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&bouncer.url())
        .unwrap()
}

/// What the retried calls saw that was not transient: nothing, if classification covers every
/// message PgBouncer sent.
fn permanent_seen() -> Vec<String> {
    SEEN.lock()
        .unwrap()
        .keys()
        .filter(|message| message.starts_with("permanent"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_transaction_mode_survive_a_server_restart_under_load() {
    for (mode, shape) in [
        (PoolMode::Session, Shape::Plain),
        (PoolMode::Transaction, Shape::InTransaction),
    ] {
        let server = PgServer::start();
        let bouncer = PgBouncer::builder(&server).mode(mode).pool_size(8).start();
        let pool = pool(&bouncer);
        let (calls, failures) = restart_under_load(
            &server,
            &pool,
            shape,
            Duration::from_millis(700),
            Duration::from_millis(500),
            Duration::from_millis(3000),
        )
        .await;
        let seen = SEEN.lock().unwrap().clone();
        println!(
            "{mode:?}: {calls} calls, {} failed; judged: {seen:#?}",
            failures.len()
        );
        assert!(calls > 100, "{mode:?}: the load ran ({calls} calls)");
        assert!(
            failures.is_empty(),
            "{mode:?}: {} of {calls} calls failed: {failures:?}\n--- pgbouncer ---\n{}",
            failures.len(),
            bouncer.log_tail(20)
        );
        assert!(
            !seen.is_empty(),
            "{mode:?}: the restart must have been noticed by some call"
        );
        assert_eq!(permanent_seen(), Vec::<String>::new(), "{mode:?}");
        SEEN.lock().unwrap().clear();
    }
}

#[db_retry(max = 5, base = 1ms, budget = none)]
async fn counted(pool: &PgPool, attempts: &AtomicU32) -> Result<i64, sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query_scalar("SELECT 1::bigint").fetch_one(pool).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_without_ignore_startup_parameters_fails_at_once_naming_the_fix() {
    let server = PgServer::start();
    let bouncer = PgBouncer::builder(&server)
        .without_ignore_startup_parameters()
        .start_listening();
    let pool = pool(&bouncer);
    let attempts = AtomicU32::new(0);
    let error = counted(&pool, &attempts).await.unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "not retried: {error}");
    assert!(
        error.to_string().contains("unsupported startup parameter"),
        "the raw error stays: {error}"
    );
    assert_eq!(error.classify(), ErrorClass::Permanent);
    let hint = configuration_hint(&error).expect("a hint");
    assert!(
        hint.contains("ignore_startup_parameters = extra_float_digits"),
        "{hint}"
    );
}
