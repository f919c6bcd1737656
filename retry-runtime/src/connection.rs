//! Connections for the `#[acquire]` and `#[transaction]` parameter modes.
//!
//! A fresh connection per attempt: a broken connection must never be what the next attempt runs
//! on, and sqlx only notices a dead connection when it pings it.

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Transaction};

use crate::driver::Verdict;

/// Take a connection from `pool` for one attempt.
pub async fn acquire<DB: Database>(pool: &Pool<DB>) -> Result<PoolConnection<DB>, sqlx::Error> {
    pool.acquire().await
}

/// `BEGIN` a transaction on an attempt's connection. Dropping the transaction without committing
/// rolls it back (sqlx queues the ROLLBACK and flushes it when the connection goes back to the
/// pool).
pub async fn begin<DB: Database>(
    connection: &mut PoolConnection<DB>,
) -> Result<Transaction<'_, DB>, sqlx::Error> {
    sqlx::Acquire::begin(connection).await
}

/// After a failed attempt: close the attempt's connection instead of returning it to the pool
/// when the error says it is broken (or the server is failing).
pub fn discard_if_broken<DB: Database>(connection: &mut Option<PoolConnection<DB>>, verdict: Verdict) {
    if let (Some(connection), Verdict::Class(class)) = (connection, verdict) {
        if class.discards_connection() {
            connection.close_on_drop();
        }
    }
}
