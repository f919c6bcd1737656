// Included by `tests/faults_postgres.rs` once per sqlx version, with `sqlx` bound to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_retry::{db_retry, Classify, ErrorClass};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use crate::support::pg::PgServer;
use crate::support::proxy::FaultProxy;

fn summary(scenario: &str, calls: u32, retries: u32, failures: u32, elapsed: Duration) {
    println!(
        "{scenario}: calls={calls} retries={retries} failures={failures} elapsed={:.2}s",
        elapsed.as_secs_f64()
    );
}

/// Runs a blocking harness call (stop, start) off the runtime's worker threads.
async fn blocking<F: FnOnce() + Send + 'static>(f: F) {
    tokio::task::spawn_blocking(f).await.expect("harness call");
}

// Generous retries: on a starved machine the side task kills backends faster than the readers
// can use them, and a call may meet several dead connections in a row.
#[db_retry(max = 30, base = 1ms, cap = 50ms, deadline = 10s)]
async fn read_item(pool: &PgPool, id: i32, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query_scalar("SELECT $1::int4 + 1")
        .bind(id)
        .fetch_one(pool)
        .await
}

// 1. Backends terminated mid-load (57P01).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_under_load_lose_no_calls() {
    const TASKS: u32 = 8;
    const READS: u32 = 500;
    let server = Arc::new(PgServer::start());
    let pool: PgPool = server.pool(8).await;
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let outcome = server
        .calls_while_killing(Duration::from_millis(3), Some(1), TASKS, READS, move |n| {
            let (pool, attempts) = (pool.clone(), counted.clone());
            async move {
                let id = n as i32;
                let value = read_item(&pool, id, &attempts)
                    .await
                    .map_err(|error| format!("read failed: {error}"))?;
                assert_eq!(value, id + 1);
                Ok(())
            }
        })
        .await;
    let (failures, killed) = (outcome.failures.len() as u32, outcome.killed);

    let retries = attempts.load(Ordering::Relaxed) - outcome.calls;
    summary(
        "terminated_backends",
        outcome.calls,
        retries,
        failures,
        outcome.elapsed,
    );
    println!("terminated_backends: backends terminated={killed}");
    assert_eq!(failures, 0, "no call may fail: {:?}", outcome.failures);
    assert!(killed > 0, "the side task terminated backends");
    assert!(
        retries > 0,
        "terminations hit running calls and were retried"
    );
}

#[db_retry(max = 100, base = 20ms, cap = 200ms, deadline = 10s, budget = none)]
async fn read_with_deadline(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

// 2. Server stopped (fast) and started again 1.5 s later, during load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_restart_during_load_loses_no_calls() {
    const TASKS: u32 = 4;
    let server = Arc::new(PgServer::start());
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(500))
        .connect(&server.url())
        .await
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let down_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let back_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let first_success_after: Arc<Mutex<Option<Instant>>> = Arc::default();
    let started = Instant::now();

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (pool, attempts, stop) = (pool.clone(), attempts.clone(), stop.clone());
        let (down_at, first) = (down_at.clone(), first_success_after.clone());
        tasks.push(tokio::spawn(async move {
            let (mut calls, mut failures) = (0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                calls += 1;
                match read_with_deadline(&pool, &attempts).await {
                    Ok(_) => {
                        let now = Instant::now();
                        if down_at.lock().unwrap().is_some_and(|down| now >= down) {
                            first.lock().unwrap().get_or_insert(now);
                        }
                    }
                    Err(error) => {
                        eprintln!("call failed: {error}");
                        failures += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (calls, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocking({
        let server = server.clone();
        move || server.stop_fast()
    })
    .await;
    *down_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    blocking({
        let server = server.clone();
        move || server.start_again()
    })
    .await;
    *back_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut calls, mut failures) = (0, 0);
    for task in tasks {
        let (c, f) = task.await.unwrap();
        calls += c;
        failures += f;
    }

    let back = back_at.lock().unwrap().expect("server came back");
    let first = first_success_after
        .lock()
        .unwrap()
        .expect("a call succeeded after the restart");
    let retries = attempts.load(Ordering::Relaxed) - calls;
    summary("fast_restart", calls, retries, failures, started.elapsed());
    // The harness marks "accepting" when its own readiness probe succeeds, so a retrying call
    // can beat it: a negative figure means the calls saw the server first.
    let recovery_ms = if first >= back {
        (first - back).as_secs_f64() * 1000.0
    } else {
        -((back - first).as_secs_f64() * 1000.0)
    };
    println!("fast_restart: accepting -> first success {recovery_ms:.0} ms");
    assert_eq!(failures, 0, "every call with deadline = 10s succeeds");
    assert!(retries > 0, "calls during the outage were retried");
    // The cap is 200 ms: once the server accepts, a waiting call is at most one capped delay
    // (plus a failed acquire of at most 500 ms) away from trying again.
    assert!(
        recovery_ms < 800.0,
        "recovered {recovery_ms:.0} ms after the server accepted"
    );
}

#[db_retry(max = 100, base = 50ms, cap = 200ms, jitter = none, deadline = 2s, budget = none)]
async fn connect_and_ping(
    options: &PgConnectOptions,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    let mut conn = PgConnection::connect_with(options).await?;
    conn.ping().await
}

// 3. Server down and never back: the deadline ends the call with the last transient error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_for_good_fails_at_the_deadline() {
    let server = PgServer::start();
    let options: PgConnectOptions = server.url().parse().unwrap();
    server.stop_immediate();
    let attempts = AtomicU32::new(0);
    let started = Instant::now();

    let error = connect_and_ping(&options, &attempts)
        .await
        .expect_err("nothing to connect to");

    let elapsed = started.elapsed();
    let calls = attempts.load(Ordering::Relaxed);
    summary("server_down_for_good", 1, calls - 1, 1, elapsed);
    assert_eq!(error.classify(), ErrorClass::Connect, "last error: {error}");
    // The schedule is 50, 100, 200, 200, … ms: the call ends within one step of the deadline.
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed <= Duration::from_millis(2200),
        "ended after {elapsed:?}, deadline 2 s ± one 200 ms step"
    );
    assert!(
        calls >= 10,
        "kept trying until the deadline: {calls} attempts"
    );
}

// 4. max_connections exhausted by held connections (53300), freed a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_server_is_retried_until_slots_free() {
    let server = PgServer::builder().max_connections(3).start();
    let mut held: Vec<PgConnection> = Vec::new();
    for _ in 0..3 {
        held.push(server.admin().await);
    }
    let options: PgConnectOptions = server.url().parse().unwrap();
    let direct = PgConnection::connect_with(&options)
        .await
        .expect_err("the server is full");
    let code = direct.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("53300"), "{direct}");
    assert_eq!(direct.classify(), ErrorClass::Connect);

    let attempts = AtomicU32::new(0);
    let started = Instant::now();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        for conn in held {
            let _ = conn.close().await;
        }
    });
    let outcome = connect_and_ping(&options, &attempts).await;
    release.await.unwrap();

    let calls = attempts.load(Ordering::Relaxed);
    summary("exhausted", 1, calls - 1, 0, started.elapsed());
    outcome.expect("succeeds once slots free");
    assert!(calls > 1, "53300 was retried ({calls} attempts)");
}

// 5. Startup race: the app starts before the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_started_before_the_server_waits_for_it() {
    let server = Arc::new(PgServer::start());
    server.stop_fast();
    let options: PgConnectOptions = server.url().parse().unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let started = Instant::now();

    let call = tokio::spawn({
        let (options, attempts) = (options.clone(), attempts.clone());
        async move { connect_and_ping(&options, &attempts).await }
    });
    let ready = tokio::spawn({
        let options = options.clone();
        async move { db_retry::wait_until_ready(&options, Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    blocking({
        let server = server.clone();
        move || server.start_again()
    })
    .await;

    ready
        .await
        .unwrap()
        .expect("wait_until_ready returns once the server answers");
    call.await
        .unwrap()
        .expect("the annotated startup call succeeds");
    let calls = attempts.load(Ordering::Relaxed);
    summary("startup_race", 1, calls - 1, 0, started.elapsed());
    assert!(
        calls > 1,
        "refused connections were retried ({calls} attempts)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_ready_gives_up_at_once_on_a_bad_database_name() {
    let server = PgServer::start();
    let options: PgConnectOptions = format!("{}_does_not_exist", server.url()).parse().unwrap();
    let started = Instant::now();
    let error = db_retry::wait_until_ready(&options, Duration::from_secs(10))
        .await
        .expect_err("no such database");
    let code = error.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("3D000"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "permanent: not retried"
    );
}

static CONFLICT_CODES: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn record_conflict(error: &sqlx::Error) -> ErrorClass {
    if let Some(code) = error.as_database_error().and_then(|e| e.code()) {
        let mut codes = CONFLICT_CODES.lock().unwrap();
        *codes
            .get_or_insert_with(HashMap::new)
            .entry(code.into_owned())
            .or_default() += 1;
    }
    error.classify()
}

#[db_retry(on = record_conflict, max = 100, base = 1ms, cap = 20ms, budget = none)]
async fn move_money(
    #[transaction] tx: &mut PgConnection,
    id: i64,
    from: i64,
    to: i64,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .execute(&mut *tx)
        .await?;
    // Debit first, credit second: transfers in opposite directions lock in opposite orders and
    // deadlock; the read-then-write pattern makes SERIALIZABLE fail the rest.
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = $1")
        .bind(from)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = $1 WHERE id = $2")
        .bind(balance - 1)
        .bind(from)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_sleep(0.002)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + 1 WHERE id = $1")
        .bind(to)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO ledger (id) VALUES ($1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

// 6. SERIALIZABLE conflicts (40001) and deadlocks (40P01) in #[transaction] functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_transfers_commit_exactly_once() {
    const TRANSFERS: i64 = 150;
    const WORKERS: i64 = 10;
    let server = PgServer::builder()
        .setting("deadlock_timeout", "20ms")
        .start();
    let pool: PgPool = server.pool(WORKERS as u32).await;
    sqlx::raw_sql(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
         CREATE TABLE ledger (id bigint PRIMARY KEY);
         INSERT INTO accounts VALUES (0, 1000), (1, 1000), (2, 1000);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let started = Instant::now();

    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let (pool, attempts) = (pool.clone(), attempts.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0u32;
            for id in (worker..TRANSFERS).step_by(WORKERS as usize) {
                let (from, to) = if id % 2 == 0 {
                    (id % 3, (id + 1) % 3)
                } else {
                    ((id + 1) % 3, id % 3)
                };
                if let Err(error) = move_money(&pool, id, from, to, &attempts).await {
                    eprintln!("transfer {id} failed: {error}");
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

    let (ledger, total): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ledger), (SELECT sum(balance)::bigint FROM accounts)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let codes = CONFLICT_CODES.lock().unwrap().clone().unwrap_or_default();
    let retries = attempts.load(Ordering::Relaxed) - TRANSFERS as u32;
    summary(
        "conflicting_transfers",
        TRANSFERS as u32,
        retries,
        failures,
        started.elapsed(),
    );
    println!("conflicting_transfers: sqlstates={codes:?}");
    assert_eq!(failures, 0);
    assert_eq!(ledger, TRANSFERS, "every transfer committed exactly once");
    assert_eq!(total, 3000, "the total balance is invariant");
    assert!(
        codes.get("40001").copied().unwrap_or(0) > 0,
        "serialization failures happened"
    );
    assert!(
        codes.get("40P01").copied().unwrap_or(0) > 0,
        "deadlocks happened"
    );
    assert_eq!(
        retries as u64,
        codes.values().map(|&n| n as u64).sum::<u64>(),
        "every conflict was retried, and nothing else was"
    );
}

#[db_retry(max = 5, base = 1ms)]
async fn run_sql(
    pool: &PgPool,
    sql: &'static str,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query(sql).execute(pool).await?;
    Ok(())
}

#[db_retry(max = 5, base = 1ms)]
async fn bind_too_few(pool: &PgPool, attempts: &AtomicU32) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query("SELECT $1::int + $2::int")
        .bind(1)
        .execute(pool)
        .await?;
    Ok(())
}

#[db_retry(max = 5, base = 1ms)]
async fn fetch_missing(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query_scalar("SELECT id FROM things WHERE id = -1")
        .fetch_one(pool)
        .await
}

// 7. Permanent errors run exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_run_exactly_once() {
    let server = PgServer::start();
    let pool: PgPool = server.pool(2).await;
    sqlx::raw_sql(
        "CREATE TABLE things (id int PRIMARY KEY, qty int CHECK (qty >= 0));
         INSERT INTO things VALUES (1, 1);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let cases = [
        (
            "unique violation",
            "INSERT INTO things VALUES (1, 1)",
            "23505",
        ),
        (
            "check constraint",
            "INSERT INTO things VALUES (2, -1)",
            "23514",
        ),
        ("syntax error", "SELEC 1", "42601"),
        ("undefined table", "SELECT * FROM nowhere", "42P01"),
    ];
    let started = Instant::now();
    for (what, sql, expected) in cases {
        let attempts = AtomicU32::new(0);
        let error = run_sql(&pool, sql, &attempts).await.expect_err(what);
        let code = error.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some(expected), "{what}: {error}");
        assert_eq!(
            attempts.load(Ordering::Relaxed),
            1,
            "{what} must run exactly once"
        );
    }
    // PostgreSQL reports a bind message with too few parameters as 08P01, the code it also uses
    // for broken protocol streams: a mistake in the statement, so it must not be retried.
    let attempts = AtomicU32::new(0);
    let error = bind_too_few(&pool, &attempts)
        .await
        .expect_err("one parameter missing");
    let code = error.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("08P01"), "{error}");
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        1,
        "a bind mistake runs exactly once"
    );

    let attempts = AtomicU32::new(0);
    let error = fetch_missing(&pool, &attempts).await.expect_err("no row");
    assert!(matches!(error, sqlx::Error::RowNotFound), "{error}");
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        1,
        "RowNotFound must run exactly once"
    );
    summary("permanent_errors", 6, 0, 6, started.elapsed());
}

#[db_retry(idempotent = false, max = 3, base = 1ms)]
async fn append_event(
    #[acquire] conn: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query("INSERT INTO events (kind) VALUES ('signup')")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[db_retry(idempotent = true, max = 3, base = 1ms)]
async fn upsert_setting(pool: &PgPool, key: &str, attempts: &AtomicU32) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, 'dark')
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

/// A pool that reaches the server through `proxy`, with one connection that is not pinged
/// before use (so a fault hits the statement, not the pool's health check).
async fn proxied_pool(server: &PgServer, proxy: &FaultProxy) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_millis(300))
        .connect(&server.url_via(proxy.addr()))
        .await
        .expect("pool through the proxy")
}

/// With replies delayed by 300 ms (set before the call starts), resets every connection 150 ms
/// into the statement: the server has run it, the client never hears back.
async fn reset_mid_reply(proxy: &FaultProxy) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.reset_all().await;
    proxy.pass();
}

// 8a. A reset mid-result on a non-idempotent INSERT is not retried, and says it may have run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_insert_is_not_retried_when_not_idempotent() {
    let server = PgServer::start();
    server
        .exec_admin("CREATE TABLE events (id serial PRIMARY KEY, kind text NOT NULL)")
        .await;
    let proxy = FaultProxy::start(server.addr()).await;
    let pool = proxied_pool(&server, &proxy).await;
    // Prepare the statement first: with it cached, the faulted call sends Bind/Execute at once
    // and the server runs it before the reply is lost.
    append_event(&pool, &AtomicU32::new(0)).await.unwrap();
    assert_eq!(
        checked_out(&pool).await,
        0,
        "warm-up connection back in the pool"
    );
    let attempts = AtomicU32::new(0);
    proxy.latency(Duration::from_millis(300));

    let started = Instant::now();
    let (outcome, ()) = tokio::join!(append_event(&pool, &attempts), reset_mid_reply(&proxy));
    let elapsed = started.elapsed();

    let error = outcome.expect_err(&format!(
        "the reply was lost; attempts {}",
        attempts.load(Ordering::Relaxed)
    ));
    let mut admin: PgConnection = server.admin().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    summary(
        "reset_mid_insert",
        1,
        attempts.load(Ordering::Relaxed) - 1,
        1,
        elapsed,
    );
    assert_eq!(attempts.load(Ordering::Relaxed), 1, "not retried");
    assert_eq!(error.classify(), ErrorClass::ConnectionLost, "{error}");
    assert!(
        error.classify().may_have_run(),
        "the error says the statement may have run"
    );
    assert_eq!(
        rows, 2,
        "and it did run: a retry would have inserted it twice"
    );
}

// 8b. The same fault on an idempotent upsert is retried, and the row exists once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_upsert_is_retried_when_idempotent() {
    let server = PgServer::start();
    server
        .exec_admin("CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL)")
        .await;
    let proxy = FaultProxy::start(server.addr()).await;
    let pool = proxied_pool(&server, &proxy).await;
    upsert_setting(&pool, "warm-up", &AtomicU32::new(0))
        .await
        .unwrap();
    assert_eq!(
        checked_out(&pool).await,
        0,
        "warm-up connection back in the pool"
    );
    let attempts = AtomicU32::new(0);
    proxy.latency(Duration::from_millis(300));

    let started = Instant::now();
    let (outcome, ()) = tokio::join!(
        upsert_setting(&pool, "theme", &attempts),
        reset_mid_reply(&proxy)
    );
    let elapsed = started.elapsed();

    outcome.expect("retried on a new connection");
    let mut admin: PgConnection = server.admin().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM settings WHERE key = 'theme'")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    summary(
        "reset_mid_upsert",
        1,
        attempts.load(Ordering::Relaxed) - 1,
        0,
        elapsed,
    );
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        2,
        "one lost reply, one retry"
    );
    assert_eq!(rows, 1, "the row exists once");
    assert!(
        proxy.stats().accepted >= 2,
        "the retry used a new connection"
    );
}

#[db_retry(max = 100, base = 50ms, cap = 200ms, jitter = none, deadline = 2s, budget = none)]
async fn read_through(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

// 8c. Blackhole: the network swallows everything; the deadline bounds the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_is_bounded_by_the_deadline() {
    let server = PgServer::start();
    let proxy = FaultProxy::start(server.addr()).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy(&server.url_via(proxy.addr()))
        .unwrap();
    proxy.blackhole();
    let attempts = AtomicU32::new(0);
    let started = Instant::now();

    let error = read_through(&pool, &attempts)
        .await
        .expect_err("nothing answers");

    let elapsed = started.elapsed();
    summary(
        "blackhole",
        1,
        attempts.load(Ordering::Relaxed) - 1,
        1,
        elapsed,
    );
    assert!(matches!(error, sqlx::Error::PoolTimedOut), "{error}");
    assert!(
        elapsed < Duration::from_millis(2600),
        "deadline 2 s plus at most one 300 ms acquire and one step: took {elapsed:?}"
    );
    assert!(attempts.load(Ordering::Relaxed) > 1);
}

/// Connections checked out of `pool`, once its background returns have settled.
async fn checked_out(pool: &PgPool) -> u32 {
    // The pool returns connections from a background task (which pings them first); give it a
    // moment, or a fault meant for a statement would hit that ping instead.
    for _ in 0..100 {
        if pool.size() as usize == pool.num_idle() {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pool.size() - pool.num_idle() as u32
}

async fn open_transactions(server: &PgServer) -> i64 {
    let mut admin: PgConnection = server.admin().await;
    let mut open = 0;
    for _ in 0..100 {
        open = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' \
             OR (backend_xid IS NOT NULL AND pid <> pg_backend_pid())",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    open
}

#[db_retry(max = 3)]
async fn slow_update(#[transaction] tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[db_retry(max = 3, base = 30s, cap = 30s)]
async fn always_conflicts(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
        .execute(pool)
        .await?;
    Ok(())
}

// 9. Cancellation mid-transaction and mid-backoff leaks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_leave_no_connection_or_transaction_behind() {
    let server = PgServer::start();
    let pool: PgPool = server.pool(4).await;
    sqlx::raw_sql(
        "CREATE TABLE counters (id int PRIMARY KEY, n int); INSERT INTO counters VALUES (1, 0);",
    )
    .execute(&pool)
    .await
    .unwrap();

    let started = Instant::now();
    let mid_transaction =
        tokio::time::timeout(Duration::from_millis(300), slow_update(&pool)).await;
    assert!(
        mid_transaction.is_err(),
        "dropped while the transaction was open"
    );
    assert_eq!(
        checked_out(&pool).await,
        0,
        "no connection stays checked out"
    );
    assert_eq!(
        open_transactions(&server).await,
        0,
        "no transaction stays open"
    );
    let n: i32 = sqlx::query_scalar("SELECT n FROM counters WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "the cancelled transaction was rolled back");

    let mid_backoff =
        tokio::time::timeout(Duration::from_millis(300), always_conflicts(&pool)).await;
    assert!(mid_backoff.is_err(), "dropped during the 30 s backoff");
    assert_eq!(
        checked_out(&pool).await,
        0,
        "no connection stays checked out"
    );
    assert_eq!(open_transactions(&server).await, 0);
    summary("cancellation", 2, 0, 0, started.elapsed());
}

#[db_retry(idempotent = false, max = 20, base = 10ms, cap = 50ms)]
async fn insert_on_fresh_connection(
    #[acquire] conn: &mut PgConnection,
    bodies: &AtomicU32,
) -> Result<(), sqlx::Error> {
    bodies.fetch_add(1, Ordering::Relaxed);
    sqlx::query("INSERT INTO events (kind) VALUES ('acquired')")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

// 8d. With #[acquire], a connection broken while it is being set up is retried even when the
// function is not idempotent: nothing was sent, so nothing can have run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_connect_is_retried_even_when_not_idempotent() {
    let server = PgServer::start();
    server
        .exec_admin("CREATE TABLE events (id serial PRIMARY KEY, kind text NOT NULL)")
        .await;
    let proxy = FaultProxy::start(server.addr()).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&server.url_via(proxy.addr()))
        .unwrap();
    // Every new connection is reset during its startup handshake, until the proxy heals.
    proxy.reset_after_bytes(8);
    let bodies = AtomicU32::new(0);
    let started = Instant::now();

    let heal = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.pass();
    };
    let (outcome, ()) = tokio::join!(insert_on_fresh_connection(&pool, &bodies), heal);

    let resets = proxy.stats().resets;
    // Failed connects never reach the body, so they are counted at the proxy, not as retries.
    println!(
        "broken_connect: calls=1 connect_resets={resets} failures=0 elapsed={:.2}s",
        started.elapsed().as_secs_f64()
    );
    outcome.expect("retried once the link heals");
    assert!(resets > 0, "connection setup really failed");
    assert_eq!(
        bodies.load(Ordering::Relaxed),
        1,
        "the body ran once, on a good connection"
    );
    let mut admin: PgConnection = server.admin().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}
