//! The stale-node drain: after a confirmed failover, no call is served by a connection a pool
//! opened before it.
//!
//! After a failover the pool keeps its idle connections to the node that was demoted, and a
//! `SELECT 1` ping passes there, so every write gets 25006 until the pool is recycled by hand;
//! or the address now leads to a new server while old connections still lead to the old one.
//! A [`FailoverDrain`] on the pool's options turns away every connection opened before the
//! moment a failover was confirmed, so they are closed and replaced. It acts only on a
//! confirmed signal, never a guess:
//! - a connection refused a write as read-only (25006) somewhere in the process, and then a
//!   connection of this pool says `pg_is_in_recovery()`: this pool's server is a standby;
//! - a new connection of this pool reaches a server other than the one the pool's earlier
//!   connections reached (another postmaster start time or timeline).
//!
//! One terminated backend (57P01) or a refused connection is no such signal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::time::Instant;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnection, PgPoolOptions};

use crate::sqlx09::sqlx;

/// Bumped whenever any call in the process sees a write refused as read-only (25006): each
/// drain then asks its pool's connections whether their server is in recovery, for a while.
static READ_ONLY_REFUSALS: AtomicU64 = AtomicU64::new(0);

/// How long after a read-only refusal a drain keeps asking connections that predate it.
const ASK_FOR: Duration = Duration::from_secs(10);

/// A write was refused as read-only: what the retry driver reports.
pub(crate) fn read_only_refusal_seen() {
    READ_ONLY_REFUSALS.fetch_add(1, Ordering::Relaxed);
}

/// Drains a sqlx 0.9 PostgreSQL pool of connections opened before a confirmed failover. One per
/// pool; cloning it gives another handle to the same drain.
///
/// ```no_run
/// use db_retry_runtime::FailoverDrain;
/// use sqlx::postgres::PgPoolOptions;
///
/// # fn build() -> Result<sqlx::PgPool, sqlx::Error> {
/// let drain = FailoverDrain::new();
/// let pool = drain
///     .install(PgPoolOptions::new().max_connections(10))
///     .connect_lazy("postgres://app@db.internal/app")?;
/// # Ok(pool) }
/// ```
///
/// `install` takes sqlx's one `before_acquire` and one `after_connect` slot. To keep a callback
/// of your own there, call [`FailoverDrain::keeps`] and [`FailoverDrain::connected`] from it
/// instead:
///
/// ```no_run
/// use db_retry_runtime::FailoverDrain;
/// use sqlx::postgres::PgPoolOptions;
///
/// let drain = FailoverDrain::new();
/// let (before, after) = (drain.clone(), drain.clone());
/// let options = PgPoolOptions::new()
///     .before_acquire(move |conn, meta| {
///         let drain = before.clone();
///         Box::pin(async move {
///             if !drain.keeps(conn, &meta).await? {
///                 return Ok(false);
///             }
///             // ... your own check ...
///             Ok(true)
///         })
///     })
///     .after_connect(move |conn, _meta| {
///         let drain = after.clone();
///         Box::pin(async move { drain.connected(conn).await })
///     });
/// ```
#[derive(Clone, Debug, Default)]
pub struct FailoverDrain {
    state: Arc<DrainState>,
}

#[derive(Debug, Default)]
struct DrainState {
    cold: Mutex<Cold>,
}

#[derive(Debug, Default)]
struct Cold {
    /// When a failover was last confirmed: connections opened before are turned away.
    drained_at: Option<Instant>,
    /// The newest server the pool's connections have reached.
    server: Option<Server>,
    /// The read-only refusals already acted on.
    refusals_seen: u64,
    /// When the last read-only refusal was acted on: for `ASK_FOR` after it, connections
    /// opened before it are asked about recovery.
    asking_since: Option<Instant>,
}

impl FailoverDrain {
    /// A drain for one pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// `options` with this drain in their `before_acquire` and `after_connect` callbacks
    /// (replacing any set before; see the type's docs to keep yours).
    pub fn install(&self, options: PgPoolOptions) -> PgPoolOptions {
        let (before, after) = (self.clone(), self.clone());
        options
            .before_acquire(move |conn, meta| {
                let drain = before.clone();
                Box::pin(async move { drain.keeps(conn, &meta).await })
            })
            .after_connect(move |conn, _meta| {
                let drain = after.clone();
                Box::pin(async move { drain.connected(conn).await })
            })
    }

    /// Whether the pool may hand out `conn` (what `before_acquire` returns): `false` for a
    /// connection opened before the last confirmed failover, and for one whose server turns out
    /// to be in recovery after a write was refused as read-only. Asks the server only in the
    /// seconds after such a refusal.
    pub async fn keeps(
        &self,
        conn: &mut PgConnection,
        meta: &PoolConnectionMetadata,
    ) -> Result<bool, sqlx::Error> {
        let now = Instant::now();
        let opened = now.checked_sub(meta.age).unwrap_or(now);
        let ask = {
            let mut cold = self.lock();
            if cold.drained_at.is_some_and(|drained| opened < drained) {
                return Ok(false);
            }
            let refusals = READ_ONLY_REFUSALS.load(Ordering::Relaxed);
            if refusals != cold.refusals_seen {
                cold.refusals_seen = refusals;
                cold.asking_since = Some(now);
            }
            cold.asking_since
                .is_some_and(|since| now < since + ASK_FOR && opened < since)
        };
        if !ask {
            return Ok(true);
        }
        // A connection that cannot say is handed out as before: the drain never makes a
        // working connection fail.
        let Ok(in_recovery) = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
        else {
            return Ok(true);
        };
        if in_recovery {
            // Confirmed: this pool's older connections lead to a standby. Every one of them
            // goes, not just this one.
            self.drain_at(now);
            return Ok(false);
        }
        Ok(true)
    }

    /// Note which server a new connection reached (what `after_connect` runs). A newer server
    /// than before (a later timeline; on the same one, a primary rather than a standby, or one
    /// started later: promoted, failed over to, restarted) drains every older connection; a connection that reached an older one than the pool
    /// already knows (a connect that was under way across a switch) is refused, so sqlx opens
    /// another. The drain assumes one server behind the address at a time.
    ///
    /// A server that will not say who it is (the query refused, say by a pooler) is let be.
    pub async fn connected(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let Some(server) = Server::of(conn).await else {
            return Ok(());
        };
        let now = Instant::now();
        let newer = {
            let mut cold = self.lock();
            match &cold.server {
                Some(known) if server < *known => {
                    return Err(sqlx::Error::Protocol(format!(
                        "this connection reached a server older than the pool's current one \
                         ({server:?} < {known:?}): refused by db-retry's FailoverDrain"
                    )));
                }
                Some(known) => {
                    let newer = server > *known;
                    cold.server = Some(server);
                    newer
                }
                None => {
                    cold.server = Some(server);
                    false
                }
            }
        };
        if newer {
            self.drain_at(now);
        }
        Ok(())
    }

    /// Turn away every connection opened before now, as a confirmed failover does (for a signal
    /// of your own: an orchestrator's notice, a health check).
    pub fn drain(&self) {
        self.drain_at(Instant::now());
    }

    /// When the pool was last drained, if ever.
    pub fn drained_at(&self) -> Option<Instant> {
        self.lock().drained_at
    }

    fn drain_at(&self, at: Instant) {
        let mut cold = self.lock();
        if cold.drained_at.is_none_or(|drained| drained < at) {
            cold.drained_at = Some(at);
            tracing::warn!(
                target: "db_retry",
                "failover confirmed: the pool's connections opened before now are closed"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cold> {
        self.state
            .cold
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Which server a connection reached, ordered from older to newer: its timeline, then a
/// primary over a standby of the same timeline (what a failover moves to), then when its
/// postmaster started (a restart).
#[derive(Clone, Debug, PartialEq, PartialOrd)]
pub(crate) struct Server {
    timeline: i64,
    writable: bool,
    started: f64,
}

impl Server {
    /// Whether it takes writes (a primary, not a standby in recovery).
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// Asks the server. The timeline comes from the current WAL file's name on a primary (the
    /// control file keeps the old one until the first checkpoint after a promotion), from the
    /// control file on a standby. `None` when the server does not answer the question.
    pub(crate) async fn of(conn: &mut PgConnection) -> Option<Server> {
        let (timeline, writable, started): (i64, bool, f64) = sqlx::query_as(
            "SELECT CASE WHEN pg_is_in_recovery() \
                         THEN (SELECT timeline_id FROM pg_control_checkpoint())::bigint \
                         ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint \
                    END, \
                    NOT pg_is_in_recovery(), \
                    extract(epoch FROM pg_postmaster_start_time())::float8",
        )
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .ok()?;
        Some(Server {
            timeline,
            writable,
            started,
        })
    }
}
