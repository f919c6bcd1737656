//! The stale-node trap, against real servers: a pool whose idle connections lead to a node that
//! is read-only (a standby) or is no longer the one the address leads to. With a
//! `FailoverDrain` on the pool, a confirmed signal closes every older connection; without it,
//! writes keep landing on the stale ones.

use std::time::Duration;

use db_retry::{db_retry, FailoverDrain};
use db_retry_test_kit::pg::PgServer;
use db_retry_test_kit::proxy::FaultProxy;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// A plain pool function: db-retry never holds its connection, so only the pool can drop a
/// stale one. `budget = none`: the test counts what `max` alone allows.
#[db_retry(max = 3, base = 1ms, budget = none)]
async fn write(pool: &PgPool, n: i32) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO notes (n) VALUES ($1)")
        .bind(n)
        .execute(pool)
        .await?;
    Ok(())
}

/// Fills the pool with `n` idle connections.
async fn warm(pool: &PgPool, n: usize) {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.acquire().await.unwrap());
    }
    for conn in held.iter_mut() {
        sqlx::query("SELECT 1").execute(&mut **conn).await.unwrap();
    }
    drop(held);
    // Connections go back to the pool on a task of sqlx's own.
    for _ in 0..200 {
        if pool.num_idle() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{} idle connections, not {n}", pool.num_idle());
}

/// How the drain is put on the pool.
#[derive(Clone, Copy, PartialEq)]
enum Drained {
    No,
    Installed,
    /// Called from callbacks of the application's own, which count their calls.
    FromOwnCallbacks,
}

static OWN_CALLBACKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

async fn pool_through(
    proxy: &FaultProxy,
    server: &PgServer,
    drain: &FailoverDrain,
    drained: Drained,
) -> PgPool {
    let options = PgPoolOptions::new()
        .max_connections(10)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(2));
    let options = match drained {
        Drained::No => options,
        Drained::Installed => drain.install(options),
        Drained::FromOwnCallbacks => {
            let (before, after) = (drain.clone(), drain.clone());
            options
                .before_acquire(move |conn, meta| {
                    let drain = before.clone();
                    Box::pin(async move {
                        OWN_CALLBACKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        drain.keeps(conn, &meta).await
                    })
                })
                .after_connect(move |conn, _meta| {
                    let drain = after.clone();
                    Box::pin(async move { drain.connected(conn).await })
                })
        }
    };
    options.connect_lazy(&server.url_via(proxy.addr())).unwrap()
}
/// 20 writes after the address moved from the standby to the primary; returns how many failed.
async fn writes_after_switch(drained: Drained) -> usize {
    let primary = PgServer::start();
    primary
        .exec_admin("CREATE TABLE notes (n int NOT NULL)")
        .await;
    let standby = PgServer::builder().start_standby_of(&primary);
    let proxy = FaultProxy::start(standby.addr()).await;
    let drain = FailoverDrain::new();
    let pool = pool_through(&proxy, &primary, &drain, drained).await;
    warm(&pool, 10).await;

    proxy.retarget(primary.addr());
    let mut failed = 0;
    for n in 0..20 {
        if let Err(error) = write(&pool, n).await {
            failed += 1;
            assert!(
                error.to_string().contains("read-only transaction"),
                "only the stale node's refusals: {error}"
            );
        }
    }
    let mut admin: sqlx::PgConnection = primary.admin().await;
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        written as usize,
        20 - failed,
        "every write that succeeded is on the primary"
    );
    if drained != Drained::No {
        assert!(drain.drained_at().is_some(), "the drain saw the failover");
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_pool_writes_to_the_new_primary_and_an_undrained_one_keeps_failing() {
    let with = writes_after_switch(Drained::Installed).await;
    let without = writes_after_switch(Drained::No).await;
    println!("20 writes after the switch: {with} failed with the drain, {without} without");
    assert_eq!(with, 0, "with the drain, no write may fail");
    assert!(
        without > 0,
        "without the drain the stale connections must show (this test would prove nothing)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_to_another_server_drains_the_older_ones() {
    let (first, second) = (PgServer::start(), PgServer::start());
    let proxy = FaultProxy::start(first.addr()).await;
    let drain = FailoverDrain::new();
    let pool = PgPoolOptions::new().max_connections(4).idle_timeout(None);
    let pool = drain
        .install(pool)
        .connect_lazy(&first.url_via(proxy.addr()))
        .unwrap();
    warm(&pool, 3).await;
    assert!(drain.drained_at().is_none());

    // The address now leads to another server; the three idle connections still lead to the
    // first. The fourth, new, connection reaches the second server: a confirmed change.
    proxy.retarget(second.addr());
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.unwrap());
    }
    drop(held);
    assert!(drain.drained_at().is_some(), "the new server was noticed");

    // From now on every statement runs on the second server.
    for _ in 0..8 {
        let port: String = sqlx::query_scalar("SELECT current_setting('port')")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(port, second.port().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_terminated_backend_does_not_drain_the_pool() {
    let server = PgServer::start();
    server
        .exec_admin("CREATE TABLE notes (n int NOT NULL)")
        .await;
    let proxy = FaultProxy::start(server.addr()).await;
    let drain = FailoverDrain::new();
    let pool = pool_through(&proxy, &server, &drain, Drained::Installed).await;
    warm(&pool, 3).await;
    let pid = {
        let mut conn = pool.acquire().await.unwrap();
        db_retry_test_kit::pg::backend_pid(&mut *conn).await
    };
    server.terminate_backend(pid).await;
    for n in 0..10 {
        write(&pool, n).await.expect("a lost connection is retried");
    }
    assert!(drain.drained_at().is_none(), "a 57P01 is no failover");
    assert!(
        pool.size() >= 2,
        "the other connections stayed: {}",
        pool.size()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_works_from_the_applications_own_callbacks() {
    let failed = writes_after_switch(Drained::FromOwnCallbacks).await;
    assert_eq!(failed, 0);
    assert!(
        OWN_CALLBACKS.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the application's callback ran"
    );
}
