//! `idempotent = false` judges the attempt, not the failed statement, against a real
//! PostgreSQL: an `#[acquire]` body that inserted and then hit a (real-server) 40P01 is not run
//! again, a `#[transaction]` body is retried whole because the server rolled it back (also when
//! the server reports the rollback at COMMIT, from a deferred trigger), a deferred constraint
//! failing the COMMIT runs once, and a failure while getting the connection is still retried.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db_retry::db_retry;
use db_retry_test_kit::pg::PgServer;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

async fn events_table(server: &PgServer) {
    server
        .exec_admin("CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL)")
        .await;
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Inserts, then on the first attempt fails with `sqlstate` raised by the server.
async fn insert_then_raise(
    conn: &mut PgConnection,
    attempts: &AtomicU32,
    sqlstate: &str,
) -> Result<(), sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO events (kind) VALUES ('signup')")
        .execute(&mut *conn)
        .await?;
    if attempt == 0 {
        let raise =
            format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$");
        sqlx::raw_sql(sqlx::AssertSqlSafe(raise))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Inserts, then fails with a deadlock SQLSTATE raised by the server on the first attempt.
#[db_retry(idempotent = false, max = 3, base = 1ms)]
async fn insert_then_conflict(
    #[acquire] conn: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    insert_then_raise(conn, attempts, "40P01").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_body_that_may_have_applied_a_write_is_not_run_again() {
    let server = PgServer::start();
    events_table(&server).await;
    let pool: PgPool = server.pool(2).await;
    let attempts = AtomicU32::new(0);

    let error = insert_then_conflict(&pool, &attempts)
        .await
        .expect_err("the contention error goes to the caller");

    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("40P01")
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(count(&pool).await, 1, "the first statement's row, once");
}

#[db_retry(idempotent = false, max = 3, base = 1ms)]
async fn insert_then_conflict_in_transaction(
    #[transaction] tx: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    insert_then_raise(tx, attempts, "40001").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_body_is_retried_whole_because_the_server_rolled_it_back() {
    let server = PgServer::start();
    events_table(&server).await;
    let pool: PgPool = server.pool(2).await;
    let attempts = AtomicU32::new(0);

    insert_then_conflict_in_transaction(&pool, &attempts)
        .await
        .expect("the retry commits");

    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(
        count(&pool).await,
        1,
        "the first attempt's row was rolled back"
    );
}

/// A pool of one connection, held elsewhere for 350 ms while each acquire gives up after 100 ms:
/// the first acquires time out. The task returned releases the connection.
async fn pool_busy_for_350ms(server: &PgServer) -> (PgPool, tokio::task::JoinHandle<()>) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(100))
        .connect(&server.url())
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let holder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(350)).await;
        drop(held);
    });
    (pool, holder)
}

#[db_retry(idempotent = false, max = 5, base = 100ms, jitter = none, backoff = fixed)]
async fn insert_once(
    #[acquire] conn: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO events (kind) VALUES ('signup')")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_while_getting_the_connection_is_still_retried() {
    let server = PgServer::start();
    events_table(&server).await;
    let (pool, holder) = pool_busy_for_350ms(&server).await;
    let attempts = AtomicU32::new(0);
    let started = std::time::Instant::now();

    insert_once(&pool, &attempts)
        .await
        .expect("a later acquire succeeds");
    holder.await.unwrap();

    // One acquire gives up after 100 ms; getting through took retries.
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "the call outlasted the holder: {:?}",
        started.elapsed()
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the body ran once: the failed acquires never reached it"
    );
    assert_eq!(count(&pool).await, 1);
}

/// A deferred constraint trigger that fails the first COMMIT with 40001 (a sequence, which
/// transactions do not roll back, counts the commits it has seen).
async fn fail_first_commit_with_serialization_failure(server: &PgServer) {
    server
        .exec_admin(
            "CREATE SEQUENCE commits_seen;
             CREATE FUNCTION fail_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF nextval('commits_seen') = 1 THEN
                     RAISE EXCEPTION 'conflict at commit' USING ERRCODE = '40001';
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON events
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_first_commit();",
        )
        .await;
}

#[db_retry(idempotent = false, max = 3, base = 1ms)]
async fn insert_in_transaction(
    #[transaction] tx: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO events (kind) VALUES ('signup')")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_the_server_reports_at_commit_is_retried_even_when_not_idempotent() {
    let server = PgServer::start();
    events_table(&server).await;
    fail_first_commit_with_serialization_failure(&server).await;
    let pool: PgPool = server.pool(2).await;
    let attempts = AtomicU32::new(0);

    insert_in_transaction(&pool, &attempts)
        .await
        .expect("the second COMMIT lands");

    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "40001 at COMMIT, then a retry"
    );
    assert_eq!(count(&pool).await, 1, "the first attempt was rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_at_commit_runs_once() {
    let server = PgServer::start();
    server
        .exec_admin(
            "CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL,
                 CONSTRAINT one_signup UNIQUE (kind) DEFERRABLE INITIALLY DEFERRED);
             INSERT INTO events (kind) VALUES ('signup');",
        )
        .await;
    let pool: PgPool = server.pool(2).await;
    let attempts = AtomicU32::new(0);

    let error = insert_in_transaction(&pool, &attempts)
        .await
        .expect_err("the deferred unique constraint fails the COMMIT");

    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23505")
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(count(&pool).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_connection_cannot_be_had_yet_is_retried_even_when_not_idempotent() {
    let server = PgServer::start();
    events_table(&server).await;
    let (pool, holder) = pool_busy_for_350ms(&server).await;
    let attempts = AtomicU32::new(0);
    let started = std::time::Instant::now();

    insert_in_transaction_patiently(&pool, &attempts)
        .await
        .expect("a later acquire succeeds");
    holder.await.unwrap();

    assert!(started.elapsed() >= Duration::from_millis(350));
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "the body ran once");
    assert_eq!(count(&pool).await, 1);
}

#[db_retry(idempotent = false, max = 5, base = 100ms, jitter = none, backoff = fixed)]
async fn insert_in_transaction_patiently(
    #[transaction] tx: &mut PgConnection,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO events (kind) VALUES ('signup')")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// More bind arguments than the protocol can count: sqlx refuses before sending anything.
#[db_retry(max = 3, base = 1ms)]
async fn too_many_arguments(pool: &PgPool, attempts: &AtomicU32) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    let placeholders: Vec<String> = (1..=70_000).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT 1 WHERE 1 IN ({})", placeholders.join(", "));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for i in 0..70_000 {
        query = query.bind(i);
    }
    query.execute(pool).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_error_raised_before_sending_runs_once() {
    let server = PgServer::start();
    let pool: PgPool = server.pool(2).await;
    let attempts = AtomicU32::new(0);

    let error = too_many_arguments(&pool, &attempts)
        .await
        .expect_err("too many bind arguments");

    assert!(matches!(error, sqlx::Error::Protocol(_)), "{error:?}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the same call fails the same way"
    );
}
