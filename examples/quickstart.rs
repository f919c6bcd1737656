//! db-retry in one minute, on embedded SQLite: no server needed.
//!
//! Eight tasks write orders into one SQLite file at the same time, with the busy timeout set to
//! zero, so SQLite answers `SQLITE_BUSY` whenever two writers collide. The `#[transaction]`
//! function retries each collision as a whole transaction; the tracing output shows every
//! retry as it happens, and the run ends with a summary and a check that every order landed
//! exactly once.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_retry::db_retry;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{SqliteConnection, SqlitePool};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer as _;

const WRITERS: i64 = 8;
const ORDERS_PER_WRITER: i64 = 40;

/// Record one order and add it to the customer's running total, atomically.
///
/// Both statements run in one transaction; if SQLite reports the database busy, the whole
/// transaction is rolled back and tried again on a fresh connection.
#[db_retry(max = 30, on = contention, base = 2ms, cap = 100ms)]
async fn place_order(
    #[transaction] tx: &mut SqliteConnection,
    customer: i64,
    cents: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO orders (customer, cents) VALUES (?, ?)")
        .bind(customer)
        .bind(cents)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE customers SET total_cents = total_cents + ? WHERE id = ?")
        .bind(cents)
        .bind(customer)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A read through the pool: retried on any transient error (the default).
#[db_retry]
async fn totals(pool: &SqlitePool) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders), (SELECT sum(cents) FROM orders),
                (SELECT sum(total_cents) FROM customers)",
    )
    .fetch_one(pool)
    .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let retries = RetryCounter::default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .compact()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .with(retries.clone())
        .init();

    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("quickstart.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // No waiting inside SQLite: a second writer gets SQLITE_BUSY at once.
        .busy_timeout(Duration::ZERO);
    let pool = SqlitePoolOptions::new()
        .max_connections(WRITERS as u32)
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, total_cents INTEGER NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL,
                              cents INTEGER NOT NULL);",
    )
    .execute(&pool)
    .await?;
    for id in 0..WRITERS {
        sqlx::query("INSERT INTO customers (id, total_cents) VALUES (?, 0)")
            .bind(id)
            .execute(&pool)
            .await?;
    }

    println!(
        "placing {} orders from {WRITERS} concurrent writers…",
        WRITERS * ORDERS_PER_WRITER
    );
    let started = Instant::now();
    let placed = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(report_progress(placed.clone(), started));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let pool = pool.clone();
        let placed = placed.clone();
        writers.push(tokio::spawn(async move {
            let mut failures = 0u64;
            for n in 0..ORDERS_PER_WRITER {
                match place_order(&pool, writer, 100 + n).await {
                    Ok(()) => {
                        placed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        eprintln!("order failed for good: {error}");
                        failures += 1;
                    }
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for writer in writers {
        failures += writer.await?;
    }
    progress.abort();
    let elapsed = started.elapsed();

    let (orders, order_cents, customer_cents) = totals(&pool).await?;
    let calls = (WRITERS * ORDERS_PER_WRITER) as u64;
    let by_class = retries.by_class();
    let retried: u64 = by_class.values().sum();

    println!();
    println!("summary ({:.2} s)", elapsed.as_secs_f64());
    println!("  {:<22} {:>8}", "calls", calls);
    println!("  {:<22} {:>8}", "retries", retried);
    for (class, count) in &by_class {
        println!("    {:<20} {:>8}", class, count);
    }
    println!("  {:<22} {:>8}", "failures", failures);
    println!("  {:<22} {:>8}", "orders in the database", orders);
    let consistent = orders as u64 == calls && order_cents == customer_cents;
    println!(
        "  every order landed exactly once and the totals agree: {}",
        if consistent { "yes" } else { "NO" }
    );
    if !consistent || failures > 0 {
        return Err("the run lost or duplicated writes".into());
    }
    if retried == 0 {
        println!("  (no collision happened this run; run it again, or raise WRITERS)");
    }
    Ok(())
}

/// After the first second, say how far along the run is.
async fn report_progress(placed: Arc<AtomicU64>, started: Instant) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        ticker.tick().await;
        println!(
            "  … {} of {} orders placed ({:.1} s)",
            placed.load(Ordering::Relaxed),
            WRITERS * ORDERS_PER_WRITER,
            started.elapsed().as_secs_f64()
        );
    }
}

/// Counts db-retry's "retrying" events by their `class` field.
#[derive(Clone, Default)]
struct RetryCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RetryCounter {
    fn by_class(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("counter lock").clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RetryCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields {
            class: Option<String>,
            retrying: bool,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "class" {
                    self.class = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.retrying = format!("{value:?}").starts_with("retrying");
                }
            }
        }
        if event.metadata().target() != "db_retry" {
            return;
        }
        let mut fields = Fields {
            class: None,
            retrying: false,
        };
        event.record(&mut fields);
        if let (true, Some(class)) = (fields.retrying, fields.class) {
            *self
                .counts
                .lock()
                .expect("counter lock")
                .entry(class)
                .or_default() += 1;
        }
    }
}
