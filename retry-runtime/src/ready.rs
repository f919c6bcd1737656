//! Startup and health: wait for the database instead of crashing, and report whether it answers.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, Database, Pool};
use tokio::time::Instant;

use crate::backoff::exponential;
use crate::classify::{classify_sqlx, ErrorClass};

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
pub async fn wait_until_ready<O>(options: &O, timeout: Duration) -> Result<(), sqlx::Error>
where
    O: ConnectOptions,
    O::Connection: Sized,
{
    const BASE: Duration = Duration::from_millis(50);
    const CAP: Duration = Duration::from_secs(2);
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        // Bounded by what is left of `timeout`: against a host that never answers, a connect
        // attempt would otherwise wait for the operating system's own time-out (minutes).
        let left = timeout.saturating_sub(started.elapsed());
        let probe = async {
            let mut connection = options.connect().await?;
            connection.ping().await?;
            Ok::<_, sqlx::Error>(connection)
        };
        let error = match tokio::time::timeout(left, probe).await {
            Ok(Ok(connection)) => {
                if attempt > 0 {
                    tracing::info!(
                        target: "db_retry",
                        attempts = attempt + 1,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "database is ready"
                    );
                }
                // Closing politely is a courtesy; a failure here says nothing about readiness.
                let _ = connection.close().await;
                return Ok(());
            }
            Ok(Err(error)) => error,
            Err(_) => sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the database did not answer within {timeout:?}"),
            )),
        };
        let class = classify_sqlx(&error);
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
pub async fn health<DB: Database>(pool: &Pool<DB>, limit: Duration) -> Health {
    let (size, idle) = (pool.size(), pool.num_idle());
    let in_use = size.saturating_sub(idle as u32);
    let started = Instant::now();
    let probe = async {
        let mut connection = pool.acquire().await?;
        connection.ping().await
    };
    let outcome = match tokio::time::timeout(limit, probe).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(error)) => Err(error.to_string()),
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
