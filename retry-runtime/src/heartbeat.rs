//! The heartbeat: a background monitor of one pool's database, so that `/health` needs no query
//! per request, a restarted or demoted server is noticed before a user request meets one of its
//! dead or stale connections, and retries sleeping through an outage are woken when it ends.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::time::Instant;

use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, PgPool};
use tokio::task::JoinHandle;

use crate::drain::{FailoverDrain, Server};
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
/// It stops when the pool is closed or this handle is dropped. It notices a change within about
/// one interval: the recovery figures in BENCHMARKS.md were taken with a 25 ms heartbeat.
/// Every `RECONNECT_EVERY` beats it connects afresh, so it follows an address that moved while
/// the old server stayed up.
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
#[must_use = "the heartbeat stops when its handle is dropped"]
pub struct Heartbeat {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Start the heartbeat of `pool` (on the current tokio runtime), draining through `drain`,
    /// which must be the one installed on the pool's options.
    #[must_use = "the heartbeat stops when its handle is dropped"]
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

/// Beats between fresh connections.
const RECONNECT_EVERY: u32 = 20;

async fn beat(pool: PgPool, drain: FailoverDrain, interval: Duration, shared: Arc<Shared>) {
    let mut connection: Option<PgConnection> = None;
    let mut server: Option<Server> = None;
    let mut down = false;
    let mut beats = 0u32;
    loop {
        let started = Instant::now();
        beats = beats.wrapping_add(1);
        if beats.is_multiple_of(RECONNECT_EVERY) {
            if let Some(old) = connection.take() {
                let _ = old.close().await;
            }
        }
        // No ping may hold the beat up (a blackholed server would).
        let limit = interval.max(Duration::from_millis(200));
        let result = tokio::time::timeout(limit, ping(&pool, &mut connection)).await;
        let health = match result {
            Ok(Ok((seen, in_recovery))) => {
                let newer = server.as_ref().is_some_and(|known| seen > *known);
                if server.as_ref().is_none_or(|known| seen >= *known) {
                    server = Some(seen);
                }
                let health = HeartbeatHealth {
                    reachable: true,
                    in_recovery,
                    latency: Some(started.elapsed()),
                    checked_at: Some(Instant::now()),
                    error: None,
                };
                // Said before acting on it, so a reader who sees the drain sees this too.
                *shared.health.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(health.clone());
                // A newer server than before: every older connection of the pool goes.
                if newer {
                    drain.drain();
                }
                if std::mem::take(&mut down) {
                    tracing::info!(
                        target: "db_retry",
                        "the database answers again: waking retries in backoff"
                    );
                    crate::driver::recovered().notify_waiters();
                }
                health
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
        // The next beat, or the pool's closing, whichever comes first.
        let next = interval.saturating_sub(started.elapsed());
        if pool.is_closed() || tokio::time::timeout(next, pool.close_event()).await.is_ok() {
            break;
        }
    }
    if let Some(connection) = connection {
        let _ = connection.close().await;
    }
}

/// One ping: on the heartbeat's connection, and if that one is dead, at once on a new one (so
/// a restarted server is seen in this beat, not the next).
async fn ping(
    pool: &PgPool,
    connection: &mut Option<PgConnection>,
) -> Result<(Server, bool), sqlx::Error> {
    let reused = connection.is_some();
    match ask(pool, connection).await {
        Err(_) if reused => ask(pool, connection).await,
        result => result,
    }
}

async fn ask(
    pool: &PgPool,
    connection: &mut Option<PgConnection>,
) -> Result<(Server, bool), sqlx::Error> {
    let conn = match connection {
        Some(conn) => conn,
        None => connection.insert(PgConnection::connect_with(&pool.connect_options()).await?),
    };
    // One round trip a beat: which server it is says whether it is in recovery too.
    match Server::of(conn).await {
        Some(server) => {
            let in_recovery = !server.writable();
            Ok((server, in_recovery))
        }
        None => {
            *connection = None;
            Err(sqlx::Error::Protocol(
                "the server did not say which server it is".into(),
            ))
        }
    }
}
