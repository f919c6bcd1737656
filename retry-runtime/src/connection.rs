//! Connections for the `#[acquire]` and `#[transaction]` parameter modes.
//!
//! A fresh connection per attempt: a broken connection must never be what the next attempt runs
//! on, and sqlx only notices a dead connection when it pings it.

use std::future::Future;
use std::ops::DerefMut;

use crate::driver::Verdict;

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

/// After a failed attempt, give the attempt's connection back before the backoff delay, so a
/// sleeping call holds no pool slot; close it instead when the error says it is broken (or the
/// server is failing), since sqlx would only find out at its next ping.
pub fn release<C: PooledConnection>(connection: Option<C::Held>, verdict: Verdict) {
    if let Some(mut connection) = connection {
        if let Verdict::Class(class) = verdict {
            if class.discards_connection() {
                C::close_on_drop(&mut connection);
            }
        }
    }
}
