//! Startup and health: wait for the database instead of crashing, and report whether it answers.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::exponential;
use crate::classify::{sealed, ErrorClass};

/// Connect options that [`wait_until_ready`] can probe: `PgConnectOptions`,
/// `MySqlConnectOptions` or `SqliteConnectOptions` of sqlx 0.9 or 0.8, with the matching
/// features on.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not connect options of a sqlx version and driver db-retry was built for",
    note = "enable the db-retry features for this sqlx version (`sqlx09` or `sqlx08`) and driver (`postgres`, `mysql`, `sqlite`)"
)]
pub trait ConnectTarget: sealed::Sealed {
    /// That sqlx version's error.
    type Error: std::error::Error + Send + Sync + 'static;

    #[doc(hidden)]
    fn probe(&self) -> impl Future<Output = Result<(), Self::Error>> + Send + '_;

    #[doc(hidden)]
    fn class(error: &Self::Error) -> ErrorClass;

    #[doc(hidden)]
    fn timed_out(message: String) -> Self::Error;
}

/// A sqlx pool that [`health`] can probe: `Pool<DB>` of sqlx 0.9 or 0.8, with the matching
/// feature on.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pool of a sqlx version db-retry was built for",
    note = "enable the db-retry feature for this pool's sqlx version: `sqlx09` or `sqlx08`"
)]
pub trait PoolProbe: sealed::Sealed {
    #[doc(hidden)]
    fn size(&self) -> u32;

    #[doc(hidden)]
    fn num_idle(&self) -> usize;

    #[doc(hidden)]
    fn ping(&self) -> impl Future<Output = Result<(), String>> + Send + '_;
}

/// Connect until the server answers a ping, or `timeout` passes.
///
/// Meant for service startup, where the database may still be starting (connection refused,
/// 57P03 "the database system is starting up") or briefly full. Transient failures are retried
/// with exponential backoff from 50 ms up to 2 s, with an INFO event on target `db_retry` for
/// each; a permanent failure — a bad URL, an unknown database, an authentication failure — is
/// returned at once, because waiting cannot fix it. When `timeout` passes, the last error is
/// returned.
///
/// ```no_run
/// use std::time::Duration;
/// use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
///
/// # async fn start() -> Result<(), sqlx::Error> {
/// let options: PgConnectOptions = "postgres://app@db/app".parse()?;
/// db_retry_runtime::wait_until_ready(&options, Duration::from_secs(60)).await?;
/// let pool = PgPoolOptions::new().connect_with(options).await?;
/// # Ok(())
/// # }
/// ```
pub async fn wait_until_ready<O: ConnectTarget>(
    options: &O,
    timeout: Duration,
) -> Result<(), O::Error> {
    const BASE: Duration = Duration::from_millis(50);
    const CAP: Duration = Duration::from_secs(2);
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        // Bounded by what is left of `timeout`: against a host that never answers, a connect
        // attempt would otherwise wait for the operating system's own time-out (minutes).
        let left = timeout.saturating_sub(started.elapsed());
        let error = match tokio::time::timeout(left, options.probe()).await {
            Ok(Ok(())) => {
                if attempt > 0 {
                    tracing::info!(
                        target: "db_retry",
                        attempts = attempt + 1,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "database is ready"
                    );
                }
                return Ok(());
            }
            Ok(Err(error)) => error,
            Err(_) => O::timed_out(format!("the database did not answer within {timeout:?}")),
        };
        let class = O::class(&error);
        if class == ErrorClass::Permanent {
            return Err(error);
        }
        let delay = exponential(BASE, CAP, attempt);
        let elapsed = started.elapsed();
        if elapsed + delay >= timeout {
            tracing::warn!(
                target: "db_retry",
                attempts = attempt + 1,
                waited_ms = elapsed.as_millis() as u64,
                error = %error,
                "database did not become ready in time"
            );
            return Err(error);
        }
        attempt += 1;
        tracing::info!(
            target: "db_retry",
            attempt,
            waited_ms = elapsed.as_millis() as u64,
            delay_ms = delay.as_millis() as u64,
            class = class.as_str(),
            error = %error,
            "waiting for the database"
        );
        tokio::time::sleep(delay).await;
    }
}

/// A snapshot of a pool and whether its database answers, from [`health`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Whether a connection could be had and answered a ping within the probe's time limit.
    pub reachable: bool,
    /// How long acquiring and pinging took, when it succeeded.
    pub latency: Option<Duration>,
    /// Connections the pool holds, idle or in use.
    pub size: u32,
    /// Connections sitting idle in the pool.
    pub idle: usize,
    /// Connections checked out right now (not counting the probe's own).
    pub in_use: u32,
    /// Why the database was not reachable.
    pub error: Option<String>,
}

/// Probe the pool's database: acquire a connection and ping it, giving up after `limit` so a
/// health endpoint answers promptly even while the server is down.
///
/// ```no_run
/// # async fn probe(pool: sqlx::PgPool) {
/// let health = db_retry_runtime::health(&pool, std::time::Duration::from_secs(1)).await;
/// if !health.reachable {
///     eprintln!("database unavailable: {:?}", health.error);
/// }
/// # }
/// ```
pub async fn health<P: PoolProbe>(pool: &P, limit: Duration) -> Health {
    let (size, idle) = (pool.size(), pool.num_idle());
    let in_use = size.saturating_sub(idle as u32);
    let started = Instant::now();
    let outcome = match tokio::time::timeout(limit, pool.ping()).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    };
    Health {
        reachable: outcome.is_ok(),
        latency: outcome.as_ref().ok().copied(),
        size,
        idle,
        in_use,
        error: outcome.err(),
    }
}
