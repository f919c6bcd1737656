//! `#[db_retry]` against a real PostgreSQL that each test starts for itself: terminated backends
//! are retried on a fresh connection and permanent errors run once. `#[transaction]` under real
//! SERIALIZABLE conflicts and deadlocks is `conflicting_transfers_commit_exactly_once` in
//! `faults_postgres.rs`.
//!
//! The suite runs twice, against sqlx 0.9 and sqlx 0.8: `postgres_attribute/suite.rs` is written against
//! a `sqlx` that each module below binds to one version.

use db_retry_test_kit as support;

mod sqlx09 {
    use ::sqlx;
    include!("postgres_attribute/suite.rs");
}

mod sqlx08 {
    use ::sqlx08 as sqlx;
    include!("postgres_attribute/suite.rs");
}
