//! What db-retry needs from one sqlx version. The file is compiled once per supported version
//! (see `sqlx09.rs` and `sqlx08.rs`), with `sqlx` naming that version: the two versions' types
//! are distinct, but what we do with them is the same.

use std::error::Error as StdError;

use super::sqlx;
use sqlx::Connection as _;

use crate::classify::{
    classify_io, classify_postgres, classify_sqlite, sealed, ErrorClass, SqlxDatabaseError,
    SqlxError,
};
use crate::readiness::PoolProbe;

/// The class of `error` when it is one of this version's error types.
pub(crate) fn classify_known(error: &(dyn StdError + 'static)) -> Option<ErrorClass> {
    if let Some(error) = error.downcast_ref::<sqlx::Error>() {
        return Some(classify_sqlx(error));
    }
    // `sqlx::Error::source()` hands out the boxed trait object itself, and that is what a
    // `#[error(transparent)]` wrapper's own `source()` returns.
    if let Some(db) = error.downcast_ref::<Box<dyn sqlx::error::DatabaseError>>() {
        return Some(classify_database(db.as_ref()));
    }
    #[cfg(feature = "postgres")]
    if let Some(db) = error.downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return Some(classify_database(db));
    }
    #[cfg(feature = "mysql")]
    if let Some(db) = error.downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return Some(classify_database(db));
    }
    #[cfg(feature = "sqlite")]
    if let Some(db) = error.downcast_ref::<sqlx::sqlite::SqliteError>() {
        return Some(classify_database(db));
    }
    None
}

/// A database error of this version, named by its code and message; `None` for anything else.
pub(crate) fn describe_known(error: &(dyn StdError + 'static)) -> Option<String> {
    let db: &dyn sqlx::error::DatabaseError = match error.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.as_ref(),
        Some(sqlx::Error::Io(io)) => return Some(format!("{:?}: {io}", io.kind())),
        Some(_) => return None,
        None => concrete_database_error(error)?,
    };
    #[cfg(feature = "mysql")]
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return Some(format!(
            "error {} ({}): {}",
            mysql.number(),
            mysql.code().unwrap_or("no SQLSTATE"),
            mysql.message()
        ));
    }
    Some(match db.code() {
        Some(code) => format!("{code}: {}", db.message()),
        None => db.message().to_owned(),
    })
}

/// A driver's database error of this version, however it is held.
fn concrete_database_error<'e>(
    error: &'e (dyn StdError + 'static),
) -> Option<&'e dyn sqlx::error::DatabaseError> {
    if let Some(db) = error.downcast_ref::<Box<dyn sqlx::error::DatabaseError>>() {
        return Some(db.as_ref());
    }
    #[cfg(feature = "postgres")]
    if let Some(db) = error.downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return Some(db);
    }
    #[cfg(feature = "mysql")]
    if let Some(db) = error.downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return Some(db);
    }
    #[cfg(feature = "sqlite")]
    if let Some(db) = error.downcast_ref::<sqlx::sqlite::SqliteError>() {
        return Some(db);
    }
    None
}

/// Whether this version's `error` leaves a PostgreSQL connection unusable though it may still be
/// open: a FATAL report (the server ends the session), an aborted transaction (25P02) that only a
/// ROLLBACK would clear, or a prepared statement the server does not have (26000: a pooler in
/// transaction mode hands the session's statements to other clients).
#[allow(unused_variables)] // without the postgres feature
pub(crate) fn unusable_after(error: &(dyn StdError + 'static)) -> bool {
    let db: &dyn sqlx::error::DatabaseError = match error.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.as_ref(),
        Some(_) => return false,
        None => match concrete_database_error(error) {
            Some(db) => db,
            None => return false,
        },
    };
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        use sqlx::postgres::PgSeverity;
        return matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic)
            || matches!(pg.code(), "25P02" | "26000");
    }
    false
}

fn classify_sqlx(error: &sqlx::Error) -> ErrorClass {
    use sqlx::Error;
    match error {
        Error::Database(db) => classify_database(db.as_ref()),
        Error::Io(io) => classify_io(io),
        Error::Tls(tls) => crate::classify::classify_tls(tls.as_ref()),
        Error::PoolTimedOut => ErrorClass::Connect,
        Error::Protocol(message) => crate::classify::classify_protocol(message),
        // The pool was closed on purpose (shutdown); retrying would only delay the inevitable.
        Error::PoolClosed => ErrorClass::Permanent,
        // sqlx's background worker died; that is a bug or a panic, not a network condition.
        Error::WorkerCrashed => ErrorClass::Permanent,
        Error::Configuration(_)
        | Error::RowNotFound
        | Error::TypeNotFound { .. }
        | Error::ColumnIndexOutOfBounds { .. }
        | Error::ColumnNotFound(_)
        | Error::ColumnDecode { .. }
        | Error::Encode(_)
        | Error::Decode(_)
        | Error::AnyDriverError(_) => ErrorClass::Permanent,
        _ => ErrorClass::Permanent,
    }
}

fn classify_database(error: &dyn sqlx::error::DatabaseError) -> ErrorClass {
    #[cfg(feature = "mysql")]
    if let Some(my) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return crate::classify::classify_mysql(my.number(), my.code(), my.message());
    }
    #[cfg(feature = "sqlite")]
    if let Some(lite) = error.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        let code = sqlx::error::DatabaseError::code(lite).and_then(|code| code.parse::<i32>().ok());
        return code.map_or(ErrorClass::Permanent, classify_sqlite);
    }
    #[cfg(feature = "postgres")]
    if let Some(pg) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        use sqlx::postgres::PgSeverity;
        let fatal = matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic);
        return crate::classify::classify_postgres_report(pg.code(), pg.message(), fatal);
    }
    // Without the MySQL and SQLite features their numbers can't be read, but both fit a shape:
    // a SQLite extended code is a decimal number of at most four digits, never a SQLSTATE.
    match error.code() {
        Some(code) if code.len() < 5 && code.bytes().all(|b| b.is_ascii_digit()) => code
            .parse::<i32>()
            .map_or(ErrorClass::Permanent, classify_sqlite),
        Some(code) => classify_postgres(&code, error.message()),
        None => ErrorClass::Permanent,
    }
}

impl sealed::Sealed for sqlx::Error {}

impl SqlxError for sqlx::Error {
    fn __class(&self) -> ErrorClass {
        classify_sqlx(self)
    }
}

impl sealed::Sealed for dyn sqlx::error::DatabaseError {}

impl SqlxDatabaseError for dyn sqlx::error::DatabaseError {
    fn __class(&self) -> ErrorClass {
        classify_database(self)
    }
}

// A driver's concrete error, as `&PgDatabaseError` and the like, for `classify_database`.
#[allow(unused_macros)] // with no driver feature on
macro_rules! driver_error {
    ($error:ty) => {
        impl sealed::Sealed for $error {}

        impl SqlxDatabaseError for $error {
            fn __class(&self) -> ErrorClass {
                classify_database(self)
            }
        }
    };
}

#[cfg(feature = "postgres")]
driver_error!(sqlx::postgres::PgDatabaseError);
#[cfg(feature = "mysql")]
driver_error!(sqlx::mysql::MySqlDatabaseError);
#[cfg(feature = "sqlite")]
driver_error!(sqlx::sqlite::SqliteError);

/// The connection types `#[acquire]` and `#[transaction]` accept, and the connect options
/// `wait_until_ready` takes, one per enabled driver.
#[allow(unused_macros)] // with no driver feature on
macro_rules! pooled_connection {
    ($connection:ty, $database:ty, $options:ty) => {
        impl crate::connection::PooledConnection for $connection {
            type Pool = sqlx::Pool<$database>;
            type Error = sqlx::Error;
            type Held = sqlx::pool::PoolConnection<$database>;
            type Transaction<'c> = sqlx::Transaction<'c, $database>;

            fn acquire(
                pool: &Self::Pool,
            ) -> impl std::future::Future<Output = Result<Self::Held, Self::Error>> + Send + 'static {
                pool.acquire()
            }

            fn begin(
                held: &mut Self::Held,
            ) -> impl std::future::Future<Output = Result<Self::Transaction<'_>, Self::Error>> + Send + '_ {
                (**held).begin()
            }

            fn commit<'c>(
                transaction: Self::Transaction<'c>,
            ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'c {
                transaction.commit()
            }

            fn close_on_drop(held: &mut Self::Held) {
                held.close_on_drop();
            }

            fn reset(
                held: &mut Self::Held,
            ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + '_ {
                async move {
                    // sqlx does not say whether a connection is inside a transaction, but
                    // `begin_with` does: it runs a statement and answers `BeginFailed` when the
                    // server reports no transaction open afterwards. A statement that opens none
                    // asks the question; the queued ROLLBACK of a dropped transaction goes first.
                    match (**held).begin_with("SELECT 1").await {
                        Ok(transaction) => transaction.rollback().await,
                        Err(sqlx::Error::BeginFailed) => Ok(()),
                        // An aborted transaction (25P02) fails even this, and so does a
                        // connection that is gone.
                        Err(error) => Err(error),
                    }
                }
            }

            fn unusable_after(error: &(dyn StdError + 'static)) -> bool {
                unusable_after(error)
            }
        }

        impl sealed::Sealed for $options {}

        impl crate::readiness::ConnectTarget for $options {
            type Error = sqlx::Error;

            async fn probe(&self) -> Result<(), Self::Error> {
                let mut connection = sqlx::ConnectOptions::connect(self).await?;
                connection.ping().await?;
                // Closing politely is a courtesy; a failure here says nothing about readiness.
                let _ = connection.close().await;
                Ok(())
            }

            fn class(error: &Self::Error) -> ErrorClass {
                classify_sqlx(error)
            }

            fn timed_out(message: String) -> Self::Error {
                sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
            }
        }
    };
}

#[cfg(feature = "postgres")]
pooled_connection!(
    sqlx::postgres::PgConnection,
    sqlx::Postgres,
    sqlx::postgres::PgConnectOptions
);
#[cfg(feature = "mysql")]
pooled_connection!(
    sqlx::mysql::MySqlConnection,
    sqlx::MySql,
    sqlx::mysql::MySqlConnectOptions
);
#[cfg(feature = "sqlite")]
pooled_connection!(
    sqlx::sqlite::SqliteConnection,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteConnectOptions
);

impl<DB: sqlx::Database> sealed::Sealed for sqlx::Pool<DB> {}

impl<DB: sqlx::Database> PoolProbe for sqlx::Pool<DB> {
    fn size(&self) -> u32 {
        sqlx::Pool::size(self)
    }

    fn num_idle(&self) -> usize {
        sqlx::Pool::num_idle(self)
    }

    async fn ping(&self) -> Result<(), String> {
        let mut connection = self.acquire().await.map_err(|e| e.to_string())?;
        connection.ping().await.map_err(|e| e.to_string())
    }
}
