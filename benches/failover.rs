//! Failover recovery per jitter kind: a synchronous primary/standby pair behind the fault proxy;
//! four callers read in a loop through `#[db_retry]` (defaults but the jitter, `deadline = 30s`)
//! while the primary is killed (immediate shutdown), the standby promoted a second later
//! (`pg_ctl promote -w`) and the address switched. Reported: ms from the switch to the first
//! successful call, five runs per jitter kind, without and with a 25 ms `Heartbeat` (which wakes
//! the retries sleeping in their backoff once it reaches the new primary).
//!
//! `cargo bench --bench failover` (needs PostgreSQL server binaries, as the test suite does).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_retry::db_retry;
use db_retry_test_kit::bench::runs_median_worst;
use db_retry_test_kit::pg::PgServer;
use db_retry_test_kit::proxy::FaultProxy;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

macro_rules! read_with {
    ($name:ident, $jitter:ident) => {
        #[db_retry(jitter = $jitter, deadline = 30s, max = 100)]
        async fn $name(pool: &PgPool) -> Result<i64, sqlx::Error> {
            sqlx::query_scalar("SELECT count(*) FROM pg_class")
                .fetch_one(pool)
                .await
        }
    };
}
read_with!(read_full, full);
read_with!(read_equal, equal);
read_with!(read_decorrelated, decorrelated);
read_with!(read_none, none);

async fn read(pool: &PgPool, jitter: &str) -> bool {
    match jitter {
        "full" => read_full(pool).await.is_ok(),
        "equal" => read_equal(pool).await.is_ok(),
        "decorrelated" => read_decorrelated(pool).await.is_ok(),
        _ => read_none(pool).await.is_ok(),
    }
}

/// One failover; ms from the switch to the first success after it. With `heartbeat`, the pool
/// has a `FailoverDrain` and a 25 ms `Heartbeat`.
async fn failover_once(jitter: &'static str, heartbeat: bool) -> f64 {
    let (primary, standby) = PgServer::synchronous_pair("SELECT 1").await;
    let proxy = FaultProxy::start(primary.addr()).await;
    let drain = db_retry::FailoverDrain::new();
    let options = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(500));
    let options = if heartbeat {
        drain.install(options)
    } else {
        options
    };
    let pool = options
        .connect_lazy(&primary.url_via(proxy.addr()))
        .unwrap();
    let watching =
        heartbeat.then(|| db_retry::Heartbeat::spawn(&pool, &drain, Duration::from_millis(25)));
    let stop = Arc::new(AtomicBool::new(false));
    let switched: Arc<Mutex<Option<Instant>>> = Arc::default();
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut load = Vec::new();
    for _ in 0..4 {
        let (pool, stop, switched, first) =
            (pool.clone(), stop.clone(), switched.clone(), first.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = read(&pool, jitter).await;
                let now = Instant::now();
                if ok && switched.lock().unwrap().is_some_and(|at| now > at) {
                    first.lock().unwrap().get_or_insert(now);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killing = tokio::task::spawn_blocking(move || {
        primary.stop_immediate();
        primary
    });
    let primary = killing.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let standby = tokio::task::spawn_blocking(move || {
        standby.promote();
        standby
    })
    .await
    .unwrap();
    proxy.retarget(standby.addr());
    let at = Instant::now();
    *switched.lock().unwrap() = Some(at);
    let first = loop {
        if let Some(first) = *first.lock().unwrap() {
            break first;
        }
        assert!(
            at.elapsed() < Duration::from_secs(30),
            "no success after the failover"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    drop((watching, primary, standby));
    first.duration_since(at).as_secs_f64() * 1000.0
}

fn main() {
    const RUNS: usize = 5;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("\nfailover: kill the primary, promote the standby 1 s later, switch the address; 4 callers");
        println!("| jitter | heartbeat | runs (ms from the switch to the first success) | median ms | worst ms |");
        println!("|---|---|---|---|---|");
        for heartbeat in [false, true] {
            for jitter in ["full", "equal", "decorrelated", "none"] {
                let mut runs = Vec::new();
                for _ in 0..RUNS {
                    runs.push(failover_once(jitter, heartbeat).await);
                }
                let (shown, median, worst) = runs_median_worst(runs);
                let heartbeat = if heartbeat { "25 ms" } else { "none" };
                println!("| {jitter} | {heartbeat} | {shown} | {median:.0} | {worst:.0} |");
            }
        }
    });
}
