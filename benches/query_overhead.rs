//! The cost of db-retry on a real query: `SELECT 1` through a pool on a throwaway PostgreSQL,
//! plain vs `#[db_retry]` vs `#[acquire]` vs `#[transaction]`. The first two should be within
//! noise; the transaction mode pays for BEGIN and COMMIT round trips.
//!
//! `transaction_5_statements` prices `verify_commit`: five UPDATEs in a transaction written by
//! hand with sqlx, under `#[transaction]`, and under `#[transaction(verify_commit)]`, whose one
//! extra statement before COMMIT is a round trip of its own.

use db_retry_test_kit as support;

use criterion::{criterion_group, Criterion};
use db_retry::db_retry;
use sqlx::{PgConnection, PgPool};
use support::pg::PgServer;

async fn plain(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[db_retry]
async fn retried(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[db_retry]
async fn acquired(#[acquire] conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await
}

#[db_retry]
async fn transactional(#[transaction] tx: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT 1").fetch_one(&mut *tx).await
}

/// Five single-row UPDATEs on the transaction's connection.
async fn five_updates(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    for id in 1..=5 {
        sqlx::query("UPDATE counters SET n = n + 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

async fn five_by_hand(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    five_updates(&mut tx).await?;
    tx.commit().await
}

#[db_retry]
async fn five_in_transaction(#[transaction] tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    five_updates(tx).await
}

#[db_retry]
async fn five_verified(
    #[transaction(verify_commit)] tx: &mut PgConnection,
) -> Result<(), sqlx::Error> {
    five_updates(tx).await
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = PgServer::start();
    let pool = runtime.block_on(server.pool(4));
    let mut group = c.benchmark_group("select_1");
    group.bench_function("plain", |b| b.to_async(&runtime).iter(|| plain(&pool)));
    group.bench_function("db_retry", |b| b.to_async(&runtime).iter(|| retried(&pool)));
    group.bench_function("acquire", |b| b.to_async(&runtime).iter(|| acquired(&pool)));
    group.bench_function("transaction", |b| {
        b.to_async(&runtime).iter(|| transactional(&pool))
    });
    group.finish();

    runtime.block_on(server.exec_admin(
        "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counters SELECT g, 0 FROM generate_series(1, 5) g;",
    ));
    let mut group = c.benchmark_group("transaction_5_statements");
    group.bench_function("verify_commit", |b| {
        b.to_async(&runtime).iter(|| five_verified(&pool))
    });
    group.bench_function("sqlx_by_hand", |b| {
        b.to_async(&runtime).iter(|| five_by_hand(&pool))
    });
    group.bench_function("transaction", |b| {
        b.to_async(&runtime).iter(|| five_in_transaction(&pool))
    });
    group.finish();
    drop(server);
}

/// The three transaction variants in alternating rounds on one server: on two cores shared
/// with the server, back-to-back criterion groups drift by more than the 5 % in question, while
/// rounds that interleave the variants see the same drift. Prints the median per-round ratio of
/// each variant to the hand-written transaction.
fn interleaved_transaction_ratios() {
    const ROUNDS: usize = 40;
    const CALLS: usize = 100;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = PgServer::start();
    let pool: PgPool = runtime.block_on(server.pool(4));
    runtime.block_on(server.exec_admin(
        "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counters SELECT g, 0 FROM generate_series(1, 5) g;",
    ));
    let time = |variant: usize| {
        let started = std::time::Instant::now();
        runtime.block_on(async {
            for _ in 0..CALLS {
                match variant {
                    0 => five_by_hand(&pool).await,
                    1 => five_in_transaction(&pool).await,
                    _ => five_verified(&pool).await,
                }
                .expect("transaction");
            }
        });
        started.elapsed().as_secs_f64()
    };
    // Warm the pool and the server's caches.
    for variant in 0..3 {
        time(variant);
    }
    let mut ratios = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let mut seconds = [0.0; 3];
        for step in 0..3 {
            let variant = (round + step) % 3;
            seconds[variant] = time(variant);
        }
        ratios[0].push(seconds[1] / seconds[0]);
        ratios[1].push(seconds[2] / seconds[0]);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "transaction_5_statements, interleaved ({ROUNDS} rounds of {CALLS} calls): \
         #[transaction] / by hand = {:.3}, #[transaction(verify_commit)] / by hand = {:.3}",
        median(&mut ratios[0]),
        median(&mut ratios[1]),
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    interleaved_transaction_ratios();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
