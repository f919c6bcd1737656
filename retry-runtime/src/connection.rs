//! Connections for the `#[acquire]` and `#[transaction]` parameter modes.
//!
//! A fresh connection per attempt: a broken connection must never be what the next attempt runs
//! on, and sqlx only notices a dead connection when it pings it.

use std::future::Future;
use std::ops::DerefMut;

use crate::driver::{Phase, Verdict};

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
    type Held: DerefMut<Target = Self> + Send;
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
}

/// The connection of one attempt of an `#[acquire]` or `#[transaction]` function, and how far
/// the attempt got with it: the phase decides whether a failed statement may have run.
pub struct Checkout<C: PooledConnection> {
    held: Option<C::Held>,
    phase: Phase,
}

impl<C: PooledConnection> Checkout<C> {
    /// Nothing checked out yet.
    #[inline]
    pub fn new() -> Self {
        Checkout {
            held: None,
            phase: Phase::Acquire,
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

    /// After a failed attempt: give the connection back to the pool before the backoff delay,
    /// so a sleeping call holds no pool slot, or close it when the verdict says it is broken (sqlx
    /// would only find out at its next ping). Returns the phase the attempt failed in.
    pub fn release(&mut self, verdict: Verdict) -> Phase {
        if let (Some(held), Verdict::Class(class)) = (&mut self.held, verdict) {
            if class.discards_connection() {
                C::close_on_drop(held);
            }
        }
        self.held = None;
        std::mem::replace(&mut self.phase, Phase::Acquire)
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
