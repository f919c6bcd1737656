//! The circuit breaker against a real PostgreSQL that goes down and comes back: failing connects
//! open it, an open breaker stops retries (and, with `fail_fast`, calls), and once the server is
//! back and the open duration has passed, one probe closes it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db_retry::{db_retry, BreakerState, CircuitBreaker, CircuitOpen};
use db_retry_test_kit::pg::PgServer;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

const OPEN_FOR: Duration = Duration::from_millis(1500);

static PRIMARY: CircuitBreaker = CircuitBreaker::new("primary")
    .consecutive_failures(3)
    .open_for(OPEN_FOR);

#[derive(Debug, thiserror::Error)]
enum RepoError {
    // Not `transparent`: that would hide a `PoolTimedOut` (no source) from classification.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Open(#[from] CircuitOpen),
}

/// Fails fast while the breaker is open. `budget = none`: the test counts attempts, and the
/// process-wide budget would stop retries of its own.
#[db_retry(max = 10, base = 10ms, jitter = none, budget = none, breaker = PRIMARY, fail_fast = true)]
async fn fail_fast(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, RepoError> {
    attempts.fetch_add(1, Ordering::SeqCst);
    Ok(sqlx::query_scalar("SELECT 1").fetch_one(pool).await?)
}

/// Runs its first attempt whatever the breaker says, and retries only while it is closed.
#[db_retry(max = 10, base = 10ms, jitter = none, budget = none, breaker = PRIMARY)]
async fn first_attempt_only(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_opens_it_and_a_probe_after_the_restart_closes_it() {
    let server = PgServer::start();
    // A short acquire timeout, so a connect to the stopped server fails fast; no idle
    // connections kept, so every attempt connects.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .min_connections(0)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_millis(250))
        .connect(&server.url())
        .await
        .unwrap();
    let attempts = AtomicU32::new(0);

    assert_eq!(fail_fast(&pool, &attempts).await.unwrap(), 1);
    assert_eq!(PRIMARY.state(), BreakerState::Closed);

    server.stop_fast();
    // The open connection is gone with the server: close it so each attempt has to connect.
    pool.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(250))
        .connect_lazy(&server.url())
        .unwrap();

    attempts.store(0, Ordering::SeqCst);
    let error = fail_fast(&pool, &attempts).await.unwrap_err();
    assert!(
        matches!(error, RepoError::Database(_)),
        "the failing attempt's own error: {error}"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "the third failed connect opened the breaker, which refused the fourth attempt ({error:?})"
    );
    assert_eq!(PRIMARY.state(), BreakerState::Open);

    // Open: a fail-fast call does not run at all; the other kind runs once and is not retried.
    attempts.store(0, Ordering::SeqCst);
    let refused = fail_fast(&pool, &attempts).await.unwrap_err();
    let RepoError::Open(open) = refused else {
        panic!("expected CircuitOpen, got {refused}");
    };
    assert_eq!(open.breaker(), "primary");
    assert_eq!(attempts.load(Ordering::SeqCst), 0);
    first_attempt_only(&pool, &attempts).await.unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);

    server.start_again();
    // Still open until the open duration has passed, even though the server is back.
    attempts.store(0, Ordering::SeqCst);
    assert!(matches!(
        fail_fast(&pool, &attempts).await,
        Err(RepoError::Open(_))
    ));
    assert_eq!(attempts.load(Ordering::SeqCst), 0);

    tokio::time::sleep(OPEN_FOR).await;
    assert_eq!(PRIMARY.state(), BreakerState::HalfOpen);
    assert_eq!(fail_fast(&pool, &attempts).await.unwrap(), 1, "the probe");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(PRIMARY.state(), BreakerState::Closed);
    assert_eq!(first_attempt_only(&pool, &attempts).await.unwrap(), 1);
}
