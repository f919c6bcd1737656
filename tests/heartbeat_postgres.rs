//! The heartbeat against a real PostgreSQL restarted while the application is idle: with
//! `test_before_acquire(false)` (no ping per acquire), the pool's idle connections are dead
//! after the restart. The heartbeat notices the new server and drains them, so the first request
//! after the restart succeeds on its first attempt; without it, that request meets a dead
//! connection and needs a retry. And a retry sleeping through an outage is woken when the
//! heartbeat sees the database accept again.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use db_retry::{db_retry, FailoverDrain, Heartbeat};
use db_retry_test_kit::pg::PgServer;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

#[db_retry(max = 3, base = 10ms, budget = none)]
async fn read(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

async fn idle_pool(server: &PgServer, drain: &FailoverDrain) -> PgPool {
    let options = PgPoolOptions::new()
        .max_connections(3)
        .idle_timeout(None)
        .test_before_acquire(false);
    let pool = drain.install(options).connect_lazy(&server.url()).unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.unwrap());
    }
    drop(held);
    for _ in 0..200 {
        if pool.num_idle() == 3 {
            return pool;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the pool never held 3 idle connections");
}

/// Attempts the first request after a restart took, with or without a heartbeat.
async fn first_request_after_restart(with_heartbeat: bool) -> u32 {
    let server = PgServer::start();
    let drain = FailoverDrain::new();
    let pool = idle_pool(&server, &drain).await;
    let heartbeat =
        with_heartbeat.then(|| Heartbeat::spawn(&pool, &drain, Duration::from_millis(50)));
    // Its first look at the server, before the restart.
    if let Some(heartbeat) = &heartbeat {
        wait_for(|| heartbeat.health().is_some_and(|health| health.reachable)).await;
    }

    server.stop_fast();
    server.start_again();
    if let Some(heartbeat) = &heartbeat {
        // The heartbeat's next pings meet the new server.
        let waited = Instant::now();
        while drain.drained_at().is_none() {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "the heartbeat never noticed the restart: {:?}",
                heartbeat.health()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(heartbeat.health().is_some_and(|health| health.reachable));
    } else {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let attempts = AtomicU32::new(0);
    read(&pool, &attempts).await.expect("the request succeeds");
    attempts.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_while_idle_the_first_request_needs_no_retry() {
    let with = first_request_after_restart(true).await;
    let without = first_request_after_restart(false).await;
    println!(
        "first request after the restart: {with} attempt(s) with the heartbeat, {without} without"
    );
    assert_eq!(with, 1, "the heartbeat drained the dead connections first");
    assert!(without > 1, "without it the dead connection shows");
}

/// A long fixed backoff: without a wake-up, the retry would wait the whole of it.
#[db_retry(max = 3, backoff = fixed, base = 20s, cap = 20s, jitter = none, budget = none)]
async fn patient_read(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_sleeping_through_an_outage_is_woken_when_the_database_is_back() {
    let server = PgServer::start();
    let drain = FailoverDrain::new();
    let pool = drain
        .install(
            PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_millis(300)),
        )
        .connect_lazy(&server.url())
        .unwrap();
    let heartbeat = Heartbeat::spawn(&pool, &drain, Duration::from_millis(50));
    wait_for(|| heartbeat.health().is_some_and(|health| health.reachable)).await;

    server.stop_fast();
    let call = tokio::spawn({
        let pool = pool.clone();
        async move { patient_read(&pool).await }
    });
    // The first attempt fails, and the retry goes to sleep for 20 s; the heartbeat sees the
    // outage.
    wait_for(|| heartbeat.health().is_some_and(|health| !health.reachable)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished());
    server.start_again();
    let accepting = Instant::now();
    let value = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("woken long before its 20 s backoff ended")
        .unwrap()
        .expect("the retry succeeds");
    let recovered_in = accepting.elapsed();
    println!("accepting again → the sleeping retry's success: {recovered_in:?}");
    assert_eq!(value, 1);
    assert!(recovered_in < Duration::from_secs(2), "{recovered_in:?}");
}

/// Polls `condition` every 10 ms for up to 10 s.
async fn wait_for(condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_stops_when_the_pool_closes() {
    let server = PgServer::start();
    let drain = FailoverDrain::new();
    let pool = drain
        .install(PgPoolOptions::new().max_connections(1))
        .connect_lazy(&server.url())
        .unwrap();
    let heartbeat = Heartbeat::spawn(&pool, &drain, Duration::from_millis(20));
    wait_for(|| heartbeat.health().is_some()).await;
    pool.close().await;
    // Once stopped, it checks no more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = heartbeat.health().and_then(|health| health.checked_at);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        heartbeat.health().and_then(|health| health.checked_at),
        last
    );
    // And its own connection is gone: only the admin session counts.
    let mut admin: sqlx::PgConnection = server.admin().await;
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(sessions, 1);
}
