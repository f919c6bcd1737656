//! The heartbeat: a background monitor of one pool's database, so that `/health` needs no query
//! per request, a restarted or demoted server is noticed before a user request meets one of its
//! dead or stale connections, and retries sleeping through an outage are woken when it ends.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, PgPool};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::drain::FailoverDrain;
use crate::sqlx09::sqlx;

/// What the heartbeat last saw of the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatHealth {
    /// Whether the last ping got an answer.
    pub reachable: bool,
    /// Whether the server said it is in recovery (a standby: it refuses writes).
    pub in_recovery: bool,
    /// How long the last successful ping took.
    pub latency: Option<Duration>,
    /// When the last ping finished; `None` before the first.
    pub checked_at: Option<Instant>,
    /// Why the last ping failed.
    pub error: Option<String>,
}

#[derive(Default)]
struct Shared {
    health: Mutex<Option<HeartbeatHealth>>,
}

/// A background task that pings a pool's database every `interval` on a connection of its own:
/// it keeps the latest [`HeartbeatHealth`] for a `/health` handler; when the server it reaches
/// is not the one before (restarted, failed over: another postmaster start time or timeline) it
/// drains the pool's older connections through the pool's [`FailoverDrain`]; and when the
/// database answers again after failing, it wakes every retry sleeping in its backoff, so the
/// retry runs now rather than after the longest delay drawn (each was granted by the retry
/// budget already: waking adds no retries).
///
/// It stops when the pool is closed or this handle is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use db_retry_runtime::{FailoverDrain, Heartbeat};
/// use sqlx::postgres::PgPoolOptions;
///
/// # async fn run() -> Result<(), sqlx::Error> {
/// let drain = FailoverDrain::new();
/// let pool = drain.install(PgPoolOptions::new()).connect_lazy("postgres://app@db/app")?;
/// let heartbeat = Heartbeat::spawn(&pool, &drain, Duration::from_secs(1));
/// // In a /health handler, no query:
/// let reachable = heartbeat.health().is_some_and(|health| health.reachable);
/// # Ok(()) }
/// ```
pub struct Heartbeat {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Start the heartbeat of `pool` (on the current tokio runtime), draining through `drain`,
    /// which must be the one installed on the pool's options.
    pub fn spawn(pool: &PgPool, drain: &FailoverDrain, interval: Duration) -> Heartbeat {
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(beat(
            pool.clone(),
            drain.clone(),
            interval.max(Duration::from_millis(10)),
            shared.clone(),
        ));
        Heartbeat { shared, task }
    }

    /// What the last ping saw; `None` before the first has finished.
    pub fn health(&self) -> Option<HeartbeatHealth> {
        self.shared
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

/// The server a connection reached, and whether it is in recovery.
type Identity = (String, i64, bool);

async fn beat(pool: PgPool, drain: FailoverDrain, interval: Duration, shared: Arc<Shared>) {
    let mut connection: Option<PgConnection> = None;
    let mut server: Option<(String, i64)> = None;
    let mut down = false;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        ticks.tick().await;
        let started = Instant::now();
        // No ping may take longer than the interval (a blackholed server would hold it).
        let limit = interval.max(Duration::from_millis(500));
        let result = tokio::time::timeout(limit, ping(&pool, &mut connection)).await;
        let health = match result {
            Ok(Ok((start_time, timeline, in_recovery))) => {
                let seen = (start_time, timeline);
                // Another server than before: every older connection of the pool goes.
                if server.as_ref().is_some_and(|known| *known != seen) {
                    drain.drain();
                }
                server = Some(seen);
                if std::mem::take(&mut down) {
                    tracing::info!(
                        target: "db_retry",
                        "the database answers again: waking retries in backoff"
                    );
                    crate::driver::recovered().notify_waiters();
                }
                HeartbeatHealth {
                    reachable: true,
                    in_recovery,
                    latency: Some(started.elapsed()),
                    checked_at: Some(Instant::now()),
                    error: None,
                }
            }
            failed => {
                connection = None;
                down = true;
                HeartbeatHealth {
                    reachable: false,
                    in_recovery: false,
                    latency: None,
                    checked_at: Some(Instant::now()),
                    error: Some(match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("no answer within {limit:?}"),
                    }),
                }
            }
        };
        *shared.health.lock().unwrap_or_else(PoisonError::into_inner) = Some(health);
    }
    if let Some(connection) = connection {
        let _ = connection.close().await;
    }
}

async fn ping(
    pool: &PgPool,
    connection: &mut Option<PgConnection>,
) -> Result<Identity, sqlx::Error> {
    if connection.is_none() {
        *connection = Some(PgConnection::connect_with(&pool.connect_options()).await?);
    }
    let Some(conn) = connection.as_mut() else {
        unreachable!("connected above");
    };
    let result = sqlx::query_as(
        "SELECT pg_postmaster_start_time()::text, \
                (SELECT timeline_id FROM pg_control_checkpoint())::bigint, \
                pg_is_in_recovery()",
    )
    .persistent(false)
    .fetch_one(&mut *conn)
    .await;
    if result.is_err() {
        *connection = None;
    }
    result
}
