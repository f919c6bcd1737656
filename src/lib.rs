//! db-retry: placeholder, filled in with the attribute.
pub use db_retry_runtime::*;
