//! A COMMIT in flight when the primary dies, on a synchronous pair, made to happen on purpose:
//! the standby replicates through a proxy that holds what it sends back (its acknowledgements)
//! or everything, so the primary's COMMIT waits for the standby while the test kills the primary
//! and promotes the standby. `#[transaction(verify_commit)]` must then tell, on the new primary,
//! whether the transaction committed: if its commit record reached the standby, the call returns
//! `Ok` with nothing run again; if nothing of it did, the call runs again there, once.

use std::time::{Duration, Instant};

use db_retry::db_retry;
use db_retry_test_kit::pg::PgServer;
use db_retry_test_kit::proxy::FaultProxy;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgConnection;

#[db_retry(max = 5, base = 10ms, deadline = 20s, idempotent = false)]
async fn record(
    #[transaction(verify_commit)] tx: &mut PgConnection,
    id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ledger (id) VALUES ($1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// How the replication stream fails while the COMMIT waits.
#[derive(Clone, Copy, Debug)]
enum Replication {
    /// WAL still reaches the standby; its acknowledgements do not reach the primary.
    AcknowledgementsLost,
    /// Nothing gets through either way.
    Cut,
}

/// Runs one transfer whose COMMIT is in flight at the failover; returns what the call returned
/// and how many times its row is on the new primary.
async fn commit_in_flight_at_failover(replication: Replication) -> (Result<(), String>, i64) {
    let primary = PgServer::primary_with("CREATE TABLE ledger (id bigint PRIMARY KEY)").await;
    let stream = FaultProxy::start(primary.addr()).await;
    let standby = primary.attach_synchronous_standby(stream.addr()).await;
    let clients = FaultProxy::start(primary.addr()).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&primary.url_via(clients.addr()))
        .unwrap();

    match replication {
        Replication::AcknowledgementsLost => stream.hold_client_bytes(),
        Replication::Cut => stream.blackhole(),
    }
    let call = tokio::spawn({
        let pool = pool.clone();
        async move { record(&pool, 1).await.map_err(|error| error.to_string()) }
    });

    // The COMMIT is waiting for the standby.
    let mut admin: PgConnection = primary.admin().await;
    let waiting = Instant::now();
    loop {
        let syncing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if syncing > 0 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the COMMIT never waited for the standby"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Replication::AcknowledgementsLost = replication {
        // ...and the standby has its commit record.
        let end: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut admin)
            .await
            .unwrap();
        let mut on_standby: PgConnection = standby.admin().await;
        let received = Instant::now();
        loop {
            let behind: bool =
                sqlx::query_scalar("SELECT coalesce(pg_last_wal_receive_lsn() < $1::pg_lsn, true)")
                    .bind(&end)
                    .fetch_one(&mut on_standby)
                    .await
                    .unwrap();
            if !behind {
                break;
            }
            assert!(
                received.elapsed() < Duration::from_secs(10),
                "the standby never received the commit record"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    drop(admin);

    let killed = Instant::now();
    primary.stop_immediate();
    standby.promote();
    if let Replication::Cut = replication {
        // The new primary hands out the transaction's id again, to transactions that commit:
        // a lookup that trusted any later timeline would take that for ours.
        let mut on_new_primary: PgConnection = standby.admin().await;
        for n in 0..20i64 {
            sqlx::query("INSERT INTO ledger (id) VALUES ($1)")
                .bind(1_000 + n)
                .execute(&mut on_new_primary)
                .await
                .unwrap();
        }
    }
    clients.retarget(standby.addr());
    // The lookup of a lost COMMIT has 2 s from the connection's loss.
    let window = killed.elapsed();
    assert!(
        window < Duration::from_millis(1500),
        "the failover took {window:?}: too slow for the lookup's 2 s on this machine, so this \
         test could not tell anything"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call ends")
        .unwrap();

    let mut admin: PgConnection = standby.admin().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE id = 1")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    (outcome, rows)
}

/// One test, the two cases in turn: four servers at once would slow the failover on two cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_flight_at_a_failover_is_resolved_on_the_new_primary() {
    // The commit record reached the standby: committed on the new primary, so `Ok` with
    // nothing run again (without the split-point rule: reported failed).
    let (outcome, rows) = commit_in_flight_at_failover(Replication::AcknowledgementsLost).await;
    println!("acknowledgements lost: {outcome:?}, {rows} row(s)");
    assert_eq!(rows, 1, "the commit record reached the standby");
    assert_eq!(
        outcome,
        Ok(()),
        "a committed transfer must not be reported failed"
    );

    // Nothing of it reached the standby, whose new primary then reused its id: not committed
    // there, so it runs again there, once.
    let (outcome, rows) = commit_in_flight_at_failover(Replication::Cut).await;
    println!("replication cut: {outcome:?}, {rows} row(s)");
    assert_eq!(
        outcome,
        Ok(()),
        "nothing committed on the new primary: run again"
    );
    assert_eq!(rows, 1, "applied once");
}
