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

/// After a failed attempt, give the attempt's connection back before the backoff delay, so a
/// sleeping call holds no pool slot; close it instead when the error says it is broken (or the
/// server is failing), since sqlx would only find out at its next ping.
pub fn release<DB: Database>(connection: Option<PoolConnection<DB>>, verdict: Verdict) {
    if let Some(mut connection) = connection {
        if let Verdict::Class(class) = verdict {
            if class.discards_connection() {
                connection.close_on_drop();
            }
        }
    }
}
