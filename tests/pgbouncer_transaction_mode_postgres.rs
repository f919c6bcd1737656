//! PgBouncer in transaction mode, against the real thing: sqlx's named prepared statements meet
//! other clients' server connections and fail, each at once and with a hint naming the fix; and
//! the fix the hint gives works, while each half of it alone does not. Each way of querying gets
//! a PgBouncer of its own: server connections keep the statements earlier clients prepared.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use db_retry::{configuration_hint, db_retry, Classify, ErrorClass};
use db_retry_test_kit::pg::PgServer;
use db_retry_test_kit::pgbouncer::{PgBouncer, PoolMode};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

#[db_retry(max = 5, base = 1ms, budget = none)]
async fn counted(pool: &PgPool, attempts: &AtomicU32) -> Result<i64, sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query_scalar("SELECT 1::bigint").fetch_one(pool).await
}

/// What the hint recommends: inside a transaction, an unnamed statement.
#[db_retry(max = 5, base = 1ms, budget = none)]
async fn unnamed_in_transaction(
    #[transaction] tx: &mut PgConnection,
    n: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT $1::bigint")
        .bind(n)
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
}

/// A new PgBouncer in transaction mode in front of `server`, and a pool through it.
fn transaction_mode(server: &PgServer) -> (PgBouncer, PgPool) {
    let bouncer = PgBouncer::builder(server)
        .mode(PoolMode::Transaction)
        .pool_size(4)
        .start();
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_lazy(&bouncer.url())
        .unwrap();
    (bouncer, pool)
}

/// How many of 400 concurrent calls of `call` fail.
async fn concurrent_failures<F, Fut>(pool: &PgPool, call: F) -> usize
where
    F: Fn(PgPool, i64) -> Fut,
    Fut: std::future::Future<Output = Result<i64, sqlx::Error>> + Send + 'static,
{
    let calls: Vec<_> = (0..400)
        .map(|n| tokio::spawn(call(pool.clone(), n)))
        .collect();
    let mut failed = 0;
    for call in calls {
        failed += usize::from(call.await.unwrap().is_err());
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_statements_fail_at_once_with_a_hint() {
    let server = PgServer::start();
    let (_bouncer, pool) = transaction_mode(&server);
    let attempts = Arc::new(AtomicU32::new(0));
    let mut calls = Vec::new();
    for _ in 0..200 {
        let (pool, attempts) = (pool.clone(), attempts.clone());
        calls.push(tokio::spawn(async move { counted(&pool, &attempts).await }));
    }
    let mut failed = 0;
    for call in calls {
        if let Err(error) = call.await.unwrap() {
            failed += 1;
            assert_eq!(error.classify(), ErrorClass::Permanent, "{error}");
            let hint = configuration_hint(&error).unwrap_or_else(|| panic!("no hint for {error}"));
            assert!(hint.contains("pool_mode = session"), "{hint}");
        }
    }
    println!("named statements in transaction mode: {failed} of 200 failed");
    assert!(failed > 0, "transaction mode must lose named statements");
    assert_eq!(attempts.load(Ordering::SeqCst), 200, "none of them retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_with_unnamed_statements_works_and_each_half_alone_does_not() {
    let server = PgServer::start();

    let (_bouncer, pool) = transaction_mode(&server);
    let in_transaction_only = concurrent_failures(&pool, |pool, n| async move {
        let mut tx = pool.begin().await?;
        let value: i64 = sqlx::query_scalar("SELECT $1::bigint")
            .bind(n)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(value)
    })
    .await;

    let (_bouncer, pool) = transaction_mode(&server);
    let unnamed_only = concurrent_failures(&pool, |pool, n| async move {
        sqlx::query_scalar("SELECT $1::bigint")
            .bind(n)
            .persistent(false)
            .fetch_one(&pool)
            .await
    })
    .await;

    let (_bouncer, pool) = transaction_mode(&server);
    let both = concurrent_failures(&pool, |pool, n| async move {
        unnamed_in_transaction(&pool, n).await
    })
    .await;
    println!(
        "of 400 concurrent calls failed: in a transaction only {in_transaction_only}, \
         persistent(false) only {unnamed_only}, both {both}"
    );
    assert_eq!(both, 0, "the hint's advice must work");
    assert!(
        in_transaction_only > 0,
        "a transaction alone keeps sqlx's named statements"
    );
}
