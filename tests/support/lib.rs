//! The test kit shared by db-retry's integration tests and benchmarks: throwaway database
//! servers (PostgreSQL, MariaDB) that the tests start and stop themselves, and a fault proxy.
//! A workspace crate of its own, so it is compiled once and every item in it is checked.

pub mod bench;
pub mod mariadb;
pub mod pg;
pub mod pgbouncer;
mod process;
pub mod proxy;
