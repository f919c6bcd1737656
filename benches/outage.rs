//! Outage: what the retry budget saves a database that is down and coming back. 50 callers make
//! 200 calls/s in total (open loop: each call starts on schedule) through one pool (`acquire_timeout` 250 ms, so an attempt against a
//! dead server fails fast instead of waiting inside sqlx): 10 s of steady traffic, the server
//! down for 5 s, then back, then 10 s more. Once with the default budget, once with
//! `budget = none`, both `max = 3`. Prints attempts per call during the outage and the time
//! from the server's return to a normal success rate, and writes `target/outage.csv` (one row
//! per 250 ms bucket) for `benches/plot_outage.py`.
//!
//! `cargo bench --bench outage` (needs PostgreSQL server binaries, as the test suite does).

use db_retry_test_kit as support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_retry::db_retry;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use support::pg::PgServer;

const CALLERS: usize = 50;
const CALLS_PER_SECOND: u64 = 200;
const STEADY: Duration = Duration::from_secs(10);
const DOWN: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(10);
const BUCKET: Duration = Duration::from_millis(250);

#[db_retry(max = 3)]
async fn read_budgeted(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

#[db_retry(max = 3, budget = none)]
async fn read_unbudgeted(pool: &PgPool, attempts: &AtomicU32) -> Result<i32, sqlx::Error> {
    attempts.fetch_add(1, Ordering::Relaxed);
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

/// One call: when it started (since the run began), how many attempts it made, whether it
/// succeeded.
#[derive(Clone, Copy)]
struct Call {
    started: Duration,
    attempts: u32,
    ok: bool,
}

struct Run {
    calls: Vec<Call>,
    down_at: Duration,
    back_at: Duration,
}

async fn run(budgeted: bool) -> Run {
    let server = Arc::new(PgServer::start());
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_millis(250))
        .connect(&server.url())
        .await
        .expect("pool");
    let begun = Instant::now();
    let total = STEADY + DOWN + AFTER;
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let period = Duration::from_micros(1_000_000 * CALLERS as u64 / CALLS_PER_SECOND);
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (pool, calls) = (pool.clone(), calls.clone());
        // Spread the callers over one period, so the load is even.
        let offset = period * caller as u32 / CALLERS as u32;
        callers.push(tokio::spawn(async move {
            // Open loop: each call starts on schedule, whether or not the caller's last one
            // has finished, so a slow outage does not thin out the load it sees.
            let mut calls_made = Vec::new();
            let mut next = begun + offset;
            while next - begun < total {
                tokio::time::sleep_until(next.into()).await;
                let (pool, calls) = (pool.clone(), calls.clone());
                calls_made.push(tokio::spawn(async move {
                    let attempts = AtomicU32::new(0);
                    let started = begun.elapsed();
                    let ok = if budgeted {
                        read_budgeted(&pool, &attempts).await.is_ok()
                    } else {
                        read_unbudgeted(&pool, &attempts).await.is_ok()
                    };
                    calls.lock().unwrap().push(Call {
                        started,
                        attempts: attempts.load(Ordering::Relaxed),
                        ok,
                    });
                }));
                next += period;
            }
            for call in calls_made {
                call.await.unwrap();
            }
        }));
    }
    tokio::time::sleep_until((begun + STEADY).into()).await;
    let stopping = server.clone();
    tokio::task::spawn_blocking(move || stopping.stop_immediate())
        .await
        .unwrap();
    let down_at = begun.elapsed();
    tokio::time::sleep_until((begun + STEADY + DOWN).into()).await;
    let starting = server.clone();
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .unwrap();
    let back_at = begun.elapsed();
    for caller in callers {
        caller.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    Run {
        calls,
        down_at,
        back_at,
    }
}

impl Run {
    fn attempts_per_call(&self, from: Duration, to: Duration) -> f64 {
        let window: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.started >= from && c.started < to)
            .collect();
        window.iter().map(|c| c.attempts as f64).sum::<f64>() / window.len().max(1) as f64
    }

    /// (start of bucket, calls, successes, attempts) for every bucket.
    fn buckets(&self) -> Vec<(Duration, usize, usize, u32)> {
        let end = self
            .calls
            .iter()
            .map(|c| c.started)
            .max()
            .unwrap_or_default();
        let mut buckets = Vec::new();
        let mut at = Duration::ZERO;
        while at <= end {
            let inside: Vec<&Call> = self
                .calls
                .iter()
                .filter(|c| c.started >= at && c.started < at + BUCKET)
                .collect();
            buckets.push((
                at,
                inside.len(),
                inside.iter().filter(|c| c.ok).count(),
                inside.iter().map(|c| c.attempts).sum(),
            ));
            at += BUCKET;
        }
        buckets
    }

    /// From the server's return to the start of the first bucket from which every bucket has
    /// at least 99 % of its calls succeed.
    fn recovery(&self) -> Option<Duration> {
        let buckets = self.buckets();
        let after: Vec<_> = buckets
            .iter()
            .filter(|(at, ..)| *at + BUCKET > self.back_at)
            .collect();
        (0..after.len())
            .find(|&i| {
                after[i..]
                    .iter()
                    .all(|(_, calls, ok, _)| *calls == 0 || *ok as f64 >= 0.99 * *calls as f64)
            })
            .map(|i| after[i].0.saturating_sub(self.back_at))
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut csv = String::from("variant,t_s,calls,success_rate,attempts_per_call\n");
    println!(
        "\noutage: {CALLERS} callers, {CALLS_PER_SECOND} calls/s, server down {} s after {} s; max = 3",
        DOWN.as_secs(),
        STEADY.as_secs()
    );
    println!("| variant | calls | attempts/call before | attempts/call during the outage | recovery after the server is back |");
    println!("|---|---|---|---|---|");
    // The default budget first: the process-wide budget starts fresh.
    for (name, budgeted) in [("default budget", true), ("budget = none", false)] {
        let run = runtime.block_on(run(budgeted));
        let before = run.attempts_per_call(Duration::ZERO, run.down_at);
        let during = run.attempts_per_call(run.down_at, run.back_at);
        let recovery = run.recovery().map_or("not within the run".to_owned(), |d| {
            format!("{} ms", d.as_millis())
        });
        println!(
            "| {name} | {} | {before:.2} | {during:.2} | {recovery} |",
            run.calls.len()
        );
        for (at, calls, ok, attempts) in run.buckets() {
            csv.push_str(&format!(
                "{name},{:.2},{calls},{:.4},{:.3}\n",
                at.as_secs_f64(),
                if calls == 0 {
                    1.0
                } else {
                    ok as f64 / calls as f64
                },
                if calls == 0 {
                    0.0
                } else {
                    attempts as f64 / calls as f64
                },
            ));
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/outage.csv");
    std::fs::write(&path, csv).expect("write target/outage.csv");
    println!("per-bucket figures: {}", path.display());
}
