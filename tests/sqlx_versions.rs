//! The same real-server cases for sqlx 0.9 and sqlx 0.8, in one run: each version's errors from a
//! throwaway PostgreSQL are classified as the table says, and the attribute (plain, `#[acquire]`
//! and `#[transaction]`) retries them, or not, accordingly. `cases.rs` is written against a
//! `sqlx` that each module below binds to one version.

use db_retry_test_kit as support;

mod sqlx09 {
    use ::sqlx;
    include!("sqlx_versions/cases.rs");
}

mod sqlx08 {
    use ::sqlx08 as sqlx;
    include!("sqlx_versions/cases.rs");
}
