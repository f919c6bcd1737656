//! Why `#[db_retry]`'s happy path costs what it costs: the same trivial body in the shapes a
//! retrying async fn could take, hand-written, so each cost can be told apart. Every shape is
//! measured inlined and through a `poll` that is never inlined; after the run this prints each
//! one's cost over the plain fn and its future's size.
//!
//! - `plain`: the body as a plain async fn.
//! - `closure_match`: the body as an async closure, awaited once and its result matched; no retry
//!   path at all. What reusing the body costs.
//! - `second_await_boxed`: plus a second `.await`, on a boxed future, on the error path only.
//!   The shape `#[db_retry]` expands to.
//! - `second_await_dyn`: the same, with the boxed future as `dyn Future`.
//! - `sleep_in_attempt`: one await point in the function: the backoff sleep moves into the
//!   attempt, which sleeps (boxed, only when asked) before the body.
//! - `db_retry`: the attribute itself.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use db_retry::__private as expansion;
use db_retry::db_retry;
use db_retry_test_kit::bench::{median_ns, OutOfLine};

type Outcome = Result<u64, sqlx::Error>;

macro_rules! shapes {
    () => {
        use super::*;

        pub async fn plain(x: u64) -> Outcome {
            Ok(black_box(x) + 1)
        }

        pub async fn closure_match(x: u64) -> Outcome {
            let mut attempt = async || Ok::<u64, sqlx::Error>(black_box(x) + 1);
            match (&mut attempt)().await {
                Ok(value) => Ok(value),
                Err(error) => Err(black_box(error)),
            }
        }

        pub async fn second_await_boxed(x: u64) -> Outcome {
            let mut attempt = async || Ok::<u64, sqlx::Error>(black_box(x) + 1);
            match (&mut attempt)().await {
                Ok(value) => Ok(value),
                Err(error) => {
                    drop(black_box(error));
                    Box::pin(async move {
                        expansion::sleep(Duration::from_millis(1)).await;
                        (&mut attempt)().await
                    })
                    .await
                }
            }
        }

        pub async fn second_await_dyn(x: u64) -> Outcome {
            let mut attempt = async || Ok::<u64, sqlx::Error>(black_box(x) + 1);
            match (&mut attempt)().await {
                Ok(value) => Ok(value),
                Err(error) => {
                    drop(black_box(error));
                    let retries: Pin<Box<dyn Future<Output = Outcome> + Send + '_>> =
                        Box::pin(async move {
                            expansion::sleep(Duration::from_millis(1)).await;
                            (&mut attempt)().await
                        });
                    retries.await
                }
            }
        }

        pub async fn sleep_in_attempt(x: u64) -> Outcome {
            let mut attempt = async |wait: Option<Duration>| {
                if let Some(wait) = wait {
                    Box::pin(expansion::sleep(wait)).await;
                }
                Ok::<u64, sqlx::Error>(black_box(x) + 1)
            };
            let mut wait = None;
            loop {
                match (&mut attempt)(wait).await {
                    Ok(value) => return Ok(value),
                    Err(error) if wait.is_none() => {
                        drop(black_box(error));
                        wait = Some(Duration::from_millis(1));
                    }
                    Err(error) => return Err(error),
                }
            }
        }

        #[db_retry]
        pub async fn with_db_retry(x: u64) -> Result<u64, sqlx::Error> {
            Ok(black_box(x) + 1)
        }
    };
}

mod out_of_line {
    shapes!();
}

mod inlined {
    shapes!();
}

const NAMES: [&str; 6] = [
    "plain",
    "closure_match",
    "second_await_boxed",
    "second_await_dyn",
    "sleep_in_attempt",
    "db_retry",
];

macro_rules! bench_group {
    ($c:expr, $runtime:expr, $group:ident, $wrap:expr) => {{
        let mut group = $c.benchmark_group(concat!("shapes_", stringify!($group)));
        group.bench_function(NAMES[0], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::plain(black_box(1))))
        });
        group.bench_function(NAMES[1], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::closure_match(black_box(1))))
        });
        group.bench_function(NAMES[2], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::second_await_boxed(black_box(1))))
        });
        group.bench_function(NAMES[3], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::second_await_dyn(black_box(1))))
        });
        group.bench_function(NAMES[4], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::sleep_in_attempt(black_box(1))))
        });
        group.bench_function(NAMES[5], |b| {
            b.to_async($runtime)
                .iter(|| $wrap($group::with_db_retry(black_box(1))))
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

fn report() {
    use out_of_line::*;
    let sizes = [
        std::mem::size_of_val(&plain(1)),
        std::mem::size_of_val(&closure_match(1)),
        std::mem::size_of_val(&second_await_boxed(1)),
        std::mem::size_of_val(&second_await_dyn(1)),
        std::mem::size_of_val(&sleep_in_attempt(1)),
        std::mem::size_of_val(&with_db_retry(1)),
    ];
    println!();
    println!("| shape | out of line: ns/call | over plain | inlined: ns/call | over plain | future size (bytes) |");
    println!("|---|---|---|---|---|---|");
    let cell = |group: &str, name: &str| match (
        median_ns(MANIFEST_DIR, group, name),
        median_ns(MANIFEST_DIR, group, NAMES[0]),
    ) {
        (Some(ns), Some(base)) => (format!("{ns:.2}"), format!("{:+.2}", ns - base)),
        _ => ("n/a".to_owned(), "n/a".to_owned()),
    };
    for (i, name) in NAMES.iter().enumerate() {
        let (out_ns, out_extra) = cell("shapes_out_of_line", name);
        let (in_ns, in_extra) = cell("shapes_inlined", name);
        println!(
            "| {name} | {out_ns} | {out_extra} | {in_ns} | {in_extra} | {} |",
            sizes[i]
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
