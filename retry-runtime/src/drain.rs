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

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use tokio::time::Instant;

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
    /// The server the pool's connections reach: postmaster start time and timeline.
    server: Option<(String, i64)>,
    /// The read-only refusals already acted on.
    refusals_seen: u64,
    /// Until when connections opened before `asking_since` are asked about recovery.
    asking_until: Option<Instant>,
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
                cold.asking_until = Some(now + ASK_FOR);
            }
            match (cold.asking_since, cold.asking_until) {
                (Some(since), Some(until)) if now < until => opened < since,
                _ => false,
            }
        };
        if !ask {
            return Ok(true);
        }
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await?;
        if in_recovery {
            // Confirmed: this pool's older connections lead to a standby. Every one of them
            // goes, not just this one.
            self.drain_at(now);
            return Ok(false);
        }
        Ok(true)
    }

    /// Note which server a new connection reached (what `after_connect` runs); a server other
    /// than the one before drains every older connection.
    pub async fn connected(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let server: (String, i64) = sqlx::query_as(
            "SELECT pg_postmaster_start_time()::text, \
                    (SELECT timeline_id FROM pg_control_checkpoint())::bigint",
        )
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
        let now = Instant::now();
        let changed = {
            let mut cold = self.lock();
            let changed = cold.server.as_ref().is_some_and(|known| *known != server);
            cold.server = Some(server);
            changed
        };
        if changed {
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
