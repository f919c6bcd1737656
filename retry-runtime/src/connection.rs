//! Connections for the `#[acquire]` and `#[transaction]` parameter modes.
//!
//! A fresh connection per attempt: a broken connection must never be what the next attempt runs
//! on, and sqlx only notices a dead connection when it pings it.

use std::error::Error as StdError;
use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

use crate::classify::ErrorClass;
use crate::driver::{Phase, Verdict};

/// How long cleaning up after a failed attempt may take (rolling back what it left open) before
/// the connection is closed instead. A healthy server answers a ROLLBACK in far less; one that
/// does not is not a server to hand the connection back to.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(1);

/// A sqlx connection type that `#[acquire]` and `#[transaction]` can take from a pool, for each
/// attempt: `PgConnection`, `MySqlConnection` or `SqliteConnection` of sqlx 0.9 or 0.8, with the
/// matching features on. The rewritten function takes `&Self::Pool` in its place.
#[diagnostic::on_unimplemented(
    message = "#[acquire] and #[transaction] need a sqlx connection type that db-retry was built for, and `{Self}` is not one",
    label = "not a connection type db-retry can take from a pool",
    note = "db-retry handles `PgConnection`, `MySqlConnection` and `SqliteConnection` of sqlx 0.9 (feature `sqlx09`) and sqlx 0.8 (feature `sqlx08`), each with its driver feature (`postgres`, `mysql`, `sqlite`): enable the features for the sqlx version and driver this connection comes from"
)]
pub trait PooledConnection: Sized + Send + 'static {
    /// The pool callers pass instead of the connection.
    type Pool: Sync;
    /// That sqlx version's error.
    type Error;
    /// A connection checked out of the pool.
    type Held: DerefMut<Target = Self> + Send + 'static;
    /// An open transaction on a held connection.
    type Transaction<'c>: DerefMut<Target = Self> + Send
    where
        Self: 'c;

    /// Take a connection from `pool` for one attempt.
    fn acquire(
        pool: &Self::Pool,
    ) -> impl Future<Output = Result<Self::Held, Self::Error>> + Send + 'static;

    /// `BEGIN` a transaction on an attempt's connection, with `options` (an isolation level,
    /// read-only, ...; [`TransactionOptions::PLAIN`] for a plain `BEGIN`). Dropping the
    /// transaction without committing rolls it back (sqlx queues the ROLLBACK and flushes it
    /// when the connection goes back to the pool). Only the
    /// options this connection type supports reach it: the attribute checks them at compile
    /// time through [`IsolationLevels`], [`ReadOnlyTransactions`], [`DeferrableTransactions`]
    /// and [`ImmediateTransactions`].
    fn begin_with_options<'h>(
        held: &'h mut Self::Held,
        options: &'static TransactionOptions,
    ) -> impl Future<Output = Result<Self::Transaction<'h>, Self::Error>> + Send + 'h;

    /// `COMMIT` the transaction.
    fn commit<'c>(
        transaction: Self::Transaction<'c>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'c;

    /// Close the connection instead of returning it to the pool when it is dropped.
    fn close_on_drop(held: &mut Self::Held);

    /// After a failed attempt: wait for the ROLLBACK of a dropped transaction, and roll back a
    /// transaction the body opened itself with a raw `BEGIN`. An error means the connection
    /// cannot be trusted (it is gone, or its transaction is aborted and failing) and must be
    /// closed.
    fn reset(held: &mut Self::Held) -> impl Future<Output = Result<(), Self::Error>> + Send + '_;

    /// What `error` (the one that decided the class of a failed attempt) says about this
    /// connection.
    fn after_error(error: &(dyn StdError + 'static)) -> AfterError;

    /// Whether the server is a standby in recovery (PostgreSQL's `pg_is_in_recovery()`), asked
    /// after a [`AfterError::RefusedAsReadOnly`]. Servers without a recovery mode answer `false`.
    fn in_recovery(
        held: &mut Self::Held,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send + '_;
}

/// What a failed attempt's error says about the connection it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterError {
    /// Nothing beyond its class.
    Nothing,
    /// The connection is unusable although the server may keep it open: a FATAL report, an
    /// aborted transaction (25P02), a prepared statement that does not exist (26000: a pooler
    /// in transaction mode).
    Unusable,
    /// A write refused because the transaction is read-only (PostgreSQL's 25006). A standby
    /// (after a failover) and the session's own `READ ONLY` transaction say it with the same
    /// words; only the server can tell which.
    RefusedAsReadOnly,
}

/// How `#[transaction(...)]` begins its transactions: the options one function was written
/// with, fixed at compile time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransactionOptions {
    /// `isolation = ...`; the server's default when `None`.
    pub isolation: Option<Isolation>,
    /// `read_only` (PostgreSQL, MySQL/MariaDB).
    pub read_only: bool,
    /// `deferrable` (PostgreSQL, with `serializable` and `read_only`).
    pub deferrable: bool,
    /// `immediate`: SQLite's `BEGIN IMMEDIATE`, which takes the write lock up front.
    pub immediate: bool,
}

impl TransactionOptions {
    /// No options: a plain `BEGIN`.
    pub const PLAIN: TransactionOptions = TransactionOptions {
        isolation: None,
        read_only: false,
        deferrable: false,
        immediate: false,
    };
}

/// A transaction isolation level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl Isolation {
    /// The level as SQL spells it.
    pub const fn as_sql(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// Connection types whose transactions take an isolation level.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no transaction isolation levels db-retry can set",
    label = "not available for this connection type",
    note = "`isolation = ...` is for PostgreSQL and MySQL/MariaDB connections; SQLite transactions are always serializable"
)]
pub trait IsolationLevels: PooledConnection {}

/// Connection types whose transactions can be declared read-only.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no read-only transactions db-retry can begin",
    label = "not available for this connection type",
    note = "`read_only` is for PostgreSQL and MySQL/MariaDB connections"
)]
pub trait ReadOnlyTransactions: PooledConnection {}

/// Connection types whose transactions can be `DEFERRABLE`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no deferrable transactions",
    label = "not available for this connection type",
    note = "`deferrable` is PostgreSQL's (a serializable read-only transaction that waits for a safe snapshot instead of risking a serialization failure)"
)]
pub trait DeferrableTransactions: PooledConnection {}

/// Connection types with `BEGIN IMMEDIATE`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `BEGIN IMMEDIATE`",
    label = "not available for this connection type",
    note = "`immediate` is SQLite's: it takes the write lock when the transaction begins, so a writer waits (busy_timeout) there instead of failing midway with SQLITE_BUSY"
)]
pub trait ImmediateTransactions: PooledConnection {}

/// Connection types that can make sure a COMMIT committed: the server is asked for the
/// transaction's id before COMMIT (an aborted transaction fails that question, so a swallowed
/// error is never reported as success), and a COMMIT whose answer was lost is resolved by asking
/// the server what became of that id.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot verify its commits",
    label = "not available for this connection type",
    note = "`verify_commit` is for PostgreSQL connections (it asks `pg_xact_status`)"
)]
pub trait VerifiedCommit: PooledConnection {
    /// Commit `transaction`, verified; `phase` is left where the outcome puts the attempt:
    /// [`Phase::Transaction`] when nothing was committed (an ambiguous COMMIT the server says
    /// aborted included), [`Phase::Commit`] when the outcome is still unknown.
    fn commit_verified<'c>(
        transaction: Self::Transaction<'c>,
        pool: &'c Self::Pool,
        phase: &'c mut Phase,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'c;
}

/// Compile-time checks that `C` supports the `#[transaction(...)]` options a function uses.
pub mod supports {
    use super::*;

    /// `isolation = ...`.
    pub fn isolation<C: IsolationLevels>() {}
    /// `read_only`.
    pub fn read_only<C: ReadOnlyTransactions>() {}
    /// `deferrable`.
    pub fn deferrable<C: DeferrableTransactions>() {}
    /// `immediate`.
    pub fn immediate<C: ImmediateTransactions>() {}
}

/// The connection of one attempt of an `#[acquire]` or `#[transaction]` function, and how far
/// the attempt got with it: the phase decides whether a failed statement may have run.
///
/// After a failed attempt the connection is cleaned before anyone else gets it: a retry awaits
/// [`Checkout::settle`] before its backoff; a call that returns its error leaves the clean-up
/// to a task of its own, so the caller gets the error at once.
pub struct Checkout<C: PooledConnection> {
    held: Option<C::Held>,
    phase: Phase,
    /// The held connection belongs to a failed attempt and must be reset before reuse.
    dirty: bool,
    /// The last attempt's write was refused as read-only: ask the server whether it is a
    /// standby before the connection goes back.
    ask_recovery: bool,
    /// Writes are refused by this call's own read-only transactions, not by a standby: such a
    /// refusal fails the same way however often it is tried.
    read_only_here: bool,
    /// The attempts run in transactions begun by `begin`: a failed one's ROLLBACK is already
    /// queued on the connection, and the pool sends it before anyone else gets the connection.
    in_transactions: bool,
}

impl<C: PooledConnection> Checkout<C> {
    /// Nothing checked out yet.
    #[inline]
    pub fn new() -> Self {
        Checkout {
            held: None,
            phase: Phase::Acquire,
            dirty: false,
            ask_recovery: false,
            read_only_here: false,
            in_transactions: false,
        }
    }

    /// Take a connection from `pool` for a statement on its own.
    //
    // These return `impl Future + Send` rather than being `async fn`s: the futures are awaited
    // inside the attempt closure, where rustc cannot see through an `async fn`'s future to prove
    // it `Send` for every lifetime (rust-lang/rust#100013); a declared `Send` it can use.
    #[allow(clippy::manual_async_fn)]
    pub fn acquire<'c>(
        &'c mut self,
        pool: &'c C::Pool,
    ) -> impl Future<Output = Result<&'c mut C, C::Error>> + Send + 'c {
        async move {
            self.phase = Phase::Acquire;
            let held = self.held.insert(C::acquire(pool).await?);
            self.phase = Phase::Statement;
            Ok(&mut **held)
        }
    }

    /// Take a connection from `pool` and `BEGIN` a transaction on it.
    pub fn begin<'c>(
        &'c mut self,
        pool: &'c C::Pool,
    ) -> impl Future<Output = Result<OpenTransaction<'c, C>, C::Error>> + Send + 'c {
        self.begin_with(pool, &TransactionOptions::PLAIN)
    }

    /// [`Checkout::begin`] with `options`.
    #[allow(clippy::manual_async_fn)]
    pub fn begin_with<'c>(
        &'c mut self,
        pool: &'c C::Pool,
        options: &'static TransactionOptions,
    ) -> impl Future<Output = Result<OpenTransaction<'c, C>, C::Error>> + Send + 'c {
        async move {
            self.in_transactions = true;
            // A write refused in a transaction begun read-only is this call's own doing.
            self.read_only_here |= options.read_only;
            self.phase = Phase::Acquire;
            let held = self.held.insert(C::acquire(pool).await?);
            // Until COMMIT is sent, a lost connection means the server rolled everything back.
            self.phase = Phase::Transaction;
            let transaction = C::begin_with_options(held, options).await?;
            Ok(OpenTransaction {
                transaction,
                pool,
                phase: &mut self.phase,
            })
        }
    }

    /// After a failed attempt: note what its error says about the connection, and return the
    /// phase the attempt failed in and the verdict to judge it by. A connection the error shows
    /// broken or unusable (`cause` is the error that decided the class, if one did) is marked to
    /// be closed rather than go back to the pool, where sqlx would find out only at its next
    /// ping; any other is reset first.
    ///
    /// A write refused as read-only is retried as [`ErrorClass::Unavailable`] (a failover
    /// demoted the server) until [`Checkout::settle`] has asked the server; when the refusal
    /// turns out to be the call's own read-only transaction, the next refusal is permanent.
    pub fn judged(
        &mut self,
        verdict: Verdict,
        cause: Option<&(dyn StdError + 'static)>,
    ) -> (Phase, Verdict) {
        let phase = std::mem::replace(&mut self.phase, Phase::Acquire);
        let after = cause.map_or(AfterError::Nothing, C::after_error);
        let mut verdict = verdict;
        if after == AfterError::RefusedAsReadOnly && self.read_only_here {
            verdict = Verdict::Class(ErrorClass::Permanent);
        }
        let Some(held) = &mut self.held else {
            return (phase, verdict);
        };
        if after == AfterError::RefusedAsReadOnly && !self.read_only_here {
            // Kept, whatever its class says, so that settle can ask it.
            self.ask_recovery = true;
            self.dirty = true;
            return (phase, verdict);
        }
        let broken = matches!(verdict, Verdict::Class(class) if class.discards_connection())
            || after == AfterError::Unusable;
        if broken {
            C::close_on_drop(held);
            self.held = None;
        } else {
            self.dirty = true;
        }
        (phase, verdict)
    }

    /// Before the next attempt: roll back what the failed one left open and wait for it, so the
    /// retry never waits on its own previous attempt's locks, then give the connection back to
    /// the pool, so a sleeping call holds no pool slot. A connection that fails the reset, or
    /// takes longer than `limit` (at most [`RESET_TIMEOUT`]; less when a deadline is near), is
    /// closed.
    pub async fn settle(&mut self, limit: Duration) {
        let Some(mut held) = self.held.take() else {
            return;
        };
        let limit = limit.min(RESET_TIMEOUT);
        let dirty = std::mem::take(&mut self.dirty);
        let ask_recovery = std::mem::take(&mut self.ask_recovery);
        let cleaned = async {
            if dirty {
                C::reset(&mut held).await.map_err(|_| ())?;
            }
            if ask_recovery {
                // Asked on the clean connection; a standby is of no use to a writer.
                match C::in_recovery(&mut held).await {
                    Ok(false) => self.read_only_here = true,
                    Ok(true) | Err(_) => return Err(()),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(limit, cleaned).await {
            Ok(Ok(())) => {}
            Ok(Err(())) | Err(_) => C::close_on_drop(&mut held),
        }
    }
}

/// Roll back what a failed attempt left on `held`, bounded, then drop it: back to the pool when
/// clean, closed otherwise.
async fn reset_or_close<C: PooledConnection>(mut held: C::Held) {
    match tokio::time::timeout(RESET_TIMEOUT, C::reset(&mut held)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => C::close_on_drop(&mut held),
    }
}

impl<C: PooledConnection> Drop for Checkout<C> {
    fn drop(&mut self) {
        // A call returning the error of a failed attempt: clean the connection on a task of
        // its own rather than keep the caller waiting (or hold its error across an await). With
        // no runtime to run it on, the connection is closed instead. A failed transaction's
        // ROLLBACK is already queued, and the pool flushes it before the connection is reused.
        if self.in_transactions {
            return;
        }
        if let (Some(mut held), true) = (self.held.take(), self.dirty) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(reset_or_close::<C>(held));
                }
                Err(_) => C::close_on_drop(&mut held),
            }
        }
    }
}

impl<C: PooledConnection> Default for Checkout<C> {
    fn default() -> Self {
        Self::new()
    }
}

/// A transaction opened by [`Checkout::begin`]; derefs to the connection.
pub struct OpenTransaction<'c, C: PooledConnection + 'c> {
    transaction: C::Transaction<'c>,
    /// Where a COMMIT whose answer was lost is resolved, on a fresh connection.
    pool: &'c C::Pool,
    phase: &'c mut Phase,
}

impl<'c, C: PooledConnection> OpenTransaction<'c, C> {
    /// `COMMIT`. A failure from here on leaves the outcome unknown.
    pub fn commit(self) -> impl Future<Output = Result<(), C::Error>> + Send + 'c {
        *self.phase = Phase::Commit;
        C::commit(self.transaction)
    }
}

/// `COMMIT`, verified (`#[transaction(verify_commit)]`, see [`VerifiedCommit`]). Boxed, so
/// that its type does not depend on the bound: a connection type that cannot verify is then one
/// error, about [`VerifiedCommit`].
pub fn commit_verified<'c, C: VerifiedCommit>(
    transaction: OpenTransaction<'c, C>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), <C as PooledConnection>::Error>> + Send + 'c>>
{
    let OpenTransaction {
        transaction,
        pool,
        phase,
    } = transaction;
    Box::pin(C::commit_verified(transaction, pool, phase))
}

impl<C: PooledConnection> std::ops::Deref for OpenTransaction<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.transaction
    }
}

impl<C: PooledConnection> std::ops::DerefMut for OpenTransaction<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.transaction
    }
}
