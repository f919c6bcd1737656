//! The tracing events of a retried call.
//!
//! All events use the target `db_retry`, so `RUST_LOG=db_retry=debug` shows exactly them.

use std::error::Error as StdError;
use std::fmt::Display;
use std::time::Duration;

use crate::breaker::BreakerState;
use crate::classify::{describe, ErrorClass};

/// A failed attempt as the events show it: the function, the error, and the error in its chain
/// that decided the class when its text is not already the error's.
pub(crate) struct Failure<'e> {
    function: &'static str,
    error: &'e dyn Display,
    decided_by: Option<&'e (dyn StdError + 'static)>,
}

impl<'e> Failure<'e> {
    pub(crate) fn new(
        function: &'static str,
        error: &'e dyn Display,
        decided_by: Option<&'e (dyn StdError + 'static)>,
    ) -> Self {
        Failure {
            function,
            error,
            decided_by,
        }
    }

    /// Described only when an event is emitted: tracing evaluates field values then, not before.
    fn cause(&self) -> Option<String> {
        self.decided_by
            .map(describe)
            .filter(|cause| *cause != self.error.to_string())
    }

    /// `retry` is the number of this retry: 1 for the second attempt.
    pub(crate) fn retrying(
        &self,
        retry: u32,
        delay: Duration,
        class: Option<ErrorClass>,
        may_have_run: bool,
    ) {
        tracing::warn!(
            target: "db_retry",
            function = self.function,
            retry,
            // Rounded up, as tokio's millisecond timer sleeps it.
            delay_ms = u64::try_from(delay.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
            class = class.map_or("custom", ErrorClass::as_str),
            may_have_run,
            error = %self.error,
            cause = self.cause().as_deref(),
            "retrying after a transient database error"
        );
    }

    /// Giving up on a transient error; `bound` names the limit that ended the call (`max`,
    /// `deadline`); out of retries after an attempt `attempt_timeout` cancelled, it is
    /// `attempt_timeout`.
    pub(crate) fn gave_up(
        &self,
        attempts: u32,
        class: Option<ErrorClass>,
        reason: &'static str,
        bound: Option<&'static str>,
    ) -> Option<&'static str> {
        // Out of retries after an attempt `attempt_timeout` cancelled: the timeout is what
        // kept that attempt from succeeding. A deadline stays the deadline.
        let bound = match bound {
            Some("max") if self.decided_by.is_some_and(was_cancelled) => Some("attempt_timeout"),
            bound => bound,
        };
        tracing::warn!(
            target: "db_retry",
            function = self.function,
            attempts,
            class = class.map_or("custom", ErrorClass::as_str),
            reason,
            bound,
            error = %self.error,
            cause = self.cause().as_deref(),
            "giving up on a transient database error"
        );
        bound
    }

    /// The retry budget is spent: the error goes to the caller. Said at most once per slot of
    /// the budget's window, with how many such refusals went unsaid since the last.
    pub(crate) fn budget_spent(&self, attempts: u32, class: Option<ErrorClass>, unreported: u64) {
        tracing::warn!(
            target: "db_retry",
            function = self.function,
            attempts,
            class = class.map_or("custom", ErrorClass::as_str),
            reason = "the retry budget is spent",
            bound = "budget",
            unreported,
            error = %self.error,
            cause = self.cause().as_deref(),
            "giving up on a transient database error: too many retries across calls"
        );
    }

    /// The call's circuit breaker is open or half-open: the error goes to the caller. DEBUG,
    /// since every call says it while the breaker is open; the breaker's own change of state is
    /// the WARN.
    pub(crate) fn breaker_refused(
        &self,
        attempts: u32,
        class: Option<ErrorClass>,
        breaker: &'static str,
        state: BreakerState,
    ) {
        tracing::debug!(
            target: "db_retry",
            function = self.function,
            attempts,
            class = class.map_or("custom", ErrorClass::as_str),
            reason = "the circuit breaker is open",
            bound = "breaker",
            breaker,
            breaker_state = state.as_str(),
            error = %self.error,
            cause = self.cause().as_deref(),
            "giving up on a transient database error: the circuit breaker is open"
        );
    }

    /// A permanent error that is the setup's, not a failure: said once per call, with what to
    /// change, since nothing else would point at it.
    pub(crate) fn misconfigured(&self, attempts: u32, hint: &'static str) {
        tracing::warn!(
            target: "db_retry",
            function = self.function,
            attempts,
            class = "permanent",
            error = %self.error,
            cause = self.cause().as_deref(),
            hint,
            "not retrying: the database setup refuses this, and retrying cannot change it"
        );
    }

    /// A retried call inside another one's attempt leaves the retrying to the outer call.
    pub(crate) fn handed_up(&self, attempts: u32, class: Option<ErrorClass>) {
        tracing::debug!(
            target: "db_retry",
            function = self.function,
            attempts,
            class = class.map_or("custom", ErrorClass::as_str),
            error = %self.error,
            cause = self.cause().as_deref(),
            "not retrying here: this call runs inside another retried call, which retries"
        );
    }
}

/// Whether `error`'s chain holds an attempt cancelled by `attempt_timeout` (an I/O error holds
/// it as its payload, which `source()` skips).
fn was_cancelled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<crate::expansion::AttemptTimedOut>() {
            return true;
        }
        if let Some(payload) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if payload.is::<crate::expansion::AttemptTimedOut>() {
                return true;
            }
        }
        current = error.source();
    }
    false
}

pub(crate) fn succeeded_after_retries(function: &'static str, attempts: u32) {
    tracing::debug!(
        target: "db_retry",
        function,
        attempts,
        "succeeded after retrying"
    );
}

/// A circuit breaker changed state: WARN when it opens (the database keeps failing), INFO when it
/// probes or closes again.
pub(crate) fn breaker_changed(
    breaker: &'static str,
    from: BreakerState,
    to: BreakerState,
    threshold: u32,
    open_for: Duration,
) {
    let open_for_ms = u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX);
    match to {
        BreakerState::Open => tracing::warn!(
            target: "db_retry",
            breaker,
            from = from.as_str(),
            to = to.as_str(),
            threshold,
            open_for_ms,
            "circuit breaker opened: retries are refused until it probes again"
        ),
        BreakerState::HalfOpen => tracing::info!(
            target: "db_retry",
            breaker,
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker half-open: the next calls probe the database"
        ),
        BreakerState::Closed => tracing::info!(
            target: "db_retry",
            breaker,
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker closed: the database answers again"
        ),
    }
}

/// A call with `fail_fast` refused by its open breaker, before it ran. DEBUG: every call says
/// it while the breaker is open.
pub(crate) fn breaker_rejected(function: &'static str, open: &crate::CircuitOpen) {
    tracing::debug!(
        target: "db_retry",
        function,
        breaker = open.breaker(),
        breaker_state = open.state().as_str(),
        "not calling: the circuit breaker is open"
    );
}
