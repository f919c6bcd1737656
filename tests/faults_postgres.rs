//! The fault suite on PostgreSQL: a real server of the test's own, misbehaving for real —
//! backends terminated under load, the server stopped and restarted, exhausted, conflicting
//! transactions, network faults through a proxy, and calls cancelled halfway.
//!
//! Each scenario asserts attempt counts and outcomes and prints one summary line.
//!
//! The default retry budget is on, as users get it. Scenarios whose point is one call retrying
//! through a long outage (restart, deadline, exhausted server, blackhole) or transactions
//! conflicting on purpose far beyond any budget (150 transfers, about 800 retries) say
//! `budget = none`: their retries are what the scenario measures, and tests running at once
//! in this process share the default budget.
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
