//! Test support shared by the integration tests: throwaway database servers and a fault proxy.
//!
//! Include it from a test file with
//! `#[path = "support/mod.rs"] mod support;`
//! (each test file is its own crate, so this is compiled into every test binary that uses it).

// Each test binary uses a different subset.
#![allow(dead_code)]

pub mod mariadb;
pub mod pg;
mod process;
pub mod proxy;
