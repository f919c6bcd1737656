// Included by `tests/sqlx_versions.rs` once per sqlx version, with `sqlx` bound to it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use db_retry::{classify_sqlx, db_retry, ErrorClass};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection as _;

use crate::support::pg::{backend_pid, PgServer};

/// Attempts and the class of every failed one, as the attribute's classifier saw them.
#[derive(Default)]
struct Seen {
    attempts: AtomicU32,
    classes: Mutex<Vec<ErrorClass>>,
}

impl Seen {
    fn attempt(&self) -> u32 {
        self.attempts.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn record<T>(&self, outcome: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let Err(error) = &outcome {
            self.classes.lock().unwrap().push(classify_sqlx(error));
        }
        outcome
    }

    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }

    fn classes(&self) -> Vec<ErrorClass> {
        self.classes.lock().unwrap().clone()
    }

    /// The call took two attempts: the first failed with an error of `class`, the retry worked.
    fn assert_retried_once(&self, class: ErrorClass) {
        assert_eq!(self.classes(), vec![class], "the first attempt's error is {class:?}");
        assert_eq!(self.attempts(), 2, "one failure, one retry");
    }
}

// --- 40001: write skew under SERIALIZABLE, in #[transaction] ----------------------------------

/// Two doctors on call; each transaction takes one off call if the other is still on. On the first
/// attempt a second transaction does the same for the other doctor and commits in between, so
/// this one must fail with 40001; the retry runs alone and commits.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn go_off_call(
    #[transaction] tx: &mut PgConnection,
    server: &PgServer,
    seen: &Seen,
) -> Result<(), sqlx::Error> {
    let attempt = seen.attempt();
    let outcome = async {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .execute(&mut *tx)
            .await?;
        let on_call: i64 = sqlx::query_scalar("SELECT count(*) FROM doctors WHERE on_call")
            .fetch_one(&mut *tx)
            .await?;
        if attempt == 1 {
            assert_eq!(on_call, 2, "the first attempt sees both doctors on call");
            let mut other = PgConnection::connect(&server.url()).await?;
            let mut skew = other.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                .execute(&mut *skew)
                .await?;
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM doctors WHERE on_call")
                .fetch_one(&mut *skew)
                .await?;
            sqlx::query("UPDATE doctors SET on_call = false WHERE id = 2")
                .execute(&mut *skew)
                .await?;
            skew.commit().await?;
            other.close().await?;
        }
        sqlx::query("UPDATE doctors SET on_call = false WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
    .await;
    seen.record(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failure_is_contention_and_retried_in_a_transaction() {
    let server = PgServer::start();
    server
        .exec_admin(
            "CREATE TABLE doctors (id int PRIMARY KEY, on_call bool NOT NULL);
             INSERT INTO doctors VALUES (1, true), (2, true);",
        )
        .await;
    let pool: PgPool = server.pool(2).await;
    let seen = Seen::default();

    let outcome = go_off_call(&pool, &server, &seen).await;

    // The other transaction committed first, so the server fails this one at its UPDATE.
    seen.assert_retried_once(ErrorClass::Contention);
    outcome.expect("the retry commits");
    let off: i64 = sqlx::query_scalar("SELECT count(*) FROM doctors WHERE NOT on_call")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(off, 2, "both updates committed, each once");
}

// --- 40P01: a real deadlock ------------------------------------------------------------------

/// On the first attempt, another session holds row 2 and will want row 1; this attempt takes row
/// 1 and then waits for row 2. With the shorter `deadlock_timeout`, this session is the one the
/// server picks to break the deadlock.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn cross_update(
    #[transaction] tx: &mut PgConnection,
    server: &PgServer,
    seen: &Seen,
) -> Result<(), sqlx::Error> {
    let attempt = seen.attempt();
    let outcome = async {
        sqlx::query("SET LOCAL deadlock_timeout = '20ms'")
            .execute(&mut *tx)
            .await?;
        let other = if attempt == 1 {
            let mut other = PgConnection::connect(&server.url()).await?;
            sqlx::query("SET deadlock_timeout = '10s'")
                .execute(&mut other)
                .await?;
            sqlx::query("BEGIN").execute(&mut other).await?;
            sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 2")
                .execute(&mut other)
                .await?;
            Some(other)
        } else {
            None
        };
        sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let waiter = other.map(|mut other| {
            tokio::spawn(async move {
                sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 1")
                    .execute(&mut other)
                    .await?;
                sqlx::query("COMMIT").execute(&mut other).await?;
                other.close().await
            })
        });
        // Give the other session time to queue behind row 1 before closing the cycle.
        if waiter.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let closing = sqlx::query("UPDATE counters SET n = n + 1 WHERE id = 2")
            .execute(&mut *tx)
            .await;
        if let Some(waiter) = waiter {
            // Our error ended our transaction's locks only once it is rolled back; the other
            // session can finish after that, so don't wait for it here.
            tokio::spawn(async move {
                let _ = waiter.await;
            });
        }
        closing.map(drop)
    }
    .await;
    seen.record(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_is_contention_and_retried_in_a_transaction() {
    let server = PgServer::start();
    server
        .exec_admin(
            "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO counters VALUES (1, 0), (2, 0);",
        )
        .await;
    let pool: PgPool = server.pool(2).await;
    let seen = Seen::default();

    let outcome = cross_update(&pool, &server, &seen).await;

    seen.assert_retried_once(ErrorClass::Contention);
    outcome.expect("the retry commits");
}

// --- 57P01: the attempt's backend terminated, in #[acquire] -----------------------------------

#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn read_after_terminate(
    #[acquire] conn: &mut PgConnection,
    server: &PgServer,
    seen: &Seen,
) -> Result<i32, sqlx::Error> {
    if seen.attempt() == 1 {
        let pid = backend_pid(conn).await;
        server.terminate_backend(pid).await;
    }
    let outcome = sqlx::query_scalar("SELECT 42").fetch_one(&mut *conn).await;
    if let Err(sqlx::Error::Database(db)) = &outcome {
        assert_eq!(db.code().as_deref(), Some("57P01"), "{db}");
    }
    seen.record(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_is_connection_lost_and_retried() {
    let server = PgServer::start();
    let pool: PgPool = server.pool(2).await;
    let seen = Seen::default();

    let answer = read_after_terminate(&pool, &server, &seen).await;

    seen.assert_retried_once(ErrorClass::ConnectionLost);
    assert_eq!(answer.expect("the retry runs on a fresh connection"), 42);
}

// --- 53300 from a bare connect -----------------------------------------------------------------

/// The first attempt finds the server full; later attempts free the slots first.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn connect_when_full(
    options: &PgConnectOptions,
    held: &tokio::sync::Mutex<Vec<::sqlx::postgres::PgConnection>>,
    seen: &Seen,
) -> Result<i32, sqlx::Error> {
    if seen.attempt() > 1 {
        for conn in held.lock().await.drain(..) {
            let _ = ::sqlx::Connection::close(conn).await;
        }
    }
    let outcome = async {
        let mut conn = PgConnection::connect_with(options).await?;
        let one = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
        let _ = conn.close().await;
        Ok(one)
    }
    .await;
    // The full server answers the startup with FATAL 53300, never anything vaguer.
    match &outcome {
        Err(sqlx::Error::Database(db)) => assert_eq!(db.code().as_deref(), Some("53300"), "{db}"),
        Err(other) => panic!("expected 53300 from the full server, got {other:?}"),
        Ok(_) => {}
    }
    seen.record(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_is_connect_and_retried() {
    let server = PgServer::builder().max_connections(3).start();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.admin().await);
    }
    let options: PgConnectOptions = server.url().parse().unwrap();
    let seen = Seen::default();

    let one = connect_when_full(&options, &tokio::sync::Mutex::new(held), &seen).await;

    seen.assert_retried_once(ErrorClass::Connect);
    assert_eq!(one.expect("the retry finds a free slot"), 1);
}

// --- PoolTimedOut ------------------------------------------------------------------------------

#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn select_from_busy_pool(
    pool: &PgPool,
    held: &tokio::sync::Mutex<Option<sqlx::pool::PoolConnection<sqlx::Postgres>>>,
    seen: &Seen,
) -> Result<i32, sqlx::Error> {
    if seen.attempt() > 1 {
        held.lock().await.take();
    }
    let outcome = sqlx::query_scalar("SELECT 1").fetch_one(pool).await;
    if let Err(error) = &outcome {
        assert!(matches!(error, sqlx::Error::PoolTimedOut), "{error}");
    }
    seen.record(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_timed_out_is_connect_and_retried() {
    let server = PgServer::start();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect(&server.url())
        .await
        .unwrap();
    let held = tokio::sync::Mutex::new(Some(pool.acquire().await.unwrap()));
    let seen = Seen::default();

    let one = select_from_busy_pool(&pool, &held, &seen).await;

    seen.assert_retried_once(ErrorClass::Connect);
    assert_eq!(one.expect("the retry gets the freed connection"), 1);
}

// --- connection refused ------------------------------------------------------------------------

/// The first attempt finds the server stopped; the second starts it again first.
#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn connect_while_down(
    options: &PgConnectOptions,
    server: &PgServer,
    seen: &Seen,
) -> Result<i32, sqlx::Error> {
    if seen.attempt() == 2 {
        tokio::task::block_in_place(|| server.start_again());
    }
    let outcome = async {
        let mut conn = PgConnection::connect_with(options).await?;
        sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await
    }
    .await;
    if let Err(error) = &outcome {
        assert!(
            matches!(error, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused),
            "{error}"
        );
    }
    seen.record(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_connect_and_retried() {
    let server = PgServer::start();
    server.stop_fast();
    let options: PgConnectOptions = server.url().parse().unwrap();
    let seen = Seen::default();

    let one = connect_while_down(&options, &server, &seen).await;

    seen.assert_retried_once(ErrorClass::Connect);
    assert_eq!(one.expect("the retry reaches the restarted server"), 1);
}

// --- 23505: a real unique violation runs once --------------------------------------------------

#[db_retry(max = 3, base = 1ms, jitter = none)]
async fn insert_user(pool: &PgPool, id: i32, seen: &Seen) -> Result<(), sqlx::Error> {
    seen.attempt();
    let outcome = sqlx::query("INSERT INTO users (id) VALUES ($1)")
        .bind(id)
        .execute(pool)
        .await
        .map(drop);
    seen.record(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violation_is_permanent_and_runs_once() {
    let server = PgServer::start();
    server
        .exec_admin("CREATE TABLE users (id int PRIMARY KEY); INSERT INTO users VALUES (1);")
        .await;
    let pool: PgPool = server.pool(2).await;
    let seen = Seen::default();

    let error = insert_user(&pool, 1, &seen)
        .await
        .expect_err("the row exists");

    let code = error.as_database_error().and_then(|db| db.code().map(|c| c.into_owned()));
    assert_eq!(code.as_deref(), Some("23505"), "{error}");
    assert_eq!(seen.classes(), vec![ErrorClass::Permanent]);
    assert_eq!(seen.attempts(), 1, "a permanent error is not retried");
}

// --- the helpers: wait_until_ready and health take this version's types -----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_ready_and_health_take_this_versions_types() {
    let server = PgServer::start();
    let options: PgConnectOptions = server.url().parse().unwrap();
    db_retry::wait_until_ready(&options, Duration::from_secs(5))
        .await
        .expect("the server is up");
    let pool: PgPool = server.pool(2).await;
    let health = db_retry::health(&pool, Duration::from_secs(1)).await;
    assert!(health.reachable, "{health:?}");

    server.stop_fast();
    let health = db_retry::health(&pool, Duration::from_millis(500)).await;
    assert!(!health.reachable, "stopped server reported reachable: {health:?}");
    let error = db_retry::wait_until_ready(&options, Duration::from_millis(300))
        .await
        .expect_err("the server is down");
    let error: &sqlx::Error = &error;
    assert_eq!(classify_sqlx(error), ErrorClass::Connect, "{error}");
}
