//! `attempt_timeout`: an attempt that runs too long is cancelled and counts as a lost connection.
//! On tokio's paused clock the bounds are exact; through the fault proxy, a blackholed server is
//! given up on within the timeouts plus the backoff, with the connection it held closed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db_retry::{db_retry, AttemptTimedOut, Classify, ErrorClass};
use db_retry_test_kit::pg::PgServer;
use db_retry_test_kit::proxy::FaultProxy;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgConnection;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Never answers, like a query to a server that stopped answering.
#[db_retry(attempt_timeout = 1s, max = 3, backoff = fixed, base = 100ms, jitter = none)]
async fn hangs(attempts: &AtomicU32) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_cancelled_at_its_timeout() {
    let attempts = AtomicU32::new(0);
    let start = Instant::now();

    let error = hangs(&attempts).await.unwrap_err();

    // Four attempts of 1 s and three delays of 100 ms.
    assert_eq!(start.elapsed(), ms(4300));
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert_eq!(error.classify(), ErrorClass::ConnectionLost, "{error}");
    assert!(
        matches!(&error, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
        "{error:?}"
    );
    assert!(error.to_string().contains("attempt_timeout"), "{error}");
}

/// Answers after `delays[attempt]`.
#[db_retry(attempt_timeout = 1s, max = 3, backoff = fixed, base = 100ms, jitter = none)]
async fn slow_then_fast(attempts: &AtomicU32) -> Result<u32, sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    let delay = if attempt == 0 { ms(5000) } else { ms(200) };
    tokio::time::sleep(delay).await;
    Ok(attempt)
}

#[tokio::test(start_paused = true)]
async fn an_attempt_within_its_timeout_returns_normally() {
    let attempts = AtomicU32::new(0);
    let start = Instant::now();

    let value = slow_then_fast(&attempts).await.unwrap();

    assert_eq!(value, 1, "the second attempt answered");
    assert_eq!(start.elapsed(), ms(1000 + 100 + 200));
}

/// With a deadline too: each attempt gets the smaller of its timeout and the time left.
#[db_retry(
    attempt_timeout = 1s,
    deadline = 2500ms,
    max = 10,
    backoff = fixed,
    base = 100ms,
    jitter = none
)]
async fn hangs_under_deadline(attempts: &AtomicU32) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_last_attempt_gets_only_the_time_left_before_the_deadline() {
    let attempts = AtomicU32::new(0);
    let start = Instant::now();

    hangs_under_deadline(&attempts).await.unwrap_err();

    // 0–1 s, 1.1–2.1 s, then 2.2 s with 300 ms left: cancelled at 2.5 s, the deadline.
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), ms(2500));
}

#[derive(Debug, thiserror::Error)]
enum RepoError {
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

/// An error type that only converts from `sqlx::Error`: the timeout arrives through it.
#[db_retry(attempt_timeout = 50ms, max = 1, base = 1ms)]
async fn hangs_in_repository() -> Result<(), RepoError> {
    std::future::pending::<()>().await;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum OwnError {
    #[error(transparent)]
    TimedOut(#[from] AttemptTimedOut),
}

/// An error type with a variant of its own for it.
#[db_retry(attempt_timeout = 50ms, max = 1, base = 1ms)]
async fn hangs_with_own_error() -> Result<(), OwnError> {
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_timeout_arrives_in_the_functions_own_error_type() {
    let error = hangs_in_repository().await.unwrap_err();
    assert!(
        matches!(&error, RepoError::Db(sqlx::Error::Io(io)) if io.kind() == std::io::ErrorKind::TimedOut)
    );
    assert_eq!(error.classify(), ErrorClass::ConnectionLost);

    let OwnError::TimedOut(timed_out) = hangs_with_own_error().await.unwrap_err();
    assert_eq!(timed_out.limit(), ms(50));
}

/// A read on a connection of its own, through the proxy.
#[db_retry(attempt_timeout = 1s, max = 3, base = 100ms, cap = 400ms)]
async fn read(
    #[acquire] conn: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await
}

// The real path: the network swallows everything, on open and new connections alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_server_is_given_up_on_within_the_timeouts_and_the_backoff() {
    let server = PgServer::start();
    let proxy = FaultProxy::start(server.addr()).await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&server.url_via(proxy.addr()))
        .await
        .unwrap();
    // Warm: the first attempt finds an open connection, which then stops answering.
    read(&pool, &AtomicU32::new(0)).await.unwrap();
    proxy.blackhole();
    let attempts = AtomicU32::new(0);
    let start = std::time::Instant::now();

    let error = read(&pool, &attempts).await.unwrap_err();

    let elapsed = start.elapsed();
    println!(
        "attempt_timeout_blackhole: attempts={} elapsed={elapsed:?}",
        attempts.load(Ordering::SeqCst)
    );
    // The body runs at most once: sqlx pings an idle connection before handing it out, and
    // that ping, like every new connect, hangs in the blackhole until the timeout.
    assert!(attempts.load(Ordering::SeqCst) <= 1);
    assert_eq!(error.classify(), ErrorClass::ConnectionLost, "{error}");
    // Four attempts of at most 1 s, three delays of at most 400 ms (the cap), and the close of
    // each cancelled attempt's connection.
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(4000 + 3 * 400 + 500),
        "{elapsed:?}"
    );
}
