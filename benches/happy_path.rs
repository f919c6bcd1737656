//! What a retry layer costs when nothing fails: the same trivial async body as a plain async fn,
//! under `#[db_retry]`, and hand-wrapped with backon and tokio-retry, each awaited on a
//! current-thread runtime. Criterion measures ns/call; after the run this prints the ratios to
//! the plain fn, the size of each future and heap allocations per call, all from this run.
//!
//! Each variant is measured twice, from two identical copies of the functions:
//! - `out_of_line`: each future is polled through a `poll` the compiler may not inline, as a
//!   repository function called from several handlers is; every variant, the plain fn
//!   included, pays that same call, so the ratios compare like with like;
//! - `inlined`: the copies are called only from the benchmark loop and get inlined into it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use criterion::{criterion_group, Criterion};
use db_retry::db_retry;
use db_retry_test_kit::bench::{median_ns, OutOfLine};

struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

macro_rules! variants {
    () => {
        use super::*;

        pub async fn plain(x: u64) -> Result<u64, sqlx::Error> {
            Ok(black_box(x) + 1)
        }

        #[db_retry]
        pub async fn with_db_retry(x: u64) -> Result<u64, sqlx::Error> {
            Ok(black_box(x) + 1)
        }

        // What the default retry budget's deposit costs: the same without it.
        #[db_retry(budget = none)]
        pub async fn with_db_retry_no_budget(x: u64) -> Result<u64, sqlx::Error> {
            Ok(black_box(x) + 1)
        }

        // What a circuit breaker adds: one load after the successful first attempt.
        #[db_retry(breaker = BREAKER)]
        pub async fn with_db_retry_breaker(x: u64) -> Result<u64, sqlx::Error> {
            Ok(black_box(x) + 1)
        }

        pub async fn with_backon(x: u64) -> Result<u64, sqlx::Error> {
            (|| async { Ok(black_box(x) + 1) })
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(100))
                        .with_max_delay(Duration::from_secs(5))
                        .with_max_times(3)
                        .with_jitter(),
                )
                .await
        }

        pub async fn with_tokio_retry(x: u64) -> Result<u64, sqlx::Error> {
            use tokio_retry::strategy::{jitter, ExponentialBackoff};
            let strategy = ExponentialBackoff::from_millis(2)
                .factor(50)
                .max_delay(Duration::from_secs(5))
                .map(jitter)
                .take(3);
            tokio_retry::Retry::start(strategy, || async { Ok(black_box(x) + 1) }).await
        }
    };
}

mod out_of_line {
    variants!();
}

mod inlined {
    variants!();
}

static BREAKER: db_retry::CircuitBreaker = db_retry::CircuitBreaker::new("bench");

const NAMES: [&str; 6] = [
    "plain",
    "db_retry",
    "db_retry_no_budget",
    "db_retry_breaker",
    "backon",
    "tokio_retry",
];
const GROUPS: [&str; 2] = ["out_of_line", "inlined"];

macro_rules! bench_group {
    ($c:expr, $runtime:expr, $group:ident, $wrap:expr) => {{
        let mut group = $c.benchmark_group(stringify!($group));
        group.bench_function(NAMES[0], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::plain(black_box(1))))
        });
        group.bench_function(NAMES[1], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::with_db_retry(black_box(1))))
        });
        group.bench_function(NAMES[2], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::with_db_retry_no_budget(black_box(1))))
        });
        group.bench_function(NAMES[3], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::with_db_retry_breaker(black_box(1))))
        });
        group.bench_function(NAMES[4], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::with_backon(black_box(1))))
        });
        group.bench_function(NAMES[5], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::with_tokio_retry(black_box(1))))
        });
        group.finish();
    }};
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_group!(c, &runtime, out_of_line, OutOfLine);
    bench_group!(c, &runtime, inlined, std::convert::identity);
}

/// Heap allocations per call, counted over many calls on an already-built runtime.
fn allocations_per_call<F, Fut>(runtime: &tokio::runtime::Runtime, f: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
{
    const CALLS: usize = 10_000;
    runtime.block_on(async {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for i in 0..CALLS {
            black_box(f(i as u64).await.expect("happy path"));
        }
        (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / CALLS as f64
    })
}

fn report() {
    use out_of_line::*;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sizes = [
        std::mem::size_of_val(&plain(1)),
        std::mem::size_of_val(&with_db_retry(1)),
        std::mem::size_of_val(&with_db_retry_no_budget(1)),
        std::mem::size_of_val(&with_db_retry_breaker(1)),
        std::mem::size_of_val(&with_backon(1)),
        std::mem::size_of_val(&with_tokio_retry(1)),
    ];
    let allocations = [
        allocations_per_call(&runtime, plain),
        allocations_per_call(&runtime, with_db_retry),
        allocations_per_call(&runtime, with_db_retry_no_budget),
        allocations_per_call(&runtime, with_db_retry_breaker),
        allocations_per_call(&runtime, with_backon),
        allocations_per_call(&runtime, with_tokio_retry),
    ];
    println!();
    println!("| variant | out of line: ns/call | ratio | +ns | inlined: ns/call | ratio | +ns | future size (bytes) | allocations/call |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let cell = |group: &str, name: &str| {
        let ns = median_ns(MANIFEST_DIR, group, name);
        let (ratio, extra) = match (ns, median_ns(MANIFEST_DIR, group, NAMES[0])) {
            (Some(ns), Some(base)) if base > 0.0 => {
                (format!("{:.2}", ns / base), format!("{:+.2}", ns - base))
            }
            _ => ("n/a".to_owned(), "n/a".to_owned()),
        };
        (
            ns.map_or("n/a".to_owned(), |ns| format!("{ns:.2}")),
            ratio,
            extra,
        )
    };
    for (i, name) in NAMES.iter().enumerate() {
        let (out_ns, out_ratio, out_extra) = cell(GROUPS[0], name);
        let (in_ns, in_ratio, in_extra) = cell(GROUPS[1], name);
        println!(
            "| {name} | {out_ns} | {out_ratio} | {out_extra} | {in_ns} | {in_ratio} | {in_extra} | {} | {:.2} |",
            sizes[i], allocations[i]
        );
    }
}

/// Where criterion writes this run's estimates.
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}
