//! Errors of the database crates around sqlx: SeaORM's `DbErr`, and tokio-postgres (and the
//! deadpool-postgres pool) errors, each behind its feature.

use std::error::Error as StdError;

use crate::classify::ErrorClass;

/// The class of `error` when it is one of these crates' error types.
pub(crate) fn classify_known(error: &(dyn StdError + 'static)) -> Option<ErrorClass> {
    #[cfg(feature = "sea-orm")]
    if let Some(class) = sea_orm::classify(error) {
        return Some(class);
    }
    #[cfg(feature = "tokio-postgres")]
    if let Some(class) = tokio_postgres::classify(error) {
        return Some(class);
    }
    #[cfg(feature = "deadpool-postgres")]
    if let Some(class) = deadpool::classify(error) {
        return Some(class);
    }
    let _ = error;
    None
}

#[cfg(feature = "sea-orm")]
mod sea_orm {
    use std::error::Error as StdError;

    use ::sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, TransactionError};

    use crate::classify::{classify_sqlx, ErrorClass};

    /// `DbErr` wraps sqlx's error in `RuntimeErr`, whose `source()` does not lead to it, and
    /// `TransactionError` (what `db.transaction(…)` returns) has no `source()` at all, so the
    /// chain is followed here by hand.
    pub(super) fn classify(error: &(dyn StdError + 'static)) -> Option<ErrorClass> {
        if let Some(error) = error.downcast_ref::<TransactionError<DbErr>>() {
            return Some(match error {
                TransactionError::Connection(error) | TransactionError::Transaction(error) => {
                    classify_db_err(error)
                }
            });
        }
        if let Some(error) = error.downcast_ref::<DbErr>() {
            return Some(classify_db_err(error));
        }
        error.downcast_ref::<RuntimeErr>().map(classify_runtime)
    }

    fn classify_db_err(error: &DbErr) -> ErrorClass {
        match error {
            // sqlx's `PoolTimedOut`, renamed by SeaORM: nothing ran.
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => ErrorClass::Connect,
            // sqlx's `PoolClosed`: the application is shutting down.
            DbErr::ConnectionAcquire(_) => ErrorClass::Permanent,
            DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => {
                classify_runtime(runtime)
            }
            _ => ErrorClass::Permanent,
        }
    }

    fn classify_runtime(error: &RuntimeErr) -> ErrorClass {
        match error {
            RuntimeErr::SqlxError(sqlx) => classify_sqlx(&**sqlx),
            _ => ErrorClass::Permanent,
        }
    }
}

#[cfg(feature = "tokio-postgres")]
mod tokio_postgres {
    use std::error::Error as StdError;

    use ::tokio_postgres::error::DbError;
    use ::tokio_postgres::Error;

    use crate::classify::{classify_io, classify_postgres_report, ErrorClass};

    /// A `tokio_postgres::Error`, or the bare `DbError` that `#[error(transparent)]` around one
    /// hands out as its source.
    pub(super) fn classify(error: &(dyn StdError + 'static)) -> Option<ErrorClass> {
        if let Some(error) = error.downcast_ref::<Error>() {
            return Some(classify_error(error));
        }
        error.downcast_ref::<DbError>().map(classify_db)
    }

    /// By SQLSTATE, as sqlx's PostgreSQL errors.
    fn classify_db(db: &DbError) -> ErrorClass {
        let fatal = matches!(db.severity(), "FATAL" | "PANIC");
        classify_postgres_report(db.code().code(), db.message(), fatal)
    }

    /// By SQLSTATE (the same table as sqlx's PostgreSQL errors), then by what the client saw:
    /// a closed connection, an I/O error, or a failure while connecting.
    pub(super) fn classify_error(error: &Error) -> ErrorClass {
        if let Some(db) = error.as_db_error() {
            return classify_db(db);
        }
        if error.is_closed() {
            return ErrorClass::ConnectionLost;
        }
        // tokio-postgres keeps its error kinds private; these are its own fixed messages for a
        // failure while setting up the session, when nothing can have run.
        let shown = error.to_string();
        if shown.starts_with("error connecting to server")
            || shown.starts_with("timeout waiting for server")
            || shown.starts_with("error performing TLS handshake")
        {
            return ErrorClass::Connect;
        }
        match error
            .source()
            .and_then(|e| e.downcast_ref::<std::io::Error>())
        {
            Some(io) => classify_io(io),
            None => ErrorClass::Permanent,
        }
    }
}

#[cfg(feature = "deadpool-postgres")]
mod deadpool {
    use std::error::Error as StdError;

    use ::deadpool_postgres::PoolError;

    use crate::classify::ErrorClass;

    pub(super) fn classify(error: &(dyn StdError + 'static)) -> Option<ErrorClass> {
        Some(match error.downcast_ref::<PoolError>()? {
            // No connection came free, or creating one took too long: nothing ran.
            PoolError::Timeout(_) => ErrorClass::Connect,
            PoolError::Backend(error) => match super::tokio_postgres::classify_error(error) {
                // The pool was creating the connection, so nothing can have run.
                ErrorClass::ConnectionLost => ErrorClass::Connect,
                class => class,
            },
            // Closed on purpose, or misconfigured.
            _ => ErrorClass::Permanent,
        })
    }
}
