//! `#[transaction(verify_commit)]` resolves a COMMIT whose answer was lost instead of guessing,
//! against a real PostgreSQL behind the fault proxy: the connection is reset right around COMMIT
//! hundreds of times, sometimes before the server gets it (nothing committed), sometimes after
//! (committed, reply lost). Every call of a non-idempotent ledger write ends `Ok` with its row
//! written exactly once.

use std::sync::atomic::{AtomicU32, Ordering};

use db_retry::db_retry;
use db_retry_test_kit::pg::PgServer;
use db_retry_test_kit::proxy::FaultProxy;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

/// Appends entry `id` to the ledger; run twice, it would fail on the primary key.
#[db_retry(idempotent = false, max = 5, base = 1ms)]
async fn record(
    #[transaction(verify_commit)] tx: &mut PgConnection,
    id: i32,
    attempts: &AtomicU32,
) -> Result<(), sqlx::Error> {
    attempts.fetch_add(1, Ordering::SeqCst);
    sqlx::query("INSERT INTO ledger (id, amount) VALUES ($1, 10)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The same write without verification: what a lost COMMIT reply costs without it.
#[db_retry(idempotent = false, max = 5, base = 1ms)]
async fn record_unverified(
    #[transaction] tx: &mut PgConnection,
    id: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ledger (id, amount) VALUES ($1, 10)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

const CALLS: i32 = 400;

/// A server with an empty ledger, and a pool of `connections` that reaches it through a proxy.
async fn ledger_behind_proxy(connections: u32) -> (PgServer, FaultProxy, PgPool) {
    let server = PgServer::start();
    server
        .exec_admin("CREATE TABLE ledger (id int PRIMARY KEY, amount int NOT NULL)")
        .await;
    let proxy = FaultProxy::start(server.addr()).await;
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .connect(&server.url_via(proxy.addr()))
        .await
        .unwrap();
    (server, proxy, pool)
}

async fn ledger_ids(server: &PgServer) -> Vec<i32> {
    let pool: PgPool = server.pool(1).await;
    sqlx::query_scalar("SELECT id FROM ledger ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_resolved_never_guessed() {
    let (server, proxy, pool) = ledger_behind_proxy(4).await;
    proxy.reset_around(b"COMMIT\0", 0.5, 11);
    let attempts = AtomicU32::new(0);

    let mut failures = Vec::new();
    for id in 0..CALLS {
        if let Err(error) = record(&pool, id, &attempts).await {
            failures.push((id, error.to_string()));
        }
    }

    let resets = proxy.stats().resets;
    let retries = attempts.load(Ordering::SeqCst) - CALLS as u32;
    println!("ambiguous_commit: calls={CALLS} resets={resets} retries={retries}");
    assert_eq!(
        failures,
        [],
        "every call ends Ok: no error for a commit that landed"
    );
    // Resets after COMMIT reached the server (resolved committed, no retry) and before it did
    // (resolved aborted, retried although not idempotent) both happened, many times.
    assert!(resets >= 150, "the proxy cut {resets} COMMITs");
    assert!(
        retries >= 50,
        "{retries} retries after COMMITs that never landed"
    );
    assert!(
        u64::from(retries) + 50 <= resets,
        "COMMITs that landed ({} of {resets}) were resolved without a retry",
        resets - u64::from(retries)
    );
    let ids = ledger_ids(&server).await;
    assert_eq!(
        ids,
        (0..CALLS).collect::<Vec<_>>(),
        "each entry exactly once"
    );
}

// The control: without verification, a COMMIT whose reply was lost is an error the caller
// cannot act on, though the commit often landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_verification_a_landed_commit_is_reported_as_an_error() {
    let (server, proxy, pool) = ledger_behind_proxy(4).await;
    proxy.reset_around(b"COMMIT\0", 0.5, 11);

    let mut failed = Vec::new();
    for id in 0..100 {
        if record_unverified(&pool, id).await.is_err() {
            failed.push(id);
        }
    }

    let ids = ledger_ids(&server).await;
    let landed_but_failed = failed.iter().filter(|id| ids.contains(id)).count();
    assert!(
        landed_but_failed > 0,
        "some commits landed although their calls failed ({} failed)",
        failed.len()
    );
}

// The lookup takes no pool slot: with one connection, checked out by the call whose COMMIT was
// cut, it still resolves every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_needs_no_free_pool_slot() {
    let (server, proxy, pool) = ledger_behind_proxy(1).await;
    proxy.reset_around(b"COMMIT\0", 0.5, 5);
    let attempts = AtomicU32::new(0);

    let mut failures = Vec::new();
    for id in 0..100 {
        if let Err(error) = record(&pool, id, &attempts).await {
            failures.push((id, error.to_string()));
        }
    }

    assert!(proxy.stats().resets >= 30, "{:?}", proxy.stats());
    assert_eq!(failures, [], "every call ends Ok");
    assert_eq!(ledger_ids(&server).await, (0..100).collect::<Vec<_>>());
}
