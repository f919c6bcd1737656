//! sqlx 0.8: its errors, connections, pools and connect options.

pub(crate) use ::sqlx08 as sqlx;

// The same glue as for the other sqlx version, compiled against this one.
#[allow(clippy::duplicate_mod)]
#[path = "sqlx_version.rs"]
mod version;

pub(crate) use version::{classify_known, describe_known};
