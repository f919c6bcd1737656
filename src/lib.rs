//! Retry transient database errors in async [sqlx](https://docs.rs/sqlx) code with one attribute.
#![warn(missing_docs)]

pub use db_retry_macros::db_retry;
pub use db_retry_runtime::{
    classify_database, classify_error, classify_io, classify_mysql, classify_postgres,
    classify_sqlite, classify_sqlx, retry, retry_with, Backoff, Classify, ErrorClass, Jitter,
    Phase, PolicyError, Retrier, RetryOn, RetryPolicy, RetryPolicyBuilder, Verdict,
    MAX_RETRIES_LIMIT,
};

#[doc(hidden)]
pub use db_retry_runtime::__private;
