//! Errors that look like database failures but are the setup's: retrying them cannot help, and
//! the error alone does not say what to change. Each gets a hint naming the fix, in the give-up
//! event and from [`configuration_hint`].
//!
//! Every message here was produced by PgBouncer 1.18 (Debian 12) in front of PostgreSQL 15 in
//! db-retry's own tests.

use std::error::Error as StdError;

/// What to change when PgBouncer refuses sqlx's connections outright.
pub const STARTUP_PARAMETER: &str = "PgBouncer refuses a startup parameter sqlx sends \
     (extra_float_digits): add `ignore_startup_parameters = extra_float_digits` to the \
     [pgbouncer] section of pgbouncer.ini";

/// What to change when a pooler in transaction mode moves sqlx's prepared statements away.
pub const PREPARED_STATEMENTS: &str = "a pooler in transaction mode (PgBouncer's \
     `pool_mode = transaction`) runs a session's statements on different server connections, \
     which loses sqlx's prepared statements: use `pool_mode = session`, or PgBouncer 1.21 or \
     newer with `max_prepared_statements`, or have every client of that PgBouncer run each \
     query inside a transaction (`#[transaction]`) with `.persistent(false)`";

/// The hint for a PostgreSQL error with `sqlstate` and `message`, if it is a setup problem.
pub fn postgres_configuration_hint(sqlstate: &str, message: &str) -> Option<&'static str> {
    let sqlx_statement = message.contains("prepared statement \"sqlx_s_")
        || message.contains("unnamed prepared statement");
    match sqlstate {
        "08P01" if message.contains("unsupported startup parameter") => Some(STARTUP_PARAMETER),
        // invalid_sql_statement_name ("… does not exist"), duplicate_prepared_statement
        // ("… already exists"), and a bind that found another statement under sqlx's name.
        "26000" | "42P05" | "08P01" if sqlx_statement => Some(PREPARED_STATEMENTS),
        _ => None,
    }
}

/// What to change, when `error` (or an error in its `source()` chain) says the setup is wrong
/// rather than that something failed: PgBouncer refusing sqlx's startup parameters, or a pooler
/// in transaction mode losing sqlx's prepared statements. `None` for anything else.
///
/// ```
/// # use db_retry_runtime::configuration_hint;
/// let error = sqlx::Error::PoolTimedOut;
/// assert_eq!(configuration_hint(&error), None);
/// ```
pub fn configuration_hint(error: &(dyn StdError + 'static)) -> Option<&'static str> {
    let mut current = Some(error);
    while let Some(error) = current {
        #[cfg(feature = "sqlx09")]
        if let Some((code, message)) = crate::sqlx09::postgres_report(error) {
            return postgres_configuration_hint(&code, &message);
        }
        #[cfg(feature = "sqlx08")]
        if let Some((code, message)) = crate::sqlx08::postgres_report(error) {
            return postgres_configuration_hint(&code, &message);
        }
        current = error.source();
    }
    None
}
