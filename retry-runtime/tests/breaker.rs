//! The circuit breaker on tokio's paused clock: every change of state at the exact instant it
//! is due, which classes count, and what an open breaker refuses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use db_retry_runtime::{
    retry_with, Backoff, BreakerState, CircuitBreaker, ErrorClass, Jitter, Retrier, RetryPolicy,
};

const OPEN_FOR: Duration = Duration::from_secs(10);

fn policy(breaker: &'static CircuitBreaker, max: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(max)
        .backoff(Backoff::Fixed)
        .base(Duration::from_millis(100))
        .jitter(Jitter::None)
        .no_budget()
        .breaker(breaker)
        .build()
        .unwrap()
}

/// One call whose attempts fail with `outcomes` in turn (`None` = success; past the end, the
/// last); returns how many attempts ran.
async fn call(policy: &RetryPolicy, outcomes: &[Option<ErrorClass>]) -> u32 {
    let attempts = AtomicU32::new(0);
    let _ = retry_with(
        policy,
        |class: &ErrorClass| *class,
        || {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst) as usize;
            let outcome = outcomes[attempt.min(outcomes.len() - 1)];
            async move {
                match outcome {
                    Some(class) => Err(class),
                    None => Ok(()),
                }
            }
        },
    )
    .await;
    attempts.load(Ordering::SeqCst)
}

const CONNECT: Option<ErrorClass> = Some(ErrorClass::Connect);
const OK: Option<ErrorClass> = None;

#[tokio::test(start_paused = true)]
async fn opens_after_the_threshold_of_failures_in_a_row_and_stops_retrying() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("in_a_row")
        .consecutive_failures(3)
        .open_for(OPEN_FOR);
    let policy = policy(&BREAKER, 10);
    // The third failure opens it: that attempt's error goes to the caller, not a fourth try.
    assert_eq!(call(&policy, &[CONNECT]).await, 3);
    assert_eq!(BREAKER.state(), BreakerState::Open);
    // Open, a call's first attempt still runs (no fail_fast), but it is not retried.
    assert_eq!(call(&policy, &[CONNECT]).await, 1);
    assert_eq!(call(&policy, &[Some(ErrorClass::Unavailable)]).await, 1);
}

#[tokio::test(start_paused = true)]
async fn only_connect_and_unavailable_count() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("classes").consecutive_failures(2);
    let policy = policy(&BREAKER, 3);
    for class in [
        ErrorClass::ConnectionLost,
        ErrorClass::Contention,
        ErrorClass::Permanent,
    ] {
        for _ in 0..5 {
            call(&policy, &[Some(class)]).await;
        }
        assert_eq!(BREAKER.state(), BreakerState::Closed, "{class} counted");
    }
    // Nor do they end a run: unavailable, a lost connection, unavailable is two in a row.
    BREAKER.record_failure(ErrorClass::Unavailable);
    BREAKER.record_failure(ErrorClass::ConnectionLost);
    assert_eq!(BREAKER.state(), BreakerState::Closed);
    BREAKER.record_failure(ErrorClass::Unavailable);
    assert_eq!(BREAKER.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_success_ends_the_run() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("run").consecutive_failures(3);
    let policy = policy(&BREAKER, 10);
    // Two failures and a success, twice: never three in a row.
    assert_eq!(call(&policy, &[CONNECT, CONNECT, OK]).await, 3);
    assert_eq!(call(&policy, &[CONNECT, CONNECT, OK]).await, 3);
    assert_eq!(BREAKER.state(), BreakerState::Closed);
    // A first attempt that succeeds ends a run too.
    assert_eq!(call(&policy, &[CONNECT, CONNECT, OK]).await, 3);
    call(&policy, &[OK]).await;
    BREAKER.record_failure(ErrorClass::Connect);
    BREAKER.record_failure(ErrorClass::Connect);
    assert_eq!(BREAKER.state(), BreakerState::Closed);
    BREAKER.record_failure(ErrorClass::Connect);
    assert_eq!(BREAKER.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_exactly_when_the_open_duration_has_passed() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("timing")
        .consecutive_failures(1)
        .open_for(OPEN_FOR);
    BREAKER.record_failure(ErrorClass::Connect);
    assert_eq!(BREAKER.state(), BreakerState::Open);
    tokio::time::advance(OPEN_FOR - Duration::from_millis(1)).await;
    assert_eq!(BREAKER.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn failures_while_open_do_not_extend_it() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("extend")
        .consecutive_failures(1)
        .open_for(OPEN_FOR);
    let policy = policy(&BREAKER, 3);
    BREAKER.record_failure(ErrorClass::Connect);
    tokio::time::advance(OPEN_FOR / 2).await;
    assert_eq!(call(&policy, &[CONNECT]).await, 1);
    tokio::time::advance(OPEN_FOR / 2).await;
    assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_successful_probe_closes_it_and_retries_resume() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("probe")
        .consecutive_failures(1)
        .open_for(OPEN_FOR);
    let policy = policy(&BREAKER, 3);
    BREAKER.record_failure(ErrorClass::Connect);
    tokio::time::advance(OPEN_FOR).await;
    // Half-open, a failed call is still not retried...
    assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
    assert_eq!(call(&policy, &[Some(ErrorClass::Contention), OK]).await, 1);
    assert_eq!(call(&policy, &[OK]).await, 1);
    assert_eq!(BREAKER.state(), BreakerState::Closed);
    // ...and closed again, a contention error is retried as before.
    assert_eq!(call(&policy, &[Some(ErrorClass::Contention), OK]).await, 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_it_again_for_a_full_duration() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("reopen")
        .consecutive_failures(1)
        .open_for(OPEN_FOR);
    let policy = policy(&BREAKER, 3);
    BREAKER.record_failure(ErrorClass::Connect);
    tokio::time::advance(OPEN_FOR).await;
    assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
    assert_eq!(call(&policy, &[CONNECT]).await, 1);
    assert_eq!(BREAKER.state(), BreakerState::Open);
    tokio::time::advance(OPEN_FOR - Duration::from_millis(1)).await;
    assert_eq!(BREAKER.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn closing_takes_as_many_successes_as_probes() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("two_probes")
        .consecutive_failures(1)
        .open_for(OPEN_FOR)
        .probes(2);
    BREAKER.record_failure(ErrorClass::Connect);
    tokio::time::advance(OPEN_FOR).await;
    BREAKER.record_success();
    assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
    BREAKER.record_success();
    assert_eq!(BREAKER.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn admit_refuses_while_open_and_lets_probes_through_when_half_open() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("admit")
        .consecutive_failures(2)
        .open_for(OPEN_FOR)
        .probes(2);
    drop(BREAKER.admit().expect("closed"));
    BREAKER.record_failure(ErrorClass::Unavailable);
    drop(BREAKER.admit().expect("one failure does not open it"));
    BREAKER.record_failure(ErrorClass::Unavailable);
    let refused = BREAKER.admit().unwrap_err();
    // Within the call, trying again cannot help: an enclosing retried call does not retry it.
    assert_eq!(
        db_retry_runtime::Classify::classify(&refused),
        ErrorClass::Permanent
    );
    assert_eq!(refused.breaker(), "admit");
    assert_eq!(refused.state(), BreakerState::Open);
    assert_eq!(
        refused.to_string(),
        "circuit breaker `admit` is open after repeated failures to reach the database: the call \
         was not made"
    );
    tokio::time::advance(OPEN_FOR).await;
    // Two probes at a time, then refused until one returns.
    let first = BREAKER.admit().expect("a probe");
    let second = BREAKER.admit().expect("a second probe");
    assert_eq!(BREAKER.admit().unwrap_err().state(), BreakerState::HalfOpen);
    // A probe whose call returns, whatever its outcome, gives its place back.
    drop(first);
    let third = BREAKER.admit().expect("the first probe's place");
    BREAKER.record_success();
    BREAKER.record_success();
    assert_eq!(BREAKER.state(), BreakerState::Closed);
    drop((second, third));
    assert!(BREAKER.admit().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_place_back() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("cancelled")
        .consecutive_failures(1)
        .open_for(OPEN_FOR);
    BREAKER.record_failure(ErrorClass::Connect);
    tokio::time::advance(OPEN_FOR).await;
    let policy = policy(&BREAKER, 3);
    // The probe's call never finishes, and is dropped.
    let stuck = async {
        let _admission = policy.admit().expect("the probe");
        std::future::pending::<()>().await;
    };
    let _ = tokio::time::timeout(Duration::from_millis(10), stuck).await;
    assert!(policy.admit().is_ok(), "the dropped call's place is free");
}

#[tokio::test(start_paused = true)]
async fn a_call_from_before_the_half_open_spell_does_not_reopen_it() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("stale")
        .consecutive_failures(1)
        .open_for(OPEN_FOR);
    let policy = policy(&BREAKER, 3);
    BREAKER.record_failure(ErrorClass::Connect);
    // A call starts while the breaker is open, and is slow to fail.
    let admission = policy.enter();
    tokio::time::advance(OPEN_FOR).await;
    assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
    let mut retrier = Retrier::new(&policy, "stale").admitted(&admission);
    assert_eq!(
        retrier.retry_after(&"connect refused", ErrorClass::Connect),
        None,
        "half-open: no retry"
    );
    assert_eq!(BREAKER.state(), BreakerState::HalfOpen, "a stale failure");
    // A call that starts now is a probe: its failure counts.
    let admission = policy.enter();
    let mut retrier = Retrier::new(&policy, "fresh").admitted(&admission);
    assert_eq!(
        retrier.retry_after(&"connect refused", ErrorClass::Connect),
        None
    );
    assert_eq!(BREAKER.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_nested_call_on_the_same_breaker_counts_its_failure_once() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("nested")
        .consecutive_failures(2)
        .open_for(OPEN_FOR);
    let outer = policy(&BREAKER, 0);
    let inner = policy(&BREAKER, 3);
    // The outer call does not retry (max 0), so the inner one retries on its own: its three
    // failures and the outer call's judgement of the last one are one failure each, not two.
    let inner_attempts = AtomicU32::new(0);
    let _ = retry_with(
        &outer,
        |class: &ErrorClass| *class,
        || async {
            retry_with(
                &inner,
                |class: &ErrorClass| *class,
                || async {
                    inner_attempts.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(ErrorClass::Connect)
                },
            )
            .await
        },
    )
    .await;
    // Counted once each, the second failure opened the breaker and refused the third attempt.
    assert_eq!(inner_attempts.load(Ordering::SeqCst), 2);
    assert_eq!(BREAKER.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn settings_out_of_range_are_brought_into_it() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("clamped")
        .consecutive_failures(0)
        .open_for(Duration::ZERO)
        .probes(0);
    assert_eq!(BREAKER.threshold(), 1);
    assert_eq!(BREAKER.open_duration(), Duration::from_millis(1));
    assert_eq!(BREAKER.probe_count(), 1);
    let defaults = CircuitBreaker::new("defaults");
    assert_eq!(defaults.threshold(), 5);
    assert_eq!(defaults.open_duration(), Duration::from_secs(5));
    assert_eq!(defaults.probe_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_ratio_opens_it_without_failures_in_a_row() {
    // Every other attempt fails: never two in a row, but half of them.
    static BREAKER: CircuitBreaker = CircuitBreaker::new("ratio")
        .consecutive_failures(100)
        .failure_ratio(50, 20, Duration::from_secs(10))
        .open_for(OPEN_FOR);
    let policy = policy(&BREAKER, 0);
    let mut calls = 0;
    while BREAKER.state() == BreakerState::Closed && calls < 1000 {
        let outcome = if calls % 2 == 0 { CONNECT } else { OK };
        call(&policy, &[outcome]).await;
        calls += 1;
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    // The first failure starts the window; at the 21st attempt, 11 of the 21 failed.
    assert_eq!(
        calls, 21,
        "opened once the minimum of attempts was reached at 50 %"
    );
    assert_eq!(
        BREAKER.failure_ratio_threshold(),
        Some((50, 20, Duration::from_secs(10)))
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_ratio_below_the_threshold_keeps_it_closed() {
    // One attempt in four fails, for long enough to fill several windows.
    static BREAKER: CircuitBreaker = CircuitBreaker::new("ratio_low")
        .consecutive_failures(100)
        .failure_ratio(50, 20, Duration::from_secs(1))
        .open_for(OPEN_FOR);
    let policy = policy(&BREAKER, 0);
    for calls in 0..2000 {
        let outcome = if calls % 4 == 0 { CONNECT } else { OK };
        call(&policy, &[outcome]).await;
        tokio::time::advance(Duration::from_millis(5)).await;
    }
    assert_eq!(BREAKER.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failure_handed_up_to_a_call_without_the_breaker_still_counts() {
    static BREAKER: CircuitBreaker = CircuitBreaker::new("handed_up")
        .consecutive_failures(2)
        .open_for(OPEN_FOR);
    // The outer call retries connect failures itself and has no breaker; the inner one hands
    // its failures up, and reports them first.
    let outer = RetryPolicy::builder()
        .max_retries(3)
        .backoff(Backoff::None)
        .jitter(Jitter::None)
        .no_budget()
        .build()
        .unwrap();
    let inner = policy(&BREAKER, 3);
    let _ = retry_with(
        &outer,
        |class: &ErrorClass| *class,
        || async {
            retry_with(
                &inner,
                |class: &ErrorClass| *class,
                || async { Err::<(), _>(ErrorClass::Connect) },
            )
            .await
        },
    )
    .await;
    assert_eq!(BREAKER.state(), BreakerState::Open);
}
