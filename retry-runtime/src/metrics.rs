//! Counters and a histogram through the `metrics` facade (feature `metrics`), for whatever
//! recorder the application installs. Without the feature every function here is empty.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `db_retry_attempts_total` | counter | `function` |
//! | `db_retry_retries_total` | counter | `function`, `class` |
//! | `db_retry_give_ups_total` | counter | `function`, `class`, `reason` |
//! | `db_retry_budget_exhausted_total` | counter | `function` |
//! | `db_retry_breaker_transitions_total` | counter | `breaker`, `from`, `to` |
//! | `db_retry_breaker_rejected_total` | counter | `function`, `breaker` |
//! | `db_retry_breaker_open` | gauge | `breaker` |
//! | `db_retry_backoff_seconds` | histogram | `function`, `class` |
//!
//! Only the first attempt of a call is on the happy path. Its counter is registered once per
//! function and kept with the address of the recorder it came from: the call then costs a look
//! at which recorder is current, one table lookup without locks and the counter's increment.
//! Everything else happens on failed attempts, which register their metrics as they go.
//!
//! A recorder is told apart from another by its address, so one created where a dropped one
//! lived (a test's local recorder, say) is taken for it; install one recorder at start-up.

use std::time::Duration;

use crate::breaker::BreakerState;
use crate::classify::ErrorClass;

/// What the metrics call a call whose policy has no name (a builder's, without
/// [`name`](crate::RetryPolicyBuilder::name)).
pub(crate) const UNNAMED: &str = "unnamed";

fn class_label(class: Option<ErrorClass>) -> &'static str {
    class.map_or("custom", ErrorClass::as_str)
}

#[cfg(feature = "metrics")]
mod enabled {
    use std::sync::atomic::{AtomicPtr, Ordering};
    use std::time::Duration;

    use metrics::{Counter, Key, Label, Level, Metadata, Recorder};

    /// Registered first-attempt counters: a fixed open-addressed table of leaked entries, keyed
    /// by the function name (its address and length) and the recorder's address. Entries are
    /// never freed, so a reader needs no lock and no reference count. When another recorder is
    /// current (one installed late, a test's local recorder) the entry is replaced, at most
    /// `REPLACEMENTS` times per function; after that the function registers its counter with
    /// the current recorder on each call, from labels kept in the entry (no allocation).
    const SLOTS: usize = 1024;
    const SLOT_BITS: u32 = 10;
    const PROBES: usize = 8;
    const REPLACEMENTS: u8 = 4;

    struct Entry {
        function: &'static str,
        labels: &'static [Label],
        recorder: usize,
        counter: Counter,
        replaced: u8,
    }

    static TABLE: [AtomicPtr<Entry>; SLOTS] =
        [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

    fn metadata() -> Metadata<'static> {
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()))
    }

    const NAME: &str = "db_retry_attempts_total";

    #[inline]
    pub(super) fn first_attempt(function: &'static str) {
        metrics::with_recorder(|recorder| {
            let recorder_at = recorder as *const dyn Recorder as *const () as usize;
            let hash = (function.as_ptr() as u64 ^ function.len() as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let home = (hash >> (64 - SLOT_BITS)) as usize;
            for probe in 0..PROBES {
                let slot = &TABLE[(home + probe) % SLOTS];
                let entry = slot.load(Ordering::Acquire);
                if entry.is_null() {
                    return register(recorder, recorder_at, function, slot, None);
                }
                // SAFETY: entries are leaked boxes, never freed.
                let found = unsafe { &*entry };
                if std::ptr::eq(found.function, function) {
                    if found.recorder == recorder_at {
                        return found.counter.increment(1);
                    }
                    if found.replaced >= REPLACEMENTS {
                        let key = Key::from_static_labels(NAME, found.labels);
                        return recorder.register_counter(&key, &metadata()).increment(1);
                    }
                    return register(recorder, recorder_at, function, slot, Some(found));
                }
            }
            // More functions than the table holds around this one: count without keeping the
            // handle (this builds the key each time).
            let key = Key::from_parts(NAME, vec![Label::from_static_parts("function", function)]);
            recorder.register_counter(&key, &metadata()).increment(1);
        })
    }

    #[cold]
    #[inline(never)]
    fn register(
        recorder: &dyn Recorder,
        recorder_at: usize,
        function: &'static str,
        slot: &AtomicPtr<Entry>,
        seen: Option<&'static Entry>,
    ) {
        describe(recorder);
        let labels: &'static [Label] = match seen {
            Some(seen) => seen.labels,
            None => Box::leak(Box::new([Label::from_static_parts("function", function)])),
        };
        let counter =
            recorder.register_counter(&Key::from_static_labels(NAME, labels), &metadata());
        counter.increment(1);
        let entry = Box::into_raw(Box::new(Entry {
            function,
            labels,
            recorder: recorder_at,
            counter,
            replaced: seen.map_or(0, |seen| seen.replaced + 1),
        }));
        let seen = seen.map_or(std::ptr::null_mut(), |seen| {
            seen as *const Entry as *mut Entry
        });
        // Another thread may have got there first: then its entry stays, and this one is
        // dropped (it was never shared).
        if slot
            .compare_exchange(seen, entry, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: `entry` was never published.
            drop(unsafe { Box::from_raw(entry) });
        }
    }

    /// Tells the recorder what each metric means, once per recorder seen by a first attempt.
    fn describe(recorder: &dyn Recorder) {
        let counter = |name: &'static str, text: &'static str| {
            recorder.describe_counter(name.into(), None, text.into())
        };
        counter(
            "db_retry_attempts_total",
            "Attempts of retried functions: first attempts and retries",
        );
        counter(
            "db_retry_retries_total",
            "Retries after a transient database error, by class",
        );
        counter(
            "db_retry_give_ups_total",
            "Calls that returned a transient error without retrying further, by reason",
        );
        counter(
            "db_retry_budget_exhausted_total",
            "Retries refused because the retry budget was spent",
        );
        counter(
            "db_retry_breaker_transitions_total",
            "Circuit breaker state changes",
        );
        counter(
            "db_retry_breaker_rejected_total",
            "Calls with fail_fast not made because their circuit breaker was open",
        );
        recorder.describe_gauge(
            "db_retry_breaker_open".into(),
            None,
            "1 while a circuit breaker is open or half-open, 0 while closed".into(),
        );
        recorder.describe_histogram(
            "db_retry_backoff_seconds".into(),
            Some(metrics::Unit::Seconds),
            "Delays before retries".into(),
        );
    }

    pub(super) fn retry(function: &'static str, class: &'static str, delay: Duration) {
        let labels = [("function", function), ("class", class)];
        metrics::counter!("db_retry_attempts_total", "function" => function).increment(1);
        metrics::counter!("db_retry_retries_total", &labels).increment(1);
        metrics::histogram!("db_retry_backoff_seconds", &labels).record(delay.as_secs_f64());
    }

    pub(super) fn gave_up(function: &'static str, class: &'static str, reason: &'static str) {
        metrics::counter!(
            "db_retry_give_ups_total",
            "function" => function,
            "class" => class,
            "reason" => reason
        )
        .increment(1);
        if reason == "budget" {
            metrics::counter!("db_retry_budget_exhausted_total", "function" => function)
                .increment(1);
        }
    }

    pub(super) fn breaker_rejected(function: &'static str, breaker: &'static str) {
        metrics::counter!(
            "db_retry_breaker_rejected_total",
            "function" => function,
            "breaker" => breaker
        )
        .increment(1);
    }

    pub(super) fn breaker_changed(
        breaker: &'static str,
        from: &'static str,
        to: &'static str,
        closed_now: bool,
    ) {
        metrics::counter!(
            "db_retry_breaker_transitions_total",
            "breaker" => breaker,
            "from" => from,
            "to" => to
        )
        .increment(1);
        metrics::gauge!("db_retry_breaker_open", "breaker" => breaker).set(if closed_now {
            0.0
        } else {
            1.0
        });
    }
}

/// A call's first attempt: the one metric on the happy path.
#[inline(always)]
pub(crate) fn first_attempt(function: &'static str) {
    #[cfg(feature = "metrics")]
    enabled::first_attempt(function);
    #[cfg(not(feature = "metrics"))]
    let _ = function;
}

/// A retry granted after a failed attempt of `class`, to start after `delay`.
pub(crate) fn retry(function: &'static str, class: Option<ErrorClass>, delay: Duration) {
    #[cfg(feature = "metrics")]
    enabled::retry(function, class_label(class), delay);
    #[cfg(not(feature = "metrics"))]
    let _ = (function, class_label(class), delay);
}

/// A call that returns a transient error because of `reason`: the bound that ended it (`max`,
/// `deadline`, `attempt_timeout`, `budget`, `breaker`) or `not_idempotent`.
pub(crate) fn gave_up(function: &'static str, class: Option<ErrorClass>, reason: &'static str) {
    #[cfg(feature = "metrics")]
    enabled::gave_up(function, class_label(class), reason);
    #[cfg(not(feature = "metrics"))]
    let _ = (function, class_label(class), reason);
}

/// A `fail_fast` call refused by its open breaker.
pub(crate) fn breaker_rejected(function: &'static str, breaker: &'static str) {
    #[cfg(feature = "metrics")]
    enabled::breaker_rejected(function, breaker);
    #[cfg(not(feature = "metrics"))]
    let _ = (function, breaker);
}

/// A circuit breaker's change of state; `now` is where it stands when this is said, which the
/// gauge shows.
pub(crate) fn breaker_changed(
    breaker: &'static str,
    from: BreakerState,
    to: BreakerState,
    now: BreakerState,
) {
    #[cfg(feature = "metrics")]
    enabled::breaker_changed(
        breaker,
        from.as_str(),
        to.as_str(),
        now == BreakerState::Closed,
    );
    #[cfg(not(feature = "metrics"))]
    let _ = (breaker, from, to, now);
}
