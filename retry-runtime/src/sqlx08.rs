//! sqlx 0.8: its errors, connections, pools and connect options.

pub(crate) use ::sqlx08 as sqlx;

#[path = "sqlx_version.rs"]
mod version;

pub(crate) use version::classify_known;
