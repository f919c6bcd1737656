//! The tracing events of a retried call.
//!
//! All events use the target `db_retry`, so `RUST_LOG=db_retry=debug` shows exactly them.

use std::fmt::Display;
use std::time::Duration;

use crate::classify::ErrorClass;

/// `retry` is the number of this retry: 1 for the second attempt.
pub(crate) fn retrying<E: Display + ?Sized>(
    function: &'static str,
    retry: u32,
    delay: Duration,
    class: Option<ErrorClass>,
    may_have_run: bool,
    error: &E,
) {
    tracing::warn!(
        target: "db_retry",
        function,
        retry,
        // Rounded up, as tokio's millisecond timer sleeps it.
        delay_ms = u64::try_from(delay.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
        class = class.map_or("custom", ErrorClass::as_str),
        may_have_run,
        error = %error,
        "retrying after a transient database error"
    );
}

pub(crate) fn gave_up<E: Display + ?Sized>(
    function: &'static str,
    attempts: u32,
    class: Option<ErrorClass>,
    reason: &'static str,
    error: &E,
) {
    tracing::warn!(
        target: "db_retry",
        function,
        attempts,
        class = class.map_or("custom", ErrorClass::as_str),
        reason,
        error = %error,
        "giving up on a transient database error"
    );
}

pub(crate) fn succeeded_after_retries(function: &'static str, attempts: u32) {
    tracing::debug!(
        target: "db_retry",
        function,
        attempts,
        "succeeded after retrying"
    );
}
