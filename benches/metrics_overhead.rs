//! What the `metrics` feature costs on the happy path, with a real recorder installed
//! (metrics-exporter-prometheus's): a `#[db_retry]` call against the same plain body, and
//! against the plain body plus one increment of a counter handle registered beforehand, the
//! cheapest thing a metric can cost. All three in one run; the report prints what each adds to
//! the plain call and the ratio of the two additions.

use std::hint::black_box;

use criterion::{criterion_group, Criterion};
use db_retry::db_retry;
use db_retry_test_kit::bench::{median_ns, OutOfLine};

async fn plain(x: u64) -> Result<u64, sqlx::Error> {
    Ok(black_box(x) + 1)
}

#[db_retry(budget = none)]
async fn with_db_retry(x: u64) -> Result<u64, sqlx::Error> {
    Ok(black_box(x) + 1)
}

const GROUP: &str = "metrics_overhead";
const NAMES: [&str; 3] = ["plain", "plain_and_cached_counter", "db_retry"];

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let counter = metrics::counter!("bench_cached_counter_total", "function" => "plain");
    let mut group = c.benchmark_group(GROUP);
    group.bench_function(NAMES[0], |b| {
        b.to_async(&runtime).iter(|| OutOfLine(plain(black_box(1))))
    });
    group.bench_function(NAMES[1], |b| {
        b.to_async(&runtime).iter(|| {
            counter.increment(1);
            OutOfLine(plain(black_box(1)))
        })
    });
    group.bench_function(NAMES[2], |b| {
        b.to_async(&runtime)
            .iter(|| OutOfLine(with_db_retry(black_box(1))))
    });
    group.finish();
}

fn report(handle: &metrics_exporter_prometheus::PrometheusHandle) {
    let ns = |name| median_ns(MANIFEST_DIR, GROUP, name);
    let (Some(plain), Some(counter), Some(db_retry)) = (ns(NAMES[0]), ns(NAMES[1]), ns(NAMES[2]))
    else {
        println!("no estimates found under target/criterion/{GROUP}");
        return;
    };
    let counted = handle
        .render()
        .lines()
        .find(|line| line.starts_with("db_retry_attempts_total{"))
        .map(str::to_owned)
        .unwrap_or_else(|| "nothing: the recorder saw no attempt".to_owned());
    println!();
    println!("| variant | ns/call | + over plain |");
    println!("|---|---|---|");
    println!("| plain | {plain:.2} | |");
    println!(
        "| plain + cached counter increment | {counter:.2} | {:+.2} |",
        counter - plain
    );
    println!(
        "| db_retry, metrics on | {db_retry:.2} | {:+.2} |",
        db_retry - plain
    );
    println!(
        "db_retry's addition / a cached counter increment's: {:.2}",
        (db_retry - plain) / (counter - plain)
    );
    println!("the recorder counted {counted}");
}

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

criterion_group!(benches, bench);

fn main() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder");
    benches();
    Criterion::default().configure_from_args().final_summary();
    report(&handle);
}
