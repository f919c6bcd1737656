//! The retry budget's deposit under contention: two threads counting first attempts at full
//! speed at once, against one thread alone, and against the obvious alternative of one counter
//! shared with a locked `fetch_add`. Criterion reports the time for every thread to make
//! `iters` deposits; after the run this prints the ratios to one thread alone.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use db_retry::{RetryBudget, RetryPolicy};
use db_retry_test_kit::bench::median_ns;

static BUDGET: RetryBudget = RetryBudget::new(20, 10, Duration::from_secs(10));
static SHARED: AtomicU64 = AtomicU64::new(0);

/// Runs `deposit` `iters` times on each of `threads` threads started together; the time until
/// the last one is done.
fn on_threads(threads: usize, iters: u64, deposit: fn()) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    for _ in 0..iters {
                        deposit();
                    }
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for worker in workers {
            worker.join().unwrap();
        }
        began.elapsed()
    })
}

fn budget_deposit() {
    static POLICY: RetryPolicy = RetryPolicy::__from_validated(
        3,
        db_retry::RetryOn::Transient,
        db_retry::Backoff::Exponential,
        Duration::from_millis(100),
        Duration::from_secs(5),
        db_retry::Jitter::Full,
        None,
        true,
    )
    .__with_budget(Some(&BUDGET));
    black_box(&POLICY).deposit();
}

fn shared_fetch_add() {
    black_box(&SHARED).fetch_add(1, Ordering::Relaxed);
}

const NAMES: [&str; 3] = [
    "budget_1_thread",
    "budget_2_threads",
    "shared_fetch_add_2_threads",
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("budget_contention");
    group.bench_function(NAMES[0], |b| {
        b.iter_custom(|iters| on_threads(1, iters, budget_deposit))
    });
    group.bench_function(NAMES[1], |b| {
        b.iter_custom(|iters| on_threads(2, iters, budget_deposit))
    });
    group.bench_function(NAMES[2], |b| {
        b.iter_custom(|iters| on_threads(2, iters, shared_fetch_add))
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let dir = env!("CARGO_MANIFEST_DIR");
    let base = median_ns(dir, "budget_contention", NAMES[0]);
    println!("\n| variant | ns per deposit (each thread) | ratio to one thread |");
    println!("|---|---|---|");
    for name in NAMES {
        let ns = median_ns(dir, "budget_contention", name);
        let ratio = match (ns, base) {
            (Some(ns), Some(base)) if base > 0.0 => format!("{:.2}", ns / base),
            _ => "n/a".to_owned(),
        };
        println!(
            "| {name} | {} | {ratio} |",
            ns.map_or("n/a".to_owned(), |ns| format!("{ns:.2}"))
        );
    }
}
