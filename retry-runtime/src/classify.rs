//! Turning an error into an [`ErrorClass`].
//!
//! The tables here follow what the servers document and what sqlx actually reports (see the field
//! notes in DESIGN.md): PostgreSQL by SQLSTATE, MySQL/MariaDB by error number, SQLite by extended
//! result code, and `std::io::Error` by kind.

use std::error::Error as StdError;
use std::io;

pub use db_retry_policy::ErrorClass;

/// Errors that db-retry knows how to classify.
///
/// Implemented for every `std::error::Error + 'static` (which covers `sqlx::Error`,
/// `std::io::Error` and your own `thiserror` enums): the error and then its
/// [`source()`](std::error::Error::source) chain are searched for an error db-retry knows (see
/// [`classify_error`]), and the first one found decides. Also implemented for `dyn Error` trait objects,
/// so method syntax reaches through `Box<dyn Error + Send + Sync>` and `anyhow::Error`.
///
/// A wrapper declared `#[error(transparent)]` (thiserror) exposes the wrapped error's *source*
/// rather than the wrapped error, so a `sqlx::Error` variant without a source, such as
/// `PoolTimedOut`, cannot be seen through it and classifies as permanent. Give such a variant a
/// message instead of `transparent`, or classify with a function of your own (`on = path`).
///
/// ```
/// use db_retry_runtime::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// struct RepoError(sqlx::Error);
/// impl std::fmt::Display for RepoError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("repository failed")
///     }
/// }
/// impl std::error::Error for RepoError {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// assert_eq!(RepoError(sqlx::Error::PoolTimedOut).classify(), ErrorClass::Connect);
/// assert_eq!(RepoError(sqlx::Error::RowNotFound).classify(), ErrorClass::Permanent);
/// ```
pub trait Classify {
    /// The class of this error.
    fn classify(&self) -> ErrorClass;

    /// The error in this one's `source()` chain (this one included) that decided its class, if
    /// one did; the retry event names it, so a wrapper whose message hides its cause does not
    /// hide it from the logs.
    fn decided_by(&self) -> Option<&(dyn StdError + 'static)> {
        None
    }
}

impl<E: StdError + 'static> Classify for E {
    fn decided_by(&self) -> Option<&(dyn StdError + 'static)> {
        deciding_link(self)
    }

    fn classify(&self) -> ErrorClass {
        let class = classify_error(self);
        if class == ErrorClass::Permanent {
            warn_if_sqlx_version_is_off::<E>(self);
        }
        class
    }
}

/// A `sqlx::Error` that none of the enabled versions recognised comes from a sqlx version whose
/// feature is off, and would never be retried: say so once, loudly, instead of letting it pass
/// as permanent. Only reached on a permanent error, never on the happy path.
fn warn_if_sqlx_version_is_off<E: StdError + 'static>(error: &E) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    let is_sqlx_error = std::any::type_name::<E>() == "sqlx_core::error::Error";
    if is_sqlx_error && classify_known(error).is_none() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::error!(
            target: "db_retry",
            error = %error,
            "this sqlx::Error comes from a sqlx version db-retry was built without, so it cannot \
             be classified and is never retried: enable the db-retry feature `sqlx09` (sqlx 0.9) \
             or `sqlx08` (sqlx 0.8) for the sqlx you use"
        );
    }
}

impl Classify for dyn StdError + 'static {
    fn classify(&self) -> ErrorClass {
        classify_error(self)
    }

    fn decided_by(&self) -> Option<&(dyn StdError + 'static)> {
        deciding_link(self)
    }
}

impl Classify for dyn StdError + Send + 'static {
    fn classify(&self) -> ErrorClass {
        classify_error(self)
    }

    fn decided_by(&self) -> Option<&(dyn StdError + 'static)> {
        deciding_link(self)
    }
}

impl Classify for dyn StdError + Send + Sync + 'static {
    fn classify(&self) -> ErrorClass {
        classify_error(self)
    }

    fn decided_by(&self) -> Option<&(dyn StdError + 'static)> {
        deciding_link(self)
    }
}

/// Classify any error by searching it and its `source()` chain for an error db-retry knows: a
/// `sqlx::Error` (of either supported sqlx version), a driver's database error, a
/// `std::io::Error`, and with their features a SeaORM `DbErr` or a `tokio_postgres::Error`. An
/// error chain that holds none of them is [`ErrorClass::Permanent`].
pub fn classify_error(error: &(dyn StdError + 'static)) -> ErrorClass {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(class) = classify_known(error) {
            return class;
        }
        current = error.source();
    }
    ErrorClass::Permanent
}

/// The first error in `error`'s chain that db-retry knows, which is what decides its class.
fn deciding_link<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e (dyn StdError + 'static)> {
    let mut current = Some(error);
    while let Some(error) = current {
        if classify_known(error).is_some() {
            return Some(error);
        }
        current = error.source();
    }
    None
}

/// How the retry event names the error that decided the class: a database error by its code
/// (SQLSTATE, and MySQL's error number) and message, anything else by its message.
pub(crate) fn describe(error: &(dyn StdError + 'static)) -> String {
    #[cfg(feature = "sqlx09")]
    if let Some(described) = crate::sqlx09::describe_known(error) {
        return described;
    }
    #[cfg(feature = "sqlx08")]
    if let Some(described) = crate::sqlx08::describe_known(error) {
        return described;
    }
    if let Some(io) = error.downcast_ref::<io::Error>() {
        return format!("{:?}: {io}", io.kind());
    }
    error.to_string()
}

/// The class of `error` itself, when it is a type db-retry knows.
fn classify_known(error: &(dyn StdError + 'static)) -> Option<ErrorClass> {
    #[cfg(feature = "sqlx09")]
    if let Some(class) = crate::sqlx09::classify_known(error) {
        return Some(class);
    }
    #[cfg(feature = "sqlx08")]
    if let Some(class) = crate::sqlx08::classify_known(error) {
        return Some(class);
    }
    if let Some(class) = crate::ecosystem::classify_known(error) {
        return Some(class);
    }
    // An attempt `attempt_timeout` cancelled: it may have run.
    if error.is::<crate::expansion::AttemptTimedOut>() {
        return Some(ErrorClass::ConnectionLost);
    }
    if let Some(error) = error.downcast_ref::<io::Error>() {
        return Some(classify_io(error));
    }
    None
}

/// A `sqlx::Error` of a sqlx version this build supports (`sqlx09`, `sqlx08`); see
/// [`classify_sqlx`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `sqlx::Error` of a sqlx version db-retry was built for",
    note = "enable the db-retry feature for its sqlx version (`sqlx09` or `sqlx08`), or classify any error with `Classify::classify`"
)]
pub trait SqlxError: sealed::Sealed {
    #[doc(hidden)]
    fn __class(&self) -> ErrorClass;
}

/// A driver's database error (`dyn sqlx::error::DatabaseError`) of a sqlx version this build
/// supports; see [`classify_database`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a database error of a sqlx version db-retry was built for",
    note = "enable the db-retry feature for its sqlx version (`sqlx09` or `sqlx08`), or classify any error with `Classify::classify`"
)]
pub trait SqlxDatabaseError: sealed::Sealed {
    #[doc(hidden)]
    fn __class(&self) -> ErrorClass;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// Classify a `sqlx::Error`, of sqlx 0.9 or 0.8 (with the matching feature on).
///
/// Each variant has a deliberate class: `PoolTimedOut` is [`ErrorClass::Connect`] (sqlx retries
/// 53300 and 57P03 inside its connect phase and surfaces them this way); `Protocol` is
/// [`ErrorClass::ConnectionLost`] (the stream is out of step and the connection is unusable),
/// except the protocol errors sqlx raises before sending anything (too many bind arguments, an
/// authentication method it does not support), which are permanent; `Tls` is permanent (a
/// certificate that does not verify, a server without TLS) unless an I/O error underlies it;
/// `PoolClosed`, `WorkerCrashed`, `Configuration`,
/// `RowNotFound`, decode and encode errors are permanent.
///
/// ```
/// use db_retry_runtime::{classify_sqlx, ErrorClass};
///
/// assert_eq!(classify_sqlx(&sqlx::Error::PoolTimedOut), ErrorClass::Connect);
/// assert_eq!(classify_sqlx(&sqlx::Error::RowNotFound), ErrorClass::Permanent);
/// ```
pub fn classify_sqlx(error: &impl SqlxError) -> ErrorClass {
    error.__class()
}

/// Classify an error reported by the database server (a `dyn sqlx::error::DatabaseError` of
/// either supported sqlx version).
///
/// The driver is recognised by downcasting (with the driver's feature on): PostgreSQL by
/// SQLSTATE and severity, MySQL/MariaDB by error number, SQLite by extended result code. A driver
/// db-retry cannot recognise is classified by its SQLSTATE alone.
pub fn classify_database<E: SqlxDatabaseError + ?Sized>(error: &E) -> ErrorClass {
    error.__class()
}

/// Classify a `std::io::Error` by its kind.
///
/// A refused connection and a failed host name lookup can only happen while connecting: nothing
/// was sent ([`ErrorClass::Connect`]). Resets, broken pipes, EOF and time-outs mean an established
/// connection broke ([`ErrorClass::ConnectionLost`]). Unreachable hosts and networks, an address
/// not available and a socket path not found are [`ErrorClass::ConnectionLost`] too: a route can
/// vanish under an open connection just as well, and this function cannot tell when the error
/// happened. Where db-retry knows the error came while getting the connection (`#[acquire]`,
/// `#[transaction]`, [`Phase::Acquire`](crate::Phase::Acquire)), the driver counts every lost
/// connection as [`ErrorClass::Connect`]. An `Other` error that wraps a classifiable error is
/// classified by what it wraps.
pub fn classify_io(error: &io::Error) -> ErrorClass {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => ErrorClass::Connect,
        ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe | UnexpectedEof
        | TimedOut | NetworkDown | AddrNotAvailable | HostUnreachable | NetworkUnreachable
        | NotFound => ErrorClass::ConnectionLost,
        _ if is_lookup_failure(error) => ErrorClass::Connect,
        _ => match error.get_ref() {
            Some(inner) => classify_error(inner),
            None => ErrorClass::Permanent,
        },
    }
}

/// A sqlx protocol error: the byte stream is out of step with the protocol, so the connection is
/// unusable and the statement may or may not have reached the server; but some are raised while
/// the client is still encoding a message or choosing how to log in, before anything was sent,
/// and the same call fails the same way again.
#[cfg(any(feature = "sqlx09", feature = "sqlx08"))]
pub(crate) fn classify_protocol(message: &str) -> ErrorClass {
    const BEFORE_SENDING: &[&str] = &[
        // A statement with more bind arguments than the wire format can count (PostgreSQL).
        "too many parameter format codes",
        "too many result format codes",
        "too large for binary protocol",
        "too many arguments",
        // Logins sqlx cannot perform (PostgreSQL, MySQL).
        "unsupported authentication method",
        "unknown authentication method",
        "unknown authentication plugin",
        "mysql_cleartext_plugin disabled",
        // SQLite checks these locally; nothing is ever sent.
        "query contains nul bytes",
        "unsupported SQL parameter format",
        "invalid collation name",
    ];
    if BEFORE_SENDING.iter().any(|text| message.contains(text)) {
        ErrorClass::Permanent
    } else {
        ErrorClass::ConnectionLost
    }
}

/// A TLS failure: a certificate that does not verify, a server that does not support TLS or a
/// handshake that cannot agree fails the same way on every attempt. Only an I/O error under it
/// (the connection dropped during the handshake) is worth another try.
#[cfg(any(feature = "sqlx09", feature = "sqlx08"))]
pub(crate) fn classify_tls(error: &(dyn StdError + 'static)) -> ErrorClass {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return classify_io(io);
        }
        current = error.source();
    }
    ErrorClass::Permanent
}

/// Whether `error` is std's report of a failed DNS lookup (`getaddrinfo`), which is what sqlx
/// returns when the host name does not resolve. std gives it the unstable `Uncategorized` kind,
/// which stable code cannot match, so it is recognised by its message. Only called on errors, so
/// the allocation does not touch the happy path.
fn is_lookup_failure(error: &io::Error) -> bool {
    error
        .to_string()
        .starts_with("failed to lookup address information")
}

/// Classify a PostgreSQL error report as a driver hands it over: its SQLSTATE, message and
/// whether its severity was FATAL (or PANIC). The server ends the session after a FATAL
/// protocol violation, so a FATAL 08P01 is a lost connection whatever its message says.
#[cfg(any(feature = "postgres", feature = "tokio-postgres"))]
pub(crate) fn classify_postgres_report(sqlstate: &str, message: &str, fatal: bool) -> ErrorClass {
    match classify_postgres(sqlstate, message) {
        // A FATAL protocol violation ends the session, unless it is a refusal of the setup,
        // which every new session would meet again.
        ErrorClass::Permanent
            if fatal
                && sqlstate == "08P01"
                && crate::hint::postgres_configuration_hint(sqlstate, message).is_none() =>
        {
            ErrorClass::ConnectionLost
        }
        class => class,
    }
}

/// Classify a PostgreSQL SQLSTATE; `message` disambiguates the codes that PgBouncer and
/// PostgreSQL reuse for several causes.
///
/// 57014 (`query_canceled`) is permanent: it is what the user's own `statement_timeout` and an
/// operator's `pg_cancel_backend` report, and retrying would defeat both. (A hot standby cancels
/// for conflicts with recovery with 40001, which is contention.)
///
/// 08P01 (`protocol_violation`) is a lost connection only when PgBouncer says its server
/// connection crashed; PostgreSQL itself also uses 08P01 for statement errors such as a bind
/// message with the wrong number of parameters, which are permanent. A FATAL 08P01 from the
/// server is a lost connection; [`classify_database`] sees the severity and decides that.
pub fn classify_postgres(sqlstate: &str, message: &str) -> ErrorClass {
    match sqlstate {
        // connection_exception family: the client could not establish the session.
        "08001" | "08004" => ErrorClass::Connect,
        // too_many_connections, cannot_connect_now (starting up, shutting down, recovering).
        "53300" | "57P03" => ErrorClass::Connect,
        // PgBouncer reports its own pool limits with protocol_violation; nothing ran.
        "08P01"
            if message.contains("no more connections allowed")
                || message.contains("query_wait_timeout")
                || message.contains("pgbouncer cannot connect to server")
                // While its logins to the server fail, PgBouncer turns clients away at once
                // ("server login has been failing, try again later (server_login_retry)"; since
                // 1.17 "…, cached error: <the server's error> (server_login_retry)").
                || message.contains("server login has been failing") =>
        {
            ErrorClass::Connect
        }
        "08P01" if message.contains("server conn crashed") => ErrorClass::ConnectionLost,
        // PgBouncer refusing a startup parameter sqlx sends (FATAL): every connection would
        // be refused the same way until pgbouncer.ini changes.
        "08P01" if message.contains("unsupported startup parameter") => ErrorClass::Permanent,
        "08000" | "08003" | "08006" | "08007" => ErrorClass::ConnectionLost,
        // admin_shutdown (pg_terminate_backend, smart/fast stop), crash_shutdown,
        // idle_session_timeout, idle_in_transaction_session_timeout: the session is gone.
        // (57P02 reaches other sessions only as a WARNING before the server dies; listed for
        // drivers that surface it.)
        "57P01" | "57P02" | "57P05" | "25P03" => ErrorClass::ConnectionLost,
        // statement_completion_unknown: by definition it may have run.
        "40003" => ErrorClass::ConnectionLost,
        // feature_not_supported, as the server reports a prepared statement whose table changed
        // shape under it (ALTER TABLE after the connection cached the plan): this connection
        // fails it every time, a fresh one does not. Rejected before running; the connection
        // is thrown away.
        "0A000" if message.contains("cached plan must not change result type") => {
            ErrorClass::Unavailable
        }
        // serialization_failure, deadlock_detected, lock_not_available, object_in_use.
        "40001" | "40P01" | "55P03" | "55006" => ErrorClass::Contention,
        // insufficient_resources family, system errors, read-only after failover. 25006 is also
        // what the session's own READ ONLY transaction gets, with the same message: where
        // db-retry holds the connection it asks the server which one it is.
        "53000" | "53100" | "53200" | "53400" | "58000" | "58030" | "25006" => {
            ErrorClass::Unavailable
        }
        _ => ErrorClass::Permanent,
    }
}

/// Classify a MySQL/MariaDB error by its error number; `sqlstate` covers numbers this table does
/// not list but whose SQLSTATE is unambiguous (40001 is always a rolled-back transaction), and
/// `message` tells the causes that share 1290 apart.
pub fn classify_mysql(number: u16, sqlstate: Option<&str>, message: &str) -> ErrorClass {
    match number {
        // 1290 is "the server is running with the --X option": a read-only replica is
        // unavailable for writes, but --secure-file-priv and the like are configuration.
        1290 if !message.contains("read-only") && !message.contains("read_only") => {
            ErrorClass::Permanent
        }
        // ER_UNKNOWN_COM_ERROR is Galera's answer while the node is not synced with its cluster
        // ("WSREP has not yet prepared node for application use"); otherwise a client bug.
        1047 if message.contains("WSREP") => ErrorClass::Unavailable,
        // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS.
        1040 | 1203 => ErrorClass::Connect,
        // ER_SERVER_SHUTDOWN, ER_NET_READ_ERROR..ER_NET_WRITE_INTERRUPTED, ER_CONNECTION_KILLED
        // (MariaDB), ER_CLIENT_INTERACTION_TIMEOUT.
        1053 | 1158..=1161 | 1927 | 4031 => ErrorClass::ConnectionLost,
        // Client-library codes (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR,
        // CR_SERVER_LOST). sqlx reports these conditions as I/O errors and never produces the
        // numbers; other drivers do.
        2002 | 2003 => ErrorClass::Connect,
        2006 | 2013 => ErrorClass::ConnectionLost,
        // ER_LOCK_DEADLOCK (whole transaction rolled back), ER_LOCK_WAIT_TIMEOUT (only the
        // statement rolled back: retry the transaction as a whole), ER_LOCK_NOWAIT,
        // ER_CHECKREAD (MariaDB's snapshot isolation, on by default since 11.6: the row changed
        // since this transaction's snapshot), ER_TRANSACTION_ROLLBACK_DURING_COMMIT (group
        // replication lost the certification).
        1213 | 1205 | 3572 | 1020 | 3101 => ErrorClass::Contention,
        // ER_OPTION_PREVENTS_STATEMENT (--read-only), ER_READ_ONLY_MODE: this node no longer
        // takes writes.
        1290 | 1836 => ErrorClass::Unavailable,
        // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: the session's own START TRANSACTION READ
        // ONLY, which fails again however often it is tried.
        1792 => ErrorClass::Permanent,
        // ER_QUERY_INTERRUPTED (KILL QUERY), ER_QUERY_TIMEOUT (max_execution_time): the user's
        // own limits.
        1317 | 3024 => ErrorClass::Permanent,
        // ER_NET_PACKET_TOO_LARGE (the same statement fails again), ER_HANDSHAKE_ERROR,
        // ER_UNKNOWN_COM_ERROR: SQLSTATE 08S01 like a lost connection, but deterministic.
        1153 | 1043 | 1047 => ErrorClass::Permanent,
        _ => match sqlstate {
            // 40001 and 40000 (transaction_rollback): the server rolled the transaction back.
            Some("40001" | "40000") => ErrorClass::Contention,
            Some("08S01") => ErrorClass::ConnectionLost,
            _ => ErrorClass::Permanent,
        },
    }
}

/// Classify an SQLite extended result code.
///
/// `SQLITE_BUSY` (5) and its extended codes (261 BUSY_RECOVERY, 517 BUSY_SNAPSHOT, 773
/// BUSY_TIMEOUT) are contention with another connection; BUSY_SNAPSHOT can only succeed in a new
/// transaction, which is what a retry of the whole unit gives. 262 LOCKED_SHAREDCACHE is
/// contention with another connection of the same shared cache. `SQLITE_LOCKED` (6) itself and
/// its other extended codes are a conflict within the *same* connection (a table dropped while a
/// statement still reads it), which a retry repeats: permanent.
pub fn classify_sqlite(extended_code: i32) -> ErrorClass {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED_SHAREDCACHE: i32 = 262;
    match extended_code {
        SQLITE_LOCKED_SHAREDCACHE => ErrorClass::Contention,
        code if code & 0xff == SQLITE_BUSY => ErrorClass::Contention,
        _ => ErrorClass::Permanent,
    }
}
