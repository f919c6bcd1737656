//! Shared by the runtime's test files (each includes it with `mod common;`).

// Each test file uses a different part.
#![allow(dead_code)]

use std::borrow::Cow;
use std::fmt;

use sqlx::error::{DatabaseError, ErrorKind};

/// A database error from a driver the runtime does not know, carrying a SQLSTATE and a message
/// as a driver reports them: it can only be classified by its SQLSTATE.
#[derive(Debug)]
pub struct OtherDriverError {
    pub code: &'static str,
    pub message: &'static str,
}

impl OtherDriverError {
    /// An error with only a SQLSTATE worth looking at.
    pub fn sqlstate(code: &'static str) -> sqlx::Error {
        OtherDriverError {
            code,
            message: "synthetic",
        }
        .into()
    }
}

impl fmt::Display for OtherDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for OtherDriverError {}

impl DatabaseError for OtherDriverError {
    fn message(&self) -> &str {
        self.message
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.code))
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}
