//! Chaos: idempotent reads through a fault proxy that resets a fraction of connections, at
//! fixed concurrency. Each read opens its own connection (as behind a pooler that drops
//! sockets), so every call meets the fault rate. Compares no retry, `#[db_retry]` (max = 3,
//! defaults) and a hand-written backon loop with the same policy; prints success rate and
//! latency percentiles, and writes `target/chaos.csv` for `benches/plot.py`.
//!
//! Recovery: the server is stopped and started again 2 s later under load; for each jitter kind
//! at defaults, the time from the server accepting connections to the first successful call.
//!
//! `cargo bench --bench chaos` (needs PostgreSQL server binaries, as the test suite does).

use db_retry_test_kit as support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use db_retry::db_retry;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use support::pg::PgServer;
use support::proxy::FaultProxy;

const CALLS: usize = 10_000;
const CONCURRENCY: usize = 16;
const FAULT_RATES: [f64; 3] = [0.01, 0.05, 0.10];

async fn read_once(options: &PgConnectOptions) -> Result<i32, sqlx::Error> {
    let mut conn = options.connect().await?;
    let value = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
    // The close handshake through a faulty link can fail after the answer arrived; the read
    // has succeeded by then.
    let _ = conn.close().await;
    Ok(value)
}

#[db_retry(max = 3)]
async fn read_db_retry(options: &PgConnectOptions) -> Result<i32, sqlx::Error> {
    read_once(options).await
}

async fn read_backon(options: &PgConnectOptions) -> Result<i32, sqlx::Error> {
    (|| read_once(options))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(3)
                .with_jitter(),
        )
        .await
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    NoRetry,
    DbRetry,
    Backon,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::NoRetry => "no retry",
            Variant::DbRetry => "#[db_retry]",
            Variant::Backon => "backon",
        }
    }

    async fn call(self, options: &PgConnectOptions) -> Result<i32, sqlx::Error> {
        match self {
            Variant::NoRetry => read_once(options).await,
            Variant::DbRetry => read_db_retry(options).await,
            Variant::Backon => read_backon(options).await,
        }
    }
}

struct Outcome {
    successes: usize,
    latencies: Vec<Duration>,
}

async fn run(variant: Variant, options: &PgConnectOptions) -> Outcome {
    let next = Arc::new(AtomicU32::new(0));
    let results = Arc::new(Mutex::new((0usize, Vec::with_capacity(CALLS))));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, results, options) = (next.clone(), results.clone(), options.clone());
        workers.push(tokio::spawn(async move {
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < CALLS {
                let started = Instant::now();
                let ok = variant.call(&options).await.is_ok();
                let took = started.elapsed();
                let mut results = results.lock().unwrap();
                results.0 += usize::from(ok);
                results.1.push(took);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let (successes, mut latencies) = std::mem::take(&mut *results.lock().unwrap());
    latencies.sort();
    Outcome {
        successes,
        latencies,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn chaos() {
    let server = PgServer::builder().max_connections(200).start();
    let proxy = FaultProxy::start(server.addr()).await;
    let options: PgConnectOptions = server.url_via(proxy.addr()).parse().unwrap();
    let mut csv = String::from("fault_rate,variant,success_rate,p50_ms,p99_ms,max_ms\n");
    println!("\nchaos: {CALLS} reads per run, {CONCURRENCY} concurrent, one connection per read");
    println!("| fault rate | variant | success | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for (i, rate) in FAULT_RATES.into_iter().enumerate() {
        for variant in [Variant::NoRetry, Variant::DbRetry, Variant::Backon] {
            proxy.reset_fraction(rate, 42 + i as u64);
            let outcome = run(variant, &options).await;
            proxy.pass();
            let success = outcome.successes as f64 / CALLS as f64 * 100.0;
            let (p50, p99, max) = (
                ms(percentile(&outcome.latencies, 0.50)),
                ms(percentile(&outcome.latencies, 0.99)),
                ms(*outcome.latencies.last().unwrap()),
            );
            println!(
                "| {:.0} % | {} | {success:.2} % | {p50:.1} | {p99:.1} | {max:.1} |",
                rate * 100.0,
                variant.name()
            );
            csv.push_str(&format!(
                "{rate},{},{success:.3},{p50:.3},{p99:.3},{max:.3}\n",
                variant.name()
            ));
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/chaos.csv");
    std::fs::write(&path, csv).expect("write chaos.csv");
    println!("(written to {})", path.display());
}

macro_rules! recovering_read {
    ($name:ident, $jitter:ident) => {
        #[db_retry(max = 100, jitter = $jitter, deadline = 30s)]
        async fn $name(options: &PgConnectOptions) -> Result<i32, sqlx::Error> {
            read_once(options).await
        }
    };
}
recovering_read!(recover_full, full);
recovering_read!(recover_equal, equal);
recovering_read!(recover_decorrelated, decorrelated);
recovering_read!(recover_none, none);

/// Stops the server under load, starts it 2 s later, and measures from the moment it accepts
/// connections (a 1 ms connect probe) to the first successful call of the load.
async fn recovery_once(server: &Arc<PgServer>, options: &PgConnectOptions, jitter: &str) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let down_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let first_success: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, down_at, first) = (stop.clone(), down_at.clone(), first_success.clone());
        let (options, jitter) = (options.clone(), jitter.to_owned());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = match jitter.as_str() {
                    "full" => recover_full(&options).await.is_ok(),
                    "equal" => recover_equal(&options).await.is_ok(),
                    "decorrelated" => recover_decorrelated(&options).await.is_ok(),
                    _ => recover_none(&options).await.is_ok(),
                };
                let now = Instant::now();
                if ok && down_at.lock().unwrap().is_some_and(|down| now > down) {
                    first.lock().unwrap().get_or_insert(now);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = server.clone();
    tokio::task::spawn_blocking(move || stopping.stop_fast())
        .await
        .unwrap();
    *down_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let starting = server.clone();
    let restart = tokio::task::spawn_blocking(move || starting.start_again());
    let accepting = loop {
        if let Ok(conn) = options.connect().await {
            let _ = conn.close().await;
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    restart.await.unwrap();
    let first = loop {
        if let Some(first) = *first_success.lock().unwrap() {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    if first >= accepting {
        ms(first - accepting)
    } else {
        -ms(accepting - first)
    }
}

async fn recovery() {
    const RUNS: usize = 5;
    let server = Arc::new(PgServer::start());
    let options: PgConnectOptions = server.url().parse().unwrap();
    println!("\nrecovery: stop (fast), start again 2 s later, 4 callers; defaults (base 100 ms, cap 5 s)");
    println!(
        "| jitter | heartbeat | runs (ms from accepting to first success) | median ms | worst ms |"
    );
    println!("|---|---|---|---|---|");
    for heartbeat in [false, true] {
        // A heartbeat every 25 ms on a pool of its own: when the server accepts again it wakes
        // every retry sleeping in its backoff, whichever pool the retry uses.
        let watching = heartbeat.then(|| {
            let drain = db_retry::FailoverDrain::new();
            let pool = drain
                .install(sqlx::postgres::PgPoolOptions::new().max_connections(1))
                .connect_lazy_with(options.clone());
            db_retry::Heartbeat::spawn(&pool, &drain, Duration::from_millis(25))
        });
        for jitter in ["full", "equal", "decorrelated", "none"] {
            let mut runs = Vec::new();
            for _ in 0..RUNS {
                runs.push(recovery_once(&server, &options, jitter).await);
            }
            let (shown, median, worst) = support::bench::runs_median_worst(runs);
            let heartbeat = if heartbeat { "25 ms" } else { "none" };
            println!("| {jitter} | {heartbeat} | {shown} | {median:.0} | {worst:.0} |");
        }
        drop(watching);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects one part.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if filter.as_deref().is_none_or(|f| "chaos".contains(f)) {
            chaos().await;
        }
        if filter.as_deref().is_none_or(|f| "recovery".contains(f)) {
            recovery().await;
        }
    });
}
