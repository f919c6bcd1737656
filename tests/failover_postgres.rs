//! A real failover under load: a primary with a synchronous hot standby (`pg_basebackup -R`),
//! clients reaching "the database" through an address the test moves (the fault proxy, standing
//! in for a VIP or a DNS switch). Eight callers read and transfer while the primary is killed
//! (immediate shutdown), the standby is promoted a second later and the address switched.
//!
//! What must hold: no idempotent call fails within its 30 s deadline; every transfer that was
//! acknowledged is on the new primary, none is applied twice, and the balances add up. A
//! transfer whose COMMIT was in flight when the primary died may fail (its outcome is unknown
//! to the client); it must never be reported done and be missing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_retry::db_retry;
use db_retry_test_kit::pg::PgServer;
use db_retry_test_kit::proxy::FaultProxy;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

const ACCOUNTS: i32 = 10;
const OPENING_BALANCE: i64 = 1_000;

#[db_retry(max = 100, base = 10ms, cap = 200ms, deadline = 30s)]
async fn total_balance(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT sum(balance)::bigint FROM accounts")
        .fetch_one(pool)
        .await
}

#[db_retry(max = 100, base = 10ms, cap = 200ms, deadline = 30s)]
async fn ledger_size(#[acquire] conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&mut *conn)
        .await
}

/// A transfer: the ledger row (its id the primary key) and both balances, in one transaction
/// whose COMMIT is verified.
#[db_retry(max = 100, base = 10ms, cap = 200ms, deadline = 30s, idempotent = false)]
async fn transfer(
    #[transaction(verify_commit)] tx: &mut PgConnection,
    id: i64,
    from: i32,
    to: i32,
    amount: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger (id, from_account, to_account, amount) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(amount)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE accounts SET balance = balance - $2 WHERE id = $1")
        .bind(from)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts SET balance = balance + $2 WHERE id = $1")
        .bind(to)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// What the callers saw.
#[derive(Default)]
struct Outcome {
    reads: u64,
    failed_reads: Vec<String>,
    acknowledged: BTreeSet<i64>,
    failed_transfers: Vec<(i64, String)>,
    /// When each success happened, for the time from promotion to the first one.
    successes: Vec<Instant>,
}

async fn replicating_pair() -> (PgServer, PgServer) {
    PgServer::synchronous_pair(&format!(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
         INSERT INTO accounts SELECT g, {OPENING_BALANCE} FROM generate_series(1, {ACCOUNTS}) g;
         CREATE TABLE ledger (id bigint PRIMARY KEY, from_account int NOT NULL,
                              to_account int NOT NULL, amount bigint NOT NULL);"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_loses_no_idempotent_call_and_no_acknowledged_transfer() {
    let (primary, standby) = replicating_pair().await;
    let proxy = FaultProxy::start(primary.addr()).await;
    let pool = PgPoolOptions::new()
        .max_connections(12)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&primary.url_via(proxy.addr()))
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let next_id = Arc::new(AtomicI64::new(1));
    let mut callers = Vec::new();
    for caller in 0..8 {
        let (pool, stop, outcome, next_id) =
            (pool.clone(), stop.clone(), outcome.clone(), next_id.clone());
        callers.push(tokio::spawn(async move {
            let mut turn = 0i64;
            while !stop.load(Ordering::SeqCst) {
                turn += 1;
                match caller % 4 {
                    0 => {
                        let result = total_balance(&pool).await;
                        let mut outcome = outcome.lock().unwrap();
                        outcome.reads += 1;
                        match result {
                            Ok(total) if total == i64::from(ACCOUNTS) * OPENING_BALANCE => {
                                outcome.successes.push(Instant::now())
                            }
                            Ok(total) => outcome.failed_reads.push(format!("total {total}")),
                            Err(error) => outcome.failed_reads.push(error.to_string()),
                        }
                    }
                    1 => {
                        let result = ledger_size(&pool).await;
                        let mut outcome = outcome.lock().unwrap();
                        outcome.reads += 1;
                        match result {
                            Ok(_) => outcome.successes.push(Instant::now()),
                            Err(error) => outcome.failed_reads.push(error.to_string()),
                        }
                    }
                    _ => {
                        let id = next_id.fetch_add(1, Ordering::SeqCst);
                        let from = (id % i64::from(ACCOUNTS)) as i32 + 1;
                        let to = ((id + turn) % i64::from(ACCOUNTS - 1) + 1) as i32 % ACCOUNTS + 1;
                        let to = if to == from { from % ACCOUNTS + 1 } else { to };
                        let result = transfer(&pool, id, from, to, 1 + id % 7).await;
                        let mut outcome = outcome.lock().unwrap();
                        match result {
                            Ok(()) => {
                                outcome.acknowledged.insert(id);
                                outcome.successes.push(Instant::now());
                            }
                            Err(error) => outcome.failed_transfers.push((id, error.to_string())),
                        }
                    }
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    primary.stop_immediate();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    standby.promote();
    proxy.retarget(standby.addr());
    let promoted = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }

    let outcome = std::mem::take(&mut *outcome.lock().unwrap());
    let first_success = outcome
        .successes
        .iter()
        .filter(|at| **at > promoted)
        .min()
        .map(|at| at.duration_since(promoted));
    let mut admin: PgConnection = standby.admin().await;
    let ledger: Vec<i64> = sqlx::query_scalar("SELECT id FROM ledger ORDER BY id")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar("SELECT sum(balance)::bigint FROM accounts")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts a WHERE a.balance <> $1
             - coalesce((SELECT sum(amount) FROM ledger WHERE from_account = a.id), 0)
             + coalesce((SELECT sum(amount) FROM ledger WHERE to_account = a.id), 0)",
    )
    .bind(OPENING_BALANCE)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let committed_but_failed: Vec<i64> = outcome
        .failed_transfers
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| ledger.contains(id))
        .collect();
    println!("committed but reported failed: {committed_but_failed:?}");
    println!(
        "failover: {} reads ({} failed), {} transfers acknowledged, {} failed ({:?}); ledger {} rows; \
         killed → promoted {:?}; promoted → first success {:?}",
        outcome.reads,
        outcome.failed_reads.len(),
        outcome.acknowledged.len(),
        outcome.failed_transfers.len(),
        outcome.failed_transfers,
        ledger.len(),
        promoted.duration_since(killed),
        first_success,
    );

    assert!(
        outcome.failed_reads.is_empty(),
        "idempotent reads failed: {:?}",
        outcome.failed_reads
    );
    let on_new_primary: BTreeSet<i64> = ledger.iter().copied().collect();
    let missing: Vec<_> = outcome.acknowledged.difference(&on_new_primary).collect();
    assert!(
        missing.is_empty(),
        "acknowledged transfers lost in the failover: {missing:?}"
    );
    assert_eq!(
        total,
        i64::from(ACCOUNTS) * OPENING_BALANCE,
        "money was made or lost"
    );
    assert_eq!(mismatched, 0, "a balance disagrees with the ledger");
    // Anything on the new primary that was not acknowledged came from a transfer whose outcome
    // its caller was told is unknown.
    let failed: BTreeSet<i64> = outcome.failed_transfers.iter().map(|(id, _)| *id).collect();
    let unexplained: Vec<_> = on_new_primary
        .difference(&outcome.acknowledged)
        .filter(|id| !failed.contains(id))
        .collect();
    assert!(
        unexplained.is_empty(),
        "applied but never reported: {unexplained:?}"
    );
    assert!(
        outcome.acknowledged.len() > 20,
        "transfers ran before and after the failover"
    );
    assert!(
        first_success.is_some(),
        "no call succeeded after the promotion"
    );
}
