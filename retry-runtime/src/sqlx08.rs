//! sqlx 0.8: its errors, connections, pools and connect options.

pub(crate) use ::sqlx08 as sqlx;

// The same glue as for the other sqlx version, compiled against this one.
#[allow(clippy::duplicate_mod)]
#[path = "sqlx_version.rs"]
mod version;

pub(crate) use version::{classify_known, describe_known, postgres_report};

/// A statement built at run time, as this version's `begin_with` takes it.
#[allow(dead_code)] // without the postgres feature
pub(crate) fn owned_sql(sql: String) -> String {
    sql
}
