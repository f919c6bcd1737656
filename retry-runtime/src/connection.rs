//! Connections for the `#[acquire]` and `#[transaction]` parameter modes.
//!
//! A fresh connection per attempt: a broken connection must never be what the next attempt runs
//! on, and sqlx only notices a dead connection when it pings it.

use std::error::Error as StdError;
use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

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

    /// `BEGIN` a transaction on an attempt's connection. Dropping the transaction without
    /// committing rolls it back (sqlx queues the ROLLBACK and flushes it when the connection goes
    /// back to the pool).
    fn begin(
        held: &mut Self::Held,
    ) -> impl Future<Output = Result<Self::Transaction<'_>, Self::Error>> + Send + '_;

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

    /// Whether `error` (the one that decided the class of a failed attempt) leaves this
    /// connection unusable although the server may keep it open: a FATAL report, an aborted
    /// transaction (25P02), a prepared statement that does not exist (26000, a pooler in
    /// transaction mode).
    fn unusable_after(error: &(dyn StdError + 'static)) -> bool;
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
}

impl<C: PooledConnection> Checkout<C> {
    /// Nothing checked out yet.
    #[inline]
    pub fn new() -> Self {
        Checkout {
            held: None,
            phase: Phase::Acquire,
            dirty: false,
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
    #[allow(clippy::manual_async_fn)]
    pub fn begin<'c>(
        &'c mut self,
        pool: &'c C::Pool,
    ) -> impl Future<Output = Result<OpenTransaction<'c, C>, C::Error>> + Send + 'c {
        async move {
            // Until COMMIT is sent, a lost connection means the server rolled everything back.
            self.phase = Phase::Transaction;
            let held = self.held.insert(C::acquire(pool).await?);
            let transaction = C::begin(held).await?;
            Ok(OpenTransaction {
                transaction,
                phase: &mut self.phase,
            })
        }
    }

    /// After a failed attempt: note what its error says about the connection, and return the
    /// phase the attempt failed in. A connection the error shows broken or unusable (`cause` is
    /// the error that decided the class, if one did) is marked to be closed rather than go back
    /// to the pool, where sqlx would find out only at its next ping; any other is reset first.
    pub fn judged(&mut self, verdict: Verdict, cause: Option<&(dyn StdError + 'static)>) -> Phase {
        if let Some(held) = &mut self.held {
            let broken = matches!(verdict, Verdict::Class(class) if class.discards_connection())
                || cause.is_some_and(C::unusable_after);
            if broken {
                C::close_on_drop(held);
                self.held = None;
            } else {
                self.dirty = true;
            }
        }
        std::mem::replace(&mut self.phase, Phase::Acquire)
    }

    /// Before the next attempt: roll back what the failed one left open and wait for it, so the
    /// retry never waits on its own previous attempt's locks, then give the connection back to
    /// the pool, so a sleeping call holds no pool slot. A connection that fails the reset, or
    /// takes longer than [`RESET_TIMEOUT`], is closed.
    pub async fn settle(&mut self) {
        if let Some(held) = self.held.take() {
            if std::mem::take(&mut self.dirty) {
                reset_or_close::<C>(held).await;
            }
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
        // no runtime to run it on, the connection is closed instead.
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
    phase: &'c mut Phase,
}

impl<'c, C: PooledConnection> OpenTransaction<'c, C> {
    /// `COMMIT`. A failure from here on leaves the outcome unknown.
    pub fn commit(self) -> impl Future<Output = Result<(), C::Error>> + Send + 'c {
        *self.phase = Phase::Commit;
        C::commit(self.transaction)
    }
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
