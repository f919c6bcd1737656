//! sqlx 0.9: its errors, connections, pools and connect options.

pub(crate) use ::sqlx;

#[path = "sqlx_version.rs"]
mod version;

pub(crate) use version::classify_known;
