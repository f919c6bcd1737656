//! The cost of db-retry on a real query: `SELECT 1` through a pool on a throwaway PostgreSQL,
//! plain vs `#[db_retry]` vs `#[acquire]` vs `#[transaction]`. The first two should be within
//! noise; the transaction mode pays for BEGIN and COMMIT round trips.

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
    drop(server);
}

criterion_group!(benches, bench);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
