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
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
use crate::connection::{AfterError, TransactionOptions};
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

/// The SQLSTATE and message of a PostgreSQL error of this version; `None` for anything else.
#[allow(unused_variables)] // without the postgres feature
pub(crate) fn postgres_report(error: &(dyn StdError + 'static)) -> Option<(String, String)> {
    let db: &dyn sqlx::error::DatabaseError = match error.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.as_ref(),
        Some(_) => return None,
        None => concrete_database_error(error)?,
    };
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return Some((pg.code().to_owned(), pg.message().to_owned()));
    }
    None
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

/// What this version's `error` says about a PostgreSQL connection: unusable though it may still
/// be open after a FATAL report (the server ends the session), an aborted transaction (25P02)
/// that only a ROLLBACK would clear, or a prepared statement the server does not have (26000: a
/// pooler in transaction mode hands the session's statements to other clients); a write refused
/// as read-only (25006) needs the server asked.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#[allow(unused_variables)] // without the postgres feature
pub(crate) fn after_error(error: &(dyn StdError + 'static)) -> AfterError {
    let db: &dyn sqlx::error::DatabaseError = match error.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.as_ref(),
        Some(_) => return AfterError::Nothing,
        None => match concrete_database_error(error) {
            Some(db) => db,
            None => return AfterError::Nothing,
        },
    };
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        use sqlx::postgres::PgSeverity;
        if matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic)
            || matches!(pg.code(), "25P02" | "26000")
        {
            return AfterError::Unusable;
        }
        if pg.code() == "25006" {
            return AfterError::RefusedAsReadOnly;
        }
    }
    AfterError::Nothing
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

impl From<crate::expansion::AttemptTimedOut> for sqlx::Error {
    fn from(timed_out: crate::expansion::AttemptTimedOut) -> Self {
        sqlx::Error::Io(timed_out.into())
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
    ($connection:ty, $database:ty, $options:ty, $begin_with_options:path, $in_recovery:path, $reset:path) => {
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

            fn begin_with_options<'h>(
                held: &'h mut Self::Held,
                options: &'static TransactionOptions,
            ) -> impl std::future::Future<Output = Result<Self::Transaction<'h>, Self::Error>> + Send + 'h {
                $begin_with_options(held, options)
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
                $reset(held)
            }

            fn after_error(error: &(dyn StdError + 'static)) -> AfterError {
                after_error(error)
            }

            fn in_recovery(
                held: &mut Self::Held,
            ) -> impl std::future::Future<Output = Result<bool, Self::Error>> + Send + '_ {
                $in_recovery(held)
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
    sqlx::postgres::PgConnectOptions,
    postgres::begin,
    postgres::in_recovery,
    reset_by_asking
);
#[cfg(feature = "mysql")]
pooled_connection!(
    sqlx::mysql::MySqlConnection,
    sqlx::MySql,
    sqlx::mysql::MySqlConnectOptions,
    mysql::begin,
    no_recovery,
    reset_by_asking
);
#[cfg(feature = "sqlite")]
pooled_connection!(
    sqlx::sqlite::SqliteConnection,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteConnectOptions,
    sqlite::begin,
    no_recovery,
    sqlite::reset
);

/// Roll back whatever a failed attempt left open on a PostgreSQL or MySQL connection.
///
/// sqlx does not say whether a connection is inside a transaction, but `begin_with` does: it
/// runs a statement and answers `BeginFailed` when the server reports no transaction open
/// afterwards (these drivers count the transaction only after that check). A statement that
/// opens none asks the question; the queued ROLLBACK of a dropped transaction goes first.
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[allow(clippy::manual_async_fn)] // declared `Send`, see `connection.rs`
fn reset_by_asking<DB: sqlx::Database>(
    held: &mut sqlx::pool::PoolConnection<DB>,
) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + '_
where
    DB::Connection: sqlx::Connection<Database = DB>,
{
    async move {
        match sqlx::Connection::begin_with(&mut **held, "SELECT 1").await {
            Ok(transaction) => transaction.rollback().await,
            Err(sqlx::Error::BeginFailed) => Ok(()),
            // An aborted transaction (25P02) fails even this, and so does a connection that
            // is gone.
            Err(error) => Err(error),
        }
    }
}

/// A server without a recovery mode is never a standby in recovery.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
fn no_recovery<H>(_: &mut H) -> std::future::Ready<Result<bool, sqlx::Error>> {
    std::future::ready(Ok(false))
}

/// PostgreSQL's transactions: every option but `immediate`, and verified commits.
#[cfg(feature = "postgres")]
mod postgres {
    use std::future::Future;
    use std::time::Duration;

    use super::sqlx;
    use super::sqlx::postgres::{PgConnection, PgPool};
    use super::sqlx::{pool::PoolConnection, Postgres, Transaction};
    use crate::classify::ErrorClass;
    use crate::connection::{
        DeferrableTransactions, IsolationLevels, ReadOnlyTransactions, TransactionOptions,
        VerifiedCommit,
    };
    use crate::driver::Phase;

    impl IsolationLevels for PgConnection {}
    impl ReadOnlyTransactions for PgConnection {}
    impl DeferrableTransactions for PgConnection {}

    pub(super) fn begin<'h>(
        held: &'h mut PoolConnection<Postgres>,
        options: &'static TransactionOptions,
    ) -> impl Future<Output = Result<Transaction<'h, Postgres>, sqlx::Error>> + Send + 'h {
        let connection: &'h mut PgConnection = held;
        async move {
            // The plain BEGIN builds no statement of its own.
            if *options == TransactionOptions::PLAIN {
                return sqlx::Connection::begin(connection).await;
            }
            let mut statement = String::from("BEGIN");
            if let Some(level) = options.isolation {
                statement.push_str(" ISOLATION LEVEL ");
                statement.push_str(level.as_sql());
            }
            if options.read_only {
                statement.push_str(" READ ONLY");
            }
            if options.deferrable {
                statement.push_str(" DEFERRABLE");
            }
            sqlx::Connection::begin_with(connection, super::super::owned_sql(statement)).await
        }
    }

    pub(super) fn in_recovery(
        held: &mut PoolConnection<Postgres>,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send + '_ {
        sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut **held)
    }

    /// How long an ambiguous COMMIT is looked into (a fresh connection, and a transaction the
    /// server still shows in progress) before its outcome counts as unknown.
    const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

    /// The transaction's id, read inside the transaction (`NULL` for one that wrote nothing),
    /// which history the server is on (its timeline, `NULL` in recovery, and when it started),
    /// and where its WAL ends: past every record the transaction wrote, short of its commit
    /// record. A server that restarted since, or was promoted, may hand out the same ids again
    /// (an id whose WAL never reached disk is not burnt), so only the same history can vouch
    /// for an id, or a later timeline that split off after the transaction's records.
    const IDENTIFY: &str = "SELECT pg_current_xact_id_if_assigned()::text, \
         CASE WHEN pg_is_in_recovery() THEN NULL \
         ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END \
         || '/' || extract(epoch FROM pg_postmaster_start_time())::text, \
         CASE WHEN pg_is_in_recovery() THEN NULL \
         ELSE pg_current_wal_insert_lsn()::text END";

    /// The history file of timeline `$1` (hex) on the server asked: a line per ancestor
    /// timeline, `number<TAB>switch point<TAB>reason`. Reading it needs a superuser or
    /// `pg_read_server_files`.
    const HISTORY_FILE: &str = "SELECT pg_read_file('pg_wal/' || $1 || '.history')";

    /// The history of the server asked, as `IDENTIFY` reads it.
    const HISTORY: &str = "SELECT CASE WHEN pg_is_in_recovery() THEN NULL \
         ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END \
         || '/' || extract(epoch FROM pg_postmaster_start_time())::text";

    /// What became of a transaction id.
    const STATUS: &str = "SELECT pg_xact_status($1::text::xid8)";

    impl VerifiedCommit for PgConnection {
        // A declared `Send` future rather than an `async fn`, which rustc cannot prove `Send`
        // inside the attempt closure (rust-lang/rust#100013).
        #[allow(clippy::manual_async_fn)]
        fn commit_verified<'c>(
            mut transaction: Transaction<'c, Postgres>,
            pool: &'c PgPool,
            phase: &'c mut Phase,
        ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c {
            async move {
                // An aborted transaction (an error the body swallowed) fails this with 25P02:
                // its COMMIT would only roll back, and sqlx would report that as success.
                let (id, history, written_to): (Option<String>, Option<String>, Option<String>) =
                    sqlx::query_as(IDENTIFY)
                        .fetch_one(&mut *transaction)
                        .await?;
                *phase = Phase::Commit;
                let error = match transaction.commit().await {
                    Ok(()) => return Ok(()),
                    Err(error) => error,
                };
                // Only a lost connection leaves the outcome open.
                if super::classify_sqlx(&error) != ErrorClass::ConnectionLost {
                    return Err(error);
                }
                // A transaction that wrote nothing has no id and nothing that could have
                // committed: as safe to run again as a rolled-back body.
                let Some(id) = id else {
                    *phase = Phase::Transaction;
                    return Err(error);
                };
                let ran_on = Ran {
                    id: &id,
                    history: history.as_deref(),
                    written_to: written_to.as_deref(),
                };
                let resolution =
                    tokio::time::timeout(RESOLVE_TIMEOUT, resolve(pool, &ran_on)).await;
                match resolution {
                    Ok(Resolution::Committed) => Ok(()),
                    Ok(Resolution::Aborted) => {
                        // Nothing took effect: as safe to run again as a rolled-back body.
                        *phase = Phase::Transaction;
                        Err(error)
                    }
                    Ok(Resolution::Unknown) | Err(_) => Err(error),
                }
            }
        }
    }

    enum Resolution {
        Committed,
        Aborted,
        Unknown,
    }

    /// Where a transaction ran: its id, the server's history, and the end of its WAL before
    /// COMMIT.
    struct Ran<'r> {
        id: &'r str,
        history: Option<&'r str>,
        written_to: Option<&'r str>,
    }

    /// Ask the server what became of the transaction, on a connection of its own: the pool
    /// may be full (the lost connection is still checked out), and its slots are not this
    /// lookup's to take.
    async fn resolve(pool: &PgPool, ran: &Ran<'_>) -> Resolution {
        let options = pool.connect_options();
        // The server may be between a failover's kill and its promotion: keep trying within
        // the time the resolution has.
        let mut connection = loop {
            match <PgConnection as sqlx::Connection>::connect_with(&options).await {
                Ok(connection) => break connection,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let resolution = ask(&mut connection, ran).await;
        let _ = sqlx::Connection::close(connection).await;
        resolution
    }

    /// A WAL position, `X/Y` in hex, as a number.
    fn lsn(text: &str) -> Option<u64> {
        let (high, low) = text.split_once('/')?;
        Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
    }

    /// The timeline of a history `TTTTTTTT/start time`, in hex.
    fn timeline(history: &str) -> Option<&str> {
        history.split_once('/').map(|(timeline, _)| timeline)
    }

    async fn ask(connection: &mut PgConnection, ran: &Ran<'_>) -> Resolution {
        let Some(history) = ran.history else {
            return Resolution::Unknown;
        };
        // A server still in recovery (a standby being promoted) has no history yet: ask again
        // while the lookup has time.
        let answered_on = loop {
            match sqlx::query_scalar::<_, Option<String>>(HISTORY)
                .fetch_one(&mut *connection)
                .await
            {
                Ok(Some(answered_on)) => break Some(answered_on),
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => return Resolution::Unknown,
            }
        };
        if answered_on.as_deref() != Some(history) {
            // Another history: a promoted server on a later timeline can vouch for the id only
            // if its timeline split off after the transaction's own records, which it then
            // has, so it never handed the id out again. If it split off before them, the
            // commit record, later still, is not in its history: nothing committed there.
            match split_after_records(connection, ran, history, answered_on.as_deref()).await {
                Some(true) => {}
                Some(false) => return Resolution::Aborted,
                None => return Resolution::Unknown,
            }
        }
        loop {
            let status: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(STATUS)
                .bind(ran.id)
                .fetch_one(&mut *connection)
                .await;
            let Ok(Some(status)) = status else {
                // The server is out of reach, or the id is not one it knows (22023, "in the
                // future": a server that never saw it).
                return Resolution::Unknown;
            };
            match status.as_str() {
                "committed" => return Resolution::Committed,
                "aborted" => return Resolution::Aborted,
                // The backend is still finishing the COMMIT it received.
                "in progress" => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => return Resolution::Unknown,
            }
        }
    }

    /// Whether the server asked, on a later timeline, split from the transaction's timeline
    /// after the transaction's records (`Some(false)`: before them); `None` when that cannot be
    /// told (the same timeline restarted, the history unreadable).
    async fn split_after_records(
        connection: &mut PgConnection,
        ran: &Ran<'_>,
        history: &str,
        answered_on: Option<&str>,
    ) -> Option<bool> {
        let ran_on = timeline(history)?;
        let now_on = timeline(answered_on?)?;
        let later = u32::from_str_radix(now_on, 16).ok()? > u32::from_str_radix(ran_on, 16).ok()?;
        if !later {
            return None;
        }
        let file: String = sqlx::query_scalar(HISTORY_FILE)
            .bind(now_on)
            .fetch_one(&mut *connection)
            .await
            .ok()?;
        let split = split_point(&file, u32::from_str_radix(ran_on, 16).ok()?)?;
        let written_to = lsn(ran.written_to?)?;
        Some(split > written_to)
    }

    /// Where `timeline` ends in a timeline history file.
    fn split_point(file: &str, timeline: u32) -> Option<u64> {
        file.lines().find_map(|line| {
            let mut fields = line.split('\t');
            let number: u32 = fields.next()?.trim().parse().ok()?;
            (number == timeline).then(|| lsn(fields.next()?.trim()))?
        })
    }

    #[cfg(test)]
    mod tests {
        use super::{lsn, split_point};

        #[test]
        fn the_split_point_of_each_ancestor_timeline_is_read_from_the_history() {
            let file = "1\t0/3000158\tno recovery target specified\n\n\
                        2\t0/5000000\tno recovery target specified\n";
            assert_eq!(split_point(file, 1), lsn("0/3000158"));
            assert_eq!(split_point(file, 2), Some(0x5000000));
            assert_eq!(split_point(file, 3), None);
            assert_eq!(lsn("1/0000000A"), Some((1 << 32) | 10));
            assert_eq!(lsn("nonsense"), None);
        }
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use std::future::Future;

    use super::sqlx;
    use super::sqlx::mysql::MySqlConnection;
    use super::sqlx::{pool::PoolConnection, MySql, Transaction};
    use crate::connection::{Isolation, IsolationLevels, ReadOnlyTransactions, TransactionOptions};

    impl IsolationLevels for MySqlConnection {}
    impl ReadOnlyTransactions for MySqlConnection {}

    #[allow(clippy::manual_async_fn)] // declared `Send`, as above
    pub(super) fn begin<'h>(
        held: &'h mut PoolConnection<MySql>,
        options: &'static TransactionOptions,
    ) -> impl Future<Output = Result<Transaction<'h, MySql>, sqlx::Error>> + Send + 'h {
        async move {
            // MySQL sets the level of the next transaction with a statement of its own.
            if let Some(level) = options.isolation {
                let set = match level {
                    Isolation::ReadCommitted => "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                    Isolation::RepeatableRead => "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                    Isolation::Serializable => "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                };
                // The executor's own boxed future: the generic helpers' futures trip
                // rust-lang/rust#100013 inside this `Send` future.
                sqlx::Executor::execute(&mut **held, set).await?;
            }
            let connection: &'h mut MySqlConnection = held;
            if options.read_only {
                sqlx::Connection::begin_with(connection, "START TRANSACTION READ ONLY").await
            } else {
                sqlx::Connection::begin(connection).await
            }
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::future::Future;

    use super::sqlx;
    use super::sqlx::sqlite::SqliteConnection;
    use super::sqlx::{pool::PoolConnection, Sqlite, Transaction};
    use crate::connection::{ImmediateTransactions, TransactionOptions};

    impl ImmediateTransactions for SqliteConnection {}

    /// Roll back whatever a failed attempt left open. sqlx-sqlite 0.8 counts a transaction
    /// before it checks that `begin_with` opened one, so the question the other drivers ask
    /// would leave its count wrong; a plain ROLLBACK that finds nothing to roll back says so.
    #[allow(clippy::manual_async_fn)] // declared `Send`, see `connection.rs`
    pub(super) fn reset(
        held: &mut PoolConnection<Sqlite>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + '_ {
        async move {
            match sqlx::Executor::execute(&mut **held, "ROLLBACK").await {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(db))
                    if db.message().contains("no transaction is active") =>
                {
                    Ok(())
                }
                Err(error) => Err(error),
            }
        }
    }

    pub(super) fn begin<'h>(
        held: &'h mut PoolConnection<Sqlite>,
        options: &'static TransactionOptions,
    ) -> impl Future<Output = Result<Transaction<'h, Sqlite>, sqlx::Error>> + Send + 'h {
        let connection: &'h mut SqliteConnection = held;
        async move {
            if options.immediate {
                sqlx::Connection::begin_with(connection, "BEGIN IMMEDIATE").await
            } else {
                sqlx::Connection::begin(connection).await
            }
        }
    }
}

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
