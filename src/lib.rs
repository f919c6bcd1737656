//! Retry transient database errors in async [sqlx](https://docs.rs/sqlx) code with one
//! attribute.
//!
//! ```
//! use db_retry::db_retry;
//! use sqlx::SqlitePool;
//!
//! #[db_retry(max = 3, on = transient)]
//! async fn count_users(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
//!     sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(pool).await
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sqlx::Error> {
//! # let pool = SqlitePool::connect("sqlite::memory:").await?;
//! # sqlx::query("CREATE TABLE users (id INTEGER)").execute(&pool).await?;
//! assert_eq!(count_users(&pool).await?, 0);
//! # Ok(())
//! # }
//! ```
//!
//! [`#[db_retry]`](db_retry) rewrites the function so that each attempt runs the body again. When
//! an attempt fails, the error is classified ([`ErrorClass`]): a transient error (connection
//! refused or lost, server restarting, `max_connections` reached, serialization failure,
//! deadlock, `SQLITE_BUSY`, …) is retried after an exponential, jittered, capped delay; anything
//! else (a constraint violation, a syntax error, `RowNotFound`) is returned at once.
//!
//! # What is retried
//!
//! | class | meaning | retried by `on =` |
//! |---|---|---|
//! | [`Connect`](ErrorClass::Connect) | never reached the server, or it refused the session; nothing ran | `transient`, `connection` |
//! | [`ConnectionLost`](ErrorClass::ConnectionLost) | the connection broke; the statement may have run | `transient`, `connection` |
//! | [`Contention`](ErrorClass::Contention) | rolled back because of concurrency; nothing took effect | `transient`, `contention` |
//! | [`Unavailable`](ErrorClass::Unavailable) | overloaded, failing, or read-only after a failover | `transient`, `connection` |
//! | [`Permanent`](ErrorClass::Permanent) | anything else | never |
//!
//! With `idempotent = false`, where the attempt stood decides too: see the attribute's
//! `idempotent` docs.
//!
//! Errors are classified through [`Classify`], implemented for every `std::error::Error +
//! 'static`: the error and its `source()` chain are searched for a `sqlx::Error` (of sqlx 0.9
//! or 0.8, with the features `sqlx09` and `sqlx08`), a SeaORM `DbErr` (feature `sea-orm`), a
//! `tokio_postgres::Error` (feature `tokio-postgres`) or a `std::io::Error`, so your own
//! `thiserror` enum with `#[from] sqlx::Error` works with no code. `anyhow::Error` and
//! `Box<dyn Error + Send + Sync>` work too.
//!
//! # Features
//!
//! `sqlx09` (default) and `sqlx08` pick the sqlx versions understood; both may be on at once.
//! `postgres`, `mysql` and `sqlite` (default) add each driver's error details and connection
//! type. `anyhow` (default), `sea-orm`, `tokio-postgres` and `deadpool-postgres` add those
//! crates' errors. A PostgreSQL-only service on sqlx 0.9 needs only
//! `default-features = false, features = ["sqlx09", "postgres"]`.
//!
//! The feature `metrics` reports attempts, retries, give-ups, budget and circuit-breaker events
//! through the [`metrics`](https://docs.rs/metrics) facade; see the README's "Metrics".
//!
//! # Without the attribute
//!
//! [`retry`] runs a closure under a [`RetryPolicy`] with the same driver:
//!
//! ```
//! use db_retry::{retry, RetryPolicy};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
//! let policy = RetryPolicy::builder()
//!     .max_retries(5)
//!     .base(Duration::from_millis(50))
//!     .build()?;
//! let one: i64 = retry(&policy, || async {
//!     sqlx::query_scalar("SELECT 1").fetch_one(&pool).await
//! })
//! .await?;
//! assert_eq!(one, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Observability
//!
//! Every retry emits a `tracing` WARN event with target `db_retry` and the fields `function`,
//! `retry` (1 for the first retry), `delay_ms`, `class`, `may_have_run`, `error` and `cause` (the
//! error in the chain that decided the class, by code and message); giving up on a transient
//! error emits a WARN with the `reason` and the `bound` that ended the call; success after retries, and a nested retried call handing
//! its error up to the one around it, emit DEBUG events. A call that succeeds at once emits
//! nothing, allocates nothing and, without a `deadline` or `attempt_timeout`, reads no clock.
#![warn(missing_docs)]

/// Retry an `async fn` that returns `Result<T, E>` when it fails with a transient database
/// error.
///
/// ```text
/// #[db_retry(
///     max = 3,               // retries after the first attempt (up to 4 attempts); 0..=100
///     on = transient,        // transient | connection | contention | path::to::classifier
///     backoff = exponential, // exponential (factor 2) | fixed | none
///     base = 100ms,          // first delay: an integer with unit ms, s or m
///     cap = 5s,              // ceiling of any single delay
///     jitter = full,         // full | equal | decorrelated | none
///     deadline = 30s,        // optional: no new attempt starts once this much time has passed
///     attempt_timeout = 2s,  // optional: cancel an attempt that runs longer
///     idempotent = true,     // false: never re-run an attempt that may have applied something
///     budget = none,         // optional: a `static RetryBudget` of yours, or none; default: the process's
///     breaker = PRIMARY,     // optional: a `static CircuitBreaker`; no retries while it is open
///     fail_fast = false,     // true: while the breaker is open, return `CircuitOpen` unrun
///     crate = db_retry,      // path of this crate, for crates that re-export it
/// )]
/// ```
///
/// Every key is optional; the values above are the defaults (no deadline and no attempt timeout
/// by default). A mistake
/// in the attribute is a compile error that points at the token and says what is allowed.
///
/// # How the function is rewritten
///
/// Each attempt runs the function's body again, inside its own `async` block: `?` and `return`
/// end the *attempt*, and their error is what gets classified. Arguments are made available to
/// every attempt:
///
/// - references (`&T`) are used as they are; `&mut T` is reborrowed for each attempt;
/// - by-value arguments are **cloned for each attempt** (a non-`Clone` one is a compile error
///   pointing at it). Prefer borrowing (`&str` over `String`) when the value is large;
/// - a by-value argument written as a pattern (`Path(slug): Path<String>`,
///   `Json(body): Json<T>`) is taken apart once, before the first attempt, and only what the
///   pattern binds is cloned for each attempt, so the wrapper needs no `Clone`;
/// - an executor (`e: impl Executor<'_, Database = Postgres>`) is a compile error: each query
///   consumes it; take `&PgPool` or `#[acquire] conn: &mut PgConnection`.
///
/// One retrying layer: a `#[db_retry]` function called inside another one's attempt, on the same
/// task, leaves to the outer call the errors the outer call retries, so nested retried
/// functions do not multiply attempts; a spawned task is a call of its own.
///
/// A `&mut` connection taken *without* `#[acquire]` is the caller's: every attempt runs on that
/// same connection. That suits autocommit work, but inside a transaction the caller opened, a
/// failed statement has already aborted the transaction (PostgreSQL answers 25P02 until
/// ROLLBACK), so retrying there cannot help. Put `#[db_retry]` on the unit of work instead: the
/// function that owns the transaction, with `#[transaction]`.
///
/// The future stays `Send` when the body's is: the error is judged and dropped before the
/// backoff delay is awaited. Known limits: a `&mut self` body that passes `self` to a generic
/// function must write `&mut *self`; a body that moves a by-value `self` out can't be re-run; a
/// by-value argument that is `Send` but not `Sync` makes the future non-`Send` (each attempt
/// borrows it to clone it).
///
/// Methods of an `#[async_trait]` impl work too: put `#[db_retry]` on the method inside the
/// impl. `#[async_trait]` rewrites the method first, into a plain `fn` returning
/// `Pin<Box<dyn Future + Send>>`; the attribute recognises that shape and retries inside the
/// boxed future, so the trait stays usable as `dyn Trait`. There, a by-value receiver (`self`,
/// `self: Arc<Self>`) is cloned for each attempt like a by-value argument, and `&mut self` is
/// reborrowed.
///
/// ```
/// use async_trait::async_trait;
/// use db_retry::db_retry;
/// use sqlx::SqlitePool;
///
/// #[async_trait]
/// pub trait Users: Send + Sync {
///     async fn count(&self) -> Result<i64, sqlx::Error>;
/// }
///
/// pub struct SqliteUsers {
///     pool: SqlitePool,
/// }
///
/// #[async_trait]
/// impl Users for SqliteUsers {
///     #[db_retry(max = 3)]
///     async fn count(&self) -> Result<i64, sqlx::Error> {
///         sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
///             .fetch_one(&self.pool)
///             .await
///     }
/// }
///
/// # async fn use_it(users: &dyn Users) -> Result<i64, sqlx::Error> { users.count().await }
/// ```
///
/// # `max`
///
/// Retries after the first attempt; `max = 0` runs the body exactly once.
///
/// ```
/// # use db_retry::db_retry; use sqlx::SqlitePool;
/// #[db_retry(max = 5)]
/// async fn user_count(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
///     sqlx::query_scalar("SELECT count(*) FROM sqlite_master").fetch_one(pool).await
/// }
/// ```
///
/// # `on`
///
/// Which errors are retried: `transient` (every class but permanent), `connection` (connect,
/// connection lost, unavailable), `contention` (serialization failures, deadlocks, lock
/// time-outs, `SQLITE_BUSY`), or your own classifier: a function taking `&E` and returning
/// `bool` (true = retry) or [`ErrorClass`].
///
/// ```
/// # use db_retry::{db_retry, ErrorClass}; use sqlx::SqlitePool;
/// fn retry_busy_only(error: &sqlx::Error) -> bool {
///     matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("5"))
/// }
///
/// #[db_retry(on = retry_busy_only)]
/// async fn bump(pool: &SqlitePool) -> Result<(), sqlx::Error> {
///     sqlx::query("UPDATE counters SET n = n + 1").execute(pool).await?;
///     Ok(())
/// }
///
/// #[db_retry(on = contention)]
/// async fn bump_again(pool: &SqlitePool) -> Result<(), sqlx::Error> {
///     sqlx::query("UPDATE counters SET n = n + 1").execute(pool).await?;
///     Ok(())
/// }
/// ```
///
/// # `backoff`, `base`, `cap`, `jitter`
///
/// The delay before retry *n* (from 0) is `min(cap, base · 2ⁿ)` for `exponential`, `base` for
/// `fixed`, zero for `none`; then jitter spreads it: `full` draws from `[0, d]`, `equal` from
/// `[d/2, d]`, `decorrelated` from `[base, 3 · previous]` (capped; exponential only), `none`
/// keeps `d`. Durations are integers with a unit: `ms`, `s` or `m`.
///
/// ```
/// # use db_retry::db_retry; use sqlx::SqlitePool;
/// #[db_retry(backoff = exponential, base = 20ms, cap = 2s, jitter = decorrelated)]
/// async fn spread(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
///     sqlx::query_scalar("SELECT 1").fetch_one(pool).await
/// }
///
/// #[db_retry(backoff = fixed, base = 250ms, jitter = none)]
/// async fn steady(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
///     sqlx::query_scalar("SELECT 1").fetch_one(pool).await
/// }
///
/// #[db_retry(backoff = none)]
/// async fn at_once(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
///     sqlx::query_scalar("SELECT 1").fetch_one(pool).await
/// }
/// ```
///
/// # `deadline`
///
/// No new attempt starts once this much time has passed since the call began. A delay that
/// would reach the deadline is cut to half the time left, and the attempt after it is the last:
/// the call then returns that attempt's error. (With a deadline, the call reads the clock once
/// when it starts.) A single attempt that hangs is bounded by `attempt_timeout`, or else by
/// sqlx's own time-outs, such as the pool's `acquire_timeout`.
///
/// ```
/// # use db_retry::db_retry; use sqlx::SqlitePool;
/// #[db_retry(max = 100, deadline = 30s)]
/// async fn wait_for_it(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
///     sqlx::query_scalar("SELECT 1").fetch_one(pool).await
/// }
/// ```
///
/// # `attempt_timeout`
///
/// An attempt that runs longer is cancelled (its future is dropped) and counts as a lost
/// connection: it may have run, so `idempotent = false` retries it only inside a transaction.
/// With a `deadline` as well, each attempt gets the smaller of the timeout and the time left. A
/// connection db-retry holds (`#[acquire]`, `#[transaction]`) is closed; in a function that
/// takes a pool, the cancelled query's connection goes back to the pool, which pings it before
/// reuse. The function's error type must hold the cancellation: `E: From<`[`AttemptTimedOut`]`>`
/// (`sqlx::Error`, `std::io::Error`, `anyhow::Error` and boxed errors have it), or else
/// `E: From<sqlx::Error>`, through which it arrives as a sqlx I/O error of kind `TimedOut`.
///
/// ```
/// # use db_retry::db_retry; use sqlx::SqlitePool;
/// #[db_retry(attempt_timeout = 2s, deadline = 10s)]
/// async fn report(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
///     sqlx::query_scalar("SELECT 1").fetch_one(pool).await
/// }
/// ```
///
/// # `budget`
///
/// Retries draw on a [`RetryBudget`]: by default the process-wide [`RetryBudget::global`], where
/// in any 10 s retries may add at most 20 % to first attempts, plus 10 a second. When it is
/// spent, the error returns at once (a WARN with `bound = "budget"` says so, at most once per
/// tenth of the window). A call inside another retried call's attempt is not counted again. `budget = path::to::STATIC` draws on a budget of yours, `budget = none` on none.
///
/// ```
/// # use db_retry::{db_retry, RetryBudget}; use sqlx::SqlitePool; use std::time::Duration;
/// static IMPORTS: RetryBudget = RetryBudget::new(50, 20, Duration::from_secs(10));
///
/// #[db_retry(budget = IMPORTS)]
/// async fn import_row(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
///     sqlx::query_scalar("SELECT 1").fetch_one(pool).await
/// }
/// ```
///
/// # `breaker` and `fail_fast`
///
/// `breaker = path::to::STATIC` reports each failed attempt to a [`CircuitBreaker`]. After a run
/// of connect or unavailable failures it opens: no retries until it has probed the database
/// again, while the first attempt of each call still runs. With `fail_fast = true` an open
/// breaker ends the call before it starts, with [`CircuitOpen`] turned into the function's
/// error type by `From` (without that impl, a compile error on `fail_fast`).
///
/// ```
/// # use db_retry::{db_retry, CircuitBreaker, CircuitOpen}; use sqlx::SqlitePool;
/// # use std::time::Duration;
/// static PRIMARY: CircuitBreaker = CircuitBreaker::new("primary")
///     .consecutive_failures(5)
///     .open_for(Duration::from_secs(10));
///
/// #[derive(Debug, thiserror::Error)]
/// enum RepoError {
///     #[error("database: {0}")]
///     Database(#[from] sqlx::Error),
///     #[error(transparent)]
///     CircuitOpen(#[from] CircuitOpen),
/// }
///
/// #[db_retry(breaker = PRIMARY, fail_fast = true)]
/// async fn report(pool: &SqlitePool) -> Result<i64, RepoError> {
///     Ok(sqlx::query_scalar("SELECT 1").fetch_one(pool).await?)
/// }
/// ```
///
/// # `idempotent`
///
/// When a connection breaks mid-statement, the statement may have run; and once an attempt has
/// run one statement outside a transaction, a later failure leaves that one applied. With
/// `idempotent = false` the attribute judges the *attempt*, not the failed statement, by where
/// it stands:
/// - `#[transaction]`: a failure in the body is retried (the server rolled the whole attempt
///   back); a lost connection during COMMIT is not (the outcome is unknown);
/// - `#[acquire]`: only failures while getting the connection are retried;
/// - a function that takes a pool: the attribute cannot see what ran, so `idempotent = false`
///   there is a compile error that says to use one of the two above.
///
/// A classifier returning `bool` cannot overrule this. Writes that must not repeat belong in
/// `#[transaction]`.
///
/// ```
/// # use db_retry::db_retry; use sqlx::SqliteConnection;
/// #[db_retry(idempotent = false)]
/// async fn append_event(#[acquire] conn: &mut SqliteConnection, kind: &str) -> Result<(), sqlx::Error> {
///     sqlx::query("INSERT INTO events (kind) VALUES (?)").bind(kind).execute(&mut *conn).await?;
///     Ok(())
/// }
/// ```
///
/// # `crate`
///
/// Generated code reaches the runtime as `::db_retry::…`. A crate that re-exports `db_retry`
/// under another path says where:
///
/// ```
/// mod infra {
///     pub(crate) use db_retry as retry;
/// }
///
/// #[infra::retry::db_retry(crate = infra::retry)]
/// async fn ping(pool: &sqlx::SqlitePool) -> Result<i64, sqlx::Error> {
///     sqlx::query_scalar("SELECT 1").fetch_one(pool).await
/// }
/// ```
///
/// # `#[acquire]`: a fresh connection per attempt
///
/// Mark a `&mut` connection parameter with `#[acquire]`: callers pass a `&Pool` instead, and
/// each attempt acquires its own connection. A connection that failed with a lost-connection or
/// server-side error is closed rather than returned to the pool; any other failed attempt's
/// connection is cleaned first (what it left open is rolled back, and the connection closed if
/// that fails). Closing at once takes the error's class: a classifier that answers `bool` gives
/// none, so its failed connections are only cleaned; answer with an [`ErrorClass`] to keep the
/// closing.
///
/// ```
/// # use db_retry::db_retry; use sqlx::SqliteConnection;
/// #[db_retry]
/// async fn last_id(#[acquire] conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
///     sqlx::query("CREATE TEMP TABLE IF NOT EXISTS t (x)").execute(&mut *conn).await?;
///     sqlx::query_scalar("SELECT last_insert_rowid()").fetch_one(&mut *conn).await
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sqlx::Error> {
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// assert_eq!(last_id(&pool).await?, 0);
/// # Ok(())
/// # }
/// ```
///
/// # `#[transaction]`: retry the whole unit of work
///
/// Mark a `&mut` connection parameter with `#[transaction]`: callers pass a `&Pool`; each
/// attempt acquires a connection, `BEGIN`s, runs the body, and `COMMIT`s on `Ok` (rolls back on
/// `Err`). Serialization failures and deadlocks retry the whole transaction; a connection lost
/// inside the transaction is safe to retry because the server rolled it back. Only a failure
/// *during* COMMIT is ambiguous (unless the server reported a rollback, such as a 40001 at
/// COMMIT), and it is retried only with `idempotent = true`. The rollback covers what went
/// through the transaction's connection only: mail sent, a service called or another pool's
/// connection written to in the body are not undone.
///
/// Options go in the parentheses: `isolation = serializable | repeatable_read |
/// read_committed`, `read_only`, `deferrable` (PostgreSQL, with a serializable read-only
/// transaction), `immediate` (SQLite's `BEGIN IMMEDIATE`), and `verify_commit` (PostgreSQL):
/// the transaction's id is read before COMMIT, so a transaction the server aborted (an error
/// the body swallowed) returns that error instead of `Ok`, and a COMMIT whose connection was
/// lost is resolved with `pg_xact_status` (committed is `Ok`; aborted is retried even with
/// `idempotent = false`). It costs a round trip, so it is opt-in. An option the connection type
/// lacks is a compile error on the option.
///
/// ```
/// # use db_retry::db_retry; use sqlx::PgConnection;
/// #[db_retry(idempotent = false)]
/// async fn append_entry(
///     #[transaction(isolation = serializable, verify_commit)] tx: &mut PgConnection,
///     amount: i64,
/// ) -> Result<(), sqlx::Error> {
///     sqlx::query("INSERT INTO ledger (amount) VALUES ($1)").bind(amount).execute(&mut *tx).await?;
///     Ok(())
/// }
/// ```
///
/// ```
/// # use db_retry::db_retry; use sqlx::SqliteConnection;
/// #[db_retry(on = contention, max = 10)]
/// async fn transfer(
///     #[transaction] tx: &mut SqliteConnection,
///     from: i64,
///     to: i64,
///     amount: i64,
/// ) -> Result<(), sqlx::Error> {
///     sqlx::query("UPDATE accounts SET balance = balance - ? WHERE id = ?")
///         .bind(amount).bind(from).execute(&mut *tx).await?;
///     sqlx::query("UPDATE accounts SET balance = balance + ? WHERE id = ?")
///         .bind(amount).bind(to).execute(&mut *tx).await?;
///     Ok(())
/// }
/// ```
pub use db_retry_macros::db_retry;

pub use db_retry_runtime::{
    classify_database, classify_error, classify_io, classify_mysql, classify_postgres,
    classify_sqlite, classify_sqlx, configuration_hint, health, postgres_configuration_hint, retry,
    retry_with, wait_until_ready, AfterError, AttemptTimedOut, Backoff, BreakerState,
    CircuitBreaker, CircuitOpen, Classify, ConnectTarget, DeferrableTransactions, ErrorClass,
    Health, ImmediateTransactions, Isolation, IsolationLevels, Jitter, Phase, PolicyError,
    PoolProbe, PooledConnection, ReadOnlyTransactions, Retrier, RetryBudget, RetryOn, RetryPolicy,
    RetryPolicyBuilder, SqlxDatabaseError, SqlxError, TransactionOptions, Verdict, VerifiedCommit,
    MAX_RETRIES_LIMIT, RESET_TIMEOUT,
};

#[cfg(all(feature = "sqlx09", feature = "postgres"))]
pub use db_retry_runtime::{FailoverDrain, Heartbeat, HeartbeatHealth};

pub use db_retry_runtime::{expansion, layers};

#[doc(hidden)]
pub use db_retry_runtime::__private;
