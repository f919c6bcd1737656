//! The fault suite on PostgreSQL: a real server of the test's own, misbehaving for real —
//! backends terminated under load, the server stopped and restarted, exhausted, conflicting
//! transactions, network faults through a proxy, and calls cancelled halfway.
//!
//! Each scenario asserts attempt counts and outcomes and prints one summary line.
//!
//! The suite runs twice, against sqlx 0.9 and sqlx 0.8: `faults_postgres/suite.rs` is written against
//! a `sqlx` that each module below binds to one version.

use db_retry_test_kit as support;

mod sqlx09 {
    use ::sqlx;
    include!("faults_postgres/suite.rs");
}

mod sqlx08 {
    use ::sqlx08 as sqlx;
    include!("faults_postgres/suite.rs");
}
