//! The retry schedule on tokio's paused clock: exact gaps between attempts, attempt counts,
//! deadline, idempotency and `on` filtering.
//!
//! A note on resolution: tokio's timer has millisecond granularity and rounds every sleep *up* to
//! the next whole millisecond, so on the paused clock a jittered delay of `d` nanoseconds shows up
//! as a gap of `d` rounded up to a whole millisecond. The jitter tests therefore check the exact
//! nanosecond delays through `Retrier::retry_after` (no clock involved) and the measured gaps
//! against those delays rounded up.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::time::Duration;

use db_retry_runtime::{
    retry, retry_with, Backoff, Classify, ErrorClass, Jitter, Phase, Retrier, RetryOn, RetryPolicy,
    RetryPolicyBuilder, Verdict,
};
mod common;

use common::OtherDriverError;
use tokio::time::Instant;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The start instant of every attempt of one call, and the call's result.
struct Run<E> {
    starts: Vec<Instant>,
    result: Result<(), E>,
}

impl<E> Run<E> {
    fn attempts(&self) -> usize {
        self.starts.len()
    }

    fn gaps(&self) -> Vec<Duration> {
        self.starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn error(self) -> E {
        match self.result {
            Ok(()) => panic!("expected the call to fail"),
            Err(error) => error,
        }
    }
}

/// Run `retry` on an operation that fails every time with `error(attempt_number)`.
async fn always_failing<E: Classify + fmt::Display>(
    policy: &RetryPolicy,
    error: impl Fn(usize) -> E,
) -> Run<E> {
    let starts = RefCell::new(Vec::new());
    let result = retry(policy, || {
        let attempt = {
            let mut starts = starts.borrow_mut();
            starts.push(Instant::now());
            starts.len()
        };
        let error = error(attempt);
        async move { Err::<(), E>(error) }
    })
    .await;
    Run {
        starts: starts.into_inner(),
        result,
    }
}

/// A connect error that says which attempt produced it.
fn refused(attempt: usize) -> sqlx::Error {
    sqlx::Error::Io(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("attempt {attempt}"),
    ))
}

fn serialization_failure() -> sqlx::Error {
    OtherDriverError::sqlstate("40001")
}

fn unexpected_eof() -> sqlx::Error {
    sqlx::Error::Io(io::ErrorKind::UnexpectedEof.into())
}

fn no_jitter() -> RetryPolicyBuilder {
    RetryPolicy::builder().no_budget().jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn exponential_without_jitter_doubles_from_base_up_to_cap() {
    let policy = no_jitter()
        .backoff(Backoff::Exponential)
        .base(ms(100))
        .cap(ms(1000))
        .max_retries(6)
        .build()
        .unwrap();
    let run = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
    assert_eq!(run.attempts(), 7);
    assert_eq!(run.gaps(), [100, 200, 400, 800, 1000, 1000].map(ms));
    assert!(matches!(run.error(), sqlx::Error::PoolTimedOut));
}

#[tokio::test(start_paused = true)]
async fn fixed_backoff_waits_base_every_time() {
    let policy = no_jitter()
        .backoff(Backoff::Fixed)
        .base(ms(250))
        .max_retries(5)
        .build()
        .unwrap();
    let run = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
    assert_eq!(run.attempts(), 6);
    assert_eq!(run.gaps(), [ms(250); 5]);
}

#[tokio::test(start_paused = true)]
async fn no_backoff_retries_at_once() {
    // With the default jitter (full, which has nothing to spread) and with `Jitter::None`; a
    // jitter asked for with no backoff is a `PolicyError`.
    for jitter in [None, Some(Jitter::None)] {
        let mut builder = RetryPolicy::builder()
            .no_budget()
            .backoff(Backoff::None)
            .max_retries(4);
        if let Some(jitter) = jitter {
            builder = builder.jitter(jitter);
        }
        let policy = builder.build().unwrap();
        let run = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
        assert_eq!(run.attempts(), 5, "{jitter:?}");
        assert_eq!(run.gaps(), [Duration::ZERO; 4], "{jitter:?}");
    }
}

// ---- jitter, against an independent computation of the AWS formulas ----

const BASE: Duration = ms(100);
const CAP: Duration = ms(1000);
const RETRIES: u32 = 8;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap()
}

/// `min(cap, base · 2^n)`.
fn exponential_ceiling(n: u32) -> Duration {
    (BASE * 2u32.pow(n)).min(CAP)
}

/// Full jitter: `random_between(0, min(cap, base · 2^n))`.
fn expected_full(seed: u64) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..RETRIES)
        .map(|n| Duration::from_nanos(rng.u64(0..=nanos(exponential_ceiling(n)))))
        .collect()
}

/// Equal jitter: `temp / 2 + random_between(0, temp / 2)` with `temp = min(cap, base · 2^n)`.
fn expected_equal(seed: u64) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..RETRIES)
        .map(|n| {
            let half = nanos(exponential_ceiling(n)) / 2;
            Duration::from_nanos(half + rng.u64(0..=half))
        })
        .collect()
}

/// Decorrelated jitter: `sleep = min(cap, random_between(base, sleep · 3))`, `sleep` starting at
/// `base`.
fn expected_decorrelated(seed: u64) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sleep = nanos(BASE);
    (0..RETRIES)
        .map(|_| {
            sleep = rng.u64(nanos(BASE)..=sleep * 3).min(nanos(CAP));
            Duration::from_nanos(sleep)
        })
        .collect()
}

fn jittered(jitter: Jitter, seed: u64) -> RetryPolicy {
    RetryPolicy::builder()
        .no_budget()
        .backoff(Backoff::Exponential)
        .jitter(jitter)
        .base(BASE)
        .cap(CAP)
        .max_retries(RETRIES)
        .seed(seed)
        .build()
        .unwrap()
}

/// The delays `Retrier` hands out, without sleeping.
fn drawn_delays(policy: &RetryPolicy) -> Vec<Duration> {
    let mut retrier = Retrier::new(policy, "drawn_delays");
    let error = sqlx::Error::PoolTimedOut;
    let delays: Vec<Duration> = (0..policy.max_retries())
        .map(|_| retrier.retry_after(&error, error.classify()).unwrap())
        .collect();
    assert_eq!(retrier.retry_after(&error, error.classify()), None);
    delays
}

/// What tokio's millisecond timer turns a sleep of `d` into.
fn rounded_up_to_ms(d: Duration) -> Duration {
    ms(u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap())
}

/// The exact delays, their bounds, the cap, the gaps on the paused clock, and seed determinism.
async fn check_jitter(
    jitter: Jitter,
    expected: fn(u64) -> Vec<Duration>,
    bounds: fn(n: usize, previous: Duration) -> (Duration, Duration),
) {
    const SEED: u64 = 0x5eed_1234;
    let policy = jittered(jitter, SEED);
    let want = expected(SEED);

    let delays = drawn_delays(&policy);
    assert_eq!(
        delays, want,
        "{jitter:?}: delays differ from the AWS formula"
    );
    let mut previous = BASE;
    for (n, delay) in delays.iter().enumerate() {
        let (low, high) = bounds(n, previous);
        assert!(
            low <= *delay && *delay <= high,
            "{jitter:?}: delay {n} = {delay:?} outside [{low:?}, {high:?}]"
        );
        assert!(
            *delay <= CAP,
            "{jitter:?}: delay {n} = {delay:?} above the cap"
        );
        previous = *delay;
    }
    assert!(
        delays.windows(2).any(|w| w[0] != w[1]),
        "{jitter:?}: jitter should vary the delays: {delays:?}"
    );

    let run = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
    assert_eq!(run.attempts(), RETRIES as usize + 1);
    let gaps = run.gaps();
    let want_gaps: Vec<Duration> = want.iter().copied().map(rounded_up_to_ms).collect();
    assert_eq!(gaps, want_gaps, "{jitter:?}: gaps on the paused clock");

    let again = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
    assert_eq!(again.gaps(), gaps, "{jitter:?}: same seed, same gaps");

    let other_seed = jittered(jitter, SEED + 1);
    let other = always_failing(&other_seed, |_| sqlx::Error::PoolTimedOut).await;
    assert_ne!(other.gaps(), gaps, "{jitter:?}: another seed, other gaps");
    assert_eq!(drawn_delays(&other_seed), expected(SEED + 1));
}

#[tokio::test(start_paused = true)]
async fn full_jitter_draws_between_zero_and_the_exponential_delay() {
    check_jitter(Jitter::Full, expected_full, |n, _| {
        (Duration::ZERO, exponential_ceiling(n as u32))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn equal_jitter_draws_between_half_and_all_of_the_exponential_delay() {
    check_jitter(Jitter::Equal, expected_equal, |n, _| {
        let d = exponential_ceiling(n as u32);
        (d / 2, d)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn decorrelated_jitter_draws_between_base_and_three_times_the_previous_delay() {
    check_jitter(
        Jitter::Decorrelated,
        expected_decorrelated,
        |_, previous| (BASE, (previous * 3).min(CAP)),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn unseeded_jitter_still_respects_the_cap() {
    let policy = RetryPolicy::builder()
        .no_budget()
        .base(BASE)
        .cap(CAP)
        .max_retries(20)
        .build()
        .unwrap();
    let run = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
    assert_eq!(run.attempts(), 21);
    assert!(run.gaps().iter().all(|gap| *gap <= CAP), "{:?}", run.gaps());
}

// ---- attempt counts ----

#[tokio::test(start_paused = true)]
async fn zero_max_retries_makes_exactly_one_attempt() {
    let policy = no_jitter().max_retries(0).build().unwrap();
    let start = Instant::now();
    let run = always_failing(&policy, refused).await;
    assert_eq!(run.attempts(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(run.error().to_string(), refused(1).to_string());
}

#[tokio::test(start_paused = true)]
async fn three_max_retries_make_four_attempts_and_return_the_last_error() {
    let policy = no_jitter().max_retries(3).build().unwrap();
    let run = always_failing(&policy, refused).await;
    assert_eq!(run.attempts(), 4);
    let error = run.error();
    assert!(error.to_string().contains("attempt 4"), "got {error}");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_recovers_returns_the_value_after_backing_off() {
    let policy = no_jitter().base(ms(100)).build().unwrap();
    let start = Instant::now();
    let mut attempts = 0;
    let result = retry(&policy, || {
        attempts += 1;
        let attempt = attempts;
        async move {
            if attempt < 3 {
                Err(sqlx::Error::PoolTimedOut)
            } else {
                Ok(attempt)
            }
        }
    })
    .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(start.elapsed(), ms(100 + 200));
}

#[tokio::test(start_paused = true)]
async fn permanent_error_stops_after_one_attempt_without_sleeping() {
    let policy = no_jitter().max_retries(10).build().unwrap();
    let permanent: [fn(usize) -> sqlx::Error; 2] =
        [|_| sqlx::Error::RowNotFound, |_| sqlx::Error::PoolClosed];
    for error in permanent {
        let start = Instant::now();
        let run = always_failing(&policy, error).await;
        assert_eq!(run.attempts(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(matches!(
            run.error(),
            sqlx::Error::RowNotFound | sqlx::Error::PoolClosed
        ));
    }
}

// ---- deadline ----

#[tokio::test(start_paused = true)]
async fn deadline_cuts_the_delay_that_would_reach_it_and_allows_one_last_attempt() {
    // Attempts start at 0, 100, 300, 700 ms; the next delay (800 ms) would reach the deadline,
    // so it is cut to half the 300 ms left: a last attempt at 850 ms, then the call gives up.
    let deadline = ms(1000);
    let policy = no_jitter()
        .base(ms(100))
        .cap(ms(5000))
        .max_retries(10)
        .deadline(deadline)
        .build()
        .unwrap();
    let start = Instant::now();
    let run = always_failing(&policy, refused).await;
    let elapsed = start.elapsed();
    assert_eq!(run.attempts(), 5);
    assert_eq!(run.gaps(), [100, 200, 400, 150].map(ms));
    assert_eq!(elapsed, ms(850));
    assert!(run.error().to_string().contains("attempt 5"));
}

#[tokio::test(start_paused = true)]
async fn deadline_never_lets_an_attempt_start_at_or_past_it() {
    // Fixed 100 ms: attempts at 0, 100, …, 900 ms; the next would start exactly at 1 s, so the
    // last delay is cut to 50 ms (half of what is left) and the last attempt starts at 950 ms.
    let deadline = ms(1000);
    let policy = no_jitter()
        .backoff(Backoff::Fixed)
        .base(ms(100))
        .max_retries(50)
        .deadline(deadline)
        .build()
        .unwrap();
    let start = Instant::now();
    let run = always_failing(&policy, refused).await;
    assert_eq!(run.attempts(), 11);
    assert_eq!(run.gaps().last(), Some(&ms(50)));
    assert_eq!(start.elapsed(), ms(950));
    assert!(run.error().to_string().contains("attempt 11"));
}

#[tokio::test(start_paused = true)]
async fn deadline_counts_the_time_spent_inside_attempts() {
    // Each attempt takes 150 ms, then 100 ms of backoff: starts at 0, 250, 500, 750 ms; the
    // fourth ends at 900 ms, and the 100 ms delay would reach the deadline: cut to 50 ms, a last
    // attempt starts at 950 ms (it runs past the deadline: without `attempt_timeout`, nothing
    // cuts an attempt short).
    let deadline = ms(1000);
    let policy = no_jitter()
        .backoff(Backoff::Fixed)
        .base(ms(100))
        .max_retries(50)
        .deadline(deadline)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut starts = Vec::new();
    let result: Result<(), sqlx::Error> = retry(&policy, || {
        starts.push(start.elapsed());
        let attempt = starts.len();
        async move {
            tokio::time::sleep(ms(150)).await;
            Err(refused(attempt))
        }
    })
    .await;
    assert_eq!(starts, [0, 250, 500, 750, 950].map(ms));
    assert_eq!(start.elapsed(), ms(1100));
    assert!(result.unwrap_err().to_string().contains("attempt 5"));
}

#[tokio::test(start_paused = true)]
async fn an_unlucky_jitter_draw_near_the_deadline_still_gets_a_last_attempt() {
    // Full jitter draws anywhere up to the exponential delay; whatever it draws, the call never
    // gives up before the deadline with retries left, and never starts an attempt past it.
    for seed_round in 0..50 {
        let deadline = ms(1000);
        let policy = RetryPolicy::builder()
            .no_budget()
            .base(ms(300))
            .cap(ms(5000))
            .max_retries(20)
            .deadline(deadline)
            .build()
            .unwrap();
        let start = Instant::now();
        let run = always_failing(&policy, refused).await;
        let starts: Vec<Duration> = run.starts.iter().map(|s| *s - start).collect();
        let (previous, last) = (starts[starts.len() - 2], starts[starts.len() - 1]);
        // The call ends after the cut delay, half-way from the previous start to the deadline
        // (tokio's timer rounds up to the millisecond): never earlier, however large the draw
        // that would have crossed it.
        let halfway = previous + (deadline - previous) / 2;
        let expected = Duration::from_millis(halfway.as_micros().div_ceil(1000) as u64);
        assert_eq!(last, expected, "round {seed_round}: {starts:?}");
    }
}

// ---- idempotency ----

#[tokio::test(start_paused = true)]
async fn non_idempotent_call_does_not_retry_a_lost_connection() {
    let policy = no_jitter().idempotent(false).build().unwrap();
    let run = always_failing(&policy, |_| unexpected_eof()).await;
    assert_eq!(run.attempts(), 1);
    assert!(matches!(run.error(), sqlx::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof));
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_call_retries_nothing_once_its_body_runs_outside_a_transaction() {
    // `retry` sees a body that runs statements on its own: an earlier statement of the attempt
    // may have taken effect whatever the failing one says, so nothing is retried.
    let policy = no_jitter()
        .idempotent(false)
        .max_retries(2)
        .build()
        .unwrap();
    let run = always_failing(&policy, |_| serialization_failure()).await;
    assert_eq!(run.attempts(), 1);
    let run = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
    assert_eq!(run.attempts(), 1);
}

#[test]
fn non_idempotent_attempts_are_judged_by_where_they_stand() {
    let policy = no_jitter().idempotent(false).build().unwrap();
    let judge = |error: &sqlx::Error, phase| {
        Retrier::new(&policy, "phase")
            .retry_after_in_phase(error, Verdict::Class(error.classify()), phase)
            .is_some()
    };
    // Getting the connection: nothing was sent.
    assert!(judge(&sqlx::Error::PoolTimedOut, Phase::Acquire));
    assert!(judge(&unexpected_eof(), Phase::Acquire));
    // In a transaction: the server rolled the attempt back.
    assert!(judge(&serialization_failure(), Phase::Transaction));
    // After the body had its connection, outside a transaction: never.
    assert!(!judge(&serialization_failure(), Phase::Statement));
    assert!(!judge(&sqlx::Error::PoolTimedOut, Phase::Statement));
    // At COMMIT: a serialization failure rolled back; a lost connection is ambiguous, and so
    // is any other failure of the connection, even one that usually means "never connected".
    assert!(judge(&serialization_failure(), Phase::Commit));
    assert!(!judge(&unexpected_eof(), Phase::Commit));
    let unreachable = sqlx::Error::Io(io::Error::from(io::ErrorKind::HostUnreachable));
    assert!(!judge(&unreachable, Phase::Commit));
    assert!(!judge(&sqlx::Error::PoolTimedOut, Phase::Commit));
}

#[tokio::test(start_paused = true)]
async fn a_boolean_classifier_cannot_overrule_idempotency() {
    let policy = no_jitter()
        .idempotent(false)
        .max_retries(2)
        .build()
        .unwrap();
    let mut attempts = 0;
    let result: Result<(), sqlx::Error> = retry_with(
        &policy,
        |_: &sqlx::Error| Verdict::Retry(true),
        || {
            attempts += 1;
            async { Err(unexpected_eof()) }
        },
    )
    .await;
    assert!(result.is_err());
    assert_eq!(attempts, 1, "the attempt may have applied something");

    let relaxed = no_jitter().max_retries(2).build().unwrap();
    let mut attempts = 0;
    let _ = retry_with(
        &relaxed,
        |_: &sqlx::Error| Verdict::Retry(true),
        || {
            attempts += 1;
            async { Err::<(), _>(unexpected_eof()) }
        },
    )
    .await;
    assert_eq!(attempts, 3, "an idempotent function's classifier decides");

    let mut attempts = 0;
    let _ = retry_with(
        &relaxed,
        |_: &sqlx::Error| false,
        || {
            attempts += 1;
            async { Err::<(), _>(sqlx::Error::PoolTimedOut) }
        },
    )
    .await;
    assert_eq!(attempts, 1, "a classifier answering false stops at once");
}

#[test]
fn lost_connection_inside_a_transaction_is_retried_even_when_not_idempotent() {
    let policy = no_jitter().idempotent(false).build().unwrap();
    let error = unexpected_eof();
    let class = Verdict::Class(error.classify());

    let mut retrier = Retrier::new(&policy, "in_transaction");
    assert!(retrier
        .retry_after_in_phase(&error, class, Phase::Transaction)
        .is_some());

    let mut retrier = Retrier::new(&policy, "at_commit");
    assert_eq!(
        retrier.retry_after_in_phase(&error, class, Phase::Commit),
        None
    );

    let mut retrier = Retrier::new(&policy, "statement");
    assert_eq!(
        retrier.retry_after_in_phase(&error, class, Phase::Statement),
        None
    );
}

// ---- `on` ----

#[tokio::test(start_paused = true)]
async fn retry_on_contention_does_not_retry_connect_errors() {
    let policy = no_jitter()
        .retry_on(RetryOn::Contention)
        .max_retries(2)
        .build()
        .unwrap();
    let run = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
    assert_eq!(run.attempts(), 1);
    let run = always_failing(&policy, |_| serialization_failure()).await;
    assert_eq!(run.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_on_connection_does_not_retry_serialization_failures() {
    let policy = no_jitter()
        .retry_on(RetryOn::Connection)
        .max_retries(2)
        .build()
        .unwrap();
    assert_eq!(serialization_failure().classify(), ErrorClass::Contention);
    let run = always_failing(&policy, |_| serialization_failure()).await;
    assert_eq!(run.attempts(), 1);
    let run = always_failing(&policy, |_| sqlx::Error::PoolTimedOut).await;
    assert_eq!(run.attempts(), 3);
    let run = always_failing(&policy, |_| OtherDriverError::sqlstate("53100")).await;
    assert_eq!(run.attempts(), 3, "unavailable is a connection-level class");
}

#[test]
fn a_custom_yes_cannot_retry_an_ambiguous_commit_when_not_idempotent() {
    use db_retry_runtime::{Phase, Retrier, Verdict};
    let lost = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
    let strict = RetryPolicy::builder()
        .no_budget()
        .idempotent(false)
        .build()
        .unwrap();
    let mut retrier = Retrier::new(&strict, "commit");
    assert_eq!(
        retrier.retry_after_in_phase(&lost, Verdict::Retry(true), Phase::Commit),
        None,
        "the transaction may have committed"
    );
    assert!(retrier
        .retry_after_in_phase(&lost, Verdict::Retry(true), Phase::Transaction)
        .is_some());
    let relaxed = RetryPolicy::default();
    let mut retrier = Retrier::new(&relaxed, "commit");
    assert!(retrier
        .retry_after_in_phase(&lost, Verdict::Retry(true), Phase::Commit)
        .is_some());
}
